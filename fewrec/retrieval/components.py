"""The built-in candidate sources as components: one pydantic config per source, holding its
hyper-parameters, fusion weight and baseline grid, and building the source from them.

Each config is `[retrieval.sources.NAME]` in fewrec.toml (`fewrec/retrieval/registry.py` names
them). The defaults were chosen on the validation split of the bundled data (`fewrec tune` for
the weights, `fewrec eval`'s baselines for the grids); the test split never chose any of them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from fewrec.config import Explains, SourceConfig
from fewrec.retrieval.base import BuildContext, CandidateSource
from fewrec.retrieval.cf import (
    ALS,
    BPR,
    EASE,
    ItemKNN,
    Popularity,
    TimedTransition,
    TimePopularity,
    Transition,
)
from fewrec.retrieval.content import ContentSimilarity


class EASEConfig(SourceConfig):
    """EASE (a closed-form item-item model) over the user's recency-weighted profile."""

    baseline: ClassVar[str | None] = "ease"
    default: ClassVar[bool] = True
    explains: ClassVar[Explains] = "item-item"
    weight: float = 0.75
    lambda_: float = Field(default=300.0, alias="lambda")  # the L2 penalty
    half_life: float = 1.0  # in items: the profile's recency weighting
    limit: int = 50  # how many recent items enter the profile
    # EASE's weights are a dense items × items float32 matrix, inverted in place: 19,830 items
    # took 54 s and a 2.2 GB peak on two cores (`fewrec bench --scale`). Above this it is
    # skipped, with a note; None: no limit.
    max_items: int | None = 20_000
    grid: list[dict[str, Any]] = Field(
        default_factory=lambda: [
            {"lambda": lam, "half_life": h} for lam in (100.0, 300.0, 1000.0) for h in (1.0, 3.0, 1000.0)
        ]
    )

    def build(self, context: BuildContext) -> CandidateSource:
        return EASE(l2=self.lambda_, half_life=self.half_life, limit=self.limit, max_items=self.max_items)


class TransitionConfig(SourceConfig):
    """Item-to-next-item transitions within a window of the sequence (both directions)."""

    baseline: ClassVar[str | None] = "markov"  # first-order transitions, tuned alone
    default: ClassVar[bool] = True
    explains: ClassVar[Explains] = "sequence"
    weight: float = 0.5
    window: int = 5
    decay: float = 1.0
    half_life: float = 2.0
    normalise: float = 0.75
    backward: float = 0.25
    limit: int = 20  # how many recent items a transition profile reads
    # The baseline: the last item only, or the last 3 items with half-life 1; without or with
    # 0.25 of the reverse direction.
    grid: list[dict[str, Any]] = Field(
        default_factory=lambda: [
            {"window": 1, "decay": 1.0, "limit": limit, "half_life": 1.0, "backward": back}
            for limit in (1, 3)
            for back in (0.0, 0.25)
        ]
    )

    def build(self, context: BuildContext) -> CandidateSource:
        return Transition(
            window=self.window, decay=self.decay, half_life=self.half_life, limit=self.limit,
            normalise=self.normalise, backward=self.backward,
        )  # fmt: skip


class TimedTransitionConfig(TransitionConfig):
    """Transitions that count only pairs at or before the user's time, decayed with age."""

    baseline: ClassVar[str | None] = None
    time_aware: ClassVar[bool] = True
    weight: float = 1.0
    tau_days: float = 100.0  # how far in time a pair still counts (e^-1 at tau)
    grid: list[dict[str, Any]] = Field(default_factory=list)

    def build(self, context: BuildContext) -> CandidateSource:
        return TimedTransition(
            tau_days=self.tau_days, window=self.window, decay=self.decay, half_life=self.half_life,
            limit=self.limit, normalise=self.normalise, backward=self.backward,
        )  # fmt: skip


class ItemKNNConfig(SourceConfig):
    """Cosine item-kNN over the user's recency-weighted profile."""

    baseline: ClassVar[str | None] = "item-knn"
    default: ClassVar[bool] = True
    explains: ClassVar[Explains] = "item-item"
    weight: float = 0.0
    k: int = 100  # neighbours kept per item (a sparse matrix of k entries per row)
    half_life: float = 10.0  # in items: weight of the i-th most recent item = 0.5**(i/h)
    limit: int = 50  # how many recent items enter the profile
    grid: list[dict[str, Any]] = Field(
        default_factory=lambda: [
            {"k": k, "half_life": h} for k in (50, 100, 200) for h in (1.0, 3.0, 10.0, 1000.0)
        ]
    )

    def build(self, context: BuildContext) -> CandidateSource:
        return ItemKNN(k=self.k, half_life=self.half_life, limit=self.limit)


class FactorModelConfig(SourceConfig):
    """What the implicit-feedback factor models share: users are folded in from their history,
    and both weigh 0.2 in the fusion."""

    default: ClassVar[bool] = True
    weight: float = 0.2
    factors: int = 64


class ALSConfig(FactorModelConfig):
    """Matrix factorisation by alternating least squares."""

    baseline: ClassVar[str | None] = "als"
    iterations: int = 15
    regularization: float = 0.05
    grid: list[dict[str, Any]] = Field(
        default_factory=lambda: [
            {"factors": f, "regularization": r} for f in (32, 64, 128) for r in (0.05, 1.0)
        ]
    )

    def build(self, context: BuildContext) -> CandidateSource:
        return ALS(self.factors, self.iterations, self.regularization, seed=context.seed)


class BPRConfig(FactorModelConfig):
    """Bayesian personalised ranking (pairwise, sampled negatives)."""

    baseline: ClassVar[str | None] = "bpr"
    iterations: int = 100
    learning_rate: float = 0.01
    grid: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"factors": f, "learning_rate": lr} for f in (32, 64) for lr in (0.01, 0.05)]
    )

    def build(self, context: BuildContext) -> CandidateSource:
        return BPR(self.factors, self.iterations, self.learning_rate, seed=context.seed)


class TimePopularityConfig(SourceConfig):
    """Popularity among interactions at or before the user's time, decayed with age."""

    default: ClassVar[bool] = True
    time_aware: ClassVar[bool] = True
    weight: float = 0.0
    tau_days: float = 100.0

    def build(self, context: BuildContext) -> CandidateSource:
        return TimePopularity(tau_days=self.tau_days)


class PopularityConfig(SourceConfig):
    """Items by how many training users have them (also every retriever's cold-start fallback)."""

    baseline: ClassVar[str | None] = "popularity"
    explains: ClassVar[Explains] = "most-watched"
    grid: list[dict[str, Any]] = Field(default_factory=lambda: [{}])

    def build(self, context: BuildContext) -> CandidateSource:
        return Popularity()


class ContentConfig(SourceConfig):
    """Text-embedding similarity between the user's profile and every item (the Chroma index)."""

    default: ClassVar[bool] = True
    needs_content: ClassVar[bool] = True
    explains: ClassVar[Explains] = "description"
    weight: float = 0.75
    half_life: float = 10.0  # in items: weight of the i-th most recent item = 0.5**(i/h)
    limit: int = 50  # how many recent items enter the profile

    def build(self, context: BuildContext) -> CandidateSource:
        if context.item_vectors is None:
            raise ValueError("the 'content' source needs item vectors from the content index")
        return ContentSimilarity(context.item_vectors, self.half_life, self.limit)


class SASRecConfig(SourceConfig):
    """The next-item transformer (fewrec/retrieval/sequential.py); trained weights are cached."""

    baseline: ClassVar[str | None] = "sasrec"
    default: ClassVar[bool] = True
    weight: float = 0.5
    dim: int = 64
    max_len: int = 50
    layers: int = 2
    heads: int = 1
    dropout: float = 0.2
    epochs: int = 32
    batch_size: int = 128
    learning_rate: float = 2e-3
    negatives: int = 1000
    seeds: list[int] = Field(default_factory=lambda: [0])
    # Training threads. One: the weights are then the same on a machine with any number of cores
    # (a float sum split over threads is another sum), and on a loaded machine two threads spin
    # on each other (measured here at load 5–7: 28 s an epoch on one thread, 60 s on two).
    threads: int = Field(default=1, ge=1)
    # Training stops after `epochs`, or earlier when the validation NDCG@10 (or, with
    # validation_users = 0, the training loss) has not beaten its best by min_delta (relative)
    # for `patience` epochs (0: never): rules on data, so the model is the same at any load.
    # Opt-in: a wall-clock budget in seconds (all seeds together); a run it cuts says so in its
    # notes, since the model then depends on the machine's speed and load.
    budget_s: float | None = None
    patience: int = 3
    min_delta: float = 1e-3
    # > 0: early stopping reads validation instead of the loss: this many users' last *training*
    # item is held out of training and their NDCG@10 measured after each epoch; the best epoch's
    # weights are kept. 0: the training loss, on any data. None (the default): the data decides,
    # 1,000 users where training windows are mostly short (batches by length, Amazon-like data),
    # as sequential.SHORT_WINDOW_VALIDATION_USERS says (docs/SCALE.md, "SASRec's training time"),
    # the loss elsewhere, chosen on the validation targets: fused NDCG@10 0.1235 on the loss
    # against 0.1196 at 1000 users (SASRec alone 0.0827 against 0.0724), from `fewrec eval
    # --split valid --stages retrieval --baselines none --history-cut '' --config configs/loo.toml`
    # with FEWREC_RETRIEVAL__SOURCES__SASREC__VALIDATION_USERS=0 and =1000.
    validation_users: int | None = Field(default=None, ge=0)
    # Above this many training interactions SASRec is skipped, with a note, unless a CUDA GPU
    # is present (an epoch on two CPU cores takes minutes there). None: no limit.
    max_interactions: int | None = 1_000_000
    grid: list[dict[str, Any]] = Field(default_factory=lambda: [{"epochs": e} for e in (16, 32)])

    def build(self, context: BuildContext) -> CandidateSource:
        from fewrec.retrieval.sequential import SASRec  # torch loads only when SASRec is used
        from fewrec.retrieval.shipped import seed_model_cache

        if context.model_dir is not None:  # the weights shipped for the bundled data, if they fit
            seed_model_cache(context.model_dir)

        return SASRec(
            dim=self.dim, max_len=self.max_len, layers=self.layers, heads=self.heads, dropout=self.dropout,
            epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
            negatives=self.negatives, seeds=tuple(self.seeds), threads=self.threads,
            cache_dir=context.model_dir, progress=context.progress, budget_s=self.budget_s,
            patience=self.patience, min_delta=self.min_delta, max_interactions=self.max_interactions,
            notify=context.notify, validation_users=self.validation_users,
        )  # fmt: skip
