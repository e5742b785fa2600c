"""The Recommender facade: user ids, liked titles, queries, filters, exclusions, bad input,
fallbacks, and many threads at once. Uses the real content index and embedding model."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import require_gguf, sharing_fits

from fewrec import Filters
from fewrec.data.errors import FewrecError, UnknownIdError, UnknownTitleError
from fewrec.prompts.templates import display_title

pytestmark = pytest.mark.slow


def titles_of(split, user: int) -> set[str]:
    return {split.catalog.title(split.item_ids[i].item()) for i in split.history(user, "all")}


def test_known_user_gets_unseen_catalog_items_with_grounded_explanations(recommender, bundled_split):
    user_id = bundled_split.user_ids[41].item()
    recs = recommender.recommend(user_id=user_id, k=7)
    history = set(bundled_split.history(41, "all").tolist())
    assert [r.rank for r in recs] == list(range(1, 8))
    assert all(bundled_split.item_index(r.item_id) not in history for r in recs)
    assert all(r.item_id in bundled_split.catalog for r in recs)
    assert all(r.fallback is None and r.sources for r in recs)
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)
    seen_titles = {display_title(t) for t in titles_of(bundled_split, 41)}
    for r in recs:
        assert r.explanation and r.anchors and set(r.anchors) <= seen_titles
        assert display_title(r.title) in r.explanation


def test_liked_titles_are_resolved_and_never_recommended_back(recommender, bundled_split):
    recs = recommender.recommend(history=["Toy Story", "Finding Nemo"], k=10)
    liked = {recommender.resolve("Toy Story"), recommender.resolve("Finding Nemo")}
    assert len(recs) == 10
    assert not liked & {bundled_split.item_index(r.item_id) for r in recs}
    assert any("Toy Story 2" in r.title or "Monsters" in r.title or "Incredibles" in r.title for r in recs)


def test_unknown_user_is_a_new_user_and_says_so(recommender):
    recs = recommender.recommend(user_id="no-such-user", k=5)
    assert len(recs) == 5
    assert all("not in the dataset" in (r.fallback or "") for r in recs)
    assert all("popularity" in r.sources for r in recs)


def test_filters_hold_for_every_item(recommender, bundled_split):
    filters = Filters(genres=["Comedy"], exclude_genres=["Romance"], year_min=1990, year_max=1999)
    recs = recommender.recommend(user_id=bundled_split.user_ids[3].item(), k=10, filters=filters)
    assert len(recs) == 10
    for r in recs:
        assert "Comedy" in r.genres and "Romance" not in r.genres and 1990 <= (r.year or 0) <= 1999


def test_query_steers_results_by_meaning(recommender):
    recs = recommender.recommend(query="animated film about toys for children", k=5)
    assert all("query" in r.sources for r in recs)
    assert sum("Animation" in r.genres or "Children" in r.genres for r in recs) >= 4
    # with a history the words weigh `query_weight` against taste (the chat's defaults, chosen on
    # `fewrec eval-chat`, are small); a caller who wants them to steer says so
    with_history = recommender.recommend(
        history=["Heat"], query="space travel science fiction", k=5, query_weight=0.5
    )
    assert sum("Sci-Fi" in r.genres for r in with_history) >= 3
    taste_only = recommender.recommend(
        history=["Heat"], query="space travel science fiction", k=5, query_weight=0
    )
    assert [r.item_id for r in taste_only] == [
        r.item_id for r in recommender.recommend(history=["Heat"], k=5)
    ]


def test_exclude_and_impossible_filters(recommender, bundled_split):
    first = recommender.recommend(history=["Alien"], k=5, explain=False)
    again = recommender.recommend(history=["Alien"], k=5, explain=False, exclude=[r.item_id for r in first])
    assert not {r.item_id for r in first} & {r.item_id for r in again}
    nothing = Filters(genres=["Documentary", "Western", "Musical"], year_min=2015)
    assert recommender.recommend(history=["Alien"], k=5, filters=nothing) == []


def test_bad_input_gives_clear_errors(recommender):
    with pytest.raises(UnknownTitleError) as info:
        recommender.recommend(history=["Toy Stroy"])
    assert "Toy Story (1995)" in info.value.suggestions
    with pytest.raises(FewrecError, match="k must be between"):
        recommender.recommend(user_id=1, k=0)
    with pytest.raises(UnknownIdError):
        recommender.user_history("no-such-user")
    assert len(recommender.search("x" * 10_000, 3)) == 3  # cut to the query limit, not an error


def test_similar_items_search_and_explain(recommender, bundled_split):
    similar = recommender.similar_items("Toy Story", 5)
    toy = recommender.resolve("Toy Story")
    assert len(similar) == 5 and toy not in {bundled_split.item_index(r.item_id) for r in similar}
    found = recommender.search("dark science fiction", 5, Filters(year_min=1980, year_max=1989))
    assert len(found) == 5 and all(1980 <= (r.year or 0) <= 1989 for r in found)
    why = recommender.explain("Toy Story 2", history=["Toy Story"])
    assert "Toy Story 2" in why and "Toy Story (1995)" in why
    history = recommender.user_history(bundled_split.user_ids[0].item(), 3)
    assert len(history) == 3 and all(h.item_id in bundled_split.catalog for h in history)


def test_concurrent_calls_match_serial_calls(recommender, bundled_split):
    users = [u.item() for u in bundled_split.user_ids[:20]]
    serial = [[r.item_id for r in recommender.recommend(user_id=u, k=5)] for u in users]
    with ThreadPoolExecutor(max_workers=20) as pool:
        parallel = list(pool.map(lambda u: [r.item_id for r in recommender.recommend(user_id=u, k=5)], users))
    assert parallel == serial


def test_rerank_falls_back_to_retrieval_order_when_the_llm_is_missing(recommender):
    settings = recommender.settings.model_copy(deep=True)
    settings.llm.model = "/nonexistent/model.gguf"
    broken = sharing_fits(recommender, settings)
    plain = broken.recommend(user_id=1, k=5, rerank=False, explain=False)
    reranked = broken.recommend(user_id=1, k=5, rerank=True, explain=False)
    assert [r.item_id for r in reranked] == [r.item_id for r in plain]
    assert all("LLM unavailable" in (r.fallback or "") for r in reranked)


def test_rerank_with_the_embedded_model_reorders_the_candidates(recommender):
    settings = recommender.settings.model_copy(deep=True)
    require_gguf(settings.llm.model, settings.model_dir)  # the default model: Gemma 3 270M
    settings.rerank.alpha = 1.0  # the LLM alone decides the order among the candidates
    settings.rerank.k_shot = 0
    llm = sharing_fits(recommender, settings)
    plain = llm.recommend(user_id=1, k=20, rerank=False, explain=False)
    reranked = llm.recommend(user_id=1, k=20, rerank=True, explain=False)
    assert all(r.fallback is None for r in reranked)
    assert sorted(r.item_id for r in reranked) == sorted(r.item_id for r in plain)
    assert [r.item_id for r in reranked] != [r.item_id for r in plain]
    assert np.all(np.diff([r.score for r in reranked]) <= 1e-9)
    # At alpha 0 (the bundled model's, chosen on validation) a rerank asked for by name keeps
    # the retrieval's order, and says why, rather than seeming to have reranked.
    settings.rerank.alpha = 0.0
    kept = sharing_fits(recommender, settings).recommend(user_id=1, k=20, rerank=True, explain=False)
    assert [r.item_id for r in kept] == [r.item_id for r in plain]
    assert all("rerank.alpha = 0" in (r.fallback or "") for r in kept)


def test_rerank_against_a_closed_llm_server_falls_back_quickly(recommender):
    settings = recommender.settings.model_copy(deep=True)
    settings.llm = settings.llm.model_copy(
        update={"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "timeout_s": 2.0, "max_retries": 1,
                "retry_deadline_s": 5.0, "model": "absent"}
    )  # fmt: skip
    offline = sharing_fits(recommender, settings)
    plain = offline.recommend(user_id=1, k=5, rerank=False, explain=False)
    reranked = offline.recommend(user_id=1, k=5, rerank=True, explain=False)
    assert [r.item_id for r in reranked] == [r.item_id for r in plain]
    assert all(r.fallback and "127.0.0.1:9" in r.fallback for r in reranked), reranked[0].fallback


def test_text_is_read_as_a_title_before_an_id(recommender, bundled_split):
    assert "300" in recommender.item("300").title  # the film *300*, not the item with id 300
    assert recommender.item(300).item_id == 300
    assert recommender.resolve("Toy Story") == recommender.resolve(1)


def test_tools_map_genres_and_apply_the_conversation(recommender):
    import json

    from fewrec.agent.tools import make_tools

    tools = {t.name: t for t in make_tools(recommender)}
    found = json.loads(tools["search_items"].invoke({"query": "space", "genre": "science fiction", "k": 3}))
    assert len(found) == 3 and all("Sci-Fi" in r["genres"] for r in found)
    error = json.loads(tools["search_items"].invoke({"query": "space", "genre": "Spacey", "k": 3}))
    assert "unknown genre" in error["error"] and "Comedy" in error["error"]
    # Arguments the schema refuses come back as an error the model reads, never an exception
    # or an argument silently dropped ("genres" is not "genre").
    error = json.loads(tools["recommend"].invoke({"user_id": "1", "k": 0}))
    assert error == {"error": "bad arguments: k: Input should be greater than or equal to 1"}
    error = json.loads(tools["search_items"].invoke({"query": "space", "genres": ["Horror"]}))
    assert error == {"error": "bad arguments: genres: Extra inputs are not permitted"}
    aliens = recommender.item("Aliens").item_id
    made = make_tools(
        recommender, bound_user="", filters=Filters(exclude_genres=["Horror"]), exclude=[aliens]
    )
    bound = {t.name: t for t in made}
    recs = json.loads(bound["similar_items"].invoke({"title": "Alien", "k": 10}))
    assert recs and all("Horror" not in r["genres"] for r in recs)
    assert aliens not in {r["item_id"] for r in recs}
