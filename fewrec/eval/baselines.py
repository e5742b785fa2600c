"""Classic baselines, each tuned on the validation split over the documented grid below.

A baseline is a single candidate source scored on its own (`random` draws seeded noise). Every
grid point is fitted on what came before the validation targets and scored on them; the best
point by validation NDCG@10 is refitted for the reported split. Its validation NDCG@10 is kept,
so that the best baseline is chosen on validation too, never on the test split.

The grids (fields of RetrievalSettings; every other field keeps fewrec's default):
- popularity: none.
- item-knn: neighbours k in {50, 100, 200} x profile half-life in {1, 3, 10, 1000} items.
- ease: L2 lambda in {100, 300, 1000} x profile half-life in {1, 3, 1000} items.
- als: factors in {32, 64, 128} x regularisation in {0.05, 1.0}.
- bpr: factors in {32, 64} x learning rate in {0.01, 0.05}.
- markov (first-order transitions): the last item only, or the last 3 items with half-life 1;
  without or with 0.25 of the reverse direction.
- sasrec: 16 or 32 epochs (the other settings are fewrec's, chosen on validation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fewrec.config import RetrievalSettings
from fewrec.data.split import LeaveOneOutSplit, SplitName
from fewrec.eval.metrics import per_user_metrics, target_ranks
from fewrec.retrieval.fusion import Retriever

_MARKOV = {"transition_window": 1, "transition_decay": 1.0}

# name -> (source, grid over RetrievalSettings fields)
BASELINES: dict[str, tuple[str, list[dict]]] = {
    "popularity": ("popularity", [{}]),
    "item-knn": (
        "itemknn",
        [{"itemknn_k": k, "recency_half_life": h} for k in (50, 100, 200) for h in (1.0, 3.0, 10.0, 1000.0)],
    ),
    "ease": (
        "ease",
        [
            {"ease_lambda": lam, "ease_half_life": h}
            for lam in (100.0, 300.0, 1000.0)
            for h in (1.0, 3.0, 1000.0)
        ],
    ),
    "als": (
        "als",
        [{"als_factors": f, "als_regularization": r} for f in (32, 64, 128) for r in (0.05, 1.0)],
    ),
    "bpr": ("bpr", [{"bpr_factors": f, "bpr_learning_rate": lr} for f in (32, 64) for lr in (0.01, 0.05)]),
    "markov": (
        "transition",
        [
            {**_MARKOV, "transition_limit": limit, "transition_half_life": 1.0, "transition_backward": back}
            for limit in (1, 3)
            for back in (0.0, 0.25)
        ],
    ),
    "sasrec": ("sasrec", [{"sasrec_epochs": e} for e in (16, 32)]),
}


@dataclass
class BaselineResult:
    name: str
    params: dict
    validation_ndcg: float | None  # NDCG@10 of the chosen point on the validation targets
    scores: np.ndarray  # (len(users), n_items) for the reported split's users


def validation_ndcg(scores: np.ndarray, split: LeaveOneOutSplit, users: np.ndarray) -> float:
    histories = [split.history(int(u), "valid") for u in users]
    ranks = target_ranks(scores, split.targets("valid")[users], histories)
    return float(per_user_metrics(ranks, (10,))["ndcg@10"].mean())


def random_scores(n_rows: int, n_items: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n_rows, n_items)).astype(np.float32)


def run_baseline(
    name: str,
    split: LeaveOneOutSplit,
    base: RetrievalSettings,
    report_on: SplitName,
    users: np.ndarray,
    model_dir: Path | None = None,
    progress: bool = False,
) -> BaselineResult:
    """Pick the grid point with the best validation NDCG@10, then score `users` on `report_on`."""
    if name == "random":
        scores = random_scores(len(users), split.n_items, base.seed)
        valid_users = split.eval_users("valid")
        noise = random_scores(len(valid_users), split.n_items, base.seed)
        return BaselineResult(name, {"seed": base.seed}, validation_ndcg(noise, split, valid_users), scores)
    source, grid = BASELINES[name]
    valid_users = split.eval_users("valid")
    best: tuple[float, dict] | None = None
    fitted: Retriever | None = None
    for point in grid:
        settings = base.model_copy(update={**point, "weights": {source: 1.0}})
        retriever = Retriever(split, settings, sources=[source], model_dir=model_dir, progress=progress)
        retriever.fit("valid")
        value = validation_ndcg(retriever.score_split("valid", valid_users).fused, split, valid_users)
        if best is None or value > best[0]:
            best, fitted = (value, point), retriever
    assert best is not None and fitted is not None
    if report_on != "valid":
        settings = base.model_copy(update={**best[1], "weights": {source: 1.0}})
        fitted = Retriever(split, settings, sources=[source], model_dir=model_dir, progress=progress)
        fitted.fit(report_on)
    return BaselineResult(name, best[1], best[0], fitted.score_split(report_on, users).fused)
