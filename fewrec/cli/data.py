"""`fewrec datasets`, `fewrec index` and `fewrec search`: what a dataset holds, its Chroma
content index, and searching that index by meaning."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from fewrec.cli.common import console, load_settings, load_split, note
from fewrec.cli.options import (
    ConfigOption,
    CountOption,
    DatasetOption,
    DuplicatesOption,
    FormatOption,
    GenreOption,
    YearMaxOption,
    YearMinOption,
    check_count_and_years,
)
from fewrec.data.errors import FewrecError

# The files each loader reads, as `fewrec datasets` lists them.
FORMAT_FILES = {
    "movielens": "ratings.csv, movies.csv, tags.csv (ml-latest-small, ml-25m)",
    "ml-100k": "u.data, u.item",
    "ml-1m": "ratings.dat, movies.dat",
    "amazon": "reviews *.json[.gz] (+ meta_*.json[.gz])",
    "csv": "user_id, item_id, timestamp (+ rating); other names: Python's load_generic_csv",
}


def datasets(
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
    duplicates: DuplicatesOption = None,
) -> None:
    """List the dataset formats fewrec can load and the statistics of the chosen dataset."""
    from fewrec.data import LOADERS, load_raw
    from fewrec.data.traits import has_titles, time_kind, time_range

    settings = load_settings(config, dataset, format, duplicates)
    formats = Table(title="Loadable formats")
    formats.add_column("format")
    formats.add_column("files")
    for name, files in FORMAT_FILES.items():
        if name in LOADERS:
            formats.add_row(name, files)
    console.print(formats)

    raw = load_raw(settings.dataset, settings.dataset_format, **settings.loader_options)
    split = load_split(settings)
    table = Table(title=f"Dataset: {raw.name}" + (" (bundled)" if settings.dataset is None else ""))
    table.add_column("statistic")
    table.add_column("value", justify="right")
    stamps = raw.interactions.frame["timestamp"]
    stats = raw.stats()
    # Positions (0..n per user) are an order, not dates: never show them as days in 1970.
    stats["first"], stats["last"] = time_range(stamps) if len(stamps) else ("", "")
    stats["times"] = {"seconds": "dates", "positions": "positions (an order, no dates)",
                      "none": "none (all equal)"}[time_kind(stamps)]  # fmt: skip
    stats["titles"] = "yes" if has_titles(raw.catalog) else "no (the item ids): no content source"
    for key, value in stats.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    for key, value in split.stats().items():
        table.add_row(f"after {settings.split.min_count}-core split: {key}", f"{value:,}")
    console.print(table)


def index(
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
    rebuild: Annotated[bool, typer.Option(help="Drop the collection and build it anew.")] = False,
    duplicates: DuplicatesOption = None,
) -> None:
    """Build or update the Chroma content index of the dataset (its own collection; incremental:
    only new or changed items)."""
    import time

    from fewrec.data.traits import has_titles
    from fewrec.retrieval.store import ContentIndex

    settings = load_settings(config, dataset, format, duplicates)
    split = load_split(settings)
    if not has_titles(split.catalog):
        note(f"{split.name}: the items have no titles (they are their ids): nothing to index")
        return
    started = time.perf_counter()
    content = ContentIndex.from_settings(settings, rebuild=rebuild)
    report = content.build(split.catalog)
    seconds = time.perf_counter() - started
    where = (
        f"{settings.chroma_host}:{settings.chroma_port}" if settings.chroma_host else str(settings.chroma_dir)
    )
    console.print(
        f"index {settings.collection_name!r} at {where}: {report}; {len(content)} items, {seconds:.1f} s"
    )


def search(
    text: Annotated[str, typer.Argument(help="Free text, e.g. 'dark sci-fi from the 90s'.")],
    k: CountOption = 10,
    genre: GenreOption = None,
    year_min: YearMinOption = None,
    year_max: YearMaxOption = None,
    config: ConfigOption = None,
    dataset: DatasetOption = None,
) -> None:
    """Search the content index of a dataset by meaning, with optional genre and year filters."""
    from fewrec.retrieval.store import ContentIndex, where_filter

    if not text.strip():
        raise FewrecError("give the search some words, e.g. 'dark sci-fi from the 90s'")
    check_count_and_years(k, year_min, year_max)
    settings = load_settings(config, dataset)  # each dataset has its own index
    if genre:
        from fewrec.agent.request import check_genres

        check_genres(genre, load_split(settings).catalog.genre_names)
    content = ContentIndex.from_settings(settings)
    if len(content) == 0:
        raise FewrecError("the content index is empty: run `fewrec index` first")
    hits = content.query_text(text, k, where_filter(genre, year_min, year_max))
    table = Table(title=f"Search: {text[:60]}")
    for col in ("rank", "item", "title", "similarity"):
        table.add_column(col)
    titles = content.titles([item_id for item_id, _ in hits])
    for rank, (item_id, similarity) in enumerate(hits, start=1):
        table.add_row(str(rank), item_id, titles.get(item_id, ""), f"{similarity:.3f}")
    console.print(table)
