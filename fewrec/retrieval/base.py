"""The candidate-source protocol and the records that cross the retrieval boundary.

A source is fitted on a split's known interactions and then scores every item for a batch
of user histories (dense numpy arrays: catalogs here are thousands of items, not millions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, Field

from fewrec.data.models import ItemId


class Candidate(BaseModel):
    """An item proposed by the retriever, with the evidence behind it."""

    item_id: ItemId
    title: str
    score: float
    rank: int
    sources: dict[str, float] = Field(default_factory=dict)  # source name -> its raw score
    source_ranks: dict[str, int] = Field(default_factory=dict)  # source name -> rank (1-based)


@dataclass(frozen=True)
class ScoringContext:
    """Per-row facts some sources use besides the history itself."""

    users: np.ndarray | None = None  # training user index of each row, or -1 for a new user
    times: np.ndarray | None = None  # each row's reference time (its last activity), Unix s


@runtime_checkable
class CandidateSource(Protocol):
    """Anything that scores all items for user histories (item indices, oldest first).

    `time_aware` sources read the context's reference times; they must be causal: a row scored
    at time t uses only training interactions at or before t (tests/test_causality.py checks
    every source). The others learn from the whole fit data, so a leak-free protocol has to
    fit them on the past only (`fewrec eval --protocol temporal`).
    """

    name: str
    time_aware: bool

    def fit(self, interactions: FitData) -> CandidateSource: ...

    def score(self, histories: list[np.ndarray], context: ScoringContext | None = None) -> np.ndarray:
        """A (len(histories), n_items) array; higher is better. Seen items need not be masked."""
        ...


class FitData(BaseModel):
    """What a source learns from: ordered per-user item sequences and their timestamps."""

    model_config = {"arbitrary_types_allowed": True}

    n_users: int
    n_items: int
    users: np.ndarray  # per interaction, ordered by user then time
    items: np.ndarray
    timestamps: np.ndarray


def recency_weights(length: int, half_life: float, limit: int | None = None) -> np.ndarray:
    """Weights for a history of `length` items, oldest first: the newest gets 1.0, and the
    weight halves every `half_life` items back. Items beyond `limit` most recent get 0."""
    age = np.arange(length - 1, -1, -1, dtype=np.float64)
    weights = np.power(0.5, age / half_life) if half_life > 0 else np.ones(length)
    if limit is not None and length > limit:
        weights[: length - limit] = 0.0
    return weights
