"""The `fewrec` command line (typer): datasets, index, recommend, eval, bench."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fewrec.config import Settings
from fewrec.data.errors import FewrecError

app = typer.Typer(
    help="fewrec: an LLM-agent recommender with few-shot reasoning, measured honestly.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()

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


def _settings(config: Path | None, dataset: str | None = None, fmt: str | None = None) -> Settings:
    overrides: dict = {}
    if dataset is not None:
        overrides["dataset"] = dataset
    if fmt is not None and fmt != "auto":
        overrides["dataset_format"] = fmt
    return Settings.load(config, **overrides)


@app.callback()
def _root() -> None:
    """fewrec: an LLM-agent recommender with few-shot reasoning, measured honestly."""


def main() -> None:
    """Entry point that prints fewrec's own errors as one line instead of a traceback."""
    try:
        app()
    except FewrecError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)


@app.command()
def datasets(
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
) -> None:
    """List the dataset formats fewrec can load and the statistics of the chosen dataset."""
    from fewrec.data import LOADERS, load_dataset, load_raw

    settings = _settings(config, dataset, format)
    formats = Table(title="Loadable formats")
    formats.add_column("format")
    formats.add_column("files")
    for name, files in {
        "movielens": "ratings.csv, movies.csv, tags.csv (ml-latest-small, ml-25m)",
        "ml-100k": "u.data, u.item",
        "ml-1m": "ratings.dat, movies.dat",
        "amazon": "reviews *.json[.gz] (+ meta_*.json[.gz])",
        "csv": "interactions csv (+ items csv), columns named by you",
    }.items():
        if name in LOADERS:
            formats.add_row(name, files)
    console.print(formats)

    raw = load_raw(settings.dataset, settings.dataset_format)
    split = load_dataset(
        settings.dataset, settings.dataset_format, split=settings.split, cache_dir=settings.cache_dir
    )
    table = Table(title=f"Dataset: {raw.name}" + (" (bundled)" if settings.dataset is None else ""))
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key, value in raw.stats().items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    for key, value in split.stats().items():
        table.add_row(f"after {settings.split.min_count}-core split: {key}", f"{value:,}")
    console.print(table)


if __name__ == "__main__":
    main()
