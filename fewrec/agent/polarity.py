"""How a person feels about each film they name, read by a small classifier over the sentence
embeddings fewrec already ships, with the hand-written rules of `understand.py` as one input.

The rules read the common forms well ("I didn't like X", "couldn't stand X but loved Y"), but
real people write "X was a snooze", "X? meh" or "my husband dragged me to X". A logistic
regression over the all-MiniLM-L6-v2 embedding of the mention's clause (the film itself
written as "this film", other films as "that film") and the rules' own label says how likely
the film was disliked; only a confident answer overrides the rules:
- a film the rules read as liked (or seen, or asked about) becomes disliked above
  `dislike_above`;
- a film the rules read as disliked, "nothing like" or "not again" becomes liked below
  `like_below`.
The weights come from ReDial's *training* dialogues only (the seekers' own labels; Li et al.,
NeurIPS 2018, CC BY 4.0), written as JSON by `python -m fewrec.eval.build_polarity`, with
both thresholds chosen by cross-validation over those dialogues. Without the embedding model
(or with another one) the chat reads with the rules alone and says so once in the log.
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
# The rules' labels, in the order of their one-hot features.
SENTIMENTS = ("like", "watched", "curious", "dislike", "avoid", "seen")
LIKED = frozenset({"like", "watched", "curious"})  # the chat files all three as liked
# A clause ends at sentence punctuation or a turn of thought ("X was fine but Y bored me").
CLAUSE_END = re.compile(r"[.!?;\n]+|\b(?:but|however|though|although|whereas)\b", re.I)
TARGET = "this film"
OTHER = "that film"


class TextEmbedder(Protocol):
    """What the reader needs of an embedder (`fewrec.retrieval.embeddings.Embedder`)."""

    name: str

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray: ...


class PolarityWeights(BaseModel):
    """A fitted polarity classifier, as shipped: plain numbers, no pickle."""

    model: str  # the embedding model whose vectors the weights read
    source: str  # the dialogues they were fitted on, with their licence
    command: str  # how the file was made
    dialogues: int
    mentions: int  # labelled mentions fitted on
    regularisation: float  # scikit-learn's C
    coef: list[float]  # embedding dimensions, then one per rule label (SENTIMENTS)
    intercept: float
    dislike_above: float = Field(ge=0.0, le=1.0)
    like_below: float = Field(ge=0.0, le=1.0)


def mention_clause(text: str, span: tuple[int, int], spans: Sequence[tuple[int, int]]) -> str:
    """The clause around one title, the title written as TARGET and other titles as OTHER, so
    that the classifier reads the feeling, never the film."""
    start, end = span
    begin = max([0, *(m.end() for m in CLAUSE_END.finditer(text) if m.end() <= start)])
    after = CLAUSE_END.search(text, end)
    stop = after.start() if after else len(text)
    pieces: list[str] = []
    at = begin
    for other in sorted(s for s in spans if s[0] >= begin and s[1] <= stop):
        if other[0] < at:
            continue  # overlapping spans: the first one stands
        pieces += [text[at : other[0]], TARGET if other == (start, end) else OTHER]
        at = other[1]
    pieces.append(text[at:stop])
    clause = " ".join("".join(pieces).split())
    return clause or TARGET


def features(vectors: np.ndarray, rules: Sequence[str]) -> np.ndarray:
    """Each mention's clause vector, then the rules' label as one-hot."""
    onehot = np.zeros((len(rules), len(SENTIMENTS)), dtype=np.float32)
    for row, sentiment in enumerate(rules):
        onehot[row, SENTIMENTS.index(sentiment)] = 1.0
    return np.hstack([np.asarray(vectors, dtype=np.float32).reshape(len(rules), -1), onehot])


def decide(rule: str, dislike: float, dislike_above: float, like_below: float) -> str:
    """The rules' label, overridden only by a confident classifier."""
    if rule in LIKED and dislike > dislike_above:
        return "dislike"
    if rule not in LIKED and dislike < like_below:
        return "like"
    return rule


class PolarityReader:
    """Reads each mention of a message with the classifier: one embedding call per message."""

    def __init__(self, weights: PolarityWeights, embedder: TextEmbedder) -> None:
        self.weights = weights
        self.embedder = embedder
        self._coef = np.asarray(weights.coef, dtype=np.float64)

    def dislike_probability(self, clauses: Sequence[str], rules: Sequence[str]) -> np.ndarray:
        x = features(self.embedder.embed(list(clauses)), rules).astype(np.float64)
        return 1.0 / (1.0 + np.exp(-(x @ self._coef + self.weights.intercept)))

    def adjust(self, text: str, spans: Sequence[tuple[int, int]], rules: Sequence[str]) -> list[str]:
        """The sentiment of each title span (in order), given the rules' reading of it."""
        if not spans:
            return []
        clauses = [mention_clause(text, span, spans) for span in spans]
        probabilities = self.dislike_probability(clauses, rules)
        w = self.weights
        return [
            decide(r, float(p), w.dislike_above, w.like_below)
            for r, p in zip(rules, probabilities, strict=True)
        ]


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
    if len(weights.coef) < len(SENTIMENTS):
        return None, "malformed polarity weights: feelings read by the rules alone"
    if weights.dislike_above >= 1.0 and weights.like_below <= 0.0:
        return None, "the polarity classifier overrules nothing (its thresholds): feelings read by the rules"
    return PolarityReader(weights, embedder), ""


__all__ = [
    "BUNDLED_POLARITY",
    "PolarityReader",
    "PolarityWeights",
    "decide",
    "features",
    "load_polarity",
    "mention_clause",
    "polarity_reader",
]
