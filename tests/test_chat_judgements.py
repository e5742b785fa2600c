"""How the chat files judgements (issue 26): a film panned in everyday words is not taken as
liked, a judgement the reader cannot place is a mention (asked about, never steering), a film
judged twice goes with the later judgement, and a judgement with no film gets a clear line.
Run with the shipped polarity weights, on sentences written for these tests (none is in the
data the weights were fitted on)."""

from __future__ import annotations

import numpy as np
import pytest

from fewrec.agent.chat import ChatAgent, ChatState
from fewrec.agent.polarity import PolarityReader, load_polarity
from fewrec.agent.understand import MessageReader


@pytest.fixture(scope="module")
def agent(recommender) -> ChatAgent:
    out = ChatAgent(recommender)
    assert out.reader.polarity is not None, "the shipped polarity weights must load with MiniLM"
    return out


def titles(agent: ChatAgent, items: list[str]) -> list[str]:
    return [agent.recommender.split.catalog.title(i) for i in items]


@pytest.mark.parametrize(
    "message",
    [
        "Titanic was a total waste of three hours",
        "Avatar put me to sleep, honestly one of the dullest films I have sat through",
        "I forced myself to finish Heat and regretted it",
    ],
)
def test_a_film_panned_in_everyday_words_is_not_taken_as_liked(agent, message):
    turn, state = agent.respond(ChatState(), message)
    named = state.disliked + state.mentioned
    assert named and not state.liked, (turn.understood, state)
    assert "as a film you liked" not in turn.reply


@pytest.mark.parametrize(
    "message", ["I loved Alien", "Heat (1995) was brilliant, what a film", "I've seen Toy Story"]
)
def test_praise_and_plain_taste_stay_liked(agent, message):
    _, state = agent.respond(ChatState(), message)
    assert len(state.liked) == 1 and not state.disliked and not state.mentioned


def test_a_judgement_with_no_film_gets_a_clear_line_and_changes_nothing(agent):
    before = ChatState()
    turn, state = agent.respond(before, "that was awful")
    assert "not which one" in turn.reply and turn.recommendations
    assert state.liked == state.disliked == state.mentioned == [] and state.query == ""


def test_the_later_of_two_judgements_wins_and_the_reply_says_so(agent):
    turn, state = agent.respond(
        ChatState(), "I loved Alien. Thinking about it again, I hated Alien, it was dreadful."
    )
    assert titles(agent, state.disliked) == ["Alien (1979)"] and not state.liked
    assert any("two things about *Alien (1979)*" in line for line in turn.understood)


class Unsure(PolarityReader):
    """A classifier that can never place a judgement (0.7 between the mention and pan marks)."""

    def panned_probability(self, windows):
        return np.full(len(windows), 0.7)


def test_a_judgement_the_reader_cannot_place_is_a_mention(agent):
    weights = load_polarity().model_copy(
        update={"dislike_above": 0.9, "mention_above": 0.5, "like_below": 0.0, "named_mention_above": 0.6}
    )
    unsure = ChatAgent(agent.recommender)
    unsure._reader = MessageReader(
        agent.recommender.split.catalog,
        agent.recommender.genres,
        Unsure(weights, agent.reader.polarity.embedder),
    )
    turn, state = unsure.respond(ChatState(), "Oh great, another Transformers (2007)")
    assert titles(agent, state.mentioned) == ["Transformers (2007)"] and not state.liked
    assert "How did you find it?" in turn.reply
    assert state.mentioned[0] not in [r.item_id for r in turn.recommendations]  # never suggested back
    # a film named with no judgement word is still taste, even to an unsure classifier
    _, state = unsure.respond(state, "I watched Heat (1995) last week")
    assert titles(agent, state.liked) == ["Heat (1995)"]
    # and saying how it was moves the film out of the mentions
    _, state = agent.respond(state, "Transformers (2007) was brilliant, I loved it")
    assert "Transformers (2007)" in titles(agent, state.liked) and not state.mentioned


@pytest.mark.parametrize("message", ["Titanic (1997) fue muy aburrida", "Ich fand Titanic (1997) langweilig"])
def test_a_judgement_in_another_language_is_a_mention_with_a_clear_line(agent, message):
    turn, state = agent.respond(ChatState(), message)
    assert titles(agent, state.mentioned) == ["Titanic (1997)"] and not state.liked
    assert "written in English" in turn.reply and "How did you find it?" in turn.reply


def test_english_words_about_a_film_are_read(agent):
    assert not agent.reader.unreadable("I watched this film with my dad last night")
    assert not agent.reader.unreadable("this film was a chore to sit through, honestly")
    assert agent.reader.unreadable("this film fue muy aburrida")


@pytest.mark.parametrize("message", ["oh great, another Transformers", "Wow, Heat (1995). Anything lighter?"])
def test_a_film_judged_only_by_an_exclamation_before_it_is_a_mention(agent, message):
    """Praise or sarcasm, an opening exclamation does not say how the film was: asked about,
    never taken as liked (the classifier reads "oh great, another X" as praise)."""
    turn, state = agent.respond(ChatState(), message)
    assert len(state.mentioned) == 1 and not state.liked, (turn.understood, state)
    assert "How did you find it?" in turn.reply


@pytest.mark.parametrize(
    "message", ["Wow, Titanic was amazing", "Great, I loved Titanic", "Oh, I've seen Titanic"]
)
def test_an_exclamation_followed_by_a_judgement_of_the_film_reads_that_judgement(agent, message):
    _, state = agent.respond(ChatState(), message)
    assert len(state.liked) == 1 and not state.mentioned


def test_without_the_classifier_an_exclamation_alone_is_still_a_mention(recommender):
    reader = MessageReader(recommender.split.catalog, recommender.genres)
    read = reader.read("oh great, another Transformers")
    assert [t.sentiment for t in read.titles] == ["mention"]
