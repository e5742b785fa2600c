"""Reading a chat message without an LLM: titles, likes and dislikes, genres, years, free text.

The embedded default is a base model that cannot plan tool calls, so the fixed chat plan
needs its own reading of the message. It is deliberately plain: patterns for what people
say ("I loved X and Y", "nothing like X", "no horror", "from the 90s", "for kids"), catalog
title matching for the titles, and whatever words remain become a meaning query for the
content index. Nothing here can reach data other than the catalog.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from fewrec.data.models import Catalog, ItemId

# Words that say how the person feels about the titles that follow (checked in this order).
AVOID = r"(?:nothing like|not like|no more|anything but|other than|unlike|not another)"
DISLIKE = r"(?:hated|hate|disliked|dislike|didn'?t like|did not like|don'?t like|do not like|" \
    r"not a fan of|can'?t stand|cannot stand|was bored by|bored me|not into)"  # fmt: skip
SEEN = r"(?:(?:i'?ve|i have|already|just)\s+(?:seen|watched)|seen|but not|except|not|no|skip)"
LIKE = r"(?:really\s+|also\s+|just\s+)?(?:liked|like|loved|love|enjoyed|enjoy|adored|adore|watched|saw|" \
    r"fan of|similar to|such as|more like|something like|films? like|movies? like|like the film)"  # fmt: skip
# "no"/"not" come last: they also start titles ("No Country for Old Men") and other triggers.
TRIGGERS = (("avoid", AVOID), ("dislike", DISLIKE), ("like", LIKE), ("seen", SEEN))
# Where the words after such a trigger end, when they name no catalog title.
STOP = (
    r"(?=[.;!?\n]|,\s*(?:but|so|and then|please)\b|\s+(?:but|so|please|from|for|with|without|that|which"
    r"|because|in the|set in|already|yesterday|again|too|before)\b|\s+\d{4}s?\b|$)"
)
PRONOUNS = frozenset("it this that them these those this one that one the one one".split())  # noqa: SIM905
CONNECTORS = frozenset("and or & plus also , as well".split())  # noqa: SIM905

# Genre words as people say them -> catalog genre (MovieLens spelling; others map by lowercase).
GENRE_WORDS: dict[str, str] = {
    "sci-fi": "Sci-Fi", "scifi": "Sci-Fi", "sci fi": "Sci-Fi", "science fiction": "Sci-Fi",
    "comedy": "Comedy", "comedies": "Comedy", "funny": "Comedy", "hilarious": "Comedy",
    "horror": "Horror", "scary": "Horror", "spooky": "Horror",
    "romance": "Romance", "romantic": "Romance", "romcom": "Romance", "rom-com": "Romance",
    "animation": "Animation", "animated": "Animation", "cartoon": "Animation", "cartoons": "Animation",
    "documentary": "Documentary", "documentaries": "Documentary",
    "action": "Action", "thriller": "Thriller", "thrillers": "Thriller", "suspense": "Thriller",
    "drama": "Drama", "dramas": "Drama", "crime": "Crime", "heist": "Crime", "gangster": "Crime",
    "war": "War", "western": "Western", "westerns": "Western",
    "musical": "Musical", "musicals": "Musical", "mystery": "Mystery", "mysteries": "Mystery",
    "fantasy": "Fantasy", "adventure": "Adventure", "adventures": "Adventure",
    "noir": "Film-Noir", "film noir": "Film-Noir", "imax": "IMAX",
    # a few words of other languages, so that a short request in them is not lost
    "horreur": "Horror", "terror": "Horror", "comédie": "Comedy", "comedia": "Comedy",
    "komödie": "Comedy", "ciencia ficción": "Sci-Fi", "science-fiction": "Sci-Fi",
    "dessin animé": "Animation",
}  # fmt: skip
KIDS = re.compile(
    r"\b(?:for (?:my |the |our )?(?:older |younger |little |small |young )?(?:kids|children|kid|child|family)"
    r"|family[- ]friendly|kid[- ]friendly)\b"
)
NEGATION = re.compile(
    r"\b(?:no|not|without|nothing|avoid|hate|hated|dislike|don'?t like|didn'?t like|can'?t stand|"
    r"not a fan of|not into|never|except|skip|none)\b(?:\s+\w+){0,3}\s*$"
)
FILLER = frozenset(
    """a an the and or but so i i'm im me my we our you your it its is are was were be been am do does did
    want wanted would like love liked loved some something anything any movie movies film films watch see
    show give recommend recommendation recommendations please pls maybe also just really very more most
    tonight today now new good great best nice of to for with in on at by from about that this these those
    what which who how can could should will let lets let's get got need looking look find kind sort
    one ones thing things thanks thank hi hello hey ok okay yes no not didn't don't can't cannot stand fan
    nothing fine already seen watched second first third last again yet else other another i've ive
    had have has much lot lots bit yesterday week weekend ago recently last night""".split()  # noqa: SIM905
)
INJECTION = re.compile(
    r"\b(?:ignore (?:all |your |the |previous |any )*(?:instructions|rules|prompts?)|system prompt|"
    r"(?:list|show|dump|give me) (?:all |every |the )*(?:users|user ids|accounts|passwords?|api keys?)|"
    r"other users?'?s? (?:data|history|histories)|jailbreak|developer mode)\b"
)
MAX_TITLE_WORDS = 12


@dataclass
class TitleMention:
    phrase: str  # as the person wrote it
    sentiment: str  # "like" | "dislike" | "avoid" (and its neighbours) | "seen" (just not again)
    matches: list[ItemId] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)
    quoted: bool = False


@dataclass
class Understanding:
    titles: list[TitleMention] = field(default_factory=list)
    genres: list[str] = field(default_factory=list)
    exclude_genres: list[str] = field(default_factory=list)
    year_min: int | None = None
    year_max: int | None = None
    kids: bool = False
    reset: bool = False
    injection: bool = False
    query: str = ""  # the words left over, for a meaning search
    message: str = ""  # as read


def clean_message(text: str, limit: int) -> tuple[str, bool]:
    """Printable text cut to `limit` characters; True when it was cut."""
    text = unicodedata.normalize("NFKC", text or "")
    text = "".join(ch if ch.isprintable() or ch in "\n\t" else " " for ch in text)
    text = re.sub(r"[ \t]+", " ", text).strip()
    return (text[:limit], True) if len(text) > limit else (text, False)


def _years(text: str, latest: int) -> tuple[int | None, int | None, str]:
    """Year range said in the text (decades, 'after 2000', 'recent', 'classic'), and the text
    without those words."""
    lo: int | None = None
    hi: int | None = None

    def decade(match: re.Match) -> str:
        nonlocal lo, hi
        digits = match.group(1)
        start = (
            int(digits)
            if len(digits) == 4
            else (1900 + int(digits) if int(digits) >= 20 else 2000 + int(digits))
        )
        lo, hi = start, start + 9
        return " "

    text = re.sub(r"\b(?:the\s+)?'?((?:19|20)?\d0)'?s\b", decade, text)
    text = re.sub(r"\b(?:années|anni|jahre|años|decada de)\s+((?:19|20)?\d0)\b", decade, text)
    named = ("twenties", "thirties", "forties", "fifties", "sixties", "seventies", "eighties", "nineties")
    for word, start in zip(named, range(1920, 2000, 10), strict=True):
        if re.search(rf"\b{word}\b", text):
            lo, hi = start, start + 9
            text = re.sub(rf"\b(?:the\s+)?{word}\b", " ", text)
    between = re.search(r"\bbetween\s+((?:19|20)\d\d)\s+and\s+((?:19|20)\d\d)\b", text)
    if between:
        lo, hi = sorted((int(between.group(1)), int(between.group(2))))
        text = text.replace(between.group(0), " ")
    patterns = (
        (r"\b(?:after|since|newer than|post)\s+((?:19|20)\d\d)\b", "lo"),
        (r"\bfrom\s+((?:19|20)\d\d)\s*(?:on|onwards|onward|and later|or later|\+)", "lo"),
        (r"\b(?:from\s+)?((?:19|20)\d\d)\s*(?:to|-|–|until)\s*((?:19|20)\d\d)\b", "range"),
        (r"\b(?:before|older than|pre|until|up to)\s+((?:19|20)\d\d)\b", "hi"),
        (r"\b(?:in|from)\s+((?:19|20)\d\d)\b", "both"),
        (r"\b((?:19|20)\d\d)\s+(?:movies?|films?)\b", "both"),  # "a 2005 film"
    )
    for pattern, side in patterns:
        found = re.search(pattern, text)
        if not found:
            continue
        year = int(found.group(1))
        if side == "range":
            lo, hi = sorted((year, int(found.group(2))))
        if side in ("lo", "both"):
            lo = year + (1 if "after" in found.group(0) else 0)
        if side in ("hi", "both"):
            hi = year - (1 if "before" in found.group(0) else 0)
        text = text.replace(found.group(0), " ")
    if re.search(r"\b(?:recent|latest|newest|new releases?)\b", text) and lo is None:
        lo = latest - 5
        text = re.sub(r"\b(?:recent|latest|newest|new releases?)\b", " ", text)
    if re.search(r"\b(?:classic|classics|old|older|oldies)\b", text) and hi is None:
        hi = 1979
        text = re.sub(r"\b(?:classic|classics|old|older|oldies)\b", " ", text)
    return lo, hi, text


def _split_titles(span: str) -> list[str]:
    parts = re.split(r",\s*(?:and\s+|or\s+)?|\s+(?:and|or|&|plus)\s+", span)
    return [p.strip(" '\"“”*") for p in parts if p.strip(" '\"“”*")]


class MessageReader:
    """Turns a chat message into an `Understanding` against one catalog."""

    def __init__(self, catalog: Catalog, genres: list[str]) -> None:
        self.catalog = catalog
        known = {g.lower(): g for g in genres}
        self.genre_words = {w: known[g.lower()] for w, g in GENRE_WORDS.items() if g.lower() in known}
        self.genre_words.update({g.lower(): g for g in genres if g.lower() not in ("(no genres listed)",)})
        years = catalog.frame["year"].dropna()
        self.latest = int(years.max()) if len(years) else 2020

    def _match(self, phrase: str, sentiment: str, quoted: bool) -> TitleMention | None:
        words = phrase.split()
        if not words or len(words) > MAX_TITLE_WORDS:
            return None
        phrase = re.sub(
            r"^(?:the (?:film|movie)|(?:films?|movies?)\s+(?:called|named))\s+", "", phrase, flags=re.I
        )
        matches, suggestions = self.catalog.match_title(phrase)
        if not matches and phrase.lower() in self.genre_words:
            return None  # "I like comedies" names a genre, not a title
        return TitleMention(phrase, sentiment, matches, suggestions, quoted)

    def read(self, message: str) -> Understanding:
        out = Understanding(message=message)
        text = message
        reset = r"\s*(?:start over|reset|restart|clear|new conversation|forget (?:it|everything))[.!]*\s*"
        if re.fullmatch(reset, text, flags=re.I):
            out.reset = True
            return out
        out.injection = bool(INJECTION.search(text.lower()))
        consumed: list[tuple[int, int]] = []

        def add(
            phrase: str, sentiment: str, quoted: bool, span: tuple[int, int], matches: list | None = None
        ) -> None:
            phrase = phrase.strip(" ,;:!?'\"“”*")
            if not phrase or (not quoted and phrase.lower() in PRONOUNS):
                return  # "I loved it" is about the film just named, not the film *It*
            if matches is not None:
                mention: TitleMention | None = TitleMention(phrase, sentiment, matches, [], quoted)
            else:
                mention = self._match(phrase, sentiment, quoted)
            if mention is not None and (mention.matches or quoted or phrase[:1].isupper()):
                out.titles.append(mention)
                consumed.append(span)

        def sentiment_before(start: int) -> str:
            before = text[max(0, start - 40) : start]
            for sentiment, trigger in TRIGGERS:
                if re.search(rf"\b{trigger}\s*$", before, flags=re.I):
                    return sentiment
            return "like"

        def blank(source: str) -> str:  # indices stay valid: spans are replaced by spaces
            chars = list(source)
            for start, end in consumed:
                chars[start:end] = " " * (end - start)
            return "".join(chars)

        # Quoted titles first: their words never count as genres or query words.
        for found in re.finditer(r"[\"“*]([^\"”*\n]{1,120})[\"”*]", text):
            add(found.group(1), sentiment_before(found.start()), True, found.span())
        text = blank(text)
        claimed: list[tuple[int, int]] = []  # trigger words already read ("not a fan of")
        starts: dict[int, int] = {}  # id(mention) -> where it starts
        for sentiment, trigger in TRIGGERS:
            for found in re.finditer(rf"\b{trigger}\s+", text, flags=re.I):
                start = found.end()
                inside = any(s <= found.start() < e for s, e in [*claimed, *consumed])
                if inside or any(s <= start < e for s, e in consumed):
                    continue
                claimed.append(found.span())
                before = len(out.titles)
                titles = self._titles_from(text, start)
                for phrase, span, matches in titles:
                    add(phrase, sentiment, False, span, matches)
                for mention in out.titles[before:]:
                    starts[id(mention)] = start
                if titles or sentiment == "seen":  # "no"/"not" precede too much to report misses
                    continue
                # No catalog title there: a capitalised phrase is reported as not found.
                ending = re.match(rf"(.+?){STOP}", text[start:], flags=re.I)
                if ending:
                    part = _split_titles(ending.group(1))[:1]
                    if part and part[0][:1].isupper() and len(part[0].split()) <= MAX_TITLE_WORDS:
                        at = text.find(part[0], start)
                        add(part[0], sentiment, False, (at, at + len(part[0])))
        # "I watched Titanic and hated it": the feeling about "it" belongs to the title before.
        for found in re.finditer(
            rf"\b({DISLIKE}|{LIKE})\s+(?:it|that one|this one|that|this)\b", text, flags=re.I
        ):
            earlier = [m for m in out.titles if starts.get(id(m), -1) < found.start() and m.matches]
            if earlier:
                latest = max(earlier, key=lambda m: starts.get(id(m), -1))
                latest.sentiment = "dislike" if re.fullmatch(DISLIKE, found.group(1), flags=re.I) else "like"
        rest = blank(text).lower()
        if KIDS.search(rest):
            out.kids = True
            rest = KIDS.sub(" ", rest)
        out.year_min, out.year_max, rest = _years(rest, self.latest)
        for word in sorted(self.genre_words, key=len, reverse=True):
            pattern = rf"(?<![\w-]){re.escape(word)}(?![\w-])"
            for found in re.finditer(pattern, rest):
                genre = self.genre_words[word]
                target = out.exclude_genres if NEGATION.search(rest[: found.start()]) else out.genres
                if genre not in target:
                    target.append(genre)
            rest = re.sub(pattern, " ", rest)
        out.genres = [g for g in out.genres if g not in out.exclude_genres]
        if not out.injection:
            rest = re.sub(rf"\b(?:{AVOID}|{DISLIKE}|{SEEN}|{LIKE})\b", " ", rest)
            words = [w for w in re.findall(r"[^\W_]+(?:['-][^\W_]+)*", rest) if w not in FILLER]
            out.query = " ".join(words)[:500]
        return out

    def _titles_from(self, text: str, start: int) -> list[tuple[str, tuple[int, int], list[ItemId]]]:
        """The catalog titles that follow `start`, longest first, chained by 'and' or commas:
        "Beauty and the Beast, Heat and Up" gives three. Stops at the first word that starts
        no title, and at the end of a sentence."""
        tokens = list(re.finditer(r"\S+", text[start : start + 400]))
        out: list[tuple[str, tuple[int, int], list[ItemId]]] = []
        i = 0
        while i < len(tokens):
            if tokens[i].group().lower().strip(",") in CONNECTORS or tokens[i].group() == ",":
                i += 1
                continue
            found = None
            for j in range(min(len(tokens), i + MAX_TITLE_WORDS), i, -1):
                phrase = text[start + tokens[i].start() : start + tokens[j - 1].end()].rstrip(",;:!?")
                lowered = phrase.lower()
                if lowered in FILLER or lowered in PRONOUNS or lowered in self.genre_words:
                    continue
                matches = self.catalog.lookup_title(phrase)
                if matches:
                    found = (
                        phrase,
                        (start + tokens[i].start(), start + tokens[i].start() + len(phrase)),
                        matches,
                    )
                    break
            if found is None:
                break
            out.append(found)
            i = next(
                k
                for k in range(i, len(tokens) + 1)
                if k == len(tokens) or start + tokens[k].start() >= found[1][1]
            )
            if re.search(r"[.;!?]$", text[found[1][0] : found[1][1] + 1].rstrip()):
                break  # the sentence ended with this title
        return out
