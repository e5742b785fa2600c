"""The dataset model every loader produces: a Catalog of items and a table of Interactions.

Bulk data stays in pandas; `Item` is the pydantic record handed across package boundaries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from fewrec.data.errors import UnknownIdError
from fewrec.data.titles import TitleIndex

ItemId = int | str
UserId = int | str

CATALOG_COLUMNS = ["item_id", "title", "year", "genres", "tags", "text"]
INTERACTION_COLUMNS = ["user_id", "item_id", "rating", "timestamp"]


class Item(BaseModel):
    """One catalog item, as shown to users and to the LLM."""

    item_id: ItemId
    title: str
    year: int | None = None
    genres: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    text: str = ""

    def describe(self, max_tags: int = 8) -> str:
        """The text used for embeddings and prompts: title, genres, a few tags, description."""
        parts = [self.title]
        if self.genres:
            parts.append("Genres: " + ", ".join(self.genres))
        if self.tags:
            parts.append("Tags: " + ", ".join(self.tags[:max_tags]))
        if self.text:
            parts.append(self.text)
        return ". ".join(parts)


@dataclass(frozen=True)
class Catalog:
    """All items, indexed by item id. Columns: CATALOG_COLUMNS (genres and tags are lists)."""

    frame: pd.DataFrame

    def __post_init__(self) -> None:
        missing = [c for c in CATALOG_COLUMNS if c not in self.frame.columns]
        if missing:
            raise ValueError(f"catalog frame lacks columns {missing}")

    @cached_property
    def _by_id(self) -> pd.DataFrame:
        return self.frame.set_index("item_id", drop=False)

    def __len__(self) -> int:
        return len(self.frame)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._by_id.index

    @property
    def ids(self) -> np.ndarray:
        return self.frame["item_id"].to_numpy()

    @cached_property
    def genre_names(self) -> list[str]:
        """Every genre of the catalog, as spelled there, sorted."""
        return sorted({g for genres in self.frame["genres"] for g in genres})

    def coerce_id(self, item_id: object) -> ItemId:
        """Accept '42' for an integer-keyed catalog, since ids often arrive as text."""
        if self.frame["item_id"].dtype.kind == "i" and isinstance(item_id, str):
            stripped = item_id.strip()
            if re.fullmatch(r"-?\d+", stripped):
                return int(stripped)
        return item_id  # type: ignore[return-value]

    def get(self, item_id: object) -> Item:
        key = self.coerce_id(item_id)
        if key not in self._by_id.index:
            raise UnknownIdError("item", item_id)
        row = self._by_id.loc[key]
        year = row["year"]
        return Item(
            item_id=key,
            title=str(row["title"]),
            year=None if pd.isna(year) else int(year),
            genres=list(row["genres"]),
            tags=list(row["tags"]),
            text=str(row["text"] or ""),
        )

    def title(self, item_id: object) -> str:
        return str(self._by_id.at[self.coerce_id(item_id), "title"])

    def subset(self, item_ids: np.ndarray | list) -> Catalog:
        return Catalog(self.frame[self.frame["item_id"].isin(item_ids)].reset_index(drop=True))

    @cached_property
    def titles(self) -> TitleIndex:
        """Every title and other name of the catalog's items, for lookups and for finding
        titles in a sentence (`fewrec/data/titles.py`)."""
        return TitleIndex(
            self.frame["title"].tolist(), [None if pd.isna(y) else int(y) for y in self.frame["year"]]
        )

    def lookup_title(self, text: str) -> list[ItemId]:
        """Items named exactly `text` once case, accents, punctuation, a trailing year and a
        moved article are set aside; no typo distance."""
        ids = self.frame["item_id"].tolist()
        return [ids[r] for r in self.titles.lookup(text)]

    def match_title(self, text: str, n: int = 5) -> tuple[list[ItemId], list[str]]:
        """Items whose title matches `text`, and close titles when none matches exactly.

        An exact title (with year) wins; else a name as `lookup_title` reads it ('Matrix, The'
        as 'The Matrix'; 'Matrix' finds it too; a.k.a. names count). Returns (matches,
        suggestions), the suggestions from a typo-tolerant search (rapidfuzz).
        """
        text = text.strip()
        exact = self.frame.loc[self.frame["title"].str.lower() == text.lower(), "item_id"].tolist()
        if exact:
            return exact, []
        found = self.lookup_title(text)
        if found:
            return found, []
        return [], [str(self.frame["title"].iat[r]) for r in self.titles.suggest(text, n)]


@dataclass(frozen=True)
class Interactions:
    """User–item events. Columns: INTERACTION_COLUMNS; timestamp in Unix seconds."""

    frame: pd.DataFrame

    def __post_init__(self) -> None:
        missing = [c for c in INTERACTION_COLUMNS if c not in self.frame.columns]
        if missing:
            raise ValueError(f"interactions frame lacks columns {missing}")

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def n_users(self) -> int:
        return int(self.frame["user_id"].nunique())

    @property
    def n_items(self) -> int:
        return int(self.frame["item_id"].nunique())


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: its name, catalog and interactions, plus where it came from."""

    name: str
    catalog: Catalog
    interactions: Interactions
    sources: tuple[str, ...] = field(default=())

    def stats(self) -> dict[str, float | int | str]:
        n_users = self.interactions.n_users
        n_items = self.interactions.n_items
        n = len(self.interactions)
        ts = self.interactions.frame["timestamp"]
        return {
            "dataset": self.name,
            "users": n_users,
            "items_rated": n_items,
            "catalog_items": len(self.catalog),
            "interactions": n,
            "density": n / max(n_users * n_items, 1),
            "first": _date(ts.min()) if n else "",
            "last": _date(ts.max()) if n else "",
        }


def _date(seconds: int) -> str:
    """The date of a Unix time, or the number itself when no calendar date can show it."""
    try:
        return str(pd.to_datetime(seconds, unit="s").date())
    except (OverflowError, ValueError):  # OutOfBoundsDatetime is a ValueError
        return f"{int(seconds)} s"


def build_catalog(
    item_ids: pd.Series,
    titles: pd.Series,
    genres: pd.Series | None = None,
    tags: dict[ItemId, list[str]] | None = None,
    texts: pd.Series | None = None,
    years: pd.Series | None = None,
) -> Catalog:
    """Assemble a Catalog; the year is taken from a trailing '(1995)' in the title when not given."""
    titles = titles.fillna("").astype(str).str.strip()
    if years is None:
        years = titles.str.extract(r"\((\d{4})\)\s*$")[0]
    years = pd.to_numeric(years, errors="coerce").astype("Int64")
    frame = pd.DataFrame(
        {
            "item_id": item_ids.to_numpy(),
            "title": titles.to_numpy(),
            "year": years.to_numpy(),
            "genres": list(genres) if genres is not None else [[] for _ in range(len(item_ids))],
            "tags": [list((tags or {}).get(i, [])) for i in item_ids],
            "text": texts.fillna("").astype(str).to_numpy() if texts is not None else "",
        }
    )
    return Catalog(frame)
