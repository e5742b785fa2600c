"""Which words of a message describe films, and so may become a meaning query.

A query is only words that describe films: plot, mood, setting, people, era. Judgements
("awful", "great"), filler ("instead", "way") and words about the person or the occasion
("wife", "tonight") are not. No list of such words is kept here: a word describes films when
the catalog's own descriptive text (its genres, tags and descriptions) uses it, measured
against how often people use it when they talk about films. Two counts give that:

- `c`, the number of catalog items whose descriptive text holds the word;
- `t`, the number of messages of ReDial's *training* dialogues that hold it (both sides of the
  conversation; Li et al., NeurIPS 2018, CC BY 4.0; bundled as `redial_words.json` by
  `python -m fewrec.fit.build_query_words`).

A word is descriptive when its score, `log((c + a) / items) - log((t + a) / messages)`, reaches
`describe` *and* at least `evidence` items per 10,000 use it. "tonight" is common in the talk
and absent from the catalog; "heist", "robots" or "atmospheric" are the other way.

Evaluative words need stronger catalog evidence: a word in VADER's valence lexicon (Hutto and
Gilbert, ICWSM 2014, MIT licence; the `vaderSentiment` package) must be used by `evaluative`
items per 10,000. "awful", "great" or "masterpiece" are not used that often by the catalog's
taggers.

Forms are compared on a light stem (plurals and possessives folded). A word neither count
knows is read as a typo of a common word one edit away ("tonigth"); when there is none it is
unknown, and `unknown` says whether it may stand in a query. Two words in a row that the
catalog uses as a phrase ("time travel", "mel gibson") both stay.

The thresholds were chosen by cross-validation over 300 labelled ReDial seeker messages
(`python -m fewrec.fit.query_words`, docs/QUERY_WORDS.md), never on a single message.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

BUNDLED_WORDS = Path(__file__).resolve().parent.parent / "data" / "bundled" / "redial_words.json"
BUNDLED_CATALOG = Path(__file__).resolve().parent.parent / "data" / "bundled" / "ml-latest-small"
WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
MENTION = re.compile(r"@\d+")
LETTERS = "abcdefghijklmnopqrstuvwxyz"
MIN_TYPO_LENGTH = 3  # shorter words have too many neighbours one edit away
MEMO_LIMIT = 100_000  # words whose answer a describer remembers
TYPO_OF = 10  # a typo is read as a word used this often (catalog items + talk messages): common


class WordJudge(Protocol):
    """What the message reader asks of a describer."""

    def describes(self, word: str) -> bool: ...

    def phrase(self, first: str, second: str) -> bool: ...


@dataclass(frozen=True)
class Thresholds:
    """What a word needs to count as descriptive (see the module docstring)."""

    describe: float = -0.1  # the score (log-ratio of the catalog's rate to the talk's) a word needs
    evidence: float = 2.0  # the catalog items per 10,000 whose text must hold it
    evaluative: float = 20.0  # the same, for a word of VADER's lexicon
    unknown: bool = False  # may a word that nothing has used stand in a query?
    smoothing: float = 1.0  # `a`, added to both counts


# Chosen by `python -m fewrec.fit.query_words` (docs/QUERY_WORDS.md).
DEFAULT_THRESHOLDS = Thresholds()


def words(text: str) -> list[str]:
    """The words of a text as the describer counts them: lower case, straight apostrophes,
    ReDial's `@123` film references left out."""
    return WORD.findall(MENTION.sub(" ", text.lower().replace("’", "'")))


@functools.cache
def stem(word: str) -> str:
    """Plurals and possessives folded: "robots" -> "robot", "stories" -> "story", "kid's" ->
    "kid". Nothing else: "haunted" stays, as "twisted" does."""
    word = word.lower().replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    elif word.endswith("s'"):
        word = word[:-1]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@functools.cache
def valence() -> Mapping[str, float]:
    """VADER's valence lexicon: word -> mean rating of how positive or negative it is."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return dict(SentimentIntensityAnalyzer().lexicon)


def _by_stem(counts: Mapping[str, int]) -> Counter[str]:
    out: Counter[str] = Counter()
    for word, n in counts.items():
        out[stem(word)] += n
    return out


def _edits(word: str) -> set[str]:
    """Every string one edit away: a letter dropped, swapped with the next, changed or added."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    dropped = [a + b[1:] for a, b in splits if b]
    swapped = [a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1]
    changed = [a + c + b[1:] for a, b in splits if b for c in LETTERS]
    added = [a + c + b for a, b in splits for c in LETTERS]
    return set(dropped + swapped + changed + added) - {word}


class Describer:
    """Says which words describe films, from the catalog's and the talk's counts."""

    def __init__(
        self,
        catalog: Mapping[str, int],
        items: int,
        talk: Mapping[str, int],
        messages: int,
        thresholds: Thresholds = DEFAULT_THRESHOLDS,
        lexicon: Mapping[str, float] | None = None,
        phrases: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        self.catalog = _by_stem(catalog)
        # Two words in a row in the catalog's text ("time travel", "mel gibson"), by stem: the
        # number of items that hold the pair.
        self.phrases: Mapping[tuple[str, str], int] = phrases or {}
        self.talk = _by_stem(talk)
        self.items = max(items, 1)
        self.messages = max(messages, 1)
        self.thresholds = thresholds
        self.lexicon = valence() if lexicon is None else lexicon
        self._memo: dict[str, bool] = {}

    # ------------------------------------------------------------------ building
    @classmethod
    def from_texts(
        cls, texts: Iterable[Iterable[str]], talk: TalkCounts | None = None, **kwargs: Any
    ) -> Describer:
        """From each catalog item's descriptive texts (genres, tags, description)."""
        counts: Counter[str] = Counter()
        pairs: Counter[tuple[str, str]] = Counter()
        items = 0
        for parts in texts:
            items += 1
            stems = [[stem(w) for w in words(str(part))] for part in parts]
            counts.update({w for part in stems for w in part})
            pairs.update({(a, b) for part in stems for a, b in itertools.pairwise(part)})
        talk = talk if talk is not None else load_talk()
        return cls(counts, items, talk.counts, talk.messages, phrases=pairs, **kwargs)

    @classmethod
    def from_catalog(cls, catalog: Any, talk: TalkCounts | None = None, **kwargs: Any) -> Describer:
        """From a `fewrec.data.Catalog`: each item's genres, tags and text."""
        frame = catalog.frame
        texts = (
            [*genres, *tags, text or ""]
            for genres, tags, text in zip(frame["genres"], frame["tags"], frame["text"], strict=True)
        )
        return cls.from_texts(texts, talk, **kwargs)

    def without(self, messages: Iterable[str]) -> Describer:
        """The same describer with these messages taken out of the talk's counts: a message
        is then read as if its dialogue had never been counted (the evaluation's held-out)."""
        less: Counter[str] = Counter()
        gone = 0
        for text in messages:
            gone += 1
            less.update({stem(w) for w in words(text)})
        talk = {w: n - less[w] for w, n in self.talk.items() if n - less[w] > 0}
        return Describer(
            self.catalog, self.items, talk, self.messages - gone, self.thresholds, self.lexicon, self.phrases
        )

    def with_thresholds(self, thresholds: Thresholds) -> Describer:
        out = Describer.__new__(Describer)
        out.__dict__.update(self.__dict__)
        out.thresholds = thresholds
        out._memo = {}
        return out

    # ------------------------------------------------------------------ reading
    def counts(self, word: str) -> tuple[int, int, str]:
        """(c, t) for a word, and the form they were read for: the word's own stem, or, for a
        word neither count knows, the word one edit away that they know best, when that one is
        common (a typo: "enjoed", "idaes"); "" when there is none (an unknown word)."""
        key = stem(word)
        c, t = self.catalog.get(key, 0), self.talk.get(key, 0)
        if c or t:
            return c, t, key
        if len(key) < MIN_TYPO_LENGTH or not key.isalpha() or self.evaluative(word):
            return 0, 0, ""  # too short to tell, or a word VADER knows: no typo
        near = {stem(e) for e in _edits(key)}
        best = max(((self.catalog.get(e, 0) + self.talk.get(e, 0), e) for e in near), default=(0, ""))
        if best[0] < TYPO_OF:
            return 0, 0, ""
        return self.catalog.get(best[1], 0), self.talk.get(best[1], 0), best[1]

    def score(self, word: str) -> float | None:
        """The log-ratio of the catalog's rate to the talk's; None for a word nothing used."""
        c, t, form = self.counts(word)
        if not form:
            return None
        a = self.thresholds.smoothing
        return math.log((c + a) / self.items) - math.log((t + a) / self.messages)

    def known(self, word: str) -> bool:
        """Has the catalog, the training talk or VADER's lexicon used this word (no typo
        reading)?"""
        key = stem(word)
        return bool(self.catalog.get(key) or self.talk.get(key)) or self.evaluative(word)

    def evaluative(self, word: str) -> bool:
        """Is the word (or its stem) in VADER's valence lexicon?"""
        lowered = word.lower().replace("’", "'")
        return lowered in self.lexicon or stem(lowered) in self.lexicon

    def describes(self, word: str) -> bool:
        """Does this word describe films (so may it stand in a meaning query)?"""
        if word not in self._memo:
            if len(self._memo) >= MEMO_LIMIT:  # a long-lived chat meets many words: stay bounded
                self._memo.clear()
            self._memo[word] = self._describes(word)
        return self._memo[word]

    def phrase(self, first: str, second: str) -> bool:
        """Are two words in a row a phrase the catalog describes films with ("time travel",
        "mel gibson")? Then both stand in the query, even a word that alone would not ("time"
        alone is mostly "all time favourite"). Never for an evaluative word."""
        if self.evaluative(first) or self.evaluative(second):
            return False
        need = max(1.0, self.thresholds.evidence * self.items / 10_000)
        return self.phrases.get((stem(first), stem(second)), 0) >= need

    def _describes(self, word: str) -> bool:
        t = self.thresholds
        c, _, _ = self.counts(word)
        score = self.score(word)
        if score is None:
            return t.unknown
        per_10k = t.evaluative if self.evaluative(word) else t.evidence
        return score >= t.describe and c >= per_10k * self.items / 10_000


# ---------------------------------------------------------------------- the talk's counts
@dataclass(frozen=True)
class TalkCounts:
    """In how many messages of the training dialogues each word occurs, as bundled."""

    counts: Mapping[str, int]
    messages: int
    meta: Mapping[str, Any]


def count_talk(lines: Iterable[str]) -> tuple[Counter[str], int, int]:
    """Per word, the number of messages (of every speaker) that hold it; the number of
    messages and of dialogues read. `lines`: ReDial's JSONL, one dialogue a line."""
    counts: Counter[str] = Counter()
    messages = dialogues = 0
    for line in lines:
        if not line.strip():
            continue
        dialogue = json.loads(line)
        dialogues += 1
        for message in dialogue.get("messages", []):
            messages += 1
            counts.update(set(words(str(message.get("text", "")))))
    return counts, messages, dialogues


@functools.cache
def load_talk(path: Path = BUNDLED_WORDS) -> TalkCounts:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    meta = {k: v for k, v in data.items() if k != "counts"}
    return TalkCounts(data["counts"], int(data["messages"]), meta)


@functools.cache
def bundled_describer() -> Describer:
    """A describer over the bundled catalog (ml-latest-small's genres and tags), for callers
    that read a message without a catalog of their own."""
    import csv

    texts: dict[str, list[str]] = {}
    with open(BUNDLED_CATALOG / "movies.csv", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            texts[row["movieId"]] = row["genres"].replace("(no genres listed)", "").split("|")
    with open(BUNDLED_CATALOG / "tags.csv", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["movieId"] in texts:
                texts[row["movieId"]].append(row["tag"])
    return Describer.from_texts(texts.values())
