"""Which words of a message may become a meaning query (issue 26, item 2): judgements, filler
and words about the person stay out; words that describe films stay in. The describer's
counts come from the bundled catalog and from ReDial's training dialogues (Li et al., "Towards
Deep Conversational Recommendations", NeurIPS 2018; CC BY 4.0), bundled with their provenance;
the command that built them rebuilds them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fewrec.agent.query_words import (
    BUNDLED_WORDS,
    DEFAULT_THRESHOLDS,
    Describer,
    TalkCounts,
    Thresholds,
    bundled_describer,
    load_talk,
    stem,
)
from fewrec.agent.understand import content_words
from fewrec.fit import build_query_words

REDIAL_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "redial" / "train_data.jsonl"


# --------------------------------------------------------------------------- the chat's reading
@pytest.mark.parametrize(
    "message",
    [
        "the Hobbit films were a chore to sit through",
        "that was awful",
        "Avatar was a waste of time",
        "oh great, another Transformers",
        "I thought Alien was a masterpiece",
        "Honestly, Titanic was painful to watch",
    ],
)
def test_judgement_words_leave_no_query(reader, message):
    assert reader.read(message).query == "", message


def test_words_about_the_person_and_the_occasion_leave_no_query(reader):
    read = reader.read("Looking for something to watch with my wife tonight, something funny")
    assert read.genres == ["Comedy"]  # "funny" is kept, as the genre it asks for
    assert "wife" not in read.query and "tonight" not in read.query and read.query == ""
    assert reader.read("Hi! Looking for something to watch with my wife tonight").query == ""
    assert reader.read("about instead way").query == ""  # the page once searched for these
    assert reader.read("I'd like something gritty for my husband").query == "gritty"


def test_words_that_describe_films_stay_in_the_query(reader):
    read = reader.read("a heist in space with robots")
    assert read.genres == ["Crime"] and read.query == "space robots"  # "heist" asks for crime films
    assert content_words("a heist in space with robots", reader.describer)[0] == "heist space robots"
    assert reader.read("something dark and atmospheric").query == "dark atmospheric"
    assert reader.read("any film about time travel?").query == "time travel"  # a phrase the catalog uses
    assert reader.read("anything with mel gibson").query == "mel gibson"
    assert reader.read("zombie movies please").query == "zombie"


def test_typos_of_common_words_are_read_as_those_words(reader):
    describer = reader.describer
    assert isinstance(describer, Describer)
    assert describer.counts("tonigth")[2] == "tonight" and not describer.describes("tonigth")
    assert describer.counts("atmospheirc")[2] == "atmospheric" and describer.describes("atmospheirc")
    assert describer.counts("thriler")[2] == "thriller" and describer.describes("thriler")
    assert describer.counts("qwzxv") == (0, 0, "") and not describer.describes("qwzxv")  # unknown: out


def test_evaluative_words_need_more_catalog_evidence():
    catalog = {"creepy": 30, "great": 30, "robot": 3, "awful": 3}
    talk = {"creepy": 1, "great": 1, "robot": 1, "awful": 1, "wife": 40, "tonight": 90}
    lexicon = {"great": 3.1, "awful": -2.0}  # VADER's own ratings of the two
    thresholds = Thresholds(describe=0.0, evidence=2.0, evaluative=40.0)
    describer = Describer(catalog, 10_000, talk, 10_000, thresholds, lexicon)
    assert describer.describes("creepy") and describer.describes("robots")
    assert not describer.describes("great")  # 30 items are not enough for a judgement word
    assert not describer.describes("awful") and not describer.describes("wife")
    assert not describer.describes("tonight")
    assert describer.with_thresholds(Thresholds(describe=0.0, evidence=2.0, evaluative=20.0)).describes(
        "great"
    )


def test_stems_fold_plurals_only():
    assert [stem(w) for w in ("robots", "stories", "kid's", "witches", "series", "haunted", "boss")] == [
        "robot", "story", "kid", "witch", "sery", "haunted", "boss",
    ]  # fmt: skip


def test_the_shipped_thresholds_are_the_documented_ones():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "QUERY_WORDS.md").read_text(encoding="utf-8")
    t = DEFAULT_THRESHOLDS
    assert f"describe = {t.describe:g}" in doc and f"evidence = {t.evidence:g}" in doc
    assert f"evaluative = {t.evaluative:g}" in doc and f"smoothing = {t.smoothing:g}" in doc


# --------------------------------------------------------------------------- the bundled counts
def test_the_bundled_counts_say_where_they_come_from():
    data = json.loads(BUNDLED_WORDS.read_text(encoding="utf-8"))
    assert data["file"] == "train_data.jsonl"  # never the validation dialogues
    assert "ReDial" in data["source"] and "NeurIPS 2018" in data["source"] and "Li" in data["source"]
    assert data["licence"] == "CC BY 4.0"
    assert data["command"] == "python -m fewrec.fit.build_query_words train_data.jsonl redial_words.json"
    assert len(data["sha256"]) == 64 and data["dialogues"] == 500 and data["messages"] > 9000
    assert data["counts"]["tonight"] > data["counts"].get("heist", 0)
    talk = load_talk()
    assert talk.messages == data["messages"] and talk.meta["licence"] == "CC BY 4.0"


FIXTURE = [
    {"conversationId": "1", "messages": [
        {"text": "Hi! Something to watch with my wife tonight?", "senderWorkerId": 1},
        {"text": "Have you seen @123? It's a heist film", "senderWorkerId": 2},
        {"text": "Yes, loved it. Tonight I’d like robots", "senderWorkerId": 1},
    ]},
    {"conversationId": "2", "messages": [{"text": "tonight tonight", "senderWorkerId": 3}]},
]  # fmt: skip


def test_the_rebuild_command_reproduces_the_counts(tmp_path, capsys):
    train = tmp_path / "train_data.jsonl"
    train.write_text("".join(json.dumps(d) + "\n" for d in FIXTURE), encoding="utf-8")
    out = tmp_path / "redial_words.json"
    build_query_words.main([str(train), str(out)])
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["dialogues"] == 2 and data["messages"] == 4
    assert data["counts"]["tonight"] == 3  # messages, not occurrences
    assert data["counts"]["i'd"] == 1 and "123" not in data["counts"]  # apostrophes straightened, @ids out
    assert data["command"] == "python -m fewrec.fit.build_query_words train_data.jsonl redial_words.json"
    first = out.read_bytes()
    build_query_words.main([str(train), str(out)])
    assert out.read_bytes() == first  # the same bytes every time
    talk = TalkCounts(data["counts"], data["messages"], {})
    describer = Describer.from_texts([["Crime"], ["Sci-Fi", "robots"]], talk)
    assert describer.describes("robots") and not describer.describes("tonight")
    with pytest.raises(SystemExit):
        build_query_words.main([str(tmp_path / "valid_data.jsonl"), str(out)])
    assert "training dialogues only" in capsys.readouterr().err


@pytest.mark.skipif(not REDIAL_TRAIN.exists(), reason="ReDial's development data is not beside the checkout")
def test_the_bundled_counts_are_rebuilt_exactly_from_redial_train():
    data = build_query_words.build(REDIAL_TRAIN)
    assert build_query_words.dump(data) == BUNDLED_WORDS.read_text(encoding="utf-8")


def test_a_message_read_without_a_catalog_uses_the_bundled_one():
    assert content_words("a heist in space with robots")[0] == "heist space robots"
    assert content_words("with my wife tonight") == ("", False)
    assert bundled_describer().items > 9000
