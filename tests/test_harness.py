"""The evaluations' shared harness (fewrec/eval/harness.py): the anchors file, the seeded
sample, a chat state read the same way everywhere, and evaluations that leave the settings of
the recommender they are given as they found them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fewrec.agent.chat import ChatState, PendingChoice
from fewrec.data.dialogues import read_dialogues
from fewrec.eval import conversation_cv as cvm
from fewrec.eval import conversation_eval as ce
from fewrec.eval import harness
from fewrec.fit.build_prior import fold_prior_scorer

SAMPLE = Path(__file__).resolve().parent / "data" / "redial_sample.jsonl"


def test_the_anchors_file_is_read_and_every_anchor_names_its_source(tmp_path):
    tables = {"retrieval": 3, "conversations": 4}
    for table, count in tables.items():
        found = harness.anchors(table)
        assert len(found) == count
        for anchor in found:
            assert anchor.name and anchor.source.strip() and anchor.metrics
            assert all(0 < v < 1 for v in anchor.metrics.values())
    assert harness.anchors("retrieval")[0].metrics == {"ndcg@10": 0.0522, "recall@10": 0.0993}
    published = ce.ConversationsReport(conversations_file="", sha256="", dataset="", catalog_items=0,
                                       dialogues_in_file=0).published  # fmt: skip
    assert published == harness.anchors("conversations") and published[0].metrics["recall@20"] == 0.267
    unsourced = tmp_path / "anchors.toml"
    unsourced.write_text('[[retrieval]]\nname = "x"\nmetrics = { "ndcg@10" = 0.1 }\n')
    with pytest.raises(ValueError, match="source"):  # an anchor without its source does not load
        harness.anchors("retrieval", unsourced)


def test_the_seeded_sample_is_the_one_every_evaluation_drew_before():
    pool = np.arange(3, 700, 2)
    old = np.sort(np.random.default_rng(5).choice(pool, 40, replace=False))
    assert np.array_equal(harness.seeded_sample(pool, 40, 5), old)
    assert harness.seeded_sample(pool, None, 5) is pool
    by_count = np.sort(np.random.default_rng(0).choice(25, 7, replace=False))
    assert np.array_equal(harness.seeded_sample(np.arange(25), 7, 0), by_count)


def test_a_state_keeping_an_item_twice_is_read_in_the_order_asked():
    state = ChatState(
        liked=[1], disliked=[1, 2], mentioned=[5],
        pending=[PendingChoice(phrase="x", sentiment="like", options=[3])],
    )  # fmt: skip
    assert harness.place_of(state, 1) == "liked"
    assert harness.place_of(state, 1, first=("disliked", "nothing like")) == "disliked"
    assert [harness.place_of(state, i) for i in (2, 3, 4, 5)] == ["disliked", "asked back", "not read",
                                                                  "mentioned"]  # fmt: skip


def test_the_conversation_evaluations_leave_the_recommenders_settings_alone(cheap_recommender):
    settings = cheap_recommender.settings
    before = settings.model_dump(mode="json")
    assert (settings.chat.cards, settings.chat.explain) != (ce.CARDS, False)  # or the test shows nothing
    dialogues = read_dialogues(SAMPLE)[:3]
    report = ce.evaluate_conversations(SAMPLE, cheap_recommender, dialogues=dialogues, seed=0)
    assert report.complete and report.mode("seeker_only").chat_turns > 0
    cv = cvm.cross_validate(
        [SAMPLE], dialogues, cheap_recommender, prior_for=fold_prior_scorer, folds=3, fit=False,
        without_prior=True,
    )  # fmt: skip
    assert cv.complete and "chat_no_prior" in cv.per_fold[0].recall
    assert cheap_recommender.settings is settings and settings.model_dump(mode="json") == before
