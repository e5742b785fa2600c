"""Classic baselines, each with a small hyper-parameter grid searched on the validation split.

A baseline is a single candidate source scored on its own; `random` draws seeded noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fewrec.config import RetrievalSettings
from fewrec.data.split import LeaveOneOutSplit, SplitName
from fewrec.eval.metrics import per_user_metrics, target_ranks
from fewrec.retrieval.fusion import Retriever

# name -> (source, grid over RetrievalSettings fields); the first grid point is the default.
BASELINES: dict[str, tuple[str, list[dict]]] = {
    "popularity": ("popularity", [{}]),
    "item-knn": (
        "itemknn",
        [{"itemknn_k": k, "recency_half_life": h} for k in (50, 200) for h in (3.0, 1000.0)],
    ),
    "als": ("als", [{"als_factors": f, "als_regularization": r} for f in (32, 64) for r in (0.05, 1.0)]),
    "bpr": ("bpr", [{"bpr_factors": f, "bpr_learning_rate": lr} for f in (32, 64) for lr in (0.01, 0.05)]),
    "ease": ("ease", [{"ease_lambda": lam, "ease_half_life": 1000.0} for lam in (100.0, 300.0, 1000.0)]),
}


@dataclass
class BaselineResult:
    name: str
    params: dict
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # split name -> (n_users, n_items)


def _ndcg10(scores: np.ndarray, split: LeaveOneOutSplit, name: SplitName) -> float:
    ranks = target_ranks(scores, split.targets(name), split.histories(name))
    return float(per_user_metrics(ranks, (10,))["ndcg@10"].mean())


def random_scores(split: LeaveOneOutSplit, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((split.n_users, split.n_items)).astype(np.float32)


def run_baseline(
    name: str, split: LeaveOneOutSplit, base: RetrievalSettings, report_on: SplitName
) -> BaselineResult:
    """Pick the grid point with the best validation NDCG@10, then score `report_on`."""
    if name == "random":
        return BaselineResult(name, {"seed": base.seed}, {report_on: random_scores(split, base.seed)})
    source, grid = BASELINES[name]
    best: tuple[float, dict] | None = None
    for point in grid if len(grid) > 1 else []:
        settings = base.model_copy(update={**point, "weights": {source: 1.0}})
        scores = Retriever(split, settings, sources=[source]).fit("valid").score_split("valid").fused
        value = _ndcg10(scores, split, "valid")
        if best is None or value > best[0]:
            best = (value, point)
    params = best[1] if best else grid[0]
    settings = base.model_copy(update={**params, "weights": {source: 1.0}})
    retriever = Retriever(split, settings, sources=[source]).fit(report_on)
    return BaselineResult(name, params, {report_on: retriever.score_split(report_on).fused})
