"""The candidate-source protocol and the records that cross the retrieval boundary.

A source is fitted on a split's known interactions and then scores every item for a batch
of user histories: a dense float32 (batch × items) array. Callers score in user batches
(`retrieval.batch_users`) and keep only what they need of each batch (top-N items, a target's
rank), so nothing grows as users × items; `recommend` is that contract for any source,
modelled on `implicit`'s `recommend(userids, user_items, N, filter_already_liked_items)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, Field

from fewrec.data.errors import FewrecError
from fewrec.data.models import ItemId

DEFAULT_BATCH_USERS = 1024


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

    def rows(self, part: slice | np.ndarray) -> ScoringContext:
        """The context of a slice of the rows (one user batch)."""
        return ScoringContext(
            users=None if self.users is None else np.asarray(self.users)[part],
            times=None if self.times is None else np.asarray(self.times)[part],
        )


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
        """A (len(histories), n_items) float32 array for one batch of histories; higher is
        better. Seen items need not be masked. Callers keep batches to `batch_users` rows."""
        ...


class SourceSkipped(FewrecError):
    """A source declines to fit (too large for this machine under its settings); the message
    says which limit, which setting raises it, and what happens instead."""


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


def user_batches(n_rows: int, batch_users: int = DEFAULT_BATCH_USERS) -> Iterator[slice]:
    """Consecutive row slices of at most `batch_users` rows."""
    step = max(1, int(batch_users))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def mask_seen(scores: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
    """Set each row's history items to -inf, in place (float32 stays float32), and return it."""
    if len(histories):
        rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
        cols = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories])
        scores[rows, cols] = -np.inf
    return scores


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The `n` best items of each row and their scores, best first, ties broken by item index:
    exactly `np.argsort(-scores, axis=1, kind="stable")[:, :n]`, without sorting every row.

    Each float32 score and its column become one int64 key that orders like (score, -column),
    so every key is distinct: a partition then finds the top n directly, and stays fast on rows
    that are mostly one value (sparse sources score most items 0, where a partition of the raw
    scores degrades badly).
    """
    scores = np.asarray(scores)
    rows, width = scores.shape
    n = max(0, min(int(n), width))
    ids = np.empty((rows, n), dtype=np.int64)
    if n == 0 or rows == 0:
        return ids, np.empty((rows, n), dtype=scores.dtype)
    if scores.dtype != np.float32:  # float64 (the LLM stages' rankings) has no room for a column
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :n]
        return ids, np.take_along_axis(scores, ids, axis=1)
    reverse = (width - 1 - np.arange(width, dtype=np.int64))[None, :]  # a lower column wins ties
    step = max(1, (1 << 22) // width)  # rows per chunk: the int64 keys stay ~32 MB
    for start in range(0, rows, step):
        # + 0.0 turns -0.0 into 0.0, which compare equal and must tie.
        part = scores[start : start + step] + np.float32(0.0)
        bits = part.view(np.int32)
        ordered = bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF))  # int order = float order
        keys = (ordered.astype(np.int64) << 32) | reverse
        best = np.partition(keys, width - n, axis=1)[:, width - n :]
        best.sort(axis=1)
        ids[start : start + step] = width - 1 - (best[:, ::-1] & 0xFFFFFFFF)
    return ids, np.take_along_axis(scores, ids, axis=1)


@dataclass(frozen=True)
class TopN:
    """Per user: the best items (indices, best first) and their scores; -inf marks padding
    when fewer unseen items than asked exist."""

    ids: np.ndarray  # (users, n) int64
    scores: np.ndarray  # (users, n) float32


def recommend(
    source: CandidateSource,
    histories: list[np.ndarray],
    n: int,
    context: ScoringContext | None = None,
    filter_seen: bool = True,
    batch_users: int = DEFAULT_BATCH_USERS,
) -> TopN:
    """Top-`n` items of any fitted source for many histories, scored `batch_users` at a time
    (`implicit`'s recommend contract): only (users × n) is ever kept."""
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    for part in user_batches(len(histories), batch_users):
        batch = histories[part]
        rows = None if context is None else context.rows(part)
        scores = np.array(source.score(batch, rows), dtype=np.float32)
        if filter_seen:
            mask_seen(scores, batch)
        parts.append(top_n(scores, n))
    if not parts:
        width = max(int(n), 0)
        return TopN(ids=np.zeros((0, width), dtype=np.int64), scores=np.zeros((0, width), dtype=np.float32))
    return TopN(ids=np.concatenate([p[0] for p in parts]), scores=np.concatenate([p[1] for p in parts]))


@dataclass(frozen=True)
class BuildContext:
    """What a source may need beyond its own config when it is built: the content index's item
    vectors, where trained weights are cached, progress bars, a sink for one-line notes, and
    the retrieval seed (shared by every seeded source)."""

    item_vectors: np.ndarray | None = None
    model_dir: Path | None = None
    progress: bool = True
    notify: Callable[[str], None] | None = None
    seed: int = 0
