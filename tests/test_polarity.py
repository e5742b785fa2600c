"""The polarity classifier (fewrec/agent/polarity.py): what it reads of a mention, how its
reading and the rules' combine (liked, disliked, a mention), that the chat reads with the rules
alone without an embedding model, and the command that builds its weights from labelled
sentences and ReDial dialogues (tests/data/redial_sample.jsonl, CC BY 4.0: see
tests/data/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fewrec.agent.chat import ChatAgent
from fewrec.agent.polarity import (
    VADER_FEATURES,
    PolarityReader,
    PolarityWeights,
    decide,
    evaluative,
    features,
    judgement_window,
    load_polarity,
    mention_clause,
    polarity_reader,
)
from fewrec.agent.understand import MessageReader, clean_message
from fewrec.fit import build_polarity
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


def test_the_window_takes_the_judgement_that_follows_until_another_title():
    text = "I watched Avatar last week. What a chore. Anything lighter? Maybe a comedy"
    (span,) = spans_of(text, "Avatar")
    assert (
        judgement_window(text, span, [span])
        == "I watched this film last week. What a chore. Anything lighter"
    )
    text = "I watched Avatar. Heat was dull though"
    spans = spans_of(text, "Avatar", "Heat")
    assert judgement_window(text, spans[0], spans) == "I watched this film"  # the next words judge Heat
    assert judgement_window(text, spans[1], spans) == "this film was dull though"


def test_the_three_readings():
    # a taste reading: panned confidently -> disliked; judged but unplaced -> a mention
    assert decide("like", 0.95, True, 0.9, 0.5, 0.1) == "dislike"
    assert decide("watched", 0.95, False, 0.9, 0.5, 0.1) == "dislike"
    assert decide("like", 0.7, True, 0.9, 0.5, 0.1) == "mention"
    assert decide("like", 0.7, False, 0.9, 0.5, 0.1) == "like"  # no judgement at all: taste
    assert decide("curious", 0.2, True, 0.9, 0.5, 0.1) == "curious"
    # the rules' structure stands; a rule's dislike yields only to confident praise
    assert decide("dislike", 0.05, True, 0.9, 0.5, 0.1) == "like"
    assert decide("dislike", 0.3, True, 0.9, 0.5, 0.1) == "dislike"
    assert decide("avoid", 0.01, True, 0.9, 0.5, 0.1) == "avoid"
    assert decide("seen", 0.99, True, 0.9, 0.5, 0.1) == "seen"
    # thresholds that mean "rules only" change nothing, whatever the probability
    for sentiment in ("like", "watched", "curious", "dislike", "avoid", "seen"):
        assert all(decide(sentiment, p, True, 1.0, 1.0, 0.0) == sentiment for p in np.linspace(0, 1, 11))


def test_judgement_words_and_vader_features():
    assert evaluative("this film was awful") and evaluative("I loved this film")
    assert not evaluative("I've seen this film with my kids")
    assert not evaluative("this film was fine")  # too weak to be a judgement
    x = features(np.zeros((2, 3)), ["this film was awful", "this film was wonderful"])
    assert x.shape == (2, 3 + len(VADER_FEATURES))
    compound = VADER_FEATURES.index("compound") + 3
    assert x[0, compound] < 0 < x[1, compound]


def test_a_sentence_file_with_a_missing_label_stops_at_its_line(tmp_path):
    folder = tmp_path / "sentences"
    folder.mkdir()
    (folder / "a_labelled.txt").write_text("Great film.\t1\nDull as ditchwater.\n", encoding="utf-8")
    with pytest.raises(build_polarity.SentenceFileError, match=r"a_labelled.txt line 2: no label"):
        build_polarity.read_sentences(folder)
    (folder / "a_labelled.txt").write_text(
        "Great film.\t1\nThe script is\x85was there one?\t0\n", encoding="utf-8"
    )
    assert [s.positive for s in build_polarity.read_sentences(folder)] == [1, 0]  # U+0085 is no line end
    with pytest.raises(SystemExit, match=r"no \*_labelled.txt file"):
        build_polarity.main([str(SAMPLE), str(tmp_path / "out.json"), "--sentences", str(tmp_path)])


@pytest.fixture(scope="module")
def minilm():
    from fewrec.retrieval.embeddings import DefaultEmbedder

    return DefaultEmbedder()


def weights_from(embedder, examples: list[tuple[str, int]], **thresholds: float) -> PolarityWeights:
    """A classifier fitted on a few clauses (1: panned), as the build command fits one."""
    texts = [c for c, _ in examples]
    x = features(embedder.embed(texts), texts)
    coef, intercept = build_polarity.fit(x, np.array([y for _, y in examples]), 10.0)
    return PolarityWeights(
        model=embedder.name, source="test", command="test", dialogues=0, mentions=len(examples),
        regularisation=10.0, coef=coef.tolist(), intercept=intercept, **thresholds,
    )  # fmt: skip


EXAMPLES = [
    ("I hated this film", 1), ("this film was awful", 1), ("this film bored me to death", 1),
    ("what a terrible movie this film was", 1), ("I could not stand this film", 1),
    ("I loved this film", 0), ("this film was great", 0), ("this film is one of my favourites", 0),
    ("I really enjoyed this film", 0), ("this film was so much fun", 0),
]  # fmt: skip


@pytest.mark.slow
def test_a_fitted_classifier_reads_phrasings_it_never_saw(minilm, catalog_and_genres):
    weights = weights_from(minilm, EXAMPLES, dislike_above=0.5, mention_above=0.5, like_below=0.0)
    reader = MessageReader(*catalog_and_genres, polarity=PolarityReader(weights, minilm))
    rules = MessageReader(*catalog_and_genres)
    message = "Titanic was dreadful, a total waste of time"
    assert [t.sentiment for t in rules.read(message).titles] == ["like"]  # no rule knows "dreadful"
    assert [t.sentiment for t in reader.read(message).titles] == ["dislike"]
    mixed = reader.read("Honestly Avatar was dreadful and a waste of time. Toy Story was wonderful")
    assert [(t.phrase, t.sentiment) for t in mixed.titles] == [("Avatar", "dislike"), ("Toy Story", "like")]
    # a film named with no judgement stays taste, whatever the model makes of the words
    assert [t.sentiment for t in reader.read("I watched Heat with my brother last week").titles] == [
        "watched"
    ]


class Broken:
    name = "all-MiniLM-L6-v2"

    def embed(self, texts, progress: bool = False) -> np.ndarray:
        raise EmbeddingError("the model is gone")


def active_weights(dimensions: int = 4) -> PolarityWeights:
    return PolarityWeights(
        model="all-MiniLM-L6-v2", source="test", command="test", dialogues=1, mentions=1,
        regularisation=1.0, coef=[5.0] * (dimensions + len(VADER_FEATURES)), intercept=0.0,
        dislike_above=0.5, like_below=0.1,
    )  # fmt: skip


def test_without_an_embedding_model_the_rules_read_alone(catalog_and_genres, tmp_path):
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


def test_the_bundled_weights_and_their_provenance():
    weights = load_polarity()
    assert weights is not None
    assert "Kotzias" in weights.source and "CC BY 4.0" in weights.source and "ReDial" in weights.source
    assert "train_data.jsonl" in weights.source and "--sentences" in weights.command
    assert "valid" not in weights.source  # valid dialogues help choose; they are never fitted on
    assert weights.model == "all-MiniLM-L6-v2" and len(weights.coef) == 384 + len(VADER_FEATURES)
    assert weights.sentences == 3000 and weights.dialogues == 500 and weights.mentions > 500
    assert (
        weights.mention_above <= weights.dislike_above
        and weights.named_mention_above <= weights.dislike_above
    )
    # No weight reads a dimension that only holds rounding noise: such a weight is millions,
    # and the noise it multiplies differs between processors.
    assert max(abs(c) for c in weights.coef) < 100


def test_a_feature_that_holds_only_rounding_noise_gets_no_weight():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    signal = y + rng.normal(scale=0.5, size=400)
    noise = -1.6e-8 + 3e-9 * rng.normal(size=400)  # a dead MiniLM dimension
    noise[y == 1] += 3e-9  # noise that happens to track the label in this sample
    x = np.column_stack([signal, noise, 0.05 * rng.normal(size=400)])
    coef, intercept = build_polarity.fit(x, y, regularisation=1.0)
    assert coef[1] == 0.0 and coef[0] > 0 and coef[2] != 0.0
    # the reading of a row does not move when only its noise does
    row = x[:1].copy()
    moved = row.copy()
    moved[0, 1] += 5e-8
    assert row @ coef + intercept == pytest.approx(moved @ coef + intercept, abs=0.0)


@pytest.mark.slow
def test_the_build_command_on_sample_data(minilm, catalog_and_genres, tmp_path):
    folder = tmp_path / "sentences"
    folder.mkdir()
    lines = [f"{text.replace('this film', 'the movie')}\t{1 - label}" for text, label in EXAMPLES]
    (folder / "imdb_labelled.txt").write_text("\n".join(lines * 2) + "\n", encoding="utf-8")
    weights, figures, choice = build_polarity.build(
        SAMPLE, [], folder, None, *catalog_and_genres, minilm, "test", 2, 0
    )
    assert weights.regularisation == choice.regularisation and weights.sentences == 20
    chosen = (weights.dislike_above, weights.mention_above, weights.like_below, weights.named_mention_above)
    assert chosen == choice.thresholds
    assert len(weights.coef) == 384 + len(VADER_FEATURES) and weights.dialogues == 7
    assert figures["movie_sentence_accuracy"][3] == 20 and figures["rules_liked_kept"][3] >= 5
    out = tmp_path / "polarity.json"
    build_polarity.main([str(SAMPLE), str(out), "--sentences", str(folder), "--folds", "2"])
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
    assert mentions and all("this film" in m.window for m in mentions)
    assert {m.liked for m in mentions} == {0, 1}


def test_written_dislikes_are_marked(catalog_and_genres, tmp_path):
    dialogues = build_polarity.read_dialogues(SAMPLE)
    mentions = build_polarity.labelled_mentions(
        dialogues, MessageReader(*catalog_and_genres), 2000, SAMPLE.name
    )
    disliked = next(m for m in mentions if m.liked == 0)
    conversation = disliked.dialogue.split(":", 1)[1]
    table = tmp_path / "written.csv"
    table.write_text(
        "file,conversation_id,movie_id,title,written,kind,evidence\n"
        f"{SAMPLE.name},{conversation},{disliked.key},X,1,clear,e\n",
        encoding="utf-8",
    )
    written = frozenset(build_polarity.read_written(table))
    marked = build_polarity.labelled_mentions(
        dialogues, MessageReader(*catalog_and_genres), 2000, SAMPLE.name, written
    )
    assert [m.written for m in marked if m.key == disliked.key and m.dialogue == disliked.dialogue] == [
        True
    ] * sum(1 for m in mentions if m.key == disliked.key and m.dialogue == disliked.dialogue)
    figures = build_polarity.reading_figures(marked, [m.rule for m in marked])
    assert figures["written"] == 1


def test_a_folds_choice_never_reads_that_fold():
    """Nested figures: the choice a fold is read with comes from the other folds alone, so
    changing that fold's labels and probabilities changes nothing in it."""
    rng = np.random.default_rng(0)
    sentences = [build_polarity.Sentence(f"s{i}", int(i % 2), "imdb_labelled.txt") for i in range(40)]
    mentions = [
        build_polarity.Mention(f"d{i // 3}", str(i), "this film", "named", int(i % 5 != 0), i % 10 == 0)
        for i in range(60)
    ]
    n = len(sentences) + len(mentions)
    y = np.array([1 - s.positive for s in sentences] + [int(m.liked == 0) for m in mentions])
    data = build_polarity.Data(
        x=rng.normal(size=(n, 3)), y=y, is_mention=np.arange(n) >= len(sentences),
        fitted=np.ones(n, dtype=bool), fold=rng.integers(0, 3, n), sentences=sentences,
        mentions=mentions, lexicon=rng.random(n) < 0.5,
    )  # fmt: skip
    probabilities = {(c, w): rng.random(n) for c in (0.1, 1.0) for w in (0.3, 1.0)}
    chosen = build_polarity.choose(data, probabilities, data.fold != 0)
    here = data.fold == 0
    data.y[here] = 1 - data.y[here]
    for m, flip in zip(mentions, here[len(sentences) :], strict=True):
        m.liked = 1 - m.liked if flip else m.liked
    for p in probabilities.values():
        p[here] = rng.random(int(here.sum()))
    assert build_polarity.choose(data, probabilities, data.fold != 0) == chosen
