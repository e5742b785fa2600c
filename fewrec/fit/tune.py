"""Choosing the fusion weights (and, on request, source settings) on validation targets only.

The validation split holds one target per user: 610 on the bundled data, so few that the 95%
interval of a fused NDCG@10 spans about ±0.018 (`make results`). Tuning therefore pools it with
pseudo-validation splits (each user's last and second-last *training* items as targets, the
sources fitted on what came before them), all strictly before the real validation and test
targets. Weights are found by coordinate ascent over a small grid from three neutral starts,
maximising mean NDCG@10 over every pooled target. `fewrec tune` prints them as TOML for
fewrec.toml (a `weight` in each `[retrieval.sources.NAME]`); `--folds 5` also reports an
out-of-sample estimate (weights tuned on four fifths of the users, scored on the rest), which
is what a change has to improve before it becomes a default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from fewrec.config import RetrievalSettings
from fewrec.config_legacy import LEGACY_KEYS
from fewrec.data.split import LeaveOneOutSplit
from fewrec.eval.harness import seeded_sample
from fewrec.eval.metrics import masked_target_ranks, per_user_metrics
from fewrec.retrieval.fusion import Retriever, max_normalise

GRID = (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0)


@dataclass
class ValidationQueries:
    """One validation split's targets, with every source's normalised scores for them."""

    label: str
    users: np.ndarray  # user indices that hold a target here
    targets: np.ndarray
    seen: np.ndarray  # bool (users, items): items in each user's history, never ranked
    scores: dict[str, np.ndarray]  # source name -> max-normalised scores (users, items)

    def ndcg(self, weights: dict[str, float], rows: np.ndarray | None = None) -> np.ndarray:
        """NDCG@10 of each target under `weights` (ties count against the target)."""
        rows = np.arange(len(self.users)) if rows is None else rows
        fused = np.zeros((len(rows), self.seen.shape[1]), dtype=np.float32)
        for name, weight in weights.items():
            if weight and name in self.scores:
                fused += np.float32(weight) * self.scores[name][rows]
        fused[self.seen[rows]] = -np.inf
        return per_user_metrics(masked_target_ranks(fused, self.targets[rows]), (10,))["ndcg@10"]


@dataclass
class TuneResult:
    weights: dict[str, float]
    ndcg: float  # mean NDCG@10 over every pooled target, in sample
    per_split: dict[str, float]  # the same, per validation split
    targets: int
    out_of_sample: float | None = None  # mean over users tuned without them (when folds > 1)
    # Each untuned weighting's in-sample NDCG@10: the neutral starts, and the configured weights.
    # With few targets a start can beat the tuned weights out of sample.
    untuned: dict[str, float] = field(default_factory=dict)


def validation_queries(
    split: LeaveOneOutSplit,
    settings: RetrievalSettings,
    item_vectors: np.ndarray | None = None,
    model_dir: Path | None = None,
    pseudo: int = 2,
    progress: bool = True,
    sample: np.ndarray | None = None,
) -> list[ValidationQueries]:
    """The real validation split plus `pseudo` pseudo-validation splits, each scored by every
    configured source fitted on what came before its targets. `sample` (user indices, see
    `sample_users`) keeps only those users' targets: the sources are still fitted on everyone."""
    splits: list[tuple[str, LeaveOneOutSplit, np.ndarray]] = [("valid", split, split.eval_users("valid"))]
    for steps in range(1, pseudo + 1):
        earlier, users = split.shifted(steps)
        splits.append((f"valid-{steps}", earlier, users))
    if sample is not None:
        kept = [(label, part, users[np.isin(users, sample)]) for label, part, users in splits]
        splits = [entry for entry in kept if len(entry[2]) or entry[0] == "valid"]  # no empty pseudo split
    out = []
    for label, part, users in tqdm(splits, desc="scoring validation splits", disable=not progress):
        retriever = Retriever(part, settings, item_vectors, model_dir=model_dir, progress=progress)
        retriever.fit("valid")
        histories = [part.history(int(u), "valid") for u in users]
        batch = retriever.score(histories, retriever.context_for(users, "valid"), evidence=True)
        seen = np.zeros((len(users), part.n_items), dtype=bool)
        for row, history in enumerate(histories):
            seen[row, history] = True
        scores = {name: max_normalise(s).astype(np.float32) for name, s in batch.by_source.items()}
        out.append(ValidationQueries(label, users, part.targets("valid")[users], seen, scores))
    return out


def coordinate_ascent(
    objective: Callable[[dict[str, float]], float],
    names: Sequence[str],
    start: dict[str, float],
    anchor: str,
    rounds: int = 3,
) -> tuple[dict[str, float], float]:
    """Improve one weight at a time over GRID (the anchor stays 1) until nothing improves."""
    weights = {n: (1.0 if n == anchor else float(start.get(n, 0.0))) for n in names}
    best = objective(weights)
    for _ in range(rounds):
        improved = False
        for name in names:
            if name == anchor:
                continue
            for value in GRID:
                trial = {**weights, name: value}
                score = objective(trial)
                if score > best + 1e-9:
                    best, weights, improved = score, trial, True
        if not improved:
            break
    return weights, best


NEUTRAL_LABELS = ("equal weights", "the anchor alone", "the others at half")


def neutral_starts(names: Sequence[str], anchor: str) -> list[dict[str, float]]:
    """Where the search starts: equal weights, the anchor alone, and every other source at half.
    None of them depends on earlier tuning, so held-out users never leak into a start."""
    return [
        dict.fromkeys(names, 1.0),
        {n: (1.0 if n == anchor else 0.0) for n in names},
        {n: (1.0 if n == anchor else 0.5) for n in names},
    ]


def best_of_starts(
    objective: Callable[[dict[str, float]], float],
    names: Sequence[str],
    starts: list[dict[str, float]],
    anchor: str,
) -> tuple[dict[str, float], float]:
    """Coordinate ascent finds a local optimum; the best of a few starts is steadier."""
    results = [coordinate_ascent(objective, names, start, anchor) for start in starts]
    return max(results, key=lambda result: result[1])


def tune_on(
    queries: list[ValidationQueries],
    starts: list[dict[str, float]] | None = None,
    anchor: str | None = None,
    folds: int = 0,
    seed: int = 0,
    current: dict[str, float] | None = None,
) -> TuneResult:
    """Weights maximising mean NDCG@10 over all pooled targets (optionally cross-validated).

    The `anchor` source (default: the first) keeps weight 1; only ratios matter. The search
    runs from `neutral_starts` unless given `starts`, and from the `current` weights too, so
    that tuning never proposes weights that do worse on validation than the configured ones.
    The cross-validation folds start from the neutral points only: weights already tuned on
    every user would leak the held-out users into the out-of-sample estimate.
    """
    names = list(queries[0].scores)
    if anchor not in names:
        anchor = names[0]
    starts = starts if starts is not None else neutral_starts(names, anchor)
    first_starts = starts + ([{n: float(current.get(n, 0.0)) for n in names}] if current else [])

    def objective_for(users: np.ndarray | None) -> Callable[[dict[str, float]], float]:
        rows = [None if users is None else np.flatnonzero(np.isin(q.users, users)) for q in queries]

        def objective(weights: dict[str, float]) -> float:
            values = [q.ndcg(weights, r) for q, r in zip(queries, rows, strict=True)]
            return float(np.concatenate(values).mean())

        return objective

    weights, best = best_of_starts(objective_for(None), names, first_starts, anchor)
    per_split = {q.label: float(q.ndcg(weights).mean()) for q in queries}
    result = TuneResult(weights, best, per_split, targets=sum(len(q.users) for q in queries))
    neutral = starts == neutral_starts(names, anchor)
    objective = objective_for(None)
    for i, start in enumerate(starts):
        result.untuned[NEUTRAL_LABELS[i] if neutral else f"start {i + 1}"] = objective(start)
    if current:
        result.untuned["the configured weights"] = objective({n: float(current.get(n, 0.0)) for n in names})
    if folds > 1:
        everyone = np.unique(np.concatenate([q.users for q in queries]))
        parts = np.array_split(np.random.default_rng(seed).permutation(everyone), folds)
        held_out: list[np.ndarray] = []
        for fold in range(folds):
            training = np.concatenate([p for i, p in enumerate(parts) if i != fold])
            fold_weights, _ = best_of_starts(objective_for(training), names, starts, anchor)
            for q in queries:
                held_out.append(q.ndcg(fold_weights, np.flatnonzero(np.isin(q.users, parts[fold]))))
        result.out_of_sample = float(np.concatenate(held_out).mean())
    return result


def sample_users(split: LeaveOneOutSplit, users: int | None, seed: int = 0) -> np.ndarray | None:
    """A seeded sample of `users` of the users with a validation target, drawn as `fewrec eval
    --users` draws its users (None: everyone)."""
    if users is None:
        return None
    eligible = split.eval_users("valid")
    if not 1 <= users <= len(eligible):
        raise ValueError(
            f"--users must be between 1 and {len(eligible)} (the users with a validation target "
            f"under this protocol), got {users}"
        )
    return seeded_sample(eligible, users, seed)


def memory_sample_size(split: LeaveOneOutSplit, sources: int, pseudo: int, budget_gb: float) -> int | None:
    """How many users' validation targets `tune_weights` can hold within `budget_gb` (each keeps
    a float32 score per item and source, and a seen flag per item, in each of the 1 + `pseudo`
    splits); None when every user fits."""
    per_user = split.n_items * (4 * max(sources, 1) + 1) * (1 + pseudo)
    fits = int(budget_gb * 1024**3 // per_user)
    eligible = len(split.eval_users("valid"))
    return None if fits >= eligible else max(1, fits)


def tune_weights(
    split: LeaveOneOutSplit,
    settings: RetrievalSettings,
    item_vectors: np.ndarray | None = None,
    model_dir: Path | None = None,
    anchor: str | None = None,
    pseudo: int = 2,
    folds: int = 0,
    progress: bool = True,
    sample: np.ndarray | None = None,
) -> TuneResult:
    """Best fusion weights on the validation targets (pooled with `pseudo` earlier ones), of
    the `sample` users only when given."""
    queries = validation_queries(split, settings, item_vectors, model_dir, pseudo, progress, sample)
    return tune_on(queries, None, anchor, folds, settings.seed, current=settings.weights)


def sweep_setting(
    split: LeaveOneOutSplit,
    settings: RetrievalSettings,
    key: str,
    values: Sequence[Any],
    item_vectors: np.ndarray | None = None,
    model_dir: Path | None = None,
    pseudo: int = 2,
    folds: int = 0,
    progress: bool = True,
    sample: np.ndarray | None = None,
) -> list[tuple[Any, TuneResult]]:
    """Tune the weights again for each value of one retrieval setting (`SOURCE.FIELD`, e.g.
    `timed_transition.tau_days`, a shared one such as `rrf_k`, or an old flat key such as
    `timed_transition_tau_days`); keep the value that does best on validation (out of sample,
    when `folds` > 1)."""
    results = []
    for value in values:
        trial = with_setting(settings, key, value)
        results.append((value, tune_weights(split, trial, item_vectors, model_dir, pseudo=pseudo,
                                            folds=folds, progress=progress, sample=sample)))  # fmt: skip
    return results


def with_setting(settings: RetrievalSettings, key: str, value: Any) -> RetrievalSettings:
    """`settings` with one setting changed: `SOURCE.FIELD` (or `sources.SOURCE.FIELD`), a field
    of the retrieval section itself, or an old flat key (every field it now sets)."""
    parts = key.removeprefix("sources.").split(".")
    if len(parts) == 2:
        return settings.with_source(parts[0], **{parts[1]: value})
    if key in LEGACY_KEYS:
        for target in LEGACY_KEYS[key]:
            source, name = target.split(".")
            settings = settings.with_source(source, **{name: value})
        return settings
    if key in RetrievalSettings.model_fields and key != "sources":
        return RetrievalSettings.model_validate({**settings.model_dump(), key: value})
    shared = ", ".join(sorted(k for k in RetrievalSettings.model_fields if k != "sources"))
    raise ValueError(f"unknown retrieval setting {key!r}; use SOURCE.FIELD (e.g. ease.lambda) or: {shared}")


def weights_tables(weights: dict[str, float]) -> str:
    """Fusion weights as fewrec.toml tables (`[retrieval.sources.NAME]`, `weight = ...`)."""
    return "\n\n".join(f"[retrieval.sources.{name}]\nweight = {value}" for name, value in weights.items())
