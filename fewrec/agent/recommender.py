"""`Recommender`: the one facade over retrieval → LLM rerank → grounded explanations.

Everything user-facing (the chat agent, the LangChain tools, the Gradio page, `fewrec
recommend`) goes through this class. Its parts come from a `Pipeline` (fewrec/agent/pipeline.py),
which builds them once, lazily, behind a lock, so one instance serves many threads: the
retriever and the content vectors are read-only after loading, and the LLM backend serialises
its own calls.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, Field, field_validator

from fewrec.agent.pipeline import Pipeline
from fewrec.config import Settings
from fewrec.data import LeaveOneOutSplit
from fewrec.data.errors import FewrecError, UnknownTitleError
from fewrec.data.models import Item, ItemId
from fewrec.data.split import SplitName
from fewrec.prompts.templates import display_title
from fewrec.retrieval.base import Candidate, ScoringContext
from fewrec.retrieval.fusion import Retriever
from fewrec.retrieval.store import VectorStoreError

if TYPE_CHECKING:
    from fewrec.agent.explain import Explainer
    from fewrec.agent.rerank import LLMReranker
    from fewrec.prompts.demos import DemonstrationPool
    from fewrec.retrieval.store import ContentIndex

QUERY_POOL = 300  # items the content index returns for a free-text query before fusion
PRIOR_POOL = 200  # items a prior may bring in, and the depth of the ranking it reorders
PRIOR_SAID = 50  # an explanation cites the prior for items among its first this many
MAX_K = 100


class Filters(BaseModel):
    """Constraints on what may be recommended. Genres must all match (or any one of them, with
    `any_genre`: "everything from sci-fi to documentaries"); years are inclusive."""

    genres: list[str] = Field(default_factory=list)
    any_genre: bool = False
    exclude_genres: list[str] = Field(default_factory=list)
    year_min: int | None = None
    year_max: int | None = None

    def is_empty(self) -> bool:
        return not (self.genres or self.exclude_genres or self.year_min or self.year_max)


class Recommendation(BaseModel):
    """One recommended item with the evidence behind it."""

    item_id: ItemId
    title: str
    year: int | None = None
    genres: list[str] = Field(default_factory=list)
    score: float
    rank: int
    sources: dict[str, int] = Field(default_factory=dict)  # source name -> the item's rank in it
    explanation: str | None = None
    anchors: list[str] = Field(default_factory=list)  # history titles the explanation cites
    fallback: str | None = None  # why a stage was skipped (new user, LLM unavailable, …)

    @field_validator("title")
    @classmethod
    def _single_line(cls, value: str) -> str:
        return " ".join(value.split())


ItemRef = ItemId | str


def describe_filters(filters: Filters) -> str:
    """'Comedy + Sci-Fi, no Horror, 1990–1999' (empty when there is no constraint)."""
    parts = []
    if filters.genres:
        parts.append((" or " if filters.any_genre else " + ").join(filters.genres))
    if filters.exclude_genres:
        parts.append("no " + ", no ".join(filters.exclude_genres))
    lo, hi = filters.year_min, filters.year_max
    if lo is not None and hi is not None:
        parts.append(f"{lo}–{hi}" if lo != hi else str(lo))
    elif lo is not None:
        parts.append(f"from {lo}")
    elif hi is not None:
        parts.append(f"up to {hi}")
    return ", ".join(parts)


class Recommender:
    """`Recommender.from_settings()` (or `Recommender()`) on the bundled data and embedded model.

    >>> rec = Recommender()
    >>> rec.recommend(user_id=42, k=5)
    >>> rec.recommend(history=["Toy Story", "Up"], query="something funny", k=5)
    """

    def __init__(
        self, settings: Settings | None = None, split: LeaveOneOutSplit | None = None,
        fit_on: SplitName | None = None, *, pipeline: Pipeline | None = None,
    ) -> None:  # fmt: skip
        """`fit_on="test"` learns only from what came before each user's held-out item: the
        evaluations (`fewrec eval-chat`) replay requests through this facade that way.
        `pipeline`: serve from one already built (the CLI's), instead of settings and split."""
        if pipeline is None:
            pipeline = Pipeline(settings, split, fit_on=fit_on or "all")
        elif settings is not None or split is not None or fit_on not in (None, pipeline.fit_on):
            raise ValueError("give a Recommender settings and a split, or a pipeline, not both")
        self.pipeline = pipeline

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Recommender:
        return cls(settings)

    # ------------------------------------------------------------------ the pipeline's parts
    @property
    def settings(self) -> Settings:
        """The pipeline's settings (fitted to the dataset once it is loaded)."""
        return self.pipeline.settings

    @property
    def split(self) -> LeaveOneOutSplit:
        return self.pipeline.split

    @property
    def fit_on(self) -> SplitName:
        return self.pipeline.fit_on

    @property
    def notes(self) -> list[str]:
        """One line per setting changed for this dataset."""
        return self.pipeline.notes

    @property
    def content(self) -> ContentIndex | None:
        """The Chroma content index (None for items without titles)."""
        return self.pipeline.content

    @property
    def retriever(self) -> Retriever:
        return self.pipeline.retriever

    @property
    def explainer(self) -> Explainer:
        return self.pipeline.explainer

    def _llm_parts(self) -> tuple[LLMReranker, DemonstrationPool | None] | None:
        return self.pipeline.llm_parts()

    def warm_up(self, llm: bool = False) -> Recommender:
        """Load everything now (the first call would otherwise pay for it)."""
        self.pipeline.warm_up(llm)
        return self

    # ------------------------------------------------------------------ lookups
    @cached_property
    def _genre_sets(self) -> list[frozenset[str]]:
        return [frozenset(g.lower() for g in genres) for genres in self.split.catalog.frame["genres"]]

    @cached_property
    def genres(self) -> list[str]:
        """Every genre of the catalog, as spelled there."""
        return sorted({g for genres in self.split.catalog.frame["genres"] for g in genres})

    def resolve(self, ref: ItemRef) -> int:
        """Item index of an item id or a title ('Toy Story', 'Matrix, The (1999)'); text is read
        as a title first ('300' is the film), as an id only when no title matches.

        Among several items with the title, the most popular one; an unknown title raises
        UnknownTitleError listing close matches."""
        split = self.split
        if not isinstance(ref, str):
            return split.item_index(ref)
        matches, close = split.catalog.match_title(ref)
        if not matches and split.has_item(ref):  # text that is an id and no title ("42")
            return split.item_index(ref)
        if not matches:
            raise UnknownTitleError(ref, close)
        counts = self.retriever.popularity.counts
        return max((split.item_index(m) for m in matches), key=lambda i: counts[i])

    def item(self, ref: ItemRef) -> Item:
        return self.split.catalog.get(self.split.item_ids[self.resolve(ref)].item())

    def user_history(self, user_id: object, n: int | None = None) -> list[Item]:
        """A known user's items, most recent last (UnknownIdError for an unknown id)."""
        items = self.split.history(self.split.user_index(user_id), "all", n)
        return [self.split.catalog.get(self.split.item_ids[i].item()) for i in items]

    def allowed_mask(self, filters: Filters | None) -> np.ndarray | None:
        if filters is None or filters.is_empty():
            return None
        frame = self.split.catalog.frame
        allowed = np.ones(len(frame), dtype=bool)
        wanted = {g.lower() for g in filters.genres}
        unwanted = {g.lower() for g in filters.exclude_genres}
        if wanted or unwanted:
            fits = (lambda g: bool(wanted & g)) if filters.any_genre and wanted else wanted.issubset
            allowed &= np.array([fits(g) and not (unwanted & g) for g in self._genre_sets])
        years = frame["year"].to_numpy(dtype=np.float64, na_value=np.nan)
        if filters.year_min is not None:
            allowed &= years >= filters.year_min
        if filters.year_max is not None:
            allowed &= years <= filters.year_max
        return allowed

    # ------------------------------------------------------------------ when a request is scored
    @cached_property
    def now(self) -> int:
        """The latest moment the fitted data knows (Unix s): a new user is scored as of it, as
        the evaluations score each user as of their own time."""
        users = np.arange(self.split.n_users)
        return int(self.split.reference_times(users, self.fit_on).max(initial=0))

    def scoring_context(self, user: int | None = None, as_of: int | None = None) -> ScoringContext:
        """The one place that decides when a request is scored: as of `as_of` when given (an
        evaluation replaying a past request); else a known user (training index) as of their
        reference time in the fitted split, and a new user as of `now`. Without a time,
        `timepop` would fall back to plain popularity and `timed_transition` would count every
        pair undecayed, unlike what the evaluations measured."""
        users = np.array([-1 if user is None else user])
        if as_of is not None:
            return ScoringContext(users=users, times=np.array([int(as_of)], dtype=np.int64))
        if user is not None:
            return self.retriever.context_for(users, self.fit_on)
        return ScoringContext(users=users, times=np.array([self.now], dtype=np.int64))

    # ------------------------------------------------------------------ main calls
    def recommend(
        self,
        user_id: object | None = None,
        history: list[ItemRef] | None = None,
        k: int = 10,
        query: str | None = None,
        filters: Filters | None = None,
        explain: bool = True,
        exclude: list[ItemRef] | None = None,
        rerank: bool | None = None,
        query_weight: float | None = None,
        as_of: int | None = None,
        prior: np.ndarray | None = None,
        prior_weight: float = 0.0,
    ) -> list[Recommendation]:
        """Ranked items for a user id and/or a list of liked items (ids or titles).

        `query` steers by meaning through the content index, with `query_weight` (0–1, default
        `chat.query_weight`) against the taste of the history; `filters` restrict genre and
        year; `exclude` removes items (e.g. already shown or disliked). `rerank=None` runs the
        LLM when Settings enable it with a weight above 0 (alpha, chosen on validation).
        `as_of` (Unix seconds) scores as of that moment: time-aware sources count nothing later
        (evaluations replay past requests with it; None is now). `prior` (a score per item
        index, e.g. what clerks suggested in conversations like this one) is mixed in with
        `prior_weight` (0–1); the items it scores join the candidates."""
        if not 1 <= k <= MAX_K:
            raise FewrecError(f"k must be between 1 and {MAX_K}, got {k}")
        split = self.split
        notes: list[str] = []
        items: list[int] = []
        user: int | None = None
        if user_id is not None and str(user_id).strip():
            if split.has_user(user_id):
                user = split.user_index(user_id)
                items = split.history(user, self.fit_on).tolist()
            else:
                notes.append(f"user {str(user_id)[:40]!r} is not in the dataset: treated as a new user")
        for ref in history or []:
            index = self.resolve(ref)
            if index in items:
                items.remove(index)
            items.append(index)  # liked now: the most recent item of the profile
        history_arr = np.array(items, dtype=np.int64)
        context = self.scoring_context(user, as_of)
        if query_weight is None:
            query_weight = self.settings.chat.query_weight
        if not 0.0 <= query_weight <= 1.0:
            raise FewrecError(f"query_weight must be between 0 and 1, got {query_weight}")
        allowed = self.allowed_mask(filters)
        for ref in exclude or []:
            if allowed is None:
                allowed = np.ones(split.n_items, dtype=bool)
            allowed[self.resolve(ref)] = False
        if allowed is not None and not allowed.any():
            return []
        if not len(history_arr):
            notes.append("no history: ranked by " + ("the query" if query else "popularity"))
        do_rerank = (
            rerank if rerank is not None else self.settings.rerank.enabled and self.settings.rerank.alpha > 0
        )
        depth = max(k, self.settings.rerank.candidates) if do_rerank else k
        use_prior = prior is not None and prior_weight > 0 and bool(prior.any())
        # With a prior, a deeper ranking: the prior reorders it (and brings in items of its own).
        pool = max(depth, PRIOR_POOL) if use_prior else depth
        candidates = self._candidates(history_arr, pool, context, allowed, query, query_weight, notes)
        if use_prior:
            candidates = self._mix_prior(candidates, history_arr, depth, allowed, prior, prior_weight)
        if do_rerank and candidates:
            candidates = self._rerank(history_arr, candidates, context, notes)
        candidates = candidates[:k]
        fallback = "; ".join(notes) or None
        out = [self._recommendation(c, fallback) for c in candidates]
        if explain:
            query_counts = bool((query or "").strip()) and (query_weight > 0 or not len(history_arr))
            for rec, cand in zip(out, candidates, strict=True):
                self._explain_into(rec, cand, history_arr, filters, query_counts)
        return out

    def _explain_into(
        self, rec: Recommendation, candidate: Candidate, history: np.ndarray, filters: Filters | None,
        query_counts: bool,
    ) -> None:  # fmt: skip
        """The grounded explanation: the liked titles that led to the item when a source tied
        it to them; "matches your description" only when a query counted in the score;
        "most watched" only when popularity ranked it. Filters are said as such."""
        evidence = {
            name: r for name, r in candidate.source_ranks.items() if name not in ("query", "conversations")
        }
        # The conversation prior only counts when it placed the item among its first suggestions.
        talked = candidate.source_ranks.get("conversations", PRIOR_POOL + 1) <= PRIOR_SAID
        title = display_title(rec.title)
        asked = describe_filters(filters) if filters is not None else ""
        fits = f" and fits what you asked for ({asked})" if asked else ""
        described = query_counts and "query" in candidate.source_ranks
        if not len(history):
            what = "matches your description" if described else "is one of the most watched films here"
            if talked and not described:
                what = "is a film people often suggest in conversations like this one"
            rec.explanation = f"*{title}* {what}{fits}."
            return
        if evidence:
            explanation = self.explainer.explain(
                history, candidate.model_copy(update={"source_ranks": evidence})
            )
            rec.explanation, rec.anchors = explanation.text, explanation.anchors
            if described:
                rec.explanation += " It also matches your description."
        elif described:
            rec.explanation = f"*{title}* matches your description{fits}."
        elif talked:
            rec.explanation = (
                f"*{title}* is often suggested to people who talk about the films you named{fits}."
            )
        elif asked:
            rec.explanation = f"*{title}* fits what you asked for ({asked}), and is widely watched."
        else:
            rec.explanation = f"*{title}* is widely watched."

    def _query_content(self, text: str, k: int) -> list[tuple[str, float]]:
        """Query the content index; a server that went away becomes a VectorStoreError."""
        content = self.content  # loaded once under the lock; queries themselves run in parallel
        if content is None:
            raise VectorStoreError(f"{self.split.name} has no content index: its items have no titles")
        try:
            return content.query_text(text, k)
        except FewrecError:
            raise
        except Exception as exc:  # chromadb raises many types for a lost server or a damaged store
            where = (
                f"{self.settings.chroma_host}:{self.settings.chroma_port}"
                if self.settings.chroma_host
                else str(self.settings.chroma_dir)
            )
            raise VectorStoreError(
                f"the Chroma index at {where} failed: {type(exc).__name__}: {exc}"
            ) from exc

    def _candidates(
        self, history: np.ndarray, depth: int, context: ScoringContext, allowed: np.ndarray | None,
        query: str | None, query_weight: float, notes: list[str],
    ) -> list[Candidate]:  # fmt: skip
        retriever = self.retriever
        query = (query or "").strip()
        if not query:
            return retriever.candidates(history, depth, context, allowed)
        try:
            hits = self._query_content(query, QUERY_POOL)
        except VectorStoreError as exc:  # the index is an aid here: the user's taste still ranks
            notes.append(f"the content index is unavailable, your words were not used ({exc})")
            return retriever.candidates(history, depth, context, allowed)
        similarity = np.full(self.split.n_items, np.nan)
        for stored_id, value in hits:
            if self.split.has_item(stored_id):
                similarity[self.split.item_index(stored_id)] = value
        pool = np.isfinite(similarity)
        if allowed is not None:
            pool &= allowed
        if not pool.any():
            return retriever.candidates(history, depth, context, allowed)

        def unit(values: np.ndarray) -> np.ndarray:
            spread = values.max() - values.min() if len(values) else 0.0
            return (values - values.min()) / spread if spread > 0 else np.zeros_like(values)

        if not len(history):  # nothing known of the person's taste: the words decide
            found = retriever.candidates(history, QUERY_POOL, context, pool)
            sims = np.array([similarity[self.split.item_index(c.item_id)] for c in found])
            final = unit(sims) + 0.01 * unit(np.array([c.score for c in found]))
        else:
            # Taste proposes, and so do the words: the top of the taste ranking and the items
            # the query found, mixed by `query_weight` (chosen on `fewrec eval-chat`). An item
            # only the query found ranks below the taste list on taste; weight 0 is the taste
            # ranking itself, so words that say nothing about taste cannot cost anything.
            found = retriever.candidates(history, max(QUERY_POOL, depth), context, allowed)
            listed = {self.split.item_index(c.item_id) for c in found} | set(history.tolist())
            floor = min((c.score for c in found), default=0.0)
            for item in np.flatnonzero(pool):
                if int(item) not in listed:
                    item_id = self.split.item_ids[item].item()
                    title = self.split.catalog.title(item_id)
                    found.append(Candidate(item_id=item_id, title=title, score=floor, rank=len(found) + 1))
            sims = np.array([similarity[self.split.item_index(c.item_id)] for c in found])
            sims = np.where(np.isfinite(sims), sims, np.nanmin(sims) if np.isfinite(sims).any() else 0.0)
            final = query_weight * unit(sims) + (1.0 - query_weight) * unit(
                np.array([c.score for c in found])
            )
        order = np.argsort(-final, kind="stable")[:depth]
        out = []
        for rank, i in enumerate(order, start=1):
            sources, ranks = dict(found[i].sources), dict(found[i].source_ranks)
            item = self.split.item_index(found[i].item_id)
            if np.isfinite(similarity[item]):  # the query found it
                sources["query"] = float(similarity[item])
                ranks["query"] = int(np.sum(similarity[pool] > similarity[item])) + 1
            update = {"rank": rank, "score": float(final[i]), "sources": sources, "source_ranks": ranks}
            out.append(found[i].model_copy(update=update))
        return out

    def _mix_prior(
        self, candidates: list[Candidate], history: np.ndarray, depth: int, allowed: np.ndarray | None,
        prior: np.ndarray, weight: float,
    ) -> list[Candidate]:  # fmt: skip
        """The ranking so far and a prior, mixed by `weight` on scores scaled to 0–1. Items
        only the prior scores join below the ranking's last on its side, and only where
        allowed (filters, exclusions) and not in the history."""
        found = list(candidates)
        listed = {self.split.item_index(c.item_id) for c in found} | set(history.tolist())
        scored = np.flatnonzero(prior > 0)
        if allowed is not None:
            scored = scored[allowed[scored]]
        for item in scored[np.argsort(-prior[scored], kind="stable")][:PRIOR_POOL]:
            if int(item) not in listed:
                item_id = self.split.item_ids[item].item()
                title = self.split.catalog.title(item_id)
                found.append(Candidate(item_id=item_id, title=title, score=0.0, rank=len(found) + 1))
        if not found:  # filters and exclusions leave nothing on either side
            return []
        # The ranking's order, not its raw scores: fused scores of different requests (with or
        # without a query) are on different scales. Items only the prior found get 0 here.
        taste_unit = np.zeros(len(found))
        taste_unit[: len(candidates)] = 1.0 - np.arange(len(candidates)) / max(len(candidates), 1)
        values = np.array([prior[self.split.item_index(c.item_id)] for c in found])
        top = values.max()
        final = (1.0 - weight) * taste_unit + weight * (values / top if top > 0 else values)
        order = np.argsort(-final, kind="stable")[:depth]
        out = []
        for rank, i in enumerate(order, start=1):
            sources, ranks = dict(found[i].sources), dict(found[i].source_ranks)
            if values[i] > 0:
                sources["conversations"] = float(values[i])
                ranks["conversations"] = int(np.sum(values > values[i])) + 1
            update = {"rank": rank, "score": float(final[i]), "sources": sources, "source_ranks": ranks}
            out.append(found[i].model_copy(update=update))
        return out

    def _rerank(
        self, history: np.ndarray, candidates: list[Candidate], context: ScoringContext, notes: list[str]
    ) -> list[Candidate]:
        from fewrec.agent.rerank import fuse

        if not len(history):
            notes.append("LLM rerank skipped: no history to prompt with")
            return candidates
        parts = self._llm_parts()
        if parts is None:
            notes.append(self.pipeline.llm_error or "LLM unavailable")
            return candidates
        reranker, pool = parts
        user = int(context.users[0]) if context.users is not None else -1
        cutoff = int(context.times[0]) if context.times is not None else 2**62
        try:
            demos = (
                []
                if pool is None
                else pool.select_many([history], [user], [cutoff], self.settings.rerank.k_shot)[0]
            )
        except Exception as exc:  # the demonstration store is an aid: zero-shot without it
            notes.append(f"demonstrations unavailable ({type(exc).__name__}), zero-shot prompt")
            demos = []
        result = reranker.score(history, [self.split.item_index(c.item_id) for c in candidates], demos)
        if result.fallback:
            notes.append(result.fallback)
            return candidates
        final = fuse(
            np.array(result.scores), np.array([c.score for c in candidates]), self.settings.rerank.alpha
        )
        order = np.argsort(-final, kind="stable")
        return [
            candidates[i].model_copy(update={"rank": rank, "score": float(final[i])})
            for rank, i in enumerate(order, start=1)
        ]

    def _recommendation(self, candidate: Candidate, fallback: str | None) -> Recommendation:
        item = self.split.catalog.get(candidate.item_id)
        return Recommendation(
            item_id=item.item_id, title=item.title, year=item.year, genres=item.genres,
            score=candidate.score, rank=candidate.rank, sources=dict(candidate.source_ranks),
            fallback=fallback,
        )  # fmt: skip

    def similar_items(
        self, item: ItemRef, k: int = 10, filters: Filters | None = None, as_of: int | None = None
    ) -> list[Recommendation]:
        """Items most tied to one item: what the sources propose after a history of just it,
        scored as a new user's request is (`scoring_context`)."""
        if not 1 <= k <= MAX_K:
            raise FewrecError(f"k must be between 1 and {MAX_K}, got {k}")
        index = self.resolve(item)
        context = self.scoring_context(None, as_of)
        found = self.retriever.candidates(np.array([index]), k, context, self.allowed_mask(filters))
        return [self._recommendation(c, None) for c in found]

    def search(self, text: str, k: int = 10, filters: Filters | None = None) -> list[Recommendation]:
        """Items whose description matches the text by meaning (content index), filtered."""
        if not 1 <= k <= MAX_K:
            raise FewrecError(f"k must be between 1 and {MAX_K}, got {k}")
        allowed = self.allowed_mask(filters)
        hits = self._query_content(text, QUERY_POOL if allowed is not None else k)
        out: list[Recommendation] = []
        for stored_id, similarity in hits:
            if not self.split.has_item(stored_id):
                continue
            index = self.split.item_index(stored_id)
            if allowed is not None and not allowed[index]:
                continue
            item = self.split.catalog.get(self.split.item_ids[index].item())
            out.append(
                Recommendation(
                    item_id=item.item_id,
                    title=item.title,
                    year=item.year,
                    genres=item.genres,
                    score=similarity,
                    rank=len(out) + 1,
                    sources={"query": len(out) + 1},
                )
            )
            if len(out) == k:
                break
        return out

    def explain(
        self, item: ItemRef, user_id: object | None = None, history: list[ItemRef] | None = None
    ) -> str:
        """Why `item` suits a user (or a list of liked items), grounded in that history."""
        index = self.resolve(item)
        items: list[int] = []
        user = None if user_id is None else self.split.user_index(user_id)
        if user is not None:
            items = self.split.history(user, self.fit_on).tolist()
        items += [self.resolve(ref) for ref in history or []]
        history_arr = np.array(items, dtype=np.int64)
        only = np.zeros(self.split.n_items, dtype=bool)
        only[index] = True  # score everything (the evidence needs ranks), keep just this item
        scored = self.retriever.candidates(history_arr, 1, self.scoring_context(user), only)
        candidate = scored[0] if scored else None
        if candidate is None:  # already in the history
            return (
                f"*{self.split.catalog.title(self.split.item_ids[index].item())}* is already in this history."
            )
        return self.explainer.explain(history_arr, candidate).text
