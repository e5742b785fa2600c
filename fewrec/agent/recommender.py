"""`Recommender`: the one facade over retrieval → LLM rerank → grounded explanations.

Everything user-facing (the chat agent, the LangChain tools, the Gradio page, `fewrec
recommend`) goes through this class. Its parts come from a `Pipeline` (fewrec/agent/pipeline.py),
which builds them once, lazily, behind a lock, so one instance serves many threads: the
retriever and the content vectors are read-only after loading, and the LLM backend serialises
its own calls.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field, field_validator

from fewrec.agent.conversation_prior import PRIOR_SOURCE
from fewrec.agent.pipeline import Pipeline
from fewrec.agent.query_mix import QUERY_SOURCE
from fewrec.agent.request import Filters, ItemRef, RecRequest, check_genres, describe_filters
from fewrec.config import Settings
from fewrec.data import LeaveOneOutSplit
from fewrec.data.errors import FewrecError, UnknownTitleError
from fewrec.data.models import Item, ItemId
from fewrec.data.split import SplitName
from fewrec.prompts.templates import display_title
from fewrec.retrieval.base import Candidate, ScoringContext
from fewrec.retrieval.fusion import COLD_START_SOURCE, Retriever

if TYPE_CHECKING:
    from fewrec.agent.conversation_prior import PriorMix, PriorScorer
    from fewrec.agent.explain import Explainer
    from fewrec.agent.rerank import LLMReranker
    from fewrec.prompts.demos import DemonstrationPool
    from fewrec.retrieval.store import ContentIndex

__all__ = ["MAX_K", "Filters", "ItemRef", "RecRequest", "Recommendation", "Recommender", "describe_filters"]
MAX_K = 100


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


class Recommender:
    """`Recommender.from_settings()` (or `Recommender()`) on the bundled data and embedded model.

    >>> rec = Recommender()
    >>> rec.recommend(RecRequest(user_id=42), k=5)
    >>> rec.recommend(RecRequest(liked=["Toy Story", "Up"], query="something funny"), k=5)
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
        self._prior: PriorMix | None = None  # None: the pipeline's (see `with_prior`)

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
        return self.split.catalog.genre_names

    def resolve(self, ref: ItemRef, notes: list[str] | None = None) -> int:
        """Item index of an item id or a title ('Toy Story', 'Matrix, The (1999)'); text is read
        as a title first ('300' is the film), as an id only when no title matches.

        Among several items with the title, the most popular one, and a line in `notes` says
        which it took; an unknown title raises UnknownTitleError listing close matches."""
        split = self.split
        if not isinstance(ref, str):
            return split.item_index(ref)
        matches, close = split.catalog.match_title(ref)
        if not matches and split.has_item(ref):  # text that is an id and no title ("42")
            return split.item_index(ref)
        if not matches:
            raise UnknownTitleError(ref, close)
        counts = self.retriever.popularity.counts
        chosen = max((split.item_index(m) for m in matches), key=lambda i: counts[i])
        if len(matches) > 1 and notes is not None:
            title = split.catalog.title(split.item_ids[chosen].item())
            notes.append(f"took {ref[:60]!r} as {title!r}, the most watched of {len(matches)} so titled")
        return chosen

    def item(self, ref: ItemRef) -> Item:
        return self.split.catalog.get(self.split.item_ids[self.resolve(ref)].item())

    def user_history(self, user_id: object, n: int | None = None) -> list[Item]:
        """A known user's items, most recent last (UnknownIdError for an unknown id)."""
        items = self.split.history(self.split.user_index(user_id), "all", n)
        return [self.split.catalog.get(self.split.item_ids[i].item()) for i in items]

    def check_genres(self, filters: Filters | None) -> None:
        """Every genre `filters` names is one of the catalog's (`request.check_genres`)."""
        if filters is not None:
            check_genres([*filters.genres, *filters.exclude_genres], self.genres)

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
    @property
    def conversation_prior(self) -> PriorMix | None:
        """The conversation prior stage requests with a `conversation` are mixed with."""
        return self._prior if self._prior is not None else self.pipeline.conversation_prior

    def with_prior(self, scorer: PriorScorer) -> Recommender:
        """This recommender over the same pipeline, with the prior over other counts (a
        cross-validation fold's) instead of the configured one."""
        other = Recommender(pipeline=self.pipeline)
        other._prior = self.pipeline.prior_with(scorer)
        return other

    def recommend(
        self, request: RecRequest | None = None, k: int | None = None, **keywords: Any
    ) -> list[Recommendation]:
        """Ranked items for a request: `recommend(RecRequest(user_id=42), k=5)`, or the
        request's fields as keywords, `recommend(user_id=42, k=5)` (see `RecRequest`).

        `rerank=None` runs the LLM when Settings enable it with a weight above 0 (alpha, chosen
        on validation); `query_weight=None` is `chat.query_weight`."""
        if request is None:
            request = RecRequest(**keywords, **({} if k is None else {"k": k}))
        elif keywords:
            raise FewrecError(f"give a RecRequest or keywords, not both (got {', '.join(keywords)})")
        elif k is not None:
            request = request.model_copy(update={"k": k})
        if not 1 <= request.k <= MAX_K:
            raise FewrecError(f"k must be between 1 and {MAX_K}, got {request.k}")
        self.check_genres(request.filters)
        notes: list[str] = []
        user, own, items = self._who(request, notes)
        history_arr = np.array(items, dtype=np.int64)
        context = self.scoring_context(user, request.as_of)
        query, query_weight = request.query, request.query_weight
        if query_weight is None:
            query_weight = self.settings.chat.query_weight
        if not 0.0 <= query_weight <= 1.0:
            raise FewrecError(f"query_weight must be between 0 and 1, got {query_weight}")
        if request.sources is not None:
            try:
                self.retriever.check_sources(request.sources)
            except ValueError as exc:
                raise FewrecError(str(exc)) from None
        allowed = self.allowed_mask(request.filters)
        for ref in request.excluded:
            if allowed is None:
                allowed = np.ones(self.split.n_items, dtype=bool)
            allowed[self.resolve(ref)] = False
        if allowed is not None and not allowed.any():
            return []
        if not len(history_arr):
            notes.append("no history: ranked by " + ("the query" if query else COLD_START_SOURCE))
        settings = self.settings.rerank
        do_rerank = request.rerank if request.rerank is not None else settings.enabled and settings.alpha > 0
        depth = max(request.k, settings.candidates) if do_rerank else request.k
        mentioned = None
        if request.conversation is not None:
            mentioned = [self.resolve(ref) for ref in request.conversation]
        candidates = self.pipeline.rank(
            history_arr, depth, context, allowed, notes, query=query, query_weight=query_weight,
            sources=request.sources, mentioned=mentioned,
            prior=self.conversation_prior if mentioned is not None else None,
            known=own + len(request.liked),
        )  # fmt: skip
        if do_rerank and candidates:
            candidates = self._rerank(history_arr, candidates, context, notes)
        candidates = candidates[: request.k]
        fallback = "; ".join(notes) or None
        out = [self._recommendation(c, fallback) for c in candidates]
        if request.explain:
            query_counts = bool((query or "").strip()) and (query_weight > 0 or not len(history_arr))
            for rec, cand in zip(out, candidates, strict=True):
                self._explain_into(rec, cand, history_arr, request.filters, query_counts)
        return out

    def _explain_into(
        self, rec: Recommendation, candidate: Candidate, history: np.ndarray, filters: Filters | None,
        query_counts: bool,
    ) -> None:  # fmt: skip
        """The grounded explanation: the liked titles that led to the item when a source tied
        it to them; "matches your description" only when a query counted in the score;
        "most watched" only when popularity ranked it. Filters are said as such."""
        evidence = {
            name: r for name, r in candidate.source_ranks.items() if name not in (QUERY_SOURCE, PRIOR_SOURCE)
        }
        # The conversation prior only counts when it placed the item among its first suggestions.
        prior_rank = candidate.source_ranks.get(PRIOR_SOURCE)
        talked = prior_rank is not None and prior_rank <= self._prior_said
        title = display_title(rec.title)
        asked = describe_filters(filters) if filters is not None else ""
        fits = f" and fits what you asked for ({asked})" if asked else ""
        described = query_counts and QUERY_SOURCE in candidate.source_ranks
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

    def _who(self, request: RecRequest, notes: list[str]) -> tuple[int | None, int, list[int]]:
        """The user's index (None: a new user), how many items of their own history there are,
        and the history to score: those items, then the liked ones as the most recent (one
        already there moves to the end). Either part may be empty."""
        split, user_id = self.split, request.user_id
        items: list[int] = []
        user: int | None = None
        if user_id is not None and str(user_id).strip():
            if split.has_user(user_id):
                user = split.user_index(user_id)
                items = split.history(user, self.fit_on).tolist()
            else:
                notes.append(f"user {str(user_id)[:40]!r} is not in the dataset: treated as a new user")
        own, added = len(items), 0
        liked = [self.resolve(ref, notes) for ref in request.liked]
        if both := set(liked) & {self.resolve(ref, notes) for ref in request.disliked}:
            titles = ", ".join(repr(split.catalog.title(split.item_ids[i].item())) for i in sorted(both))
            raise FewrecError(f"{titles}: both liked and disliked in one request; keep each item in one list")
        for index in liked:
            if index in items:
                items.remove(index)
            else:
                added += 1
            items.append(index)  # liked now: the most recent item of the profile
        if user is not None and added:
            given = len(request.liked)
            notes.append(
                f"user {str(user_id)[:40]}'s own history is used, with the {given} given item"
                f"{'s' if given != 1 else ''} as its most recent ({added} not in it before)"
            )
        return user, own, items

    @property
    def _prior_said(self) -> int:
        prior = self.conversation_prior
        return prior.config.said if prior is not None else 0

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
        alpha = self.settings.rerank.alpha
        if alpha == 0:  # asked for by name (rerank=True): say why the order did not move
            notes.append(
                "the LLM scored the candidates, but rerank.alpha = 0 (chosen on validation) gives its "
                "scores no weight: the order is the retrieval's; a higher alpha lets the LLM reorder"
            )
        final = fuse(np.array(result.scores), np.array([c.score for c in candidates]), alpha)
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
        self.check_genres(filters)
        index = self.resolve(item)
        context = self.scoring_context(None, as_of)
        found = self.retriever.candidates(np.array([index]), k, context, self.allowed_mask(filters))
        return [self._recommendation(c, None) for c in found]

    def search(self, text: str, k: int = 10, filters: Filters | None = None) -> list[Recommendation]:
        """Items whose description matches the text by meaning (content index), filtered."""
        if not 1 <= k <= MAX_K:
            raise FewrecError(f"k must be between 1 and {MAX_K}, got {k}")
        self.check_genres(filters)
        allowed = self.allowed_mask(filters)
        pool = self.pipeline.query_mix.config.pool
        hits = self.pipeline.query_content(text, pool if allowed is not None else k)
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
                    sources={QUERY_SOURCE: len(out) + 1},
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
