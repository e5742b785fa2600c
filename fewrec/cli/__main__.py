"""`python -m fewrec.cli …` is the `fewrec` command, as `python -m fewrec …` is."""

from fewrec.cli import main

if __name__ == "__main__":
    main()
