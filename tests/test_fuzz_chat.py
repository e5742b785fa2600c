"""Property tests: whatever a person types, the title matcher and the chat agent answer without
an exception, and every item they return is in the catalog."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fewrec.agent.chat import ChatAgent

pytestmark = pytest.mark.slow
WORDS = [
    "I",
    "loved",
    "liked",
    "hated",
    "nothing like",
    "no",
    "horror",
    "from the 90s",
    "for kids",
    "Alien",
    "Toy Story",
    "King Kong",
    "and",
    ",",
    '"',
    "*",
    "after 2000",
    "(1995)",
    "Matrix, The",
    "start over",
]
messages = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join),
    st.text(alphabet=st.characters(categories=["So", "Zs", "Cf", "Mn"]), max_size=50),
)


@pytest.fixture(scope="module")
def agent(recommender) -> ChatAgent:
    return ChatAgent(recommender)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=200), st.lists(st.sampled_from(WORDS), max_size=6).map(" ".join)))
def test_title_matcher_never_fails(recommender, text):
    matches, suggestions = recommender.split.catalog.match_title(text)
    assert all(m in recommender.split.catalog for m in matches)
    assert all(isinstance(s, str) for s in suggestions)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=messages, second=messages)
def test_chat_always_replies_with_catalog_items(agent, recommender, first, second):
    state, _ = agent.start()
    for message in (first, second):
        turn, state = agent.respond(state, message)
        assert turn.reply and "went wrong" not in turn.reply
        assert all(r.item_id in recommender.split.catalog for r in turn.recommendations)
        assert len({r.item_id for r in turn.recommendations}) == len(turn.recommendations)
    assert all(i in recommender.split.catalog for i in state.liked + state.disliked + state.shown)
