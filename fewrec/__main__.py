"""`python -m fewrec …` is the `fewrec` command (e.g. `python -m fewrec eval`); it lives at the
top of the package because the command line sits above every other part."""

from fewrec.cli import main

if __name__ == "__main__":
    main()
