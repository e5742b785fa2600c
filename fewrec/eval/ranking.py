"""From scores to what an evaluation keeps per user: the target's rank and the ten best unseen
items, batch by batch, so no users × items array outlives its batch.

`rank_rows(job, rows)` ranks one range of the evaluated users for a fitted Retriever (the fused
scores, each source, and the history-cut slices); the runner calls it once over every user, or
`fewrec.distributed.RayPool` calls it once per shard on Ray actors. Each user's result depends
only on that user (the sampled protocol draws each user's negatives from a generator seeded by
the seed and the user's row), so shards merged in row order equal the single-process run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from fewrec.eval import metrics as m
from fewrec.retrieval.base import ScoringContext, user_batches
from fewrec.retrieval.fusion import Retriever

FUSED = "fewrec retrieval (fused)"


def sampled_ranks(
    scores: np.ndarray, targets: np.ndarray, histories: list[np.ndarray], size: int, seed: int,
    first_row: int = 0,
) -> np.ndarray:  # fmt: skip
    """Rank of the target among itself and `size - 1` random unseen negatives (LLMRank's
    protocol). Row r's negatives come from a generator seeded by (seed, first_row + r): the
    same for a user however the users are batched or sharded."""
    n_items = scores.shape[1]
    ranks = np.empty(len(targets), dtype=np.int64)
    for row, (target, history) in enumerate(zip(targets, histories, strict=True)):
        if target < 0:  # an item that did not exist at the cut: a miss
            ranks[row] = size
            continue
        rng = np.random.default_rng((seed, first_row + row))
        banned = np.zeros(n_items, dtype=bool)
        banned[history] = True
        banned[target] = True
        pool = np.flatnonzero(~banned)
        negatives = rng.choice(pool, size=min(size - 1, len(pool)), replace=False)
        ranks[row] = int((scores[row, negatives] >= scores[row, target]).sum())
    return ranks


@dataclass
class Ranked:
    """What a method leaves per user once its scores are gone: the target's 0-based rank (full
    ranking, or among the sampled negatives) and the 10 best unseen items."""

    ranks: np.ndarray
    top10: np.ndarray

    @staticmethod
    def concat(parts: list[Ranked]) -> Ranked:
        return Ranked(np.concatenate([p.ranks for p in parts]), np.concatenate([p.top10 for p in parts]))


class Ranker:
    """Fills a `Ranked` batch by batch for one method. `first_row` is the global row of the
    first user given (the sampled protocol seeds each user's negatives by it)."""

    def __init__(
        self, targets: np.ndarray, histories: list[np.ndarray], sampled: int | None, seed: int,
        first_row: int = 0,
    ) -> None:  # fmt: skip
        self.targets, self.histories, self.sampled, self.seed = targets, histories, sampled, seed
        self.first_row = first_row
        self.result = Ranked(
            np.empty(len(targets), dtype=np.int64), np.empty((len(targets), 0), dtype=np.int64)
        )

    def add(self, part: slice, scores: np.ndarray) -> None:
        """Take one batch's scores (masked in place: pass a copy to keep them)."""
        targets, histories = self.targets[part], self.histories[part]
        if self.sampled:
            self.result.ranks[part] = sampled_ranks(
                scores, targets, histories, self.sampled, self.seed, self.first_row + part.start
            )
        ranks, top = m.batch_ranks(scores, targets, histories, top=10)
        if not self.sampled:
            self.result.ranks[part] = ranks
        if self.result.top10.shape[1] != top.shape[1]:  # first batch: 10 columns, or all items if fewer
            self.result.top10 = np.empty((len(self.targets), top.shape[1]), dtype=np.int64)
        self.result.top10[part] = top


def rank_batches(
    batches: Iterable[tuple[slice, np.ndarray]], targets: np.ndarray, histories: list[np.ndarray],
    sampled: int | None = None, seed: int = 0,
) -> Ranked:  # fmt: skip
    """Per-user results of one method from its scores, batch by batch."""
    ranker = Ranker(targets, histories, sampled, seed)
    for part, scores in batches:
        ranker.add(part, scores)
    return ranker.result


def dense_batches(scores: np.ndarray, batch_users: int) -> Iterable[tuple[slice, np.ndarray]]:
    """Batches of an array that is already dense (the LLM stages'); copies, since ranking masks."""
    for part in user_batches(len(scores), batch_users):
        yield part, np.array(scores[part], dtype=np.float32 if scores.dtype == np.float32 else np.float64)


@dataclass
class RankJob:
    """Everything needed to rank a range of the evaluated users with one fitted Retriever (what a
    Ray actor holds). `name` labels the fused result; with `each_source`, every source is ranked
    too (as "source: NAME"); `keep_fused` returns the fused scores (the LLM stages rerank them);
    `cuts` also ranks with only the last `cut` items of each history known."""

    retriever: Retriever
    histories: list[np.ndarray]
    targets: np.ndarray
    context: ScoringContext
    name: str = FUSED
    sampled: int | None = None
    seed: int = 0
    each_source: bool = False
    keep_fused: bool = False
    cuts: list[int] = field(default_factory=list)


@dataclass
class RankedRows:
    """`rank_rows`' result for one range of users."""

    ranked: dict[str, Ranked]
    fused: np.ndarray | None = None
    cut_ranks: dict[int, np.ndarray] = field(default_factory=dict)

    @staticmethod
    def concat(parts: list[RankedRows]) -> RankedRows:
        """Ranges in row order, back into one result."""
        first = parts[0]
        return RankedRows(
            ranked={name: Ranked.concat([p.ranked[name] for p in parts]) for name in first.ranked},
            fused=None if first.fused is None else np.concatenate([p.fused for p in parts]),
            cut_ranks={cut: np.concatenate([p.cut_ranks[cut] for p in parts]) for cut in first.cut_ranks},
        )


def rank_rows(job: RankJob, rows: slice) -> RankedRows:
    """Rank the users `rows` of `job` (a range of its histories)."""
    retriever = job.retriever
    histories, targets = job.histories[rows], job.targets[rows]
    context = job.context.rows(rows)
    rankers = {job.name: Ranker(targets, histories, job.sampled, job.seed, rows.start)}
    if job.each_source:
        rankers.update(
            {f"source: {n}": Ranker(targets, histories, job.sampled, job.seed, rows.start)
             for n in retriever.sources}
        )  # fmt: skip
    fused_parts: list[np.ndarray] = []

    def visit(part: slice, name: str, scores: np.ndarray) -> None:
        rankers[f"source: {name}"].add(part, scores)

    batches = retriever.score_batches(
        histories, context, evidence=job.each_source, visit=visit if job.each_source else None
    )
    for part, batch in batches:
        if job.keep_fused:
            fused_parts.append(batch.fused.copy())
        rankers[job.name].add(part, batch.fused)
    cut_ranks: dict[int, np.ndarray] = {}
    # Without user ids, factor models fold in the cut history instead of using the factors they
    # learned from the full one.
    cut_context = ScoringContext(users=None, times=context.times)
    for cut in job.cuts:
        cut_histories = [h[-cut:] for h in histories]
        ranks = np.empty(len(histories), dtype=np.int64)
        for part, batch in retriever.score_batches(cut_histories, cut_context):
            # The whole history is still excluded from the ranking.
            ranks[part] = m.batch_ranks(batch.fused, targets[part], histories[part], top=0)[0]
        cut_ranks[cut] = ranks
    fused = None
    if job.keep_fused:
        empty = np.zeros((0, retriever.split.n_items), np.float32)
        fused = np.concatenate(fused_parts) if fused_parts else empty
    return RankedRows({name: ranker.result for name, ranker in rankers.items()}, fused, cut_ranks)
