"""The command-line options several `fewrec` commands share, declared once as typer `Annotated`
aliases: a command names them in its signature (`config: ConfigOption = None`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML settings file (default: ./fewrec.toml if present).")
]
DatasetOption = Annotated[
    str | None,
    typer.Option("--dataset", help="Dataset folder or file (default: bundled ml-latest-small)."),
]
FormatOption = Annotated[
    str,
    typer.Option("--format", help="movielens | ml-100k | ml-1m | amazon | csv | auto."),
]
DuplicatesOption = Annotated[
    str | None,
    typer.Option(
        "--duplicates",
        help="Repeated (user, item, time) rows: error, drop (keep the first) or keep-last "
        "(default from Settings: error).",
    ),
]

ProtocolOption = Annotated[
    str | None,
    typer.Option(
        "--protocol",
        help="loo: the paper's leave-one-out (default); temporal: a global time cut, nothing after it seen.",
    ),
]
TiesOption = Annotated[
    str | None,
    typer.Option(
        "--ties", help="Same-second interactions ordered by item id (default) or at random (seeded)."
    ),
]
TestCutOption = Annotated[
    str | None,
    typer.Option(
        "--test-cut", help="Temporal protocol: test cut as a date, Unix seconds or a quantile (0.9)."
    ),
]
ValidCutOption = Annotated[
    str | None,
    typer.Option(
        "--valid-cut", help="Temporal protocol: validation cut (date, Unix seconds or quantile 0.8)."
    ),
]
SplitOption = Annotated[str, typer.Option(help="valid or test.")]

RayOption = Annotated[
    str | None,
    typer.Option(
        "--ray",
        help="Shard the users over Ray actors: 'auto' (the running cluster, else a local instance) "
        "or a cluster address HOST:PORT. Same numbers as one process.",
    ),
]
RayWorkersOption = Annotated[
    int | None, typer.Option("--ray-workers", help="--ray: actors to start (default: one per CPU).")
]

SeedOption = Annotated[
    int, typer.Option(help="Seed for the samples (users, dialogues, negatives) and the bootstrap.")
]
RunFolderOption = Annotated[Path | None, typer.Option(help="Run folder (default: runs/<timestamp>).")]
ReadmeOption = Annotated[
    Path | None,
    typer.Option(
        help="Also rewrite this run's block of this file, docs/RESULTS.md (complete run, clean tree)"
    ),
]
NoContentOption = Annotated[bool, typer.Option(help="Leave the Chroma content source out.")]

# recommend and search: how many items, and the filters on them.
CountOption = Annotated[int, typer.Option(help="How many items.")]
GenreOption = Annotated[list[str] | None, typer.Option(help="Only items of this genre (repeatable).")]
YearMinOption = Annotated[int | None, typer.Option(help="Earliest release year.")]
YearMaxOption = Annotated[int | None, typer.Option(help="Latest release year.")]


def check_count_and_years(k: int, year_min: int | None, year_max: int | None) -> None:
    """--k and the year range, checked before anything is loaded or fitted: a range that ends
    before it starts would match nothing."""
    from fewrec.agent.recommender import MAX_K
    from fewrec.data.errors import FewrecError

    if not 1 <= k <= MAX_K:
        raise FewrecError(f"--k must be between 1 and {MAX_K}, got {k}")
    if year_min is not None and year_max is not None and year_min > year_max:
        raise FewrecError(f"--year-min {year_min} is after --year-max {year_max}: no item could match")


# The chat evaluation's own options: `fewrec eval-chat`, and `fewrec eval --chat` until it goes.
QueryWeightsOption = Annotated[
    str | None,
    typer.Option(
        help="Query weights tried on validation targets for the families that carry a query "
        "(default 0,0.1,0.25,0.5; '' keeps the configured ones)."
    ),
]
PhrasingsOption = Annotated[
    Path | None, typer.Option(help="Another phrasings file (default: the shipped one).")
]
DialoguesOption = Annotated[int | None, typer.Option(help="A seeded sample of N dialogues (default: all).")]
