"""The dataset model every loader produces: a Catalog of items and a table of Interactions.

Bulk data stays in pandas; `Item` is the pydantic record handed across package boundaries.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from fewrec.data.errors import UnknownIdError

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


def _normalise_title(title: str) -> str:
    """Lower-case, no accents, drop the year and move MovieLens' trailing articles ('Matrix, The')."""
    title = unicodedata.normalize("NFKD", title)
    title = "".join(ch for ch in title if not unicodedata.combining(ch))
    title = re.sub(r"\(\s*\d{4}\s*\)", " ", title.lower())
    title = re.sub(r"^(.*), (the|a|an|la|le|les|il|el|der|die|das)$", r"\2 \1", title.strip())
    return re.sub(r"[^\w]+", " ", title).strip()


def _without_article(key: str) -> str:
    """A normalised title without its leading English article ('the matrix' -> 'matrix')."""
    return re.sub(r"^(the|a|an) ", "", key)


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
    def _normalised_titles(self) -> dict[str, list[ItemId]]:
        index: dict[str, list[ItemId]] = {}
        for item_id, title in zip(self.frame["item_id"], self.frame["title"], strict=True):
            index.setdefault(_normalise_title(str(title)), []).append(item_id)
        return index

    @cached_property
    def _bare_titles(self) -> dict[str, list[ItemId]]:
        """Also every alternative name: 'Seven (a.k.a. Se7en) (1995)' is found as 'Seven' and
        as 'Se7en'; 'Amélie (Fabuleux destin d'Amélie Poulain, Le)' as 'Amelie'."""
        index: dict[str, list[ItemId]] = {}
        for item_id, title in zip(self.frame["item_id"], self.frame["title"], strict=True):
            title = re.sub(r"\(\s*\d{4}\s*\)\s*$", "", str(title)).strip()
            names = [title, re.sub(r"\([^()]*\)", " ", title)]
            names += [re.sub(r"^a\.k\.a\.\s*", "", alt) for alt in re.findall(r"\(([^()]*)\)", title)]
            for name in names:
                key = _without_article(_normalise_title(name))
                if key and item_id not in index.setdefault(key, []):
                    index[key].append(item_id)
        return index

    def lookup_title(self, text: str) -> list[ItemId]:
        """Items whose title is exactly `text` as `match_title` normalises it; no fuzzy search
        (cheap enough to try every span of a sentence)."""
        key = _normalise_title(text.strip())
        if not key:
            return []
        found = self._normalised_titles.get(key) or self._bare_titles.get(_without_article(key))
        return list(found or [])

    def match_title(self, text: str, n: int = 5) -> tuple[list[ItemId], list[str]]:
        """Items whose title matches `text`, and close titles when none matches exactly.

        An exact title (with year) wins; else a normalised title (case and year ignored,
        'Matrix, The' read as 'The Matrix'); else the same without a leading article
        ('Matrix' finds 'Matrix, The'). Returns (matches, suggestions).
        """
        text = text.strip()
        exact = self.frame.loc[self.frame["title"].str.lower() == text.lower(), "item_id"].tolist()
        if exact:
            return exact, []
        key = _normalise_title(text)
        if key and key in self._normalised_titles:
            return list(self._normalised_titles[key]), []
        bare = _without_article(key)
        if bare and bare in self._bare_titles:
            return list(self._bare_titles[bare]), []
        close = difflib.get_close_matches(key, list(self._normalised_titles), n=n, cutoff=0.6)
        suggestions = [self.title(self._normalised_titles[c][0]) for c in close]
        return [], suggestions


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
