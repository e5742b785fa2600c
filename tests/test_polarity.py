"""The polarity classifier (fewrec/agent/polarity.py): what it reads of a mention, when it may
overrule the rules, that the chat reads with the rules alone without an embedding model, and
the command that builds its weights from ReDial dialogues (tests/data/redial_sample.jsonl, CC BY
4.0: see tests/data/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fewrec.agent.chat import ChatAgent
from fewrec.agent.polarity import (
    SENTIMENTS,
    PolarityReader,
    PolarityWeights,
    decide,
    features,
    load_polarity,
    mention_clause,
    polarity_reader,
)
from fewrec.agent.understand import MessageReader, clean_message
from fewrec.eval import build_polarity
from fewrec.retrieval.embeddings import EmbeddingError

SAMPLE = Path(__file__).parent / "data" / "redial_sample.jsonl"


def spans_of(text: str, *titles: str) -> list[tuple[int, int]]:
    return [(text.index(t), text.index(t) + len(t)) for t in titles]


def test_the_clause_reads_the_feeling_never_the_film():
    text = "I couldn't stand Avatar but loved District 9. Heat and Alien were fine"
    spans = spans_of(text, "Avatar", "District 9", "Heat", "Alien")
    assert mention_clause(text, spans[0], spans) == "I couldn't stand this film"
    assert mention_clause(text, spans[1], spans) == "loved this film"
    assert mention_clause(text, spans[2], spans) == "this film and that film were fine"
    assert mention_clause(text, spans[3], spans) == "that film and this film were fine"


def test_only_a_confident_classifier_overrules_the_rules():
    assert decide("like", 0.95, 0.9, 0.1) == "dislike"
    assert decide("watched", 0.95, 0.9, 0.1) == "dislike"
    assert decide("like", 0.85, 0.9, 0.1) == "like"
    assert decide("dislike", 0.05, 0.9, 0.1) == "like"
    assert decide("avoid", 0.5, 0.9, 0.1) == "avoid"
    # the thresholds that mean "rules only" change nothing, whatever the probability
    for sentiment in SENTIMENTS:
        assert all(decide(sentiment, p, 1.0, 0.0) == sentiment for p in np.linspace(0, 1, 11))


def test_the_rules_label_is_a_feature():
    x = features(np.zeros((2, 3)), ["like", "avoid"])
    assert x.shape == (2, 3 + len(SENTIMENTS))
    assert x[0, 3 + SENTIMENTS.index("like")] == 1 and x[1, 3 + SENTIMENTS.index("avoid")] == 1
    assert x[:, 3:].sum() == 2


@pytest.fixture(scope="module")
def catalog_and_genres(bundled_split):
    catalog = bundled_split.catalog
    return catalog, sorted({g for genres in catalog.frame["genres"] for g in genres})


@pytest.fixture(scope="module")
def minilm():
    from fewrec.retrieval.embeddings import DefaultEmbedder

    return DefaultEmbedder()


def weights_from(embedder, examples: list[tuple[str, int]], **thresholds: float) -> PolarityWeights:
    """A classifier fitted on a few clauses (1: disliked), as the build command fits one."""
    x = features(embedder.embed([c for c, _ in examples]), ["like"] * len(examples)).astype(np.float64)
    coef, intercept = build_polarity.fit(x, np.array([y for _, y in examples]), 10.0)
    return PolarityWeights(
        model=embedder.name, source="test", command="test", dialogues=0, mentions=len(examples),
        regularisation=10.0, coef=coef.tolist(), intercept=intercept, **thresholds,
    )  # fmt: skip


@pytest.mark.slow
def test_a_fitted_classifier_reads_phrasings_it_never_saw(minilm, catalog_and_genres):
    examples = [
        ("I hated this film", 1), ("this film was awful", 1), ("this film bored me to death", 1),
        ("what a terrible movie this film was", 1), ("I could not stand this film", 1),
        ("I loved this film", 0), ("this film was great", 0), ("this film is one of my favourites", 0),
        ("I really enjoyed this film", 0), ("this film was so much fun", 0),
    ]  # fmt: skip
    weights = weights_from(minilm, examples, dislike_above=0.5, like_below=0.0)
    reader = MessageReader(*catalog_and_genres, polarity=PolarityReader(weights, minilm))
    rules = MessageReader(*catalog_and_genres)
    message = "Titanic was dreadful, a total waste of time"
    assert [t.sentiment for t in rules.read(message).titles] == ["like"]  # no rule knows "dreadful"
    assert [t.sentiment for t in reader.read(message).titles] == ["dislike"]
    mixed = reader.read("Honestly Avatar was dreadful and a waste of time. Toy Story was wonderful")
    assert [(t.phrase, t.sentiment) for t in mixed.titles] == [("Avatar", "dislike"), ("Toy Story", "like")]


class Broken:
    name = "all-MiniLM-L6-v2"

    def embed(self, texts, progress: bool = False) -> np.ndarray:
        raise EmbeddingError("the model is gone")


def active_weights(dimensions: int = 4) -> PolarityWeights:
    return PolarityWeights(
        model="all-MiniLM-L6-v2", source="test", command="test", dialogues=1, mentions=1,
        regularisation=1.0, coef=[5.0] * (dimensions + len(SENTIMENTS)), intercept=0.0,
        dislike_above=0.5, like_below=0.1,
    )  # fmt: skip


def test_without_an_embedding_model_the_rules_read_alone(catalog_and_genres, tmp_path, monkeypatch):
    path = tmp_path / "weights.json"
    path.write_text(active_weights().model_dump_json(), encoding="utf-8")
    reader, note = polarity_reader(None, path)
    assert reader is None and "rules" in note
    other = SimpleNamespace(name="openai:text-embedding-3-small", embed=Broken().embed)
    reader, note = polarity_reader(other, path)
    assert reader is None and "all-MiniLM-L6-v2" in note
    # an embedder that fails mid-conversation: the reply reads as the rules read
    failing, _ = polarity_reader(Broken(), path)
    assert failing is not None
    message = "I couldn't stand Avatar but loved District 9"
    with_failing = MessageReader(*catalog_and_genres, polarity=failing).read(message)
    alone = MessageReader(*catalog_and_genres).read(message)
    assert (
        [(t.phrase, t.sentiment) for t in with_failing.titles]
        == [(t.phrase, t.sentiment) for t in alone.titles]
        == [("Avatar", "dislike"), ("District 9", "like")]
    )
    # the chat, when its recommender has no embedding model
    agent = ChatAgent.__new__(ChatAgent)

    class NoModel:
        @property
        def embedder(self):
            raise EmbeddingError("sentence-transformers is not installed")

    agent.recommender = SimpleNamespace(pipeline=NoModel())
    assert agent._polarity() is None


def test_the_bundled_weights_come_from_training_dialogues():
    weights = load_polarity()
    assert weights is not None
    assert "train_data.jsonl" in weights.source and "valid" not in weights.command
    assert weights.model == "all-MiniLM-L6-v2" and len(weights.coef) == 384 + len(SENTIMENTS)
    assert weights.dialogues == 500 and weights.mentions > 500
    # cross-validated on train, no threshold kept more dislikes without losing liked films:
    # the chat then reads with the rules and embeds nothing for it (no latency)
    if weights.dislike_above >= 1.0 and weights.like_below <= 0.0:
        reader, note = polarity_reader(SimpleNamespace(name=weights.model, embed=Broken().embed))
        assert reader is None and "overrules nothing" in note


@pytest.mark.slow
def test_the_build_command_on_sample_dialogues(minilm, catalog_and_genres, tmp_path):
    weights, rows, best = build_polarity.build(SAMPLE, *catalog_and_genres, minilm, "test", 2, 0, 2000)
    assert rows[0]["method"] == "rules" and rows[0]["disliked"] >= 1 and rows[0]["liked"] >= 5
    assert best in rows[1:] and weights.regularisation == best["C"]
    assert weights.dislike_above == best["dislike_above"] and weights.like_below == best["like_below"]
    assert len(weights.coef) == 384 + len(SENTIMENTS) and weights.dialogues == 7
    out = tmp_path / "polarity.json"
    build_polarity.main([str(SAMPLE), str(out), "--folds", "2"])
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["mentions"] == weights.mentions and written["model"] == "all-MiniLM-L6-v2"
    assert load_polarity(out) is not None


def test_the_mentions_sit_where_the_chat_reads_them(catalog_and_genres):
    dialogues = build_polarity.read_dialogues(SAMPLE)
    for dialogue in dialogues:
        for turn in dialogue.turns:
            text, spans = build_polarity.shown_with_spans(dialogue, turn.text)
            assert text == clean_message(dialogue.shown_text(turn), 2000)[0]  # as the chat receives it
            for key, start, end in spans:
                assert text[start:end] == dialogue.films[key]
    mentions = build_polarity.labelled_mentions(dialogues, MessageReader(*catalog_and_genres), 2000)
    assert mentions and all("this film" in m.clause for m in mentions)
    assert {m.liked for m in mentions} == {0, 1}
