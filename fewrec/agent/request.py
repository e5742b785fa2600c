"""`RecRequest`: one recommendation request as a typed record — who asks, what for, as of
when, how many, and how (explained, reranked) — the one argument of `Recommender.recommend`.

The record holds only what a caller knows (user ids, item ids or titles, words, times); item
indices, score arrays and the conversation prior's own inputs are the pipeline's business.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from fewrec.data.errors import FewrecError
from fewrec.data.models import ItemId

ItemRef = ItemId | str  # an item id, or a title ('Toy Story', 'Matrix, The (1999)')
DEFAULT_K = 10


class Filters(BaseModel):
    """Constraints on what may be recommended. Genres must all match (or any one of them, with
    `any_genre`: "everything from sci-fi to documentaries"); years are inclusive."""

    genres: list[str] = Field(default_factory=list)
    any_genre: bool = False
    exclude_genres: list[str] = Field(default_factory=list)
    year_min: int | None = None
    year_max: int | None = None

    def is_empty(self) -> bool:
        return not (self.genres or self.exclude_genres or self.year_min or self.year_max)


def check_genres(asked: list[str], genres: list[str]) -> None:
    """A genre the catalog lacks ("Horor") would match nothing: one line naming the genres
    there are (`genres`, as the catalog spells them), rather than an empty list."""
    known = {g.lower() for g in genres}
    if unknown := [g for g in asked if g.lower() not in known]:
        there = ", ".join(genres) if genres else "none (this dataset has no genres)"
        raise FewrecError(f"unknown genre {', '.join(map(repr, unknown))}; the genres are: {there}")


def describe_filters(filters: Filters) -> str:
    """'Comedy + Sci-Fi, no Horror, 1990–1999' (empty when there is no constraint)."""
    parts = []
    if filters.genres:
        parts.append((" or " if filters.any_genre else " + ").join(filters.genres))
    if filters.exclude_genres:
        parts.append("no " + ", no ".join(filters.exclude_genres))
    lo, hi = filters.year_min, filters.year_max
    if lo is not None and hi is not None:
        parts.append(f"{lo}–{hi}" if lo != hi else str(lo))
    elif lo is not None:
        parts.append(f"from {lo}")
    elif hi is not None:
        parts.append(f"up to {hi}")
    return ", ".join(parts)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") and not isinstance(value, str | int) else value


class RecRequest(BaseModel):
    """What to recommend, for whom, as of when.

    >>> RecRequest(user_id=42, k=5)
    >>> RecRequest(liked=["Toy Story", "Up"], query="something funny", k=5)

    A known `user_id` brings the user's own history; `liked` items follow it as the most
    recent (an item already in it moves to the end). `disliked` and `exclude` are never
    recommended. `conversation` (the films a conversation has named so far, in order, whatever
    was said of them) switches on the conversation prior, which reads them; None is no
    conversation. `sources` ranks with only these of the fused sources."""

    # A typo in a field is an error, not a request that silently ignores it.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    # who
    user_id: ItemId | None = None
    # `history` is the older keyword of `Recommender.recommend`: it still names the liked items.
    liked: list[ItemRef] = Field(default_factory=list, validation_alias=AliasChoices("liked", "history"))
    disliked: list[ItemRef] = Field(default_factory=list)
    # what
    query: str | None = None
    query_weight: float | None = None  # 0–1 against the history's taste; None: chat.query_weight
    filters: Filters | None = None
    exclude: list[ItemRef] = Field(default_factory=list)
    conversation: list[ItemRef] | None = None
    sources: list[str] | None = None
    # when, how many
    as_of: int | None = None  # Unix seconds; time-aware sources count nothing later. None: now
    k: int = DEFAULT_K
    # how
    explain: bool = True
    rerank: bool | None = None  # None: as `rerank.enabled` and `rerank.alpha` > 0 say

    @field_validator("user_id", mode="before")
    @classmethod
    def _plain_id(cls, value: Any) -> Any:
        return _plain(value)

    @field_validator("liked", "disliked", "exclude", "conversation", mode="before")
    @classmethod
    def _plain_ids(cls, value: Any) -> Any:
        # Ids straight from a split's arrays are numpy scalars: their Python value is the id.
        return [_plain(v) for v in value] if isinstance(value, list | tuple) else value

    @property
    def excluded(self) -> list[ItemRef]:
        """Everything never to recommend: the exclusions, then the disliked items."""
        return [*self.exclude, *self.disliked]


__all__ = ["DEFAULT_K", "Filters", "ItemRef", "RecRequest", "check_genres", "describe_filters"]
