"""The phrasings of the chat evaluation: load `chat_phrasings.toml`, write messages from items.

`fewrec eval-chat` writes each sampled user's recent liked items into messages the way people
do (lists with and without years, lower case, a typo, bullets, a genre or decade request, two
turns, …). The families live in the TOML file next to this module, so that a new way of
asking is one copied block there; this module only reads the file and renders a family for a
list of items. It knows nothing about the chat or the recommender.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
import zlib
from collections import Counter
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from fewrec.data.errors import FewrecError
from fewrec.data.models import Catalog
from fewrec.prompts.templates import display_title

PLACEHOLDERS = (
    "titles",
    "head",
    "tail",
    "genre",
    "decade",
    "mood",
    "disliked",
    "not_genre",
    "age",
    "event_year",
    "wrong",
)
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_YEAR = re.compile(r"\s*\(\s*\d{4}\s*\)\s*$")
_ALTERNATIVE = re.compile(r"\s*\((?!\s*\d{4}\s*\))[^()]*\)")  # "(a.k.a. Se7en)", not "(1995)"


class PhrasingsError(FewrecError):
    """The phrasings file is malformed (an unknown option, placeholder or a missing field)."""


@dataclass(frozen=True)
class Family:
    """One way of writing a request; see the comments at the top of chat_phrasings.toml."""

    name: str
    description: str
    turns: tuple[str, ...]
    years: bool = True
    catalog_form: bool = False
    short_names: bool = True
    lower: bool = False
    typo: bool = False
    quote: str = ""
    separator: str = ", "
    last_separator: str = " and "
    bullet: str = ""
    max_titles: int = 0
    known_user: bool = False
    # Positions (1-based) of the previous turn's cards the last turn says were seen or liked:
    # the reader should take those cards as liked ("seen it, loved it", "I've seen the second one").
    liked_cards: tuple[int, ...] = ()

    @property
    def placeholders(self) -> set[str]:
        return {name for turn in self.turns for name in _PLACEHOLDER.findall(turn)}

    @property
    def has_query(self) -> bool:
        """The message carries content words meant to steer by meaning (the query weights)."""
        return "mood" in self.placeholders

    @property
    def weight_name(self) -> str:
        """The chat setting that weighs this family's query against the taste it knows."""
        return "query_weight" if self.known_user else "query_weight_with_titles"

    @property
    def min_titles(self) -> int:
        if self.known_user:
            return 0
        return 2 if "head" in self.placeholders else 1


@dataclass(frozen=True)
class Phrasings:
    families: list[Family]
    genre_words: dict[str, str]
    min_items: int = 3
    max_items: int = 6
    min_rating: float = 4.0
    typo_min_letters: int = 10
    mood_words: int = 2
    mood_joiner: str = ", "
    mood_max_tag_words: int = 3
    max_disliked_rating: float = 2.0
    family_genres: tuple[str, ...] = ()
    family_exclude_genres: tuple[str, ...] = ()
    ages: tuple[int, int] = (5, 12)
    ignore_tags: frozenset[str] = frozenset()
    ignore_words: frozenset[str] = frozenset()
    source: str = ""

    def family(self, name: str) -> Family:
        for family in self.families:
            if family.name == name:
                return family
        raise PhrasingsError(f"no phrasing family {name!r}; there are {', '.join(self.names)}")

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.families]

    def select(self, names: list[str] | None) -> list[Family]:
        return list(self.families) if not names else [self.family(n) for n in names]


DEFAULT_FILE = "chat_phrasings.toml"


def load_phrasings(path: Path | str | None = None) -> Phrasings:
    """The families of `path` (default: the file shipped next to this module)."""
    try:
        if path is None:
            text = resources.files("fewrec.eval").joinpath(DEFAULT_FILE).read_text(encoding="utf-8")
            source = f"fewrec/eval/{DEFAULT_FILE}"
        else:
            text, source = Path(path).read_text(encoding="utf-8"), str(path)
        data = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PhrasingsError(f"cannot read the phrasings file {path or DEFAULT_FILE}: {exc}") from exc
    options = {f.name for f in fields(Family)} - {"name", "description", "turns"}
    defaults = data.get("defaults", {})
    unknown = set(defaults) - options
    if unknown:
        raise PhrasingsError(f"{source}: unknown option(s) in [defaults]: {', '.join(sorted(unknown))}")
    families: list[Family] = []
    for number, block in enumerate(data.get("family", []), start=1):
        name = str(block.get("name") or f"family #{number}")
        missing = [key for key in ("name", "description", "turns") if not block.get(key)]
        if missing:
            raise PhrasingsError(f"{source}: {name} lacks {', '.join(missing)}")
        unknown = set(block) - options - {"name", "description", "turns"}
        if unknown:
            raise PhrasingsError(f"{source}: {name} has unknown option(s) {', '.join(sorted(unknown))}")
        turns = block["turns"]
        if isinstance(turns, str) or not all(isinstance(t, str) for t in turns):
            raise PhrasingsError(f"{source}: {name}: turns must be a list of strings")
        values = {**defaults, **{k: v for k, v in block.items() if k in options}}
        values["liked_cards"] = tuple(int(n) for n in values.get("liked_cards", ()))
        family = Family(name=name, description=str(block["description"]), turns=tuple(turns), **values)
        bad = family.placeholders - set(PLACEHOLDERS)
        if bad:
            raise PhrasingsError(
                f"{source}: {name} uses unknown placeholder(s) {', '.join(sorted(bad))}; "
                f"known: {', '.join(PLACEHOLDERS)}"
            )
        if family.known_user and family.placeholders & {"titles", "head", "tail"}:
            raise PhrasingsError(f"{source}: {name} is known_user, so its turns name no title")
        if not family.known_user and not family.placeholders & {"titles", "head", "tail"}:
            raise PhrasingsError(f"{source}: {name} names no title ({{titles}} or {{head}}/{{tail}})")
        if name in {f.name for f in families}:
            raise PhrasingsError(f"{source}: two families are called {name!r}")
        families.append(family)
    if not families:
        raise PhrasingsError(f"{source} defines no [[family]]")
    sampling, mood, kids = data.get("sampling", {}), data.get("mood", {}), data.get("family_films", {})
    # The numbers and words: [sampling]'s keys are the fields' names, [mood]'s the fields' without "mood_".
    given = {**sampling, **{f"mood_{key}": value for key, value in mood.items()}}
    plain = {f.name: type(f.default)(given[f.name]) for f in fields(Phrasings)
             if f.name in given and isinstance(f.default, int | float | str)}  # fmt: skip
    ages = tuple(int(a) for a in sampling.get("ages", (5, 12)))
    out = Phrasings(
        families=families, genre_words={str(k): str(v) for k, v in data.get("genre_words", {}).items()},
        family_genres=tuple(str(g) for g in kids.get("genres", [])),
        family_exclude_genres=tuple(str(g) for g in kids.get("exclude_genres", [])),
        ages=(ages[0], ages[-1]), source=source,
        ignore_tags=frozenset(str(t).lower() for t in mood.get("ignore_tags", [])),
        ignore_words=frozenset(str(w).lower() for w in mood.get("ignore_words", [])), **plain,
    )  # fmt: skip
    if not 1 <= out.min_items <= out.max_items:
        raise PhrasingsError(f"{source}: [sampling] needs 1 ≤ min_items ≤ max_items")
    if not 1 <= out.ages[0] <= out.ages[1] <= 17:
        raise PhrasingsError(f"{source}: [sampling] ages must be a child's, [low, high] within 1–17")
    return out


@dataclass
class Rendered:
    """One family written for one user's items: the turns, and what they mean.

    What they mean is the ground truth a reader is held to, and the one the ceiling is given:
    `intended` are the item indices the message names as liked (oldest first), `written` the
    same titles as they appear in the message; `disliked` the items it says were not liked;
    `corrected` the items it names and then corrects ("X, I mean Y": X is meant by nothing);
    `genre` / `years` the filter it asks for, `not_genre` the genre it rules out, `kids` a wish
    for family films (a child's age); `liked_cards` the previous turn's cards (1-based) it
    takes as seen or liked."""

    family: str
    turns: list[str]
    intended: list[int] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    genre: str | None = None
    years: tuple[int, int] | None = None
    mood: str | None = None
    known_user: bool = False
    with_year: bool = False  # the titles were written with their years
    disliked: list[int] = field(default_factory=list)
    corrected: list[int] = field(default_factory=list)
    not_genre: str | None = None
    kids: bool = False
    liked_cards: tuple[int, ...] = ()
    # The genres the filter must have besides `genre`, and those it must rule out: {not_genre},
    # and a child's family films ([family_films]).
    more_genres: list[str] = field(default_factory=list)
    ruled_out: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OtherItems:
    """A user's items besides the liked ones a family may name: `disliked` (rated low, most
    recent first) and `others` (earlier items of their history, most recent first)."""

    disliked: tuple[int, ...] = ()
    others: tuple[int, ...] = ()


def family_seed(seed: int, user: int, family: str) -> np.random.Generator:
    """A generator for one (user, family): the same message whichever families run, in any order."""
    return np.random.default_rng([seed, user, zlib.crc32(family.encode())])


def title_as_written(raw: str, family: Family) -> str:
    """A catalog title the way this family writes it (before typos, quotes and lower case)."""
    if family.catalog_form:
        title = " ".join(raw.split())
    else:
        title = display_title(raw)
        if family.short_names:
            year = _YEAR.search(title)
            head, tail = (title[: year.start()], year.group(0)) if year else (title, "")
            title = (_ALTERNATIVE.sub("", head).strip() or head) + tail
    if not family.years:
        title = _YEAR.sub("", title).strip()
    return title


def _plain(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower())
    return re.sub(r"\W+", " ", "".join(ch for ch in text if not unicodedata.combining(ch))).strip()


def shared_titles(catalog: Catalog, with_year: bool) -> set[int]:
    """Items whose title as people type it (no alternative names; with its year or without)
    another catalog item shares: no reader can link such a title to one item without asking."""
    plain_family = Family(name="", description="", turns=("",), years=False)
    titles = [_plain(title_as_written(str(title), plain_family)) for title in catalog.frame["title"]]
    keys = pd.DataFrame({"title": titles, "year": catalog.frame["year"].to_numpy() if with_year else None})
    return {int(i) for i in np.flatnonzero(keys.duplicated(keep=False))}  # a missing year is one value


def letters(text: str) -> int:
    return sum(ch.isalpha() for ch in text)


def misspell(title: str, rng: np.random.Generator) -> str:
    """`title` with one edit inside a word of 4+ letters, never at a word's first letter: two
    neighbouring letters swapped, a letter dropped, or a letter doubled."""
    spots = [
        (kind, i) for word in re.finditer(r"[^\W\d_]{4,}", title) for i in range(word.start() + 1, word.end())
        for kind in ("drop", "double", "swap")
        if kind != "swap" or (i + 1 < word.end() and title[i] != title[i + 1])  # a swap that changes the word
    ]  # fmt: skip
    if not spots:
        return title
    kind, i = spots[int(rng.integers(len(spots)))]
    if kind == "drop":
        return title[:i] + title[i + 1 :]
    if kind == "double":
        return title[: i + 1] + title[i] + title[i + 1 :]
    return title[:i] + title[i + 1] + title[i] + title[i + 2 :]


def decade_words(year: int) -> str:
    """How people name a decade: 'the 90s'; four digits where two would be misread ('the 2000s')."""
    start = year // 10 * 10
    return f"the {start % 100}s" if 1930 <= start <= 1990 else f"the {start}s"


def pick_genre(catalog: Catalog, items: list[int], words: dict[str, str]) -> str | None:
    """The genre most of the items share (one that has a word in [genre_words]); on a tie the
    rarer genre of the catalog, which says more."""
    frame = catalog.frame
    counts = Counter(g for i in items for g in frame["genres"].iat[i] if g in words)
    if not counts:
        return None
    catalog_counts = _genre_counts(catalog)
    return min(counts, key=lambda g: (-counts[g], catalog_counts.get(g, 0), g))


def _genre_counts(catalog: Catalog) -> Counter:
    return Counter(g for genres in catalog.frame["genres"] for g in genres)


def mood_tags(catalog: Catalog, items: list[int], phrasings: Phrasings) -> list[str]:
    """Content words for {mood}: the tags most of the items share; on a tie the tag more items
    of the catalog carry (a common word for a mood rather than a one-off)."""
    frame = catalog.frame
    ignore = set(phrasings.ignore_words) | {g.lower() for g in _genre_counts(catalog)}
    counts: Counter = Counter()
    for i in items:
        for tag in {str(t).strip().lower() for t in frame["tags"].iat[i]}:
            words = tag.split()
            if (
                not tag
                or tag in phrasings.ignore_tags
                or len(words) > phrasings.mood_max_tag_words
                or not re.fullmatch(r"[a-z][a-z' -]*", tag)
                or any(w in ignore for w in words)
                or tag in ignore
            ):
                continue
            counts[tag] += 1
    if not counts:
        return []
    overall = Counter(str(t).strip().lower() for tags in frame["tags"] for t in tags)
    ranked = sorted(counts, key=lambda t: (-counts[t], -overall[t], t))
    return ranked[: phrasings.mood_words]


def _as_list(titles: list[str], family: Family) -> str:
    if family.bullet:
        return "".join(family.bullet + t for t in titles)
    if len(titles) == 1:
        return titles[0]
    return family.separator.join(titles[:-1]) + family.last_separator + titles[-1]


def pick_absent_genre(catalog: Catalog, items: list[int], words: dict[str, str]) -> str | None:
    """A genre to rule out ("anything but …"): of the genres with a word that none of the items
    has, the one most items of the catalog carry (ruling it out changes the most)."""
    present = {g for i in items for g in catalog.frame["genres"].iat[i]}
    counts = _genre_counts(catalog)
    absent = [g for g in words if g not in present and counts.get(g, 0)]
    return min(absent, key=lambda g: (-counts[g], g)) if absent else None


def _wishes(
    family: Family, items: list[int], catalog: Catalog, phrasings: Phrasings, rng: np.random.Generator,
    out: Rendered, values: dict[str, str],
) -> str | None:  # fmt: skip
    """Fill the placeholders that are no title (a genre, a decade, a mood, a genre ruled out, a
    child's age, the year something happened); or why this user cannot be asked so."""
    needs = family.placeholders
    if "genre" in needs:
        genre = pick_genre(catalog, items, phrasings.genre_words)
        if genre is None:
            return "no genre with a word among the liked items"
        out.genre, values["genre"] = genre, phrasings.genre_words[genre]
    if "decade" in needs or "event_year" in needs:
        year = catalog.frame["year"].iat[items[-1]]
        if pd.isna(year):
            return "the most recent liked item has no year"
        if "decade" in needs:
            start = int(year) // 10 * 10
            out.years, values["decade"] = (start, start + 9), decade_words(int(year))
        if "event_year" in needs:  # when the person saw it: its year or a little later, no filter
            latest = int(catalog.frame["year"].max())
            values["event_year"] = str(min(int(year) + int(rng.integers(0, 4)), latest))
    if "mood" in needs:
        tags = mood_tags(catalog, items, phrasings)
        if not tags:
            return "no usable tags on the liked items"
        out.mood = values["mood"] = phrasings.mood_joiner.join(tags)
    if "not_genre" in needs:
        absent = pick_absent_genre(catalog, items, phrasings.genre_words)
        if absent is None:
            return "every genre with a word is among the liked items"
        out.not_genre, values["not_genre"] = absent, phrasings.genre_words[absent]
        out.ruled_out.append(absent)
    if "age" in needs:
        out.kids, values["age"] = True, str(int(rng.integers(phrasings.ages[0], phrasings.ages[1] + 1)))
        known = _genre_counts(catalog)
        out.more_genres += [g for g in phrasings.family_genres if known.get(g) and g != out.genre]
        out.ruled_out += [g for g in phrasings.family_exclude_genres if known.get(g) and g != out.genre]
    return None


def _other_titles(
    family: Family, items: list[int], other: OtherItems, catalog: Catalog, out: Rendered,
    values: dict[str, str],
) -> str | None:  # fmt: skip
    """Fill {disliked} (the user's most recent low-rated item) and {wrong} (an earlier item of
    theirs, named and then corrected); or why this user cannot be asked so."""

    def written(item: int) -> str:
        return family.quote + title_as_written(str(catalog.frame["title"].iat[item]), family) + family.quote

    needs = family.placeholders
    if "disliked" in needs:
        pool = [i for i in other.disliked if i not in items]
        if not pool:
            return "no disliked item"
        out.disliked, values["disliked"] = [pool[0]], written(pool[0])
    if "wrong" in needs:
        tail = _plain(written(items[-1]))
        pool = [
            i for i in other.others if i not in items and i not in out.disliked and _plain(written(i)) != tail
        ]
        if not pool:
            return "no other item to correct"
        out.corrected, values["wrong"] = [pool[0]], written(pool[0])
    return None


def _titles(
    family: Family, items: list[int], catalog: Catalog, phrasings: Phrasings, rng: np.random.Generator,
    out: Rendered, values: dict[str, str],
) -> str | None:  # fmt: skip
    """Fill {titles}, {head} and {tail} with the liked items as this family writes them."""
    titles = [title_as_written(str(catalog.frame["title"].iat[i]), family) for i in items]
    if family.typo:
        long = [n for n, t in enumerate(titles) if letters(_YEAR.sub("", t)) >= phrasings.typo_min_letters]
        if not long:
            return f"no title of {phrasings.typo_min_letters}+ letters"
        n = long[int(rng.integers(len(long)))]
        year = _YEAR.search(titles[n])
        bare = titles[n][: year.start()] if year else titles[n]
        titles[n] = misspell(bare, rng) + (year.group(0) if year else "")
    if family.lower:
        titles = [t.lower() for t in titles]
    quoted = [f"{family.quote}{t}{family.quote}" for t in titles]
    values["titles"] = _as_list(quoted, family)
    values["head"] = _as_list(quoted[:-1], family) if len(quoted) > 1 else ""
    values["tail"] = quoted[-1]
    out.intended, out.written = list(items), titles
    out.with_year = family.years or family.catalog_form
    return None


def render(
    family: Family, items: list[int], catalog: Catalog, phrasings: Phrasings, rng: np.random.Generator,
    other: OtherItems | None = None,
) -> Rendered | str:  # fmt: skip
    """`family` written for `items` (item indices, oldest first; `other`: the user's disliked
    and earlier items, for {disliked} and {wrong}), or why it cannot be (a reason string: the
    user is skipped for this family and counted)."""
    if family.max_titles:
        items = items[-family.max_titles :]
    if len(items) < max(family.min_titles, 1):
        return "too few liked items"
    out = Rendered(family=family.name, turns=[], known_user=family.known_user, liked_cards=family.liked_cards)
    values: dict[str, str] = {}
    why = _wishes(family, items, catalog, phrasings, rng, out, values)
    if why is None and not family.known_user:
        why = _titles(family, items, catalog, phrasings, rng, out, values)
    if why is None:
        why = _other_titles(family, items, other or OtherItems(), catalog, out, values)
    if why is not None:
        return why
    for turn in family.turns:
        text = _PLACEHOLDER.sub(lambda m: values[m.group(1)], turn)
        out.turns.append(text.lower() if family.lower else text)
    return out
