"""`python -m fewrec.eval …` is `fewrec eval …`: the same code path."""

import sys

from fewrec.cli import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "eval", *sys.argv[1:]]
    main()
