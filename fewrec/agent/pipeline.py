"""`Pipeline`: the one place where Settings become components (candidate sources → fused
Retriever → LLM reranker + demonstration pool → Explainer), each configured by its own
settings section and built once, lazily, behind one lock.

The `Recommender` facade, `fewrec recommend`/`chat`/`eval`/`tune`/`bench` and `evaluate(...,
pipeline=...)` all take their parts from here. A new candidate source is one component config
registered in `fewrec/retrieval/registry.py` (docs/DESIGN.md, "Add a source"); a new reranker is
added in `make_reranker` below. Before anything is built, the settings are fitted to the
dataset (`fewrec.state`): what it lacks switches sources off, and its tuned fusion weights are
used unless the settings name some.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fewrec.config import RetrievalSettings, Settings
from fewrec.data import LeaveOneOutSplit, load_dataset
from fewrec.data.errors import FewrecError
from fewrec.data.split import SplitName
from fewrec.data.traits import has_titles
from fewrec.llm.base import LLMError
from fewrec.retrieval.base import Candidate, ScoringContext
from fewrec.retrieval.fusion import Retriever
from fewrec.retrieval.store import VectorStoreError
from fewrec.state import TunedStatus, apply_tuned, describe_weights, fit_to_data

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from fewrec.agent.conversation_prior import PriorMix, PriorScorer
    from fewrec.agent.explain import Explainer
    from fewrec.agent.query_mix import QueryMix
    from fewrec.agent.rerank import LLMReranker
    from fewrec.prompts.demos import DemonstrationPool
    from fewrec.retrieval.embeddings import Embedder
    from fewrec.retrieval.store import ContentIndex


def build_retriever(
    split: LeaveOneOutSplit,
    retrieval: RetrievalSettings,
    split_name: SplitName,
    item_vectors: np.ndarray | None = None,
    model_dir: Path | None = None,
    progress: bool = True,
    sources: list[str] | None = None,
) -> Retriever:
    """A fused Retriever over `retrieval`'s sources (or `sources`), fitted on what is known
    before the `split_name` targets. Without vectors the content source is left out."""
    return Retriever(
        split, retrieval, item_vectors, sources=sources, model_dir=model_dir, progress=progress
    ).fit(split_name)


def make_reranker(split: LeaveOneOutSplit, settings: Settings) -> LLMReranker:
    """The reranker `settings.rerank` describes, over the backend `settings.llm` names; raises
    LLMError (or OSError) when the model cannot load."""
    from fewrec.agent.rerank import LLMReranker
    from fewrec.llm import make_backend

    return LLMReranker(split, make_backend(settings), settings.rerank)


class Pipeline:
    """The components of one dataset under one Settings, built on first use and kept.

    >>> pipeline = Pipeline(settings, split, fit_on="test")
    >>> pipeline.retriever.candidates(history, 20)
    >>> pipeline.reranker  # None when the LLM cannot load; `llm_error` says why

    Which section configures what: `retrieval` the sources (one table each) and their fusion,
    `embedding` and the `chroma_*` fields the content index, `llm` the backend, `rerank` the
    reranker, its demonstrations (`k_shot`, `demo_history_items`) and the explanations' prompt.
    Safe to share between threads: parts are built under one lock and are read-only after."""

    def __init__(
        self,
        settings: Settings | None = None,
        split: LeaveOneOutSplit | None = None,
        *,
        fit_on: SplitName = "all",
        progress: bool = False,
        say: Callable[[str], None] | None = None,
        use_content: bool = True,
        item_vectors: np.ndarray | None = None,
    ) -> None:
        """`fit_on`: the retriever learns from what came before these targets ("all": from
        everything). `say` receives each note of fitting the settings to the data (default: a
        logged warning). `use_content=False` builds no content index (and no content source);
        `item_vectors` (aligned to the split's items) stand in for the index's vectors."""
        # A copy: what a dataset lacks (titles, real times) and its tuned weights adjust it.
        self.settings = (settings or Settings()).model_copy(deep=True)
        self.fit_on: SplitName = fit_on
        self.progress = progress
        self.use_content = use_content
        self.notes: list[str] = []  # one line per setting changed for this dataset
        self._say = say
        self._tuned: TunedStatus | None = None
        self._lock = threading.RLock()
        self._split = split
        self._vectors = item_vectors
        self._titled: bool | None = None
        self._embedder: Embedder | None = None
        self._content: ContentIndex | None = None
        self._retriever: Retriever | None = None
        self._reranker: LLMReranker | None = None
        self._pool: DemonstrationPool | None = None
        self._llm_error: str | None = None
        self._explainer: Explainer | None = None
        self._query_mix: QueryMix | None = None
        self._prior: PriorMix | bool | None = False  # False: not looked for yet
        if split is not None:
            self._fit_settings(split)

    def _fit_settings(self, split: LeaveOneOutSplit) -> None:
        self.notes += fit_to_data(self.settings, split, self._say)
        self._tuned = apply_tuned(self.settings, self._note)

    def _note(self, line: str) -> None:
        """A line that explains the figures: said now and kept in the notes."""
        self.notes.append(line)
        (self._say or log.warning)(line)

    # ------------------------------------------------------------------ data
    @property
    def split(self) -> LeaveOneOutSplit:
        """The dataset the settings name, loaded (and the settings fitted to it) on first use."""
        with self._lock:
            if self._split is None:
                s = self.settings
                split = load_dataset(
                    s.dataset, s.dataset_format, split=s.split, cache_dir=s.cache_dir, **s.loader_options
                )
                self._fit_settings(split)
                self._split = split
            return self._split

    @property
    def tuned_status(self) -> TunedStatus:
        """'tuned' (this dataset's tuned weights are used), 'configured' (the settings name
        weights) or 'none' (never tuned: the defaults); see `fewrec.state.apply_tuned`."""
        _ = self.split
        assert self._tuned is not None
        return self._tuned

    def apply_tuned(self) -> None:
        """Use the tuned weights `fewrec tune` has just kept for this dataset."""
        _ = self.split
        self._tuned = apply_tuned(self.settings, self._note)

    @property
    def weights_from(self) -> str:
        """Where the fusion weights came from, and what they are (one line for a run's notes)."""
        return describe_weights(self.settings, self.tuned_status)

    @property
    def titled(self) -> bool:
        """Do the items carry real titles (`fewrec.data.traits.has_titles`)?"""
        if self._titled is None:
            self._titled = has_titles(self.split.catalog)
        return self._titled

    # ------------------------------------------------------------------ content
    @property
    def embedder(self) -> Embedder:
        """The embedding model (`settings.embedding`), one for the index and the demonstrations."""
        with self._lock:
            if self._embedder is None:
                if self._content is not None:  # an index handed in (tests share one) brings its own
                    self._embedder = self._content.embedder
                else:
                    from fewrec.retrieval.embeddings import make_embedder

                    self._embedder = make_embedder(self.settings.embedding)
            return self._embedder

    @property
    def content(self) -> ContentIndex | None:
        """The dataset's Chroma content index, built or updated on first use; None when the
        items have no titles (nothing worth embedding) or `use_content` is off. It serves free-
        text queries whether or not a retrieval source reads it."""
        with self._lock:
            if self._content is None and self.use_content and self.titled:
                from fewrec.retrieval.store import ContentIndex

                index = ContentIndex.from_settings(self.settings, embedder=self.embedder)
                index.build(self.split.catalog, progress=self.progress)
                self._content = index
            return self._content

    @property
    def item_vectors(self) -> np.ndarray | None:
        """The content vectors in the split's item order, when an active source needs them (or
        the vectors given); None otherwise."""
        with self._lock:
            if self._vectors is None and self.settings.retrieval.needs_content():
                from fewrec.retrieval.content import aligned_vectors

                content = self.content
                if content is not None:
                    self._vectors = aligned_vectors(content, self.split.item_ids)
            return self._vectors

    # ------------------------------------------------------------------ retrieval
    @property
    def retriever(self) -> Retriever:
        """The fused retriever fitted on `fit_on`."""
        with self._lock:
            if self._retriever is None:
                self._retriever = self._build(self.fit_on, self.split, self.settings.retrieval, None)
            return self._retriever

    def retriever_for(
        self,
        split_name: SplitName,
        split: LeaveOneOutSplit | None = None,
        retrieval: RetrievalSettings | None = None,
        sources: list[str] | None = None,
    ) -> Retriever:
        """A fused retriever fitted on `split_name`: `retriever` itself when that is `fit_on`
        and nothing is overridden, else a new one (not kept: a caller decides how long a fitted
        model lives). `split` may be another split over the same items (e.g. a shifted one)."""
        if split_name == self.fit_on and split is None and retrieval is None and sources is None:
            return self.retriever
        split = split or self.split
        if split.n_items != self.split.n_items:
            raise FewrecError("retriever_for: the split must hold the pipeline's items (its vectors)")
        return self._build(split_name, split, retrieval or self.settings.retrieval, sources)

    def _build(
        self, split_name: SplitName, split: LeaveOneOutSplit, retrieval: RetrievalSettings,
        sources: list[str] | None,
    ) -> Retriever:  # fmt: skip
        vectors = self.item_vectors if retrieval.needs_content(sources or None) else None
        return build_retriever(
            split, retrieval, split_name, vectors, self.settings.model_dir, self.progress, sources
        )

    # ------------------------------------------------------------------ ranking stages
    def query_content(self, text: str, k: int) -> list[tuple[str, float]]:
        """Query the content index; a server that went away becomes a VectorStoreError."""
        content = self.content  # loaded once under the lock; queries themselves run in parallel
        if content is None:
            raise VectorStoreError(f"{self.split.name} has no content index: its items have no titles")
        try:
            return content.query_text(text, k)
        except FewrecError:
            raise
        except Exception as exc:  # chromadb raises many types for a lost server or a damaged store
            s = self.settings
            where = f"{s.chroma_host}:{s.chroma_port}" if s.chroma_host else str(s.chroma_dir)
            raise VectorStoreError(
                f"the Chroma index at {where} failed: {type(exc).__name__}: {exc}"
            ) from exc

    @property
    def query_mix(self) -> QueryMix:
        """The stage that mixes a request's words (the content index) into the ranking."""
        with self._lock:
            if self._query_mix is None:
                from fewrec.agent.query_mix import QueryMix

                self._query_mix = QueryMix(self.split, self.retriever, self.query_content)
            return self._query_mix

    @property
    def conversation_prior(self) -> PriorMix | None:
        """The conversation prior stage (`chat.prior_*`, the bundled counts unless
        `chat.prior_file`); None without counts for this catalog."""
        with self._lock:
            if self._prior is False:
                from fewrec.agent.conversation_prior import prior_mix

                self._prior = prior_mix(self.split, self.settings.chat)
            return self._prior or None

    def prior_with(self, scorer: PriorScorer) -> PriorMix:
        """The prior stage over other counts (a cross-validation fold's), same settings."""
        from fewrec.agent.conversation_prior import PriorMix

        return PriorMix(self.split, scorer, self.settings.chat)

    def rank(
        self, history: np.ndarray, depth: int, context: ScoringContext, allowed: np.ndarray | None,
        notes: list[str], *, query: str | None = None, query_weight: float = 0.0,
        sources: Collection[str] | None = None, prior: PriorMix | None = None,
        mentioned: list[int] | None = None, known: int = 0,
    ) -> list[Candidate]:  # fmt: skip
        """The candidates of one request before the LLM: the fused sources (only `sources`,
        when given), mixed with the words (`query_mix`) and, when `mentioned` is given (the
        films of a conversation, item indices), with the `prior` stage, weighted for a person
        of whom `known` films are known. Notes of what was skipped go to `notes`."""
        scores, weight = None, 0.0
        if prior is not None and mentioned is not None:
            weight = prior.weight(known)
            scores = prior.scores(mentioned)
        use_prior = prior is not None and scores is not None and weight > 0 and bool(scores.any())
        # With a prior, a deeper ranking: the prior reorders it (and brings in items of its own).
        pool = max(depth, prior.config.pool) if use_prior and prior is not None else depth
        found = self.query_mix.candidates(
            history, pool, context, allowed, query, query_weight, notes, sources
        )
        if use_prior and prior is not None and scores is not None:
            found = prior.mix(found, history, depth, allowed, scores, weight)
        return found

    # ------------------------------------------------------------------ LLM
    @property
    def reranker(self) -> LLMReranker | None:
        """The LLM reranker; None when the LLM cannot load, with the reason in `llm_error`."""
        with self._lock:
            if self._reranker is None and self._llm_error is None:
                try:
                    self._reranker = make_reranker(self.split, self.settings)
                except (LLMError, FewrecError, OSError) as exc:
                    self._llm_error = f"LLM unavailable, retrieval order kept: {exc}"
            return self._reranker

    def llm_parts(self) -> tuple[LLMReranker, DemonstrationPool | None] | None:
        """The reranker and, when `rerank.k_shot` > 0, the demonstration pool; None when the
        LLM or the pool's store cannot load, with the reason in `llm_error`."""
        with self._lock:
            reranker = self.reranker
            if reranker is None:
                return None
            if self.settings.rerank.k_shot <= 0:  # zero-shot prompts need no demonstrations
                return reranker, None
            try:
                return reranker, self.demo_pool
            except (FewrecError, OSError) as exc:  # the prompts need it: no LLM step then
                self._reranker, self._llm_error = None, f"LLM unavailable, retrieval order kept: {exc}"
                return None

    @property
    def llm_error(self) -> str | None:
        """Why the LLM parts are unavailable (after a try), else None."""
        return self._llm_error

    @property
    def demo_pool(self) -> DemonstrationPool:
        """Other users' (history → next item) pairs for few-shot prompts, built on first use
        whatever `rerank.k_shot` says (an evaluation may sweep it). Without titles they are
        chosen by shared items, in memory: no Chroma, no embedder."""
        with self._lock:
            if self._pool is None:
                from fewrec.prompts.demos import DemonstrationPool

                client, embedder = None, None
                if self.titled:
                    from fewrec.retrieval.store import connect

                    client = self._content.client if self._content is not None else connect(self.settings)
                    embedder = self.embedder
                self._pool = DemonstrationPool(
                    self.split, client, embedder, self.settings.rerank.demo_history_items
                )
            return self._pool

    @property
    def explainer(self) -> Explainer:
        """Grounded explanations over `retriever`; written by the LLM when `llm.instruct`."""
        with self._lock:
            if self._explainer is None:
                from fewrec.agent.explain import Explainer

                backend = None
                if self.settings.llm.instruct and (parts := self.llm_parts()) is not None:
                    backend = parts[0].backend
                self._explainer = Explainer(
                    self.split, self.retriever, backend, instruct=self.settings.llm.instruct,
                    version=self.settings.rerank.prompt_version,
                )  # fmt: skip
            return self._explainer

    def warm_up(self, llm: bool = False) -> Pipeline:
        """Build everything now (the first request would otherwise pay for it)."""
        _ = self.retriever, self.explainer
        content = self.content if self.settings.retrieval.needs_content() else None
        if content is not None:
            content.embedder.embed(["warm up"])  # loads the embedding model for queries
        if llm:
            self.llm_parts()
        return self
