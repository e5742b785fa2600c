"""The Retriever: fits the configured candidate sources, fuses their scores (weighted sum of
max-normalised scores, or reciprocal-rank fusion), masks what the user already has, and keeps
for each candidate which sources found it. Users with no usable history get popularity.

Many users are scored `retrieval.batch_users` at a time (`score_batches`, `recommend`); a
source that declines to fit (too large under its settings) is dropped with a note, which is
logged and kept in `Retriever.notes`."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fewrec.config import RetrievalSettings
from fewrec.data.split import LeaveOneOutSplit, SplitName
from fewrec.retrieval.base import (
    BuildContext,
    Candidate,
    CandidateSource,
    FitData,
    ScoringContext,
    SourceSkipped,
    TopN,
    mask_seen,
    top_n,
    user_batches,
)
from fewrec.retrieval.cf import Popularity
from fewrec.retrieval.registry import SOURCE_NAMES

__all__ = [
    "COLD_START_SOURCE", "EVIDENCE_DEPTH", "SOURCE_NAMES", "Retriever", "ScoredBatch", "fit_data",
    "make_source", "max_normalise", "ranks_among_unseen", "ranks_of",
]  # fmt: skip

EVIDENCE_DEPTH = 100  # a source "found" a candidate when it ranks it this high or higher
COLD_START_SOURCE = "popularity"  # what ranks a history with nothing known, and its evidence name

log = logging.getLogger("fewrec.retrieval")


def make_source(
    name: str,
    settings: RetrievalSettings,
    item_vectors: np.ndarray | None = None,
    model_dir: Path | None = None,
    progress: bool = True,
    notify: Callable[[str], None] | None = None,
) -> CandidateSource:
    """One candidate source as its component config says (`settings.source(name)`, see
    fewrec/retrieval/registry.py); `model_dir` caches trained weights, `notify` receives
    one-line notes (e.g. that SASRec is training and for how long at most)."""
    context = BuildContext(item_vectors, model_dir, progress, notify, settings.seed)
    return settings.source(name).build(context)


def fit_data(split: LeaveOneOutSplit, split_name: SplitName) -> FitData:
    frame = split.interactions_before(split_name)
    return FitData(
        n_users=split.n_users,
        n_items=split.n_items,
        users=frame["user"].to_numpy(),
        items=frame["item"].to_numpy(),
        timestamps=frame["timestamp"].to_numpy(),
    )


def max_normalise(scores: np.ndarray) -> np.ndarray:
    # max |x| without a temporary |x| array: max(max x, -min x) is the same number.
    scale = np.maximum(scores.max(axis=1, keepdims=True), -scores.min(axis=1, keepdims=True))
    return scores / np.where(scale > 0, scale, 1.0)


def ranks_of(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every item in every row (ties broken by item index)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :].repeat(len(scores), 0), axis=1)
    return ranks


def ranks_among_unseen(scores: np.ndarray, items: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """1-based rank of each of `items` among the items not in `seen`, ties broken by item index
    (what `ranks_of` gives after masking, without sorting the whole catalog)."""
    masked = np.asarray(scores, dtype=np.float64).copy()
    masked[np.asarray(seen, dtype=np.int64)] = -np.inf
    values = masked[items][:, None]
    higher = (masked[None, :] > values).sum(axis=1)
    earlier = np.arange(len(masked))[None, :] < np.asarray(items)[:, None]
    tied_before = ((masked[None, :] == values) & earlier).sum(axis=1)
    return higher + tied_before + 1


@dataclass
class ScoredBatch:
    """Fused scores for a batch of users, with every source's own scores kept as evidence."""

    fused: np.ndarray
    by_source: dict[str, np.ndarray] = field(default_factory=dict)


Visitor = Callable[[str, np.ndarray], None]  # (source name, its scores for the batch)


@functools.cache
def _blas_threads() -> Any:
    """threadpoolctl's controller, made once: finding the loaded BLAS libraries takes about 2 ms,
    too much for every scored batch of a chat turn; a limit on a made controller takes 0.04 ms."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


class Retriever:
    """Candidate retrieval over one split: `fit`, then `score` batches or `candidates` for one user."""

    def __init__(
        self,
        split: LeaveOneOutSplit,
        settings: RetrievalSettings | None = None,
        item_vectors: np.ndarray | None = None,
        sources: list[str] | None = None,
        model_dir: Path | None = None,
        progress: bool = True,
    ) -> None:
        self.split = split
        self.settings = settings or RetrievalSettings()
        names = list(sources or self.settings.active)
        if item_vectors is None:  # no index: run without what needs it rather than fail
            names = [name for name in names if not self.settings.source(name).needs_content]
        self.notes: list[str] = []  # one line per skipped source or training run, for reports
        self.sources: dict[str, CandidateSource] = {
            name: make_source(name, self.settings, item_vectors, model_dir, progress, self.note)
            for name in names
        }
        self.popularity = Popularity()
        self.fitted_on: SplitName | None = None
        self._titles = [str(t) for t in split.catalog.frame["title"]]  # a pandas lookup per item is slow

    def note(self, message: str) -> None:
        """A one-line note: logged (a warning, so it shows without any logging set up, also
        behind the `Recommender` facade) and kept for reports."""
        self.notes.append(message)
        log.warning("%s", message)

    def fit(self, split_name: SplitName = "test") -> Retriever:
        """Learn from every interaction known before the `split_name` targets. A source that
        declines (too large under its settings) is dropped from this retriever with a note."""
        data = fit_data(self.split, split_name)
        for name, source in list(self.sources.items()):
            try:
                source.fit(data)
            except SourceSkipped as skipped:
                del self.sources[name]
                self.note(str(skipped))
        self.popularity.fit(data)
        self.fitted_on = split_name
        return self

    def explains(self, name: str) -> str:
        """How an explanation tells source `name`'s evidence (`SourceConfig.explains`)."""
        return self.settings.source(name).explains

    def weight(self, name: str) -> float:
        """The source's fusion weight, from its config (every config has one)."""
        return float(self.settings.source(name).weight)

    def score(
        self, histories: list[np.ndarray], context: ScoringContext | None = None, evidence: bool = False,
        visit: Visitor | None = None, only: Collection[str] | None = None,
    ) -> ScoredBatch:  # fmt: skip
        """Fused scores for one batch of histories (dense: keep it to `batch_users` rows, or use
        `score_batches`); `evidence=True` also runs the sources whose weight is 0. With `visit`,
        each source's scores go to `visit(name, scores)` (which may change them) instead of into
        `by_source`, so only one source's array is alive at a time. `only`: just these of the
        fitted sources (`check_sources` says which exist).

        Scored on one BLAS thread: a multi-threaded BLAS cuts matrices by its thread count and
        may round differently, so scores would depend on the cores (and a Ray actor, given one
        thread, would disagree with this process). Parallel work is Ray's, not BLAS's."""
        if self.fitted_on is None:
            raise RuntimeError("call Retriever.fit() before scoring")
        with _blas_threads().limit(limits=1, user_api="blas"):
            return self._score(histories, context, evidence, visit, only)

    def _score(
        self, histories: list[np.ndarray], context: ScoringContext | None, evidence: bool,
        visit: Visitor | None, only: Collection[str] | None = None,
    ) -> ScoredBatch:  # fmt: skip
        by_source: dict[str, np.ndarray] = {}
        fused = np.zeros((len(histories), self.split.n_items), dtype=np.float32)
        used = False
        for name, source in self.sources.items():
            if only is not None and name not in only:
                continue
            if not (evidence or self.weight(name) != 0.0):
                continue
            scores = np.asarray(source.score(histories, context), dtype=np.float32)
            if self.weight(name) != 0.0:
                used = True
                if self.settings.fusion == "rrf":
                    fused += self.weight(name) / (self.settings.rrf_k + ranks_of(scores))
                else:
                    fused += self.weight(name) * max_normalise(scores)
            if visit is None:
                by_source[name] = scores
            else:
                visit(name, scores)
            del scores
        cold = np.array([len(h) == 0 for h in histories], dtype=bool)
        if not used:
            cold[:] = True
        if cold.any():
            fused[cold] = max_normalise(self.popularity.counts[None, :])[0]
        return ScoredBatch(fused=fused, by_source=by_source)

    def score_batches(
        self, histories: list[np.ndarray], context: ScoringContext | None = None, evidence: bool = False,
        visit: Callable[[slice, str, np.ndarray], None] | None = None,
    ) -> Iterator[tuple[slice, ScoredBatch]]:  # fmt: skip
        """`score` over consecutive batches of `retrieval.batch_users` rows: (rows, batch). With
        `visit`, each source's scores go to `visit(rows, name, scores)` instead of the batch."""
        for part in user_batches(len(histories), self.settings.batch_users):
            rows = None if context is None else context.rows(part)
            each = None if visit is None else (lambda name, scores, part=part: visit(part, name, scores))
            yield part, self.score(histories[part], rows, evidence, each)

    def recommend(
        self, histories: list[np.ndarray], n: int, context: ScoringContext | None = None,
        filter_seen: bool = True,
    ) -> TopN:  # fmt: skip
        """The fused top-`n` items of many histories (ties by item index), batch by batch:
        only users × n is kept (`implicit`'s recommend contract, for the fusion)."""
        ids, values = [], []
        for part, batch in self.score_batches(histories, context):
            if filter_seen:
                mask_seen(batch.fused, histories[part])
            top, scores = top_n(batch.fused, n)
            ids.append(top)
            values.append(scores)
        if not ids:
            return TopN(ids=np.zeros((0, n), dtype=np.int64), scores=np.zeros((0, n), dtype=np.float32))
        return TopN(ids=np.concatenate(ids), scores=np.concatenate(values))

    def score_split(
        self, split_name: SplitName, users: np.ndarray | None = None, last: int | None = None
    ) -> ScoredBatch:
        """Dense scores for users of a split (their history before the target, cut to `last`
        items): users × items, so meant for a few users (tests, small data); scored in batches.
        Evaluations use `score_batches` and keep per-user results instead."""
        users = np.arange(self.split.n_users) if users is None else np.asarray(users)
        histories = [self.split.history(int(u), split_name, last) for u in users]
        parts = [batch for _, batch in self.score_batches(histories, self.context_for(users, split_name))]
        if not parts:
            return self.score([], self.context_for(users, split_name))
        return ScoredBatch(
            fused=np.concatenate([p.fused for p in parts]),
            by_source={
                name: np.concatenate([p.by_source[name] for p in parts]) for name in parts[0].by_source
            },
        )

    def context_for(self, users: np.ndarray, split_name: SplitName) -> ScoringContext:
        users = np.asarray(users)
        return ScoringContext(users=users, times=self.split.reference_times(users, split_name))

    def check_sources(self, names: Collection[str]) -> None:
        """Raise ValueError, naming the sources there are, when one of `names` is not fused here."""
        from fewrec.config import source_names

        for name in names:
            if name not in source_names():
                raise ValueError(f"unknown source {name!r}; the sources are: {', '.join(source_names())}")
            if name not in self.sources:
                fused = ", ".join(self.sources)
                raise ValueError(f"source {name!r} is not fitted here; this retriever fuses: {fused}")

    def candidates(
        self,
        history: np.ndarray,
        k: int | None = None,
        context: ScoringContext | None = None,
        allowed: np.ndarray | None = None,
        only: Collection[str] | None = None,
    ) -> list[Candidate]:
        """The top `k` items for one history (item indices), never one already in it.

        `allowed` (bool per item) restricts the result, e.g. to items matching a filter; `only`
        ranks with just these of the fitted sources.
        """
        k = self.settings.candidates if k is None else k
        history = np.asarray(history, dtype=np.int64)
        if only is not None:
            self.check_sources(only)
        batch = self.score([history], context, evidence=True, only=only)
        fused = batch.fused[0].astype(np.float64)
        fused[history] = -np.inf
        if allowed is not None:
            fused[~allowed] = -np.inf
        top = np.argsort(-fused, kind="stable")[:k]
        top = top[np.isfinite(fused[top])]
        if len(history) == 0:
            by_source = {COLD_START_SOURCE: self.popularity.counts}
        else:
            by_source = {name: scores[0] for name, scores in batch.by_source.items()}
        ranks = {name: ranks_among_unseen(scores, top, history) for name, scores in by_source.items()}
        out = []
        for position, item in enumerate(top):
            found = [name for name in by_source if ranks[name][position] <= EVIDENCE_DEPTH]
            out.append(
                Candidate(
                    item_id=self.split.item_ids[item].item(),
                    title=self._titles[item],
                    score=float(fused[item]),
                    rank=position + 1,
                    sources={name: float(by_source[name][item]) for name in found},
                    source_ranks={name: int(ranks[name][position]) for name in found},
                )
            )
        return out
