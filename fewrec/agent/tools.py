"""LangChain tools over the `Recommender`, so that any LangChain agent can use fewrec.

`make_tools(recommender)` returns five tools: search_items, user_history, recommend,
explain_item and similar_items. Each returns JSON text (what chat models read best) and turns
fewrec's own errors into a message the model can act on instead of an exception.

For the chat page the tools are *bound* to one conversation (`bound_user`): they then answer
only about that person, whatever user id a prompt-injected model asks for.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fewrec.agent.recommender import Filters, Recommendation, Recommender, RecRequest
from fewrec.data.errors import FewrecError
from fewrec.data.models import ItemId


class ToolArgs(BaseModel):
    """A tool's arguments: a name the tool does not take ("genres" for "genre") is an error the
    model reads, not an argument silently dropped."""

    model_config = ConfigDict(extra="forbid")


class SearchArgs(ToolArgs):
    query: str = Field(description="What the film should be like, e.g. 'dark sci-fi about space'.")
    k: int = Field(5, ge=1, le=20, description="How many films.")
    genre: str | None = Field(None, description="Only this genre, e.g. 'Comedy'.")
    year_min: int | None = Field(None, description="Earliest release year.")
    year_max: int | None = Field(None, description="Latest release year.")


class HistoryArgs(ToolArgs):
    user_id: str = Field("", description="The user id (ignored in a chat: it is always the current user).")
    n: int = Field(10, ge=1, le=50, description="How many of the most recent films.")


class RecommendArgs(ToolArgs):
    user_id: str = Field("", description="A user id of the dataset, or empty.")
    liked_titles: list[str] = Field(default_factory=list, description="Titles the person liked.")
    query: str = Field("", description="Optional wish in words, e.g. 'something funny'.")
    k: int = Field(5, ge=1, le=20, description="How many films.")
    genre: str | None = Field(None, description="Only this genre, e.g. 'Comedy'.")
    year_min: int | None = Field(None, description="Earliest release year.")
    year_max: int | None = Field(None, description="Latest release year.")


class ExplainArgs(ToolArgs):
    title: str = Field(description="The film to explain (title or item id).")
    user_id: str = Field("", description="Whose taste to explain it for.")
    liked_titles: list[str] = Field(default_factory=list, description="Or: titles the person liked.")


class SimilarArgs(ToolArgs):
    title: str = Field(description="A film title or item id.")
    k: int = Field(5, ge=1, le=20, description="How many films.")


def _records(recs: list[Recommendation]) -> str:
    return json.dumps(
        [
            {
                "item_id": r.item_id,
                "title": r.title,
                "genres": r.genres,
                "why": r.explanation,
                "found_by": list(r.sources),
            }
            for r in recs
        ],
        ensure_ascii=False,
    )


def _genre(recommender: Recommender, genre: str | None) -> list[str]:
    """The catalog's spelling of a genre ('comedies', 'science fiction' → Comedy, Sci-Fi)."""
    if not genre or not genre.strip():
        return []
    from fewrec.agent.understand import GENRE_WORDS

    known = {g.lower(): g for g in recommender.genres}
    key = genre.strip().lower()
    found = known.get(key) or known.get(GENRE_WORDS.get(key, "").lower())
    if found is None:
        raise FewrecError(f"unknown genre {genre[:40]!r}; the genres are: {', '.join(recommender.genres)}")
    return [found]


def _safe(fn: Callable[..., str]) -> Callable[..., str]:
    def wrapped(**kwargs: Any) -> str:
        try:
            return fn(**kwargs)
        except FewrecError as exc:
            return json.dumps({"error": str(exc)})

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


def _bad_arguments(exc: ValidationError) -> str:
    """Arguments the schema refuses (k = 0, an unknown name), as the JSON error a model can act on."""
    problems = "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}"
        for e in exc.errors()  # type: ignore[index]
    )
    return json.dumps({"error": f"bad arguments: {problems}"})


def make_tools(
    recommender: Recommender,
    bound_user: str | None = None,
    liked: list[str] | None = None,
    exclude: list[ItemId] | None = None,
    collect: list[Recommendation] | None = None,
    filters: Filters | None = None,
) -> list[BaseTool]:
    """The five tools. With `bound_user` set (even to ''), user ids in calls are ignored and the
    conversation's own profile (`bound_user`, `liked`) is used; `collect` receives every
    recommendation the tools return (the chat page shows them as cards); `filters` (the
    conversation's constraints) apply to every call, together with the call's own."""
    bound = bound_user is not None
    excluded = set(exclude or [])

    def constraints(genre: str | None, year_min: int | None, year_max: int | None) -> Filters | None:
        merged = filters.model_copy(deep=True) if filters is not None else Filters()
        merged.genres = list(dict.fromkeys([*merged.genres, *_genre(recommender, genre)]))
        merged.year_min = year_min if year_min is not None else merged.year_min
        merged.year_max = year_max if year_max is not None else merged.year_max
        return None if merged.is_empty() else merged

    def kept(recs: list[Recommendation]) -> list[Recommendation]:
        recs = [r for r in recs if r.item_id not in excluded]
        if collect is not None:
            collect.extend(recs)
        return recs

    def user_of(user_id: str) -> str | None:
        chosen = bound_user if bound else user_id
        return chosen or None

    def search_items(query: str, k: int = 5, genre: str | None = None, year_min: int | None = None,
                     year_max: int | None = None) -> str:  # fmt: skip
        """Find films whose description matches the query by meaning, optionally filtered."""
        return _records(kept(recommender.search(query, k, constraints(genre, year_min, year_max))))

    def user_history(user_id: str = "", n: int = 10) -> str:
        """The most recent films a user watched, oldest first."""
        who = user_of(user_id)
        if who is None:
            titles = liked or []
            return json.dumps({"liked": titles[-n:]}, ensure_ascii=False)
        items = recommender.user_history(who, n)
        return json.dumps([{"item_id": i.item_id, "title": i.title} for i in items], ensure_ascii=False)

    def recommend(
        user_id: str = "", liked_titles: list[str] | None = None, query: str = "", k: int = 5,
        genre: str | None = None, year_min: int | None = None, year_max: int | None = None,
    ) -> str:  # fmt: skip
        """Recommend films for a user and/or liked titles, optionally steered by a wish in words."""
        titles = [*(liked or []), *(liked_titles or [])] if bound else list(liked_titles or [])
        request = RecRequest(
            user_id=user_of(user_id), liked=titles, k=min(k, 20) if k else 5, query=query or None,
            filters=constraints(genre, year_min, year_max), exclude=list(excluded),
        )  # fmt: skip
        recs = recommender.recommend(request)
        return _records(kept(recs))

    def explain_item(title: str, user_id: str = "", liked_titles: list[str] | None = None) -> str:
        """Why a film suits the user, grounded in films they liked."""
        titles = [*(liked or []), *(liked_titles or [])] if bound else list(liked_titles or [])
        return json.dumps({"why": recommender.explain(title, user_of(user_id), titles)}, ensure_ascii=False)

    def similar_items(title: str, k: int = 5) -> str:
        """Films most like the given film (people who liked it went on to these)."""
        return _records(kept(recommender.similar_items(title, min(k, 20), constraints(None, None, None))))

    specs = [
        (search_items, SearchArgs), (user_history, HistoryArgs), (recommend, RecommendArgs),
        (explain_item, ExplainArgs), (similar_items, SimilarArgs),
    ]  # fmt: skip
    return [
        StructuredTool.from_function(
            _safe(fn),
            name=fn.__name__,
            description=fn.__doc__ or "",
            args_schema=schema,
            handle_validation_error=_bad_arguments,
        )
        for fn, schema in specs
    ]
