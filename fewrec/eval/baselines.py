"""Classic baselines, each tuned on the validation split over the documented grid below.

A baseline is a single candidate source scored on its own (`random` draws seeded noise). Every
grid point is fitted on what came before the validation targets and scored on them; the best
point by validation NDCG@10 is refitted for the reported split. Its validation NDCG@10 is kept,
so that the best baseline is chosen on validation too, never on the test split.

The grids live with the sources (`grid` in each component's config, fewrec/retrieval/components.py,
configurable as `[retrieval.sources.NAME] grid = [...]`); every other hyper-parameter keeps its
configured value. By default:
- popularity: none.
- item-knn: neighbours k in {50, 100, 200} x profile half-life in {1, 3, 10, 1000} items.
- ease: L2 lambda in {100, 300, 1000} x profile half-life in {1, 3, 1000} items.
- als: factors in {32, 64, 128} x regularisation in {0.05, 1.0}.
- bpr: factors in {32, 64} x learning rate in {0.01, 0.05}.
- markov (first-order transitions): the last item only, or the last 3 items with half-life 1;
  without or with 0.25 of the reverse direction.
- sasrec: 16 or 32 epochs (the other settings are fewrec's, chosen on validation).

Every baseline is scored `retrieval.batch_users` users at a time. One whose source declines to
fit (EASE above `retrieval.sources.ease.max_items`, SASRec above
`retrieval.sources.sasrec.max_interactions`)
comes back `skipped`, with the source's one-line reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fewrec.config import RetrievalSettings, config_class, source_names
from fewrec.config_legacy import legacy_label
from fewrec.data.split import LeaveOneOutSplit, SplitName
from fewrec.eval.metrics import batch_ranks, per_user_metrics
from fewrec.retrieval.base import user_batches
from fewrec.retrieval.fusion import Retriever

# The order the reports list the baselines in; a registered source with a baseline that is not
# here follows, in the registry's order.
BASELINE_ORDER = ("popularity", "item-knn", "ease", "als", "bpr", "markov", "sasrec")


def baseline_grids(settings: RetrievalSettings | None = None) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """Baseline name -> (its source, the grid over that source's hyper-parameters), read from
    the components' configs (`SourceConfig.baseline`, `.grid`) as `settings` configure them."""
    settings = settings or RetrievalSettings()
    found = {
        cls.baseline: (name, [dict(point) for point in settings.source(name).grid])
        for name in source_names()
        if (cls := config_class(name)).baseline is not None
    }
    order = [name for name in BASELINE_ORDER if name in found] + [n for n in found if n not in BASELINE_ORDER]
    return {name: found[name] for name in order}


# name -> (source, grid) under the default settings
BASELINES: dict[str, tuple[str, list[dict[str, Any]]]] = baseline_grids()


@dataclass
class BaselineResult:
    """A tuned baseline: its chosen grid point and validation NDCG@10, and how to score the
    reported users (batch by batch; `scores` gives them all at once, for small data)."""

    name: str
    params: dict
    validation_ndcg: float | None  # NDCG@10 of the chosen point on the validation targets
    users: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    retriever: Retriever | None = None  # fitted for the reported split; None: seeded noise
    report_on: SplitName = "test"
    n_items: int = 0
    seed: int = 0
    batch_users: int = 1024
    skipped: str | None = None  # why the baseline could not run (its source declined to fit)

    def score_batches(self) -> Iterator[tuple[slice, np.ndarray]]:
        """(rows, scores) for consecutive batches of the reported users."""
        if self.retriever is None:
            yield from _random_batches(len(self.users), self.n_items, self.seed, self.batch_users)
            return
        split = self.retriever.split
        histories = [split.history(int(u), self.report_on) for u in self.users]
        context = self.retriever.context_for(self.users, self.report_on)
        for part, batch in self.retriever.score_batches(histories, context):
            yield part, batch.fused

    @property
    def scores(self) -> np.ndarray:
        """(len(users), n_items): every reported user at once; for tests and small data only."""
        parts = [scores for _, scores in self.score_batches()]
        return np.concatenate(parts) if parts else np.zeros((0, self.n_items), dtype=np.float32)


def validation_ndcg(
    batches: Iterable[tuple[slice, np.ndarray]], split: LeaveOneOutSplit, users: np.ndarray
) -> float:
    """Mean NDCG@10 of `users`' validation targets, from their scores batch by batch."""
    histories = [split.history(int(u), "valid") for u in users]
    targets = split.targets("valid")[users]
    ranks = np.empty(len(users), dtype=np.int64)
    for part, scores in batches:
        ranks[part] = batch_ranks(scores, targets[part], histories[part], top=0)[0]
    return float(per_user_metrics(ranks, (10,))["ndcg@10"].mean())


def _random_batches(
    n_rows: int, n_items: int, seed: int, batch_users: int
) -> Iterator[tuple[slice, np.ndarray]]:
    """Seeded noise scores, batch by batch: one generator drawing row after row (the same numbers
    as drawing all rows at once)."""
    rng = np.random.default_rng(seed)
    for part in user_batches(n_rows, batch_users):
        yield part, rng.random((part.stop - part.start, n_items)).astype(np.float32)


def run_baseline(
    name: str,
    split: LeaveOneOutSplit,
    base: RetrievalSettings,
    report_on: SplitName,
    users: np.ndarray,
    model_dir: Path | None = None,
    progress: bool = False,
) -> BaselineResult:
    """Pick the grid point with the best validation NDCG@10, then fit it for `report_on`;
    the result scores `users` on demand."""
    users = np.asarray(users)
    common = {
        "users": users,
        "report_on": report_on,
        "n_items": split.n_items,
        "batch_users": base.batch_users,
    }
    if name == "random":
        valid_users = split.eval_users("valid")
        noise = _random_batches(len(valid_users), split.n_items, base.seed, base.batch_users)
        value = validation_ndcg(noise, split, valid_users)
        return BaselineResult(name, {"seed": base.seed}, value, seed=base.seed, **common)
    source, grid = baseline_grids(base)[name]
    valid_users = split.eval_users("valid")
    best: tuple[float, dict] | None = None
    fitted: Retriever | None = None
    for point in grid:
        settings = base.with_source(source, weight=1.0, **point)
        retriever = Retriever(split, settings, sources=[source], model_dir=model_dir, progress=progress)
        retriever.fit("valid")
        if source not in retriever.sources:  # it declined to fit: so would every grid point
            skipped = "; ".join(retriever.notes)
            return BaselineResult(name, _labelled(source, point), None, skipped=skipped, **common)
        context = retriever.context_for(valid_users, "valid")
        histories = [split.history(int(u), "valid") for u in valid_users]
        batches = ((part, batch.fused) for part, batch in retriever.score_batches(histories, context))
        value = validation_ndcg(batches, split, valid_users)
        if best is None or value > best[0]:
            # Keep the fitted model only when it is the one reported: two fitted grid points
            # at once would double the peak memory (EASE's matrix is gigabytes at scale).
            best, fitted = (value, point), retriever if report_on == "valid" else None
        del retriever
    assert best is not None
    if fitted is None:
        settings = base.with_source(source, weight=1.0, **best[1])
        fitted = Retriever(split, settings, sources=[source], model_dir=model_dir, progress=progress)
        fitted.fit(report_on)
        if source not in fitted.sources:
            skipped = "; ".join(fitted.notes)
            return BaselineResult(name, _labelled(source, best[1]), best[0], skipped=skipped, **common)
    return BaselineResult(name, _labelled(source, best[1]), best[0], retriever=fitted, **common)


def _labelled(source: str, point: dict[str, Any]) -> dict[str, Any]:
    """A grid point as the reports print it: by the flat names the published reports use
    (`ease_lambda=300.0`), so that a report reads the same as before the components."""
    return {legacy_label(source, key): value for key, value in point.items()}
