"""Batch recommendation: the fused top-k of many known users at once (`fewrec recommend-batch`),
`retrieval.batch_users` users at a time in this process, or shard by shard on Ray actors that
hold the fitted retriever. Either way each user gets what `Recommender.recommend(RecRequest(
user_id=…, explain=False, rerank=False))` ranks first, and only users × k is ever kept."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fewrec.data.errors import UnknownIdError
from fewrec.data.split import LeaveOneOutSplit, SplitName
from fewrec.retrieval.base import ScoringContext, TopN, user_batches
from fewrec.retrieval.fusion import Retriever

if TYPE_CHECKING:
    from fewrec.distributed import RayPool


@dataclass
class BatchJob:
    """What a worker needs to rank a range of users (a Ray actor keeps it)."""

    retriever: Retriever
    histories: list[np.ndarray]
    context: ScoringContext
    k: int


def top_k_rows(job: BatchJob, rows: slice) -> TopN:
    """The top-k unseen items of the users `rows` of `job`."""
    return job.retriever.recommend(job.histories[rows], job.k, job.context.rows(rows))


def user_rows(split: LeaveOneOutSplit, user_ids: list[object] | None) -> np.ndarray:
    """Row indices of `user_ids` (every user when None); an unknown id raises UnknownIdError
    naming it."""
    if user_ids is None:
        return np.arange(split.n_users)
    rows, unknown = [], []
    for user in user_ids:
        if split.has_user(user):
            rows.append(split.user_index(user))
        else:
            unknown.append(str(user))
    if unknown:
        error = UnknownIdError("user", unknown[0], (str(u) for u in split.user_ids[:20_000]))
        if len(unknown) > 1:
            error.message += f" ({len(unknown) - 1} more unknown id(s) in the list)"
        raise error
    return np.asarray(rows, dtype=np.int64)


def recommend_users(
    retriever: Retriever,
    rows: np.ndarray,
    k: int,
    history_of: SplitName = "all",
    ray: RayPool | None = None,
    progress: Callable[[int], None] | None = None,
) -> TopN:
    """Top-`k` for the users `rows` from their `history_of` histories. `progress(n)` is told of
    each `n` users done (single process: per batch; Ray: per shard)."""
    split = retriever.split
    histories = [split.history(int(u), history_of) for u in rows]
    job = BatchJob(retriever, histories, retriever.context_for(rows, history_of), k)
    if ray is None:
        results = []
        for part in user_batches(len(rows), retriever.settings.batch_users):
            results.append(top_k_rows(job, part))
            if progress:
                progress(part.stop - part.start)
    else:
        results = ray.map_rows(top_k_rows, job, len(rows), retriever.settings.batch_users)
        if progress:
            progress(len(rows))
    if not results:
        return TopN(ids=np.zeros((0, k), dtype=np.int64), scores=np.zeros((0, k), dtype=np.float32))
    ids, scores = np.concatenate([r.ids for r in results]), np.concatenate([r.scores for r in results])
    return TopN(ids=ids, scores=scores)


def as_frame(retriever: Retriever, rows: np.ndarray, top: TopN) -> pd.DataFrame:
    """One line per (user, rank): user_id, rank, item_id, title, score (padding dropped)."""
    split = retriever.split
    k = top.ids.shape[1]
    keep = np.isfinite(top.scores).ravel()
    items = top.ids.ravel()[keep]
    titles = split.catalog.frame["title"].to_numpy()
    return pd.DataFrame(
        {
            "user_id": np.repeat(split.user_ids[rows], k)[keep],
            "rank": np.tile(np.arange(1, k + 1), len(rows))[keep],
            "item_id": split.item_ids[items],
            "title": titles[items],
            "score": top.scores.ravel()[keep],
        }
    )
