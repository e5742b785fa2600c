"""How a person judged each film they name, read by a model fitted on labelled judgements; the
hand-written rules of `understand.py` keep the structure (which words belong to which title,
negation, "nothing like", "not again").

People judge films in open vocabulary: "X was a chore to sit through", "X? meh", "my husband
dragged me to X". No word list holds that. A logistic regression reads the words around a
title (`judgement_window`: the title's clause and the clauses after it that name no other
title, the title written as "this film", other titles as "that film") from two kinds of
features:
- the all-MiniLM-L6-v2 embedding of those words (the embedder the catalog index already uses);
- VADER's valence scores of them (Hutto & Gilbert, ICWSM 2014, MIT licence): negative,
  neutral, positive, compound.
It gives the probability that the film was panned. Three readings come of it (`decide`):
- confidently panned (above `dislike_above`): disliked, whatever the rules' taste reading;
- a judgement the model cannot place: a *mention*, neither liked nor disliked, and the chat
  asks how the film was. That is a title the rules found no feeling word about, above
  `named_mention_above` ("X was a chore to sit through"), or any taste reading whose words
  hold a judgement word (VADER's lexicon), above `mention_above`;
- otherwise the rules' reading stands. A film named with no judgement stays taste: the
  seekers' own labels count "I've seen X" and "I haven't seen X yet" as liked.
A rule's "disliked" gives way only to a confidently positive reading (below `like_below`).

The weights are fitted on 3,000 labelled review sentences (Kotzias et al., KDD 2015, UCI
"Sentiment Labelled Sentences", CC BY 4.0) and the seekers' own labels in ReDial's training
dialogues (Li et al., NeurIPS 2018, CC BY 4.0), and shipped as JSON with the command that
rebuilds them (`python -m fewrec.fit.build_polarity`); the thresholds are chosen there by
cross-validation grouped by dialogue. Without the embedding model (or with another one) the
chat reads with the rules alone and says so once in the log.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import BaseModel, Field, ValidationError

log = logging.getLogger(__name__)

BUNDLED_POLARITY = Path(__file__).resolve().parent.parent / "data" / "bundled" / "redial_polarity.json"
LIKED = frozenset({"like", "watched", "curious"})  # the chat files all three as liked
NAMED = "named"  # no feeling word about the title: liked, unless the classifier reads a judgement
INTERJECTED = "interjected"  # its only feeling word is an exclamation before it ("oh great, X")
# A clause ends at sentence punctuation or a turn of thought ("X was fine but Y bored me").
CLAUSE_END = re.compile(r"[.!?;\n]+|\b(?:but|however|though|although|whereas)\b", re.I)
TARGET = "this film"
OTHER = "that film"
FOLLOWING_CLAUSES = 2  # "I watched X. What a chore. Anything lighter?": the judgement comes after
VADER_FEATURES = ("neg", "neu", "pos", "compound")
# A word whose VADER valence is at least this strong is a judgement ("fine" 0.8 is not).
EVALUATIVE_VALENCE = 1.0
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


class TextEmbedder(Protocol):
    """What the reader needs of an embedder (`fewrec.retrieval.embeddings.Embedder`)."""

    name: str

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray: ...


class PolarityWeights(BaseModel):
    """A fitted polarity classifier, as shipped: plain numbers, no pickle."""

    model: str  # the embedding model whose vectors the weights read
    source: str  # the data they were fitted on, with its licences
    command: str  # how the file was made
    sentences: int = 0  # labelled review sentences fitted on
    dialogues: int
    mentions: int  # labelled film mentions fitted on
    regularisation: float  # scikit-learn's C
    coef: list[float]  # embedding dimensions, then VADER_FEATURES
    intercept: float
    dislike_above: float = Field(ge=0.0, le=1.0)
    mention_above: float = Field(default=1.0, ge=0.0, le=1.0)
    like_below: float = Field(ge=0.0, le=1.0)
    # A title the rules found no feeling word about is a mention above this, judgement word or
    # not: "X was a chore to sit through" holds no word of VADER's lexicon.
    named_mention_above: float = Field(default=1.0, ge=0.0, le=1.0)


def _clause_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    begin = max([0, *(m.end() for m in CLAUSE_END.finditer(text) if m.end() <= start)])
    after = CLAUSE_END.search(text, end)
    return begin, after.start() if after else len(text)


def _written(
    text: str, begin: int, stop: int, span: tuple[int, int], spans: Sequence[tuple[int, int]]
) -> str:
    pieces: list[str] = []
    at = begin
    for other in sorted(s for s in spans if s[0] >= begin and s[1] <= stop):
        if other[0] < at:
            continue  # overlapping spans: the first one stands
        pieces += [text[at : other[0]], TARGET if other == span else OTHER]
        at = other[1]
    pieces.append(text[at:stop])
    return " ".join("".join(pieces).split())


def mention_clause(text: str, span: tuple[int, int], spans: Sequence[tuple[int, int]]) -> str:
    """The clause around one title, the title written as TARGET and other titles as OTHER, so
    that the classifier reads the feeling, never the film."""
    begin, stop = _clause_bounds(text, *span)
    return _written(text, begin, stop, span, spans) or TARGET


def judgement_window(text: str, span: tuple[int, int], spans: Sequence[tuple[int, int]]) -> str:
    """The title's clause and up to FOLLOWING_CLAUSES clauses after it, as long as they name no
    other title (the words after "Y" judge Y), written as `mention_clause` writes them."""
    begin, stop = _clause_bounds(text, *span)
    for _ in range(FOLLOWING_CLAUSES):
        if stop >= len(text):
            break
        nxt = CLAUSE_END.match(text, stop)
        follow = nxt.end() if nxt else stop
        _, next_stop = _clause_bounds(text, follow, follow)
        if any(s[0] < next_stop and s[1] > follow for s in spans):
            break
        stop = next_stop
    return _written(text, begin, stop, span, spans) or TARGET


@functools.cache
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_scores(texts: Sequence[str]) -> np.ndarray:
    """VADER's negative, neutral, positive and compound scores of each text."""
    analyser = _vader()
    return np.array(
        [[analyser.polarity_scores(t)[k] for k in VADER_FEATURES] for t in texts], dtype=np.float64
    ).reshape(len(texts), len(VADER_FEATURES))


def evaluative(text: str) -> bool:
    """Does the text hold a judgement word (VADER's lexicon, strong enough), the film
    placeholders aside?"""
    lexicon = _vader().lexicon
    words = WORD.findall(text.lower().replace(TARGET, " ").replace(OTHER, " "))
    return any(abs(lexicon.get(w, 0.0)) >= EVALUATIVE_VALENCE for w in words)


def features(vectors: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """Each text's embedding, then its VADER scores."""
    vectors = np.asarray(vectors, dtype=np.float64).reshape(len(texts), -1)
    return np.hstack([vectors, vader_scores(texts)])


def decide(
    rule: str,
    panned: float,
    judged: bool,
    dislike_above: float,
    mention_above: float,
    like_below: float,
    named_mention_above: float = 1.0,
) -> str:
    """The reading of one film from the rules' reading, the probability that it was panned, and
    whether its words hold a judgement word."""
    if rule == INTERJECTED:  # "oh great, another X": praise or sarcasm, only a pan is readable
        return "dislike" if panned > dislike_above else "mention"
    if rule == NAMED:
        if panned > dislike_above:
            return "dislike"
        if panned > named_mention_above or (judged and panned > mention_above):
            return "mention"
        return "like"
    if rule in LIKED:
        if panned > dislike_above:
            return "dislike"
        if judged and panned > mention_above:
            return "mention"
        return rule
    if rule == "dislike" and panned < like_below:
        return "like"
    return rule


class PolarityReader:
    """Reads each mention of a message with the classifier: one embedding call per message."""

    def __init__(self, weights: PolarityWeights, embedder: TextEmbedder) -> None:
        self.weights = weights
        self.embedder = embedder
        self._coef = np.asarray(weights.coef, dtype=np.float64)

    def panned_probability(self, windows: Sequence[str]) -> np.ndarray:
        x = features(self.embedder.embed(list(windows)), windows)
        return 1.0 / (1.0 + np.exp(-(x @ self._coef + self.weights.intercept)))

    def adjust(self, text: str, spans: Sequence[tuple[int, int]], rules: Sequence[str]) -> list[str]:
        """The reading of each title span (in order), given the rules' reading of it."""
        if not spans:
            return []
        windows = [judgement_window(text, span, spans) for span in spans]
        panned = self.panned_probability(windows)
        w = self.weights
        return [
            decide(r, float(p), evaluative(window), w.dislike_above, w.mention_above, w.like_below,
                   w.named_mention_above)
            for r, p, window in zip(rules, panned, windows, strict=True)
        ]  # fmt: skip


@functools.cache
def load_polarity(path: Path = BUNDLED_POLARITY) -> PolarityWeights | None:
    """The weights in a file, or None (with a log line) when it is missing or malformed."""
    try:
        return PolarityWeights.model_validate_json(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValidationError) as exc:
        log.warning("polarity weights %s not read (%s): feelings are read by the rules alone", path, exc)
        return None


def polarity_reader(
    embedder: TextEmbedder | None, path: Path = BUNDLED_POLARITY
) -> tuple[PolarityReader | None, str]:
    """The classifier over this embedder, or None and why (the chat then reads with the rules)."""
    weights = load_polarity(path)
    if weights is None:
        return None, f"no polarity weights at {path}: feelings read by the rules alone"
    if embedder is None:
        return None, "no embedding model: feelings about films read by the rules alone"
    if embedder.name != weights.model or embedder.name.startswith("openai:"):
        return None, (
            f"the polarity weights read {weights.model} vectors, the embedder is {embedder.name}: "
            "feelings about films read by the rules alone"
        )
    if len(weights.coef) <= len(VADER_FEATURES):
        return None, "malformed polarity weights: feelings read by the rules alone"
    return PolarityReader(weights, embedder), ""


__all__ = [
    "BUNDLED_POLARITY",
    "PolarityReader",
    "PolarityWeights",
    "decide",
    "evaluative",
    "features",
    "judgement_window",
    "load_polarity",
    "mention_clause",
    "polarity_reader",
    "vader_scores",
]
