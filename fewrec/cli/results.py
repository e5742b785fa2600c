"""`fewrec compare-results`: every figure two folders of results.json files share, compared to the
printed digit (how `make verify-results` checks the published figures)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fewrec.cli.common import console
from fewrec.data.errors import FewrecError


def compare_results(
    first: Annotated[Path, typer.Argument(help="A folder of results*/results.json (e.g. docs).")],
    second: Annotated[Path, typer.Argument(help="Another one (e.g. runs/verify: `make verify-results`).")],
) -> None:
    """Compare every figure of the results.json files two folders share, to the printed digit;
    exit 1 on any difference."""
    from fewrec.eval.verify import compare_folders

    results = compare_folders(first, second)
    compared = [r for r in results if r.missing is None]
    for r in results:
        if r.missing is not None:
            console.print(f"{r.name}: not compared ({r.missing})", highlight=False)
            continue
        verdict = "identical" if not r.differences else f"{len(r.differences)} difference(s)"
        console.print(f"{r.name}: {r.compared} figures, {verdict}; {r.provenance}", highlight=False)
        for line in r.differences[:20]:
            console.print(f"  {line}", highlight=False)
    if not compared:
        raise FewrecError(f"no results*/results.json of {first} has a counterpart in {second}")
    if any(r.differences for r in compared):
        raise typer.Exit(1)
