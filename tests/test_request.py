"""The request `Recommender.recommend` takes: one typed `RecRequest` (or its fields as
keywords), what it says when its parts disagree or name what does not exist, and the rule that
only `fewrec/retrieval/` spells a source's name."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import item_titled
from pydantic import ValidationError

import fewrec
from fewrec.agent.recommender import Filters, RecRequest
from fewrec.config import RetrievalSettings, source_names
from fewrec.data.errors import FewrecError

PACKAGE = Path(fewrec.__file__).resolve().parent


def test_a_request_is_typed_and_reads_the_older_keyword():
    request = RecRequest(history=["Heat (1995)"], user_id=np.int64(42), exclude=[np.int64(3)])
    assert request.liked == ["Heat (1995)"] and request.k == 10
    assert request.user_id == 42 and type(request.user_id) is int  # a split's numpy id, as Python
    assert type(request.exclude[0]) is int
    with pytest.raises(ValidationError, match="histroy"):
        RecRequest(histroy=["Heat (1995)"])  # a typo is an error, not an ignored field
    assert RecRequest(disliked=[1], exclude=[2]).excluded == [2, 1]
    assert "RecRequest" in fewrec.__all__


def test_the_request_and_its_keywords_give_the_same_ranking(cheap_recommender):
    as_request = cheap_recommender.recommend(RecRequest(liked=["Heat (1995)"], explain=False), k=7)
    as_keywords = cheap_recommender.recommend(history=["Heat (1995)"], k=7, explain=False)
    assert [r.model_dump() for r in as_request] == [r.model_dump() for r in as_keywords]
    assert len(as_request) == 7
    with pytest.raises(FewrecError, match="not both"):
        cheap_recommender.recommend(RecRequest(), query="funny")
    with pytest.raises(FewrecError, match="k must be between 1 and 100, got 0"):
        cheap_recommender.recommend(RecRequest(k=0))


def test_a_genre_the_catalog_lacks_is_an_error_not_an_empty_list(cheap_recommender):
    for filters in (Filters(genres=["Horor"]), Filters(exclude_genres=["Comedy", "Sci Fi"])):
        with pytest.raises(
            FewrecError, match=r"unknown genre '(Horor|Sci Fi)'; the genres are: Action, .*, Western"
        ):
            cheap_recommender.recommend(RecRequest(liked=["Heat (1995)"], filters=filters, explain=False))
    with pytest.raises(FewrecError, match="unknown genre 'Horor'"):
        cheap_recommender.similar_items("Heat (1995)", 3, Filters(genres=["Horor"]))
    # The catalog's genres in any case still filter.
    recs = cheap_recommender.recommend(
        RecRequest(liked=["Heat (1995)"], filters=Filters(genres=["horror"]), k=3, explain=False)
    )
    assert len(recs) == 3 and all("Horror" in r.genres for r in recs)


def test_a_title_several_films_share_is_noted_and_one_liked_and_disliked_is_refused(cheap_recommender):
    recs = cheap_recommender.recommend(RecRequest(liked=["King Kong"], k=3, explain=False))
    assert "took 'King Kong' as 'King Kong (" in (recs[0].fallback or "")
    assert "the most watched of 3 so titled" in (recs[0].fallback or "")
    plain = cheap_recommender.recommend(RecRequest(liked=["Heat (1995)"], k=3, explain=False))
    assert plain[0].fallback is None  # one film of that title: nothing to note
    with pytest.raises(FewrecError, match=r"'Heat \(1995\)': both liked and disliked in one request"):
        cheap_recommender.recommend(RecRequest(liked=["Heat (1995)"], disliked=["heat (1995)"]))


def test_disliked_items_are_never_recommended(bundled_split, cheap_recommender):
    heat = item_titled(bundled_split, "Heat (1995)")
    first = cheap_recommender.recommend(RecRequest(liked=[heat], k=5, explain=False))[0].item_id
    again = cheap_recommender.recommend(RecRequest(liked=[heat], disliked=[first], k=5, explain=False))
    assert first not in [r.item_id for r in again]


def test_a_user_with_items_they_do_not_have_is_told_which_history_wins(bundled_split, cheap_recommender):
    split = cheap_recommender.split
    own = set(split.history(0, cheap_recommender.fit_on).tolist())
    user = split.user_ids[0].item()
    new = next(split.item_ids[i].item() for i in range(split.n_items) if i not in own)
    recs = cheap_recommender.recommend(RecRequest(user_id=user, liked=[new], k=3, explain=False))
    assert recs[0].fallback == (
        f"user {user}'s own history is used, with the 1 given item as its most recent (1 not in it before)"
    )
    theirs = split.item_ids[next(iter(own))].item()  # an item they have: it only moves, no note
    same = cheap_recommender.recommend(RecRequest(user_id=user, liked=[theirs], k=3, explain=False))
    assert same[0].fallback is None


def test_a_request_naming_an_unknown_source_says_which_exist(cheap_recommender):
    with pytest.raises(
        FewrecError,
        match=r"unknown source 'eas'; the sources are: timed_transition, transition, ease, .*popularity$",
    ):
        cheap_recommender.recommend(RecRequest(liked=["Heat (1995)"], sources=["eas"]))
    with pytest.raises(
        FewrecError, match=r"source 'als' is not fitted here; this retriever fuses: transition, ease"
    ):
        cheap_recommender.recommend(RecRequest(liked=["Heat (1995)"], sources=["als"]))


def test_a_request_may_rank_with_some_of_the_sources(cheap_recommender):
    both = cheap_recommender.recommend(RecRequest(liked=["Heat (1995)"], k=10, explain=False))
    one = cheap_recommender.recommend(
        RecRequest(liked=["Heat (1995)"], k=10, explain=False, sources=["ease"])
    )
    assert all(set(r.sources) <= {"ease"} for r in one)
    assert any("transition" in r.sources for r in both)
    assert [r.item_id for r in one] != [r.item_id for r in both]


def test_each_source_declares_what_it_is_and_the_default_list_is_the_registrys():
    from fewrec.config import config_class, default_source_names
    from fewrec.retrieval.base import BuildContext

    # The registry's order, the default ones only (test_components holds the published order).
    assert default_source_names() == source_names()[: len(default_source_names())]  # built-ins, in order
    assert (
        tuple(RetrievalSettings().active) == default_source_names()
        and "popularity" not in default_source_names()
    )
    assert [n for n in source_names() if config_class(n).time_aware] == ["timed_transition", "timepop"]
    assert [n for n in source_names() if config_class(n).needs_content] == ["content"]
    for name in ("timed_transition", "transition", "ease", "itemknn", "timepop", "popularity"):
        built = config_class(name)().build(BuildContext(None, None, False, None, 0))
        assert built.time_aware == config_class(name).time_aware, name  # the config tells the truth


# Literals that spell a source's name but mean something else there.
OTHER_MEANINGS = {
    ("ui/app.py", "content"): "a chat message's text field",
    ("agent/chat.py", "content"): "a chat message's text field",
    ("llm/completions.py", "content"): "a field of the LLM server's JSON",
    ("llm/openai_http.py", "content"): "a field of the LLM server's JSON",
    ("eval/chat_eval.py", "popularity"): "the evaluation's popularity reference ranking",
    ("eval/conversation_eval.py", "popularity"): "the evaluation's popularity reference ranking",
    ("eval/baselines.py", "popularity"): "a baseline's name (`fewrec eval --baselines`)",
    ("eval/baselines.py", "ease"): "a baseline's name",
    ("eval/baselines.py", "als"): "a baseline's name",
    ("eval/baselines.py", "bpr"): "a baseline's name",
    ("eval/baselines.py", "sasrec"): "a baseline's name",
    ("eval/runner.py", "popularity"): "a baseline's name",
    ("eval/runner.py", "ease"): "a baseline's name",
    ("bench/ray_overhead.py", "sasrec"): "a baseline's name",
}


def _source_literals() -> list[tuple[str, int, str]]:
    names = set(source_names())
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        if where.startswith("retrieval/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Constant)
                and node.value in names
                and (where, node.value) not in OTHER_MEANINGS
            ):
                found.append((where, node.lineno, node.value))
    return found


def test_no_module_outside_retrieval_spells_a_source_name():
    """What a source is, its config declares; only fewrec/retrieval/ names the sources."""
    assert _source_literals() == []


def test_the_source_name_check_would_catch_one(tmp_path, monkeypatch):
    fake = tmp_path / "fewrec"
    (fake / "agent").mkdir(parents=True)
    (fake / "agent" / "x.py").write_text('TIMED = ("timepop",)\n')
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert _source_literals() == [("agent/x.py", 1, "timepop")]
