"""Finding catalog titles in free text: the title index behind title lookups and the chat.

`TitleIndex` normalises every title and its other names (a.k.a. names, names in parentheses,
"Matrix, The" read as "The Matrix", the title without its leading article, and as a weaker
name the part before a colon: "Terminator 2" for "Terminator 2: Judgment Day") into token
strings, and finds them anywhere in a sentence: `spans` returns every exact token run that
names a title (overlapping; the caller chooses among them), `fuzzy` matches a fragment with a
small typo distance (rapidfuzz), `suggest` lists close titles for a name that matched nothing.
Deciding which spans a person *meant* as titles (a title that is also a common word, "Up",
"It", "Her") needs the sentence around them, so that lives with the message reader
(`fewrec/agent/understand.py`).
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from rapidfuzz import fuzz, process

ARTICLES = ("the", "a", "an")
TRAILING_ARTICLE = re.compile(r"^(.*), (the|a|an|la|le|les|il|el|der|die|das|l')$", re.IGNORECASE)
TRAILING_YEAR = re.compile(r"\(\s*(\d{4})\s*(?:[-–]\s*\d{0,4}\s*)?\)\s*$")
TOKEN = re.compile(r"[^\W_]+")
MAX_NAME_TOKENS = 16
# A subtitle and a year after a title ("Jack Reacher: Never Go Back (2016)"): one film, whose
# year says which of the title's films it is, or that the catalog lacks it.
SUBTITLE_YEAR = re.compile(r":\s*[A-Z0-9][^.!?;,:()\[\]\n]{0,60}?\s*\(\s*((?:19|20)\d\d)\s*\)")
YEAR_SLACK = 1  # a year one off is the same film (a release abroad, a slip)
FUZZY_MIN_CHARS = 8  # shorter names only match exactly: one typo in "Heat" is another word
FUZZY_CUTOFF = 88.0  # rapidfuzz ratio (0-100): about one edit per eight characters


def fold(text: str) -> str:
    """Lower case without accents, apostrophes dropped ("Schindler's" = "schindlers"), "&" as
    "and"; the same folding for titles and for messages, character for character where it can
    (offsets into a message stay usable)."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return re.sub(r"['’`´]", "", text.casefold()).replace("&", " and ")


def name_key(name: str) -> str:
    """A name as space-separated folded tokens: 'Matrix, The' -> 'the matrix'."""
    name = TRAILING_ARTICLE.sub(r"\2 \1", name.strip())
    return " ".join(TOKEN.findall(fold(name)))


def listed_key(name: str) -> str:
    """'Matrix, The' as catalogs list it ('matrix the'), or "" when no article was moved."""
    if not TRAILING_ARTICLE.match(name.strip()):
        return ""
    return " ".join(TOKEN.findall(fold(name)))


def _numbers(key: str) -> list[str]:
    """The numbers in a key, in order: a sequel's number is never a typo."""
    return re.findall(r"\b(?:\d+|ii|iii|iv|v|vi|vii|viii|ix)\b", key)


def _joined_initials(key: str) -> str:
    """'l a confidential' -> 'la confidential': initials are often typed without the dots."""
    return re.sub(r"\b(?:[a-z0-9] )+[a-z0-9]\b", lambda m: m.group().replace(" ", ""), key)


def _strip_article(key: str) -> str:
    head, _, rest = key.partition(" ")
    return rest if head in ARTICLES and rest else key


def _names_of(title: str) -> list[str]:
    bare = TRAILING_YEAR.sub("", title).strip()
    return [bare, re.sub(r"\s*\([^()]*\)", " ", bare).strip()]


def title_names(title: str) -> tuple[list[str], list[str], list[str]]:
    """The keys a title is known by, strongest first: the title with and without what it has
    in parentheses ('Matrix, The' as 'the matrix' and as written); its a.k.a. and other
    parenthesised names, and all of those without a leading article ('matrix'); the part
    before a colon ('terminator 2')."""
    bare = TRAILING_YEAR.sub("", title).strip()
    main = re.sub(r"\s*\([^()]*\)", " ", bare).strip()
    others = [main]
    others += [re.sub(r"^a\.k\.a\.\s*", "", alt, flags=re.I) for alt in re.findall(r"\(([^()]*)\)", bare)]

    def keys(name: str) -> list[str]:  # "the matrix", and "la" for L.A.
        return [name_key(name), _joined_initials(name_key(name))]

    # The title without its parentheses is as strong as the whole: "Ghostbusters" is the 1984
    # film "(a.k.a. Ghost Busters)" as much as the 2016 one (popularity or a question decides).
    whole = list(dict.fromkeys(k for name in (bare, main) for k in keys(name) if k))
    other = [k for name in others[1:] for k in keys(name) if k and k not in whole]
    other += [_strip_article(k) for k in [*whole, *other]]
    other += [k for name in (bare, main) if (k := listed_key(name)) and k not in whole]
    other = [k for k in dict.fromkeys(other) if k not in whole]
    short: list[str] = []
    for name in [bare, *others]:
        head = re.split(r":\s| - ", TRAILING_ARTICLE.sub(r"\2 \1", name.strip()), maxsplit=1)
        if len(head) == 2:
            for key in (name_key(head[0]), _strip_article(name_key(head[0]))):
                if key and key not in (*whole, *other, *short):
                    short.append(key)
    return whole, other, short


@dataclass(frozen=True)
class Token:
    text: str  # folded
    start: int  # character offsets in the original text
    end: int


@dataclass(frozen=True)
class TitleSpan:
    """A run of a text's tokens that names catalog items."""

    start: int  # character offsets in the original text
    end: int
    first: int  # token positions [first, last)
    last: int
    key: str
    items: tuple[int, ...]  # row positions in the catalog
    score: float = 100.0  # rapidfuzz ratio; 100 for an exact name
    year: int | None = None  # a year written after the title, which narrowed the items
    tier: int = 0  # the strength of the name: 0 the title itself, 1 another name, 2 a short one

    @property
    def n_tokens(self) -> int:
        return self.last - self.first


def tokenize(text: str) -> list[Token]:
    """Folded word tokens with their offsets in `text` (folding per token keeps offsets)."""
    out = []
    for found in re.finditer(r"[^\W_]+(?:['’`´][^\W_]+)*|&", text):
        folded = fold(found.group())
        for part in TOKEN.findall(folded):
            out.append(Token(part, found.start(), found.end()))
    return out


class TitleIndex:
    """Every name of every title (rows of the catalog in the given order) -> rows."""

    def __init__(self, titles: Sequence[str], years: Sequence[int | None]) -> None:
        self.titles = [str(t) for t in titles]
        self.years = list(years)
        # One dict per strength of name: a key found in an earlier one hides the later ones
        # ("heat" is *Heat* (1995), not *The Heat* without its article).
        self.tiers: tuple[dict[str, list[int]], ...] = ({}, {}, {})
        for row, title in enumerate(self.titles):
            for tier, keys in zip(self.tiers, title_names(title), strict=True):
                for key in keys:
                    rows = tier.setdefault(key, [])
                    if row not in rows:
                        rows.append(row)
        self.names = self.tiers[0]
        # 'matrix the' counts only where the text has the comma: "Heat, The Abyss" is two films
        self.listed = frozenset(
            k for title in self.titles for name in _names_of(title) if (k := listed_key(name))
        )

    @cached_property
    def _prefixes(self) -> frozenset[str]:
        out = set()
        for key in (key for tier in self.tiers for key in tier):
            parts = key.split()
            for n in range(1, len(parts) + 1):
                out.add(" ".join(parts[:n]))
        return frozenset(out)

    @cached_property
    def _fuzzy_choices(self) -> list[str]:
        keys = dict.fromkeys(key for tier in self.tiers for key in tier if len(key) >= FUZZY_MIN_CHARS)
        return list(keys)

    def lookup(self, text: str) -> list[int]:
        """Rows whose name is exactly `text` once folded (no typo distance); a trailing year
        ("Heat (1995)") picks the items of that year among all that carry the name."""
        year = TRAILING_YEAR.search(text)
        key = name_key(TRAILING_YEAR.sub("", text))
        if year:
            dated = self._dated(key, int(year.group(1)))
            if dated:
                return dated
        return self._rows(key)

    def _dated(self, key: str, year: int) -> list[int]:
        """Rows of any strength of name `key` from that year."""
        rows = dict.fromkeys(r for tier in self.tiers for r in tier.get(key, ()))
        return [r for r in rows if self.years[r] == year]

    def _rows(self, key: str) -> list[int]:
        return self._tiered(key)[0]

    def _tiered(self, key: str) -> tuple[list[int], int]:
        for n, tier in enumerate(self.tiers):
            if key in tier:
                return list(tier[key]), n
        return [], 0

    def spans(self, text: str, tokens: list[Token] | None = None) -> list[TitleSpan]:
        """Every token run of `text` that is a name, overlapping ones included; a year written
        right after one (with or without parentheses) narrows it to the items of that year."""
        tokens = tokenize(text) if tokens is None else tokens
        out: list[TitleSpan] = []
        for first in range(len(tokens)):
            key = ""
            for last in range(first + 1, min(len(tokens), first + MAX_NAME_TOKENS) + 1):
                key = f"{key} {tokens[last - 1].text}" if key else tokens[last - 1].text
                if key not in self._prefixes:
                    break
                rows, tier = self._tiered(key)
                # 'matrix the' needs its comma: "Heat, The Abyss" is not "Heat the Abyss"
                listed = key in self.listed and last - first >= 2
                if listed and "," not in text[tokens[last - 2].end : tokens[last - 1].start]:
                    rows = []
                if rows:
                    span = self._with_year(text, tokens, first, last, key, rows, 100.0)
                    out.append(dataclasses.replace(span, tier=tier))
        return out

    def _with_year(
        self, text: str, tokens: list[Token], first: int, last: int, key: str, rows: list[int], score: float
    ) -> TitleSpan:
        end = tokens[last - 1].end
        if len(tokens[last - 1].text) <= 3 and text[end : end + 1] == "." and "." in self.titles[rows[0]]:
            end += 1  # "I.Q.", "Monsters, Inc.": the closing dot is the title's
        year = None
        subtitle = SUBTITLE_YEAR.match(text, end)
        if last < len(tokens) and re.fullmatch(r"(?:19|20)\d\d", tokens[last].text):
            gap = text[end : tokens[last].start]
            if re.fullmatch(r"\s*[)\]]?\s*[(\[,]?\s*", gap):  # "Heat (1995)", "Léon (Leon) (1994)"
                year = int(tokens[last].text)
                rows = self._of_year(key, year, rows)
                closing = re.match(r"\s*[)\]]", text[tokens[last].end :])
                end = tokens[last].end + (closing.end() if closing else 0)
                last += 1
        elif (
            subtitle is not None
            and last - first >= 2  # "Question: Have you seen Heat (1995)?" is no subtitle
            and not self.lookup(text[tokens[first].start : subtitle.end()])  # a whole name: its own span
        ):
            year = int(subtitle.group(1))
            rows = self._of_year(key, year, rows)
            end = subtitle.end()
            last = next((n for n in range(last, len(tokens)) if tokens[n].start >= end), len(tokens))
        return TitleSpan(tokens[first].start, end, first, last, key, tuple(rows), score, year)

    def _of_year(self, key: str, year: int, rows: list[int]) -> list[int]:
        """The films of a name from the year written after it (or a year off); none when the
        catalog has the name only in other years: a remake or sequel it lacks, never another
        film ("Beauty and the Beast (2017)" is not the 1991 one)."""
        dated = self._dated(key, year)
        if dated:
            return dated
        near = [r for r in rows if self.years[r] is not None and abs(int(self.years[r]) - year) <= YEAR_SLACK]
        return near or [r for r in rows if self.years[r] is None]

    def fuzzy(self, text: str, cutoff: float = FUZZY_CUTOFF) -> TitleSpan | None:
        """The title `text` names with a typo or two (names of at least FUZZY_MIN_CHARS
        characters), as one span over the whole text; None below `cutoff`."""
        tokens = tokenize(text)
        key = " ".join(t.text for t in tokens)
        if len(key) < FUZZY_MIN_CHARS or not tokens:
            return None
        found = process.extractOne(
            key, self._fuzzy_choices, scorer=fuzz.ratio, processor=None, score_cutoff=cutoff
        )
        if found is None:
            return None
        name, score, _ = found
        if _numbers(name) != _numbers(key):
            return None  # "Toy Story 4" is not a typo of "Toy Story 2": a sequel the catalog lacks
        return TitleSpan(
            tokens[0].start, tokens[-1].end, 0, len(tokens), name, tuple(self._rows(name)), score
        )

    def series(self, text: str) -> list[int]:
        """Rows of the films whose name begins with `text` as whole words ("harry potter" ->
        every *Harry Potter and the …*), oldest first; [] unless at least two."""
        key = name_key(text)
        if not key:
            return []
        prefix = key + " "
        rows = {r for tier in self.tiers[:2] for name, found in tier.items() if name.startswith(prefix)
                for r in found}  # fmt: skip
        rows.update(r for tier in self.tiers for r in tier.get(key, ()))
        if len(rows) < 2:
            return []
        return sorted(rows, key=lambda r: (self.years[r] or 9999, r))

    def suggest(self, text: str, n: int = 5) -> list[int]:
        """Rows with a name close to `text`, best first (for "did you mean …?")."""
        key = name_key(text)
        if not key:
            return []
        found = process.extract(
            key, list(self.names), scorer=fuzz.ratio, processor=None, limit=n * 3, score_cutoff=65
        )
        rows: list[int] = []
        for name, _, _ in found:
            for row in self.names[name]:
                if row not in rows:
                    rows.append(row)
        return rows[:n]
