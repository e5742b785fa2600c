"""Choosing the fusion weights on the validation split (never the test split).

Each source is scored once on validation; weights are then found by coordinate ascent over a
small grid, maximising mean NDCG@10. `fewrec tune` prints them as TOML for fewrec.toml.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fewrec.config import RetrievalSettings
from fewrec.data.split import LeaveOneOutSplit
from fewrec.eval.metrics import per_user_metrics, target_ranks
from fewrec.retrieval.fusion import Retriever, max_normalise

GRID = (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)


def tune_weights(
    split: LeaveOneOutSplit,
    settings: RetrievalSettings,
    item_vectors: np.ndarray | None = None,
    model_dir: Path | None = None,
    rounds: int = 3,
    anchor: str = "transition",
) -> tuple[dict[str, float], float]:
    """Best weights on validation and their NDCG@10. The `anchor` source keeps weight 1."""
    retriever = Retriever(split, settings, item_vectors, model_dir=model_dir).fit("valid")
    batch = retriever.score(
        split.histories("valid"), retriever.context_for(np.arange(split.n_users), "valid"), evidence=True
    )
    normalised = {name: max_normalise(scores) for name, scores in batch.by_source.items()}
    targets, histories = split.targets("valid"), split.histories("valid")

    def ndcg(weights: dict[str, float]) -> float:
        fused = sum(w * normalised[n] for n, w in weights.items() if w)
        ranks = target_ranks(np.asarray(fused), targets, histories)
        return float(per_user_metrics(ranks, (10,))["ndcg@10"].mean())

    names = list(normalised)
    if anchor not in names:
        anchor = names[0]
    weights = {n: (1.0 if n == anchor else float(settings.weights.get(n, 0.0))) for n in names}
    best = ndcg(weights)
    for _ in range(rounds):
        improved = False
        for name in names:
            if name == anchor:
                continue
            for value in GRID:
                trial = {**weights, name: value}
                score = ndcg(trial)
                if score > best + 1e-6:
                    best, weights, improved = score, trial, True
        if not improved:
            break
    return weights, best
