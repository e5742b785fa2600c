"""Loaders for every supported dataset format, all producing the same `Dataset` model.

Formats: MovieLens CSV (ml-latest-small, ml-25m), ml-100k, ml-1m, Amazon 5-core JSON lines,
and a generic interactions + items CSV pair with user-given column names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pandas as pd

from fewrec.data import readers
from fewrec.data.errors import DatasetError
from fewrec.data.models import Dataset, Interactions, build_catalog

logger = logging.getLogger(__name__)

# Rows that repeat (user, item, timestamp): an error (the default), or keep the first ("drop")
# or the last ("keep-last", e.g. a re-rated item) of each. `--duplicates` / `duplicates` setting.
Duplicates = Literal["error", "drop", "keep-last"]
DUPLICATES: tuple[str, ...] = ("error", "drop", "keep-last")

BUNDLED_DIR = Path(__file__).parent / "bundled" / "ml-latest-small"

# What a duplicate-interaction error suggests: the same choice on the command line, in the
# settings and in Python.
DUPLICATES_HINT = (
    "Remove them, or keep the first of each with --duplicates drop (or the last with "
    '--duplicates keep-last); as a setting: duplicates = "drop" in fewrec.toml or '
    "FEWREC_DUPLICATES=drop; in Python: load_dataset(..., duplicates='drop')."
)


def _interactions(
    frame: pd.DataFrame,
    user: str,
    item: str,
    rating: str | None,
    timestamp: str | None,
    duplicates: Duplicates,
    item_ids: pd.Series | None = None,
) -> Interactions:
    """`item_ids`: the item column already read (typed like the catalog's ids, see `_catalog_ids`)."""
    out = pd.DataFrame(
        {
            "user_id": readers.ids(frame, user),
            "item_id": readers.ids(frame, item) if item_ids is None else item_ids,
            "rating": readers.to_float(frame, rating) if rating else 1.0,
            "timestamp": readers.to_int(frame, timestamp) if timestamp else 0,
        }
    )
    out.attrs.update(frame.attrs)
    key = ["user_id", "item_id", "timestamp"]
    if duplicates == "error":
        readers.check_duplicates(out, key, "interaction", hint=DUPLICATES_HINT)
    elif duplicates in ("drop", "keep-last"):
        out = out.drop_duplicates(subset=key, keep="first" if duplicates == "drop" else "last")
    else:
        raise DatasetError(f"unknown duplicates={duplicates!r}; choose {', '.join(DUPLICATES)}")
    out.attrs.clear()
    return Interactions(out.reset_index(drop=True))


def _catalog_ids(
    items: pd.DataFrame, item_col: str, events: pd.DataFrame, event_col: str, what: str = "item id"
) -> tuple[pd.Series, pd.Series]:
    """Item ids of the catalog file (checked unique) and of the interactions file, typed alike;
    every interaction must name an item of the catalog."""
    ids, item_ids = readers.matching_ids((items, item_col), (events, event_col))
    readers.check_duplicates(items.assign(**{item_col: ids}), [item_col], what)
    readers.check_known(events, event_col, item_ids, ids, Path(items.attrs["path"]), what)
    return ids, item_ids


def _split_genres(series: pd.Series, sep: str = "|") -> list[list[str]]:
    return [[g for g in str(v).split(sep) if g and g != "(no genres listed)"] for v in series.fillna("")]


def _tags_by_item(path: Path, item_col: str, tag_col: str, known: pd.Series) -> dict:
    """Distinct tags per item, most used first. Tags of items the catalog lacks are dropped,
    with a warning that says how many (a tags file from another version of the dataset)."""
    if not path.exists():
        return {}
    frame = readers.read_table(path, columns=[item_col, tag_col])
    frame = frame.assign(item=readers.ids(frame, item_col), tag=frame[tag_col].str.strip().str.lower())
    frame = frame[frame["tag"] != ""]
    unknown = ~frame["item"].isin(set(known.tolist()))
    if unknown.any():
        examples = ", ".join(map(str, frame.loc[unknown, "item"].drop_duplicates().head(5)))
        logger.warning(
            "%s: %d tag rows name items that are not in the catalog and were ignored (e.g. %s)",
            path, int(unknown.sum()), examples,
        )  # fmt: skip
        frame = frame[~unknown]
    counts = frame.groupby(["item", "tag"]).size().reset_index(name="n")
    counts = counts.sort_values(["item", "n", "tag"], ascending=[True, False, True])
    return counts.groupby("item")["tag"].agg(list).to_dict()


def load_movielens_csv(root: Path, duplicates: Duplicates = "error") -> Dataset:
    """ml-latest-small / ml-latest / ml-25m layout: ratings.csv, movies.csv, optional tags.csv."""
    root = Path(root)
    ratings = readers.read_table(root / "ratings.csv", columns=["userId", "movieId", "rating", "timestamp"])
    movies = readers.read_table(root / "movies.csv", columns=["movieId", "title", "genres"])
    ids, item_ids = _catalog_ids(movies, "movieId", ratings, "movieId", "movie id")
    catalog = build_catalog(
        ids,
        movies["title"],
        genres=pd.Series(_split_genres(movies["genres"])),
        tags=_tags_by_item(root / "tags.csv", "movieId", "tag", ids),
    )
    inter = _interactions(ratings, "userId", "movieId", "rating", "timestamp", duplicates, item_ids)
    return Dataset(root.name, catalog, inter, _sources(root, ["ratings.csv", "movies.csv", "tags.csv"]))


ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
]  # fmt: skip


def load_movielens_100k(root: Path, duplicates: Duplicates = "error", encoding: str = "latin-1") -> Dataset:
    """ml-100k: u.data (tab separated, no header) and u.item (pipe separated, Latin-1)."""
    root = Path(root)
    data_cols = ["user", "item", "rating", "timestamp"]
    ratings = readers.read_table(root / "u.data", columns=data_cols, sep="\t", header=False)
    item_cols = ["item", "title", "release", "video", "url", *ML100K_GENRES]
    items = readers.read_table(
        root / "u.item", columns=item_cols[:2], sep="|", header=False, names=item_cols,
        encoding=encoding, optional=ML100K_GENRES,
    )  # fmt: skip
    genre_flags = items[[g for g in ML100K_GENRES if g in items.columns]]
    genres = [
        [g for g in genre_flags.columns if row[g] == "1" and g != "unknown"]
        for _, row in genre_flags.iterrows()
    ]
    ids, item_ids = _catalog_ids(items, "item", ratings, "item")
    catalog = build_catalog(ids, items["title"], genres=pd.Series(genres))
    inter = _interactions(ratings, "user", "item", "rating", "timestamp", duplicates, item_ids)
    return Dataset(root.name, catalog, inter, _sources(root, ["u.data", "u.item"]))


def load_movielens_1m(root: Path, duplicates: Duplicates = "error", encoding: str = "latin-1") -> Dataset:
    """ml-1m: ratings.dat and movies.dat, '::' separated, no header, Latin-1."""
    root = Path(root)
    ratings = readers.read_table(
        root / "ratings.dat", columns=["user", "item", "rating", "timestamp"], sep="::", header=False,
        encoding=encoding,
    )  # fmt: skip
    movies = readers.read_table(
        root / "movies.dat", columns=["item", "title", "genres"], sep="::", header=False, encoding=encoding
    )
    ids, item_ids = _catalog_ids(movies, "item", ratings, "item")
    catalog = build_catalog(ids, movies["title"], genres=pd.Series(_split_genres(movies["genres"])))
    inter = _interactions(ratings, "user", "item", "rating", "timestamp", duplicates, item_ids)
    return Dataset(root.name, catalog, inter, _sources(root, ["ratings.dat", "movies.dat"]))


def load_amazon(path: Path, meta: Path | None = None, duplicates: Duplicates = "error") -> Dataset:
    """Amazon review 5-core JSON lines (reviewerID, asin, overall, unixReviewTime).

    `meta` (meta_*.json[.gz]) gives titles; without it, or for items it lacks, the title is
    the ASIN. `path` may be the file or a folder holding one reviews file and its meta file.
    """
    path = Path(path)
    if path.is_dir():
        reviews = sorted(
            p
            for p in path.iterdir()
            if p.name.endswith((".json", ".json.gz")) and not p.name.startswith("meta_")
        )
        metas = sorted(p for p in path.iterdir() if p.name.startswith("meta_"))
        if not reviews:
            raise DatasetError("no reviews file (*.json or *.json.gz) in this folder", path=path)
        path, meta = reviews[0], meta or (metas[0] if metas else None)
    fields = ["reviewerID", "asin", "overall", "unixReviewTime"]
    frame = readers.read_json_lines(path, fields)
    m, item_ids = None, None
    if meta is not None:
        m = readers.read_json_lines(
            Path(meta), ["asin"], optional=["title", "categories", "category", "description"]
        )
        item_ids, meta_ids = readers.matching_ids((frame, "asin"), (m, "asin"))
        m = m.assign(asin=meta_ids).drop_duplicates("asin").set_index("asin")
    inter = _interactions(frame, "reviewerID", "asin", "overall", "unixReviewTime", duplicates, item_ids)
    asins = pd.Series(sorted(inter.frame["item_id"].unique()), dtype=inter.frame["item_id"].dtype)
    titles = pd.Series(asins.astype(str).to_numpy(), index=asins.to_numpy())
    genres = pd.Series([[] for _ in range(len(asins))], index=asins.to_numpy(), dtype=object)
    texts = pd.Series("", index=asins.to_numpy())
    sources = [str(path)]
    if m is not None:
        known = m.index.intersection(titles.index)
        good = m.loc[known, "title"].dropna().astype(str)
        titles.loc[good.index] = good
        # 2018 dumps have 'category' (a list), 2014 dumps 'categories' (a list of lists).
        cats = m.loc[known, "category"].fillna(m.loc[known, "categories"])
        for asin, cat in cats.dropna().items():
            flat = cat[0] if isinstance(cat, list) and cat and isinstance(cat[0], list) else cat
            genres.at[asin] = [str(c) for c in flat] if isinstance(flat, list) else [str(flat)]
        for asin, desc in m.loc[known, "description"].dropna().items():
            texts.at[asin] = " ".join(map(str, desc)) if isinstance(desc, list) else str(desc)
        sources.append(str(meta))
    catalog = build_catalog(
        asins, pd.Series(titles.to_numpy()), genres=pd.Series(list(genres.to_numpy())),
        texts=pd.Series(texts.to_numpy()), years=pd.Series([None] * len(asins)),
    )  # fmt: skip
    return Dataset(path.name.split(".")[0], catalog, inter, tuple(sources))


def load_generic_csv(
    interactions: Path,
    items: Path | None = None,
    *,
    user_col: str = "user_id",
    item_col: str = "item_id",
    rating_col: str | None = None,
    timestamp_col: str | None = "timestamp",
    title_col: str = "title",
    genres_col: str | None = None,
    text_col: str | None = None,
    sep: str = ",",
    duplicates: Duplicates = "error",
) -> Dataset:
    """Any interactions CSV (+ optional items CSV), with the column names given by the user."""
    cols = [c for c in (user_col, item_col, rating_col, timestamp_col) if c]
    frame = readers.read_table(Path(interactions), columns=cols, sep=sep)
    sources = [str(interactions)]
    if items is not None:
        item_cols = [c for c in (item_col, title_col, genres_col, text_col) if c]
        meta = readers.read_table(Path(items), columns=item_cols, sep=sep)
        ids, item_ids = _catalog_ids(meta, item_col, frame, item_col)
        inter = _interactions(frame, user_col, item_col, rating_col, timestamp_col, duplicates, item_ids)
        catalog = build_catalog(
            ids, meta[title_col],
            genres=pd.Series(_split_genres(meta[genres_col])) if genres_col else None,
            texts=meta[text_col] if text_col else None,
        )  # fmt: skip
        sources.append(str(items))
    else:
        inter = _interactions(frame, user_col, item_col, rating_col, timestamp_col, duplicates)
        unique = pd.Series(sorted(inter.frame["item_id"].unique()))
        catalog = build_catalog(unique, unique.astype(str))
    return Dataset(Path(interactions).stem, catalog, inter, tuple(sources))


def _sources(root: Path, names: list[str]) -> tuple[str, ...]:
    return tuple(str(root / n) for n in names if (root / n).exists())


def detect_format(path: Path) -> str:
    """Guess the format of a dataset path from the files it holds."""
    path = Path(path)
    if not path.exists():
        raise DatasetError("dataset path not found", path=path)
    if path.is_file():
        if path.name.endswith((".json", ".json.gz")):
            return "amazon"
        if path.suffix == ".csv":
            return "csv"
        raise DatasetError("cannot tell the dataset format of this file; pass --format", path=path)
    names = {p.name for p in path.iterdir()}
    if {"ratings.csv", "movies.csv"} <= names:
        return "movielens"
    if {"u.data", "u.item"} <= names:
        return "ml-100k"
    if {"ratings.dat", "movies.dat"} <= names:
        return "ml-1m"
    if any(n.endswith((".json", ".json.gz")) for n in names):
        return "amazon"
    raise DatasetError(
        "no known dataset layout here (expected ratings.csv+movies.csv, u.data+u.item, "
        "ratings.dat+movies.dat, or Amazon *.json[.gz])",
        path=path,
    )


LOADERS: dict[str, Callable[..., Dataset]] = {
    "movielens": load_movielens_csv,
    "ml-100k": load_movielens_100k,
    "ml-1m": load_movielens_1m,
    "amazon": load_amazon,
    "csv": load_generic_csv,
}


def check_format(format: str) -> None:
    """A format name is 'auto' or a loader's, for the bundled data too (its format is fixed, a
    typo is still one)."""
    if format != "auto" and format not in LOADERS:
        raise DatasetError(f"unknown dataset format {format!r}; known: {', '.join(LOADERS)}")


def load_raw(path: Path | str | None = None, format: str = "auto", **options: object) -> Dataset:
    """Load a dataset without splitting it. No path: the bundled ml-latest-small."""
    check_format(format)
    if path is None or str(path) in ("", "bundled", "ml-latest-small"):
        return load_movielens_csv(BUNDLED_DIR, **options)  # type: ignore[arg-type]
    fmt = detect_format(Path(path)) if format == "auto" else format
    return LOADERS[fmt](Path(path), **options)
