"""The conversation prior: counting what recommenders suggested after which films (on the
7-dialogue ReDial sample, CC BY 4.0), scoring a conversation's films with it, and the
Recommender mixing it in (its items join the ranking; filters and exclusions still hold)."""

from __future__ import annotations

from pathlib import Path

from conftest import item_titled

from fewrec.agent.chat import ChatAgent, ChatState
from fewrec.agent.conversation_prior import BUNDLED_PRIOR, ConversationPrior, PriorScorer, load_prior
from fewrec.agent.recommender import Filters, RecRequest
from fewrec.data.dialogues import TitleMatcher, dialogue_from_turns, read_dialogues
from fewrec.fit.build_prior import count_suggestions

SAMPLE = Path(__file__).resolve().parent / "data" / "redial_sample.jsonl"


def test_counts_follow_the_new_item_turns(bundled_split):
    dialogue = dialogue_from_turns(
        "hand",
        [
            {"role": "seeker", "text": "I loved Heat (1995)", "films": ["Heat (1995)"]},
            {"role": "recommender", "text": "Ronin (1998)!", "films": ["Ronin (1998)"]},
            {"role": "seeker", "text": "seen it", "films": []},
            {
                "role": "recommender",
                "text": "Ronin (1998) or Alien (1979)",
                "films": ["Ronin (1998)", "Alien (1979)"],
            },
        ],
    )
    suggested, after = count_suggestions([dialogue], TitleMatcher(bundled_split.catalog))
    heat, ronin, alien = (
        str(item_titled(bundled_split, t)) for t in ("Heat (1995)", "Ronin (1998)", "Alien (1979)")
    )
    assert suggested == {ronin: 1, alien: 1}  # Ronin's repeat is not a new suggestion
    assert after == {heat: {ronin: 1, alien: 1}, ronin: {alien: 1}}


def test_the_sample_gives_counts_and_the_scores_follow_them(bundled_split):
    suggested, after = count_suggestions(read_dialogues(SAMPLE), TitleMatcher(bundled_split.catalog))
    assert sum(suggested.values()) > 0 and after
    prior = ConversationPrior(
        catalog=bundled_split.name, source="test", command="test", dialogues=7,
        suggested=dict(suggested), after={k: dict(v) for k, v in after.items()},
    )  # fmt: skip
    index_of = {str(i): n for n, i in enumerate(bundled_split.item_ids.tolist())}
    scorer = PriorScorer(prior, index_of, bundled_split.n_items)
    mentioned, followers = next(iter(after.items()))
    scores = scorer.scores([index_of[mentioned]], popularity_share=0.0)
    best = max(followers, key=followers.get)
    assert scores[index_of[best]] == scores.max() > 0 and scores[index_of[mentioned]] == 0
    alone = scorer.scores([], popularity_share=1.0)  # no film named: the most suggested films
    top = max(suggested, key=suggested.get)
    assert alone[index_of[top]] == alone.max() > 0


def test_the_bundled_prior_is_from_training_dialogues_and_attributed():
    prior = load_prior(BUNDLED_PRIOR)
    assert prior is not None and prior.catalog == "ml-latest-small"
    assert "CC BY 4.0" in prior.source and "train_data.jsonl" in prior.source
    assert "valid" not in prior.source and prior.dialogues > 0 and prior.suggested


def _counts(split, suggested: dict, after: dict) -> PriorScorer:
    """A scorer over hand-made counts (item ids -> counts)."""
    prior = ConversationPrior(
        catalog=split.name, source="test", command="test", dialogues=1,
        suggested={str(k): v for k, v in suggested.items()},
        after={str(k): {str(j): c for j, c in v.items()} for k, v in after.items()},
    )  # fmt: skip
    index_of = {str(i): n for n, i in enumerate(split.item_ids.tolist())}
    return PriorScorer(prior, index_of, split.n_items)


def test_recommend_mixes_the_prior_in_and_keeps_filters(bundled_split, cheap_recommender, monkeypatch):
    """The conversation's films go in the request; the prior stage scores them itself."""
    heat = item_titled(bundled_split, "Heat (1995)")
    rare = item_titled(bundled_split, "Zodiac (2007)")
    monkeypatch.setattr(cheap_recommender.settings.chat, "prior_weight", 0.6)
    recommender = cheap_recommender.with_prior(_counts(bundled_split, {rare: 1}, {heat: {rare: 1}}))
    plain = recommender.recommend(RecRequest(liked=[heat], k=10, explain=False))
    mixed = recommender.recommend(RecRequest(liked=[heat], k=10, conversation=["Heat (1995)"]))
    assert rare not in [r.item_id for r in plain] and mixed[0].item_id == rare
    assert "conversations" in mixed[0].sources
    assert "conversations" in mixed[0].explanation or "suggested" in mixed[0].explanation
    kept_out = recommender.recommend(RecRequest(liked=[heat], k=10, conversation=[heat], exclude=[rare]))
    assert rare not in [r.item_id for r in kept_out]
    comedy = recommender.recommend(
        RecRequest(liked=[heat], k=10, conversation=[heat], filters=Filters(genres=["Comedy"]))
    )
    assert rare not in [r.item_id for r in comedy]  # Zodiac is no comedy
    monkeypatch.setattr(cheap_recommender.settings.chat, "prior_weight", 0.0)  # off: the plain ranking
    off = recommender.recommend(RecRequest(liked=[heat], k=10, conversation=[heat], explain=False))
    assert [r.item_id for r in off] == [r.item_id for r in plain]


def test_the_prior_stage_is_the_pipelines_and_the_chat_passes_what_was_named(
    bundled_split, cheap_recommender, monkeypatch
):
    """Without counts given, the stage is the pipeline's (the bundled counts); the chat puts
    the films named so far in the request, never an array of scores."""
    stage = cheap_recommender.conversation_prior
    assert stage is not None and stage is cheap_recommender.pipeline.conversation_prior
    assert stage.config.pool == 200 and stage.config.weight == cheap_recommender.settings.chat.prior_weight
    requests: list[RecRequest] = []
    agent = ChatAgent(cheap_recommender)
    recommend = agent.recommender.recommend
    monkeypatch.setattr(agent.recommender, "recommend", lambda r: requests.append(r) or recommend(r))
    agent.respond(ChatState(), "I loved Heat")
    assert requests and requests[-1].conversation is not None
    named = [bundled_split.catalog.title(i) for i in requests[-1].conversation]
    assert any("Heat" in t for t in named)


def test_a_prior_over_a_ranking_that_leaves_nothing_gives_no_card_not_an_error(
    bundled_split, cheap_recommender
):
    """Exclusions leave only the history's own film, which is also all the prior scores: no
    candidate on either side (a real ReDial dialogue reached this)."""
    heat = item_titled(bundled_split, "Heat (1995)")
    recommender = cheap_recommender.with_prior(_counts(bundled_split, {heat: 1}, {}))
    others = [i for i in bundled_split.item_ids.tolist() if i != heat]
    out = recommender.recommend(
        RecRequest(liked=[heat], k=10, conversation=[], exclude=others, explain=False)
    )
    assert out == []


def test_genres_that_never_meet_loosen_instead_of_leaving_no_card(bundled_split, cheap_recommender):
    agent = ChatAgent(cheap_recommender)
    wished = ["Documentary", "Western", "Musical"]  # no film of the catalog is all three
    state = ChatState(filters=Filters(genres=wished, exclude_genres=["Horror"]))
    assert cheap_recommender.recommend(k=5, filters=state.filters, explain=False) == []
    turn, state = agent.respond(state, "more please")
    assert turn.recommendations and "Nothing fits all of those genres" in turn.reply
    assert all(set(r.genres) & set(wished) and "Horror" not in r.genres for r in turn.recommendations)
    assert state.filters.genres == wished  # the wish itself is kept, as said


def test_only_the_latest_cards_and_what_was_seen_are_kept_out(bundled_split, cheap_recommender):
    agent = ChatAgent(cheap_recommender)
    state, _ = agent.start()
    first, state = agent.respond(state, "I loved Heat (1995)")
    again, state = agent.respond(state, "thanks!")  # nothing new said: the best fits stay
    assert [r.item_id for r in again.recommendations] == [r.item_id for r in first.recommendations]
    second, state = agent.respond(state, "more please")
    assert not {r.item_id for r in first.recommendations} & {r.item_id for r in second.recommendations}
    seen = second.recommendations[0].item_id
    state = state.model_copy(update={"excluded": [seen]})
    third, state = agent.respond(state, "more please")
    assert seen not in {r.item_id for r in third.recommendations}
    assert set(state.shown) >= {r.item_id for r in first.recommendations}


def test_a_message_of_only_negations_gets_cards_and_says_what_it_kept_out(cheap_recommender):
    agent = ChatAgent(cheap_recommender)
    state, _ = agent.start()
    turn, state = agent.respond(state, "no horror, nothing sad")
    assert turn.recommendations and all("Horror" not in r.genres for r in turn.recommendations)
    assert "no Horror" in turn.reply and state.query == "" and not state.liked
