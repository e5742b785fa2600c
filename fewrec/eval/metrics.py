"""Ranking metrics for leave-one-out evaluation (one held-out item per user).

Full ranking: every catalog item is scored, the user's known history is excluded, and the
rank of the held-out item gives HR/Recall@K (identical with one target), NDCG@K and MRR@K.
Scores arrive one user batch at a time (`batch_ranks`): only per-user ranks and top items
are kept, never a users × items array.
"""

from __future__ import annotations

import numpy as np

from fewrec.eval.intervals import grouped_interval
from fewrec.retrieval.base import mask_seen, top_n

DEFAULT_KS = (5, 10, 20)


def target_ranks(scores: np.ndarray, targets: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
    """0-based rank of each user's target among the items not in their history.

    Ties count against the target (pessimistic), so a constant scorer earns nothing.
    """
    return masked_target_ranks(mask_seen(np.array(scores, dtype=np.float64, copy=True), histories), targets)


def masked_target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """`target_ranks` for scores whose history items are already -inf (the caller may reuse
    one masked array, or mask with a boolean array, instead of a loop over histories)."""
    targets = np.asarray(targets)
    # A negative target (an item first seen after the cut, `fewrec.data.split.UNKNOWN_ITEM`) is
    # ranked past every item: a miss.
    known = targets >= 0
    target_scores = scores[np.arange(len(targets)), np.where(known, targets, 0)]
    better_or_tied = (scores >= target_scores[:, None]).sum(axis=1) - 1
    return np.where(known & np.isfinite(target_scores), better_or_tied, scores.shape[1])


def batch_ranks(
    scores: np.ndarray, targets: np.ndarray, histories: list[np.ndarray], top: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """`target_ranks` and the `top` best unseen items (ties by item index) of one batch. The
    batch's scores are masked in place (float32 stays float32: every comparison is exact)."""
    masked = mask_seen(np.asarray(scores), histories)
    return masked_target_ranks(masked, np.asarray(targets)), top_n(masked, top)[0]


def per_user_metrics(ranks: np.ndarray, ks: tuple[int, ...] = DEFAULT_KS) -> dict[str, np.ndarray]:
    """Each metric per user (so that intervals and paired tests can be computed)."""
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hit = ranks < k
        out[f"recall@{k}"] = hit.astype(np.float64)
        out[f"ndcg@{k}"] = np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
        out[f"mrr@{k}"] = np.where(hit, 1.0 / (ranks + 1.0), 0.0)
    return out


def summarise(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: float(values.mean()) for name, values in per_user.items()}


def coverage(top_items: np.ndarray, n_items: int) -> float:
    """Share of the catalog that appears in anyone's top list."""
    return float(len(np.unique(top_items)) / max(n_items, 1))


def long_tail_share(top_items: np.ndarray, popularity: np.ndarray, head_share: float = 0.2) -> float:
    """Share of recommended items outside the most popular `head_share` of the catalog."""
    order = np.argsort(-popularity, kind="stable")
    head = np.zeros(len(popularity), dtype=bool)
    head[order[: round(head_share * len(popularity))]] = True
    return float((~head[top_items]).mean()) if top_items.size else 0.0


def p50_p95(values: list[float] | np.ndarray) -> tuple[float, float]:
    """The median and 95th percentile of timings."""
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def hit_rates(
    ranks: list[int | None], ks: tuple[int, ...], name: str = "recall", over: int | None = None
) -> dict[str, float]:
    """The share of `over` targets (default: every rank given) among the first k, per k; a
    None rank is a target found nowhere. The chat's hits@k and the conversations' Recall@k:
    counts divided once, so every figure is the exact fraction."""
    found = np.array([r for r in ranks if r is not None], dtype=np.int64)
    total = len(ranks) if over is None else over
    return {f"{name}@{k}": int((found < k).sum()) / total if total else 0.0 for k in ks}


def hits_within(ranks: list[int | None], k: int) -> np.ndarray:
    """1.0 where a rank is among the first k, else 0.0 (a None rank: found nowhere)."""
    return np.array([r is not None and r < k for r in ranks], dtype=np.float64)


def rates_and_intervals(
    ranks: dict[str, list[int | None]], ks: tuple[int, ...], groups: np.ndarray, seed: int,
    name: str = "recall",
) -> tuple[dict[str, dict[str, float]], dict[str, tuple[float, float]]]:  # fmt: skip
    """Per method, its `hit_rates` and the 95% interval over `groups` (a user's messages, a
    dialogue's targets) of its hits within the largest k: the chat's and the conversations'."""
    rates, intervals = {}, {}
    for method, found in ranks.items():
        rates[method] = hit_rates(found, ks, name)
        if (interval := grouped_interval(hits_within(found, max(ks)), groups, seed)) is not None:
            intervals[method] = interval
    return rates, intervals
