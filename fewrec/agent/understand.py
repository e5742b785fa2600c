"""Reading a chat message without an LLM: titles, likes and dislikes, genres, years, free text.

The embedded default is a base model that cannot plan tool calls, so the fixed chat plan
needs its own reading of the message:
- titles are found anywhere, whatever the sentence shape, by the catalog's title index
  (`fewrec/data/titles.py`: every name, longest match first, a typo allowed in long names).
  A title that is also an everyday word ("Up", "It", "Her", "Heat") counts only with
  evidence: quotes, a year, a capital letter inside a sentence, a word like "loved" just
  before it, or a place in a list of other titles;
- how the person feels about each title comes from its clause ("A, B and C are movies I
  liked", "I loved A but hated B", "nothing like C", "not D");
- genres, decades and "for kids" become filters;
- what is left becomes a meaning query only when it still carries content: request
  boilerplate ("can you suggest something I might like", "what next", greetings) never does.
Nothing here can reach data other than the catalog.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np

from fewrec.agent.polarity import (
    INTERJECTED,
    NAMED,
    OTHER,
    TARGET,
    PolarityReader,
    evaluative,
    judgement_window,
)
from fewrec.agent.query_words import Describer, WordJudge, bundled_describer
from fewrec.data.models import Catalog, ItemId
from fewrec.data.titles import TitleSpan, tokenize

log = logging.getLogger(__name__)

# Words that say how the person feels about the titles that follow (checked in this order).
# Apostrophes are straightened before reading (`read`), so "didn’t" is "didn't" here.
AVOID = r"(?:nothing like|not like|no more|anything but|other than|unlike|not another|not in the mood for|" \
    r"(?:tired|sick) of|had enough of|don'?t want|do not want|not looking for)"  # fmt: skip
# What others said of a film, taken as the person's own doubt: "awful reviews", "bad press".
BAD_REVIEWS = r"(?:bad|awful|terrible|poor|horrible|negative|mixed)\s+(?:\w+\s+)?(?:reviews|press|ratings)"
# A negated verb of liking: "didn't like", "never liked", "wasn't a fan of", "couldn't stand".
NOT = r"(?:did ?n'?t|did not|do ?n'?t|do not|does ?n'?t|does not|could ?n'?t|could not|can'?t|cannot|" \
    r"was ?n'?t|was not|were ?n'?t|were not|is ?n'?t|is not|am not|i'?m not|never|not)"  # fmt: skip
DISLIKE = rf"(?:hated|hate|disliked|dislike|loathed|can'?t stand|cannot stand|was bored by|bored me|" \
    rf"(?:was |were |am |i'?m )?(?:di?ss?app?ointed|let down) (?:in|by|with)|" \
    rf"(?:way |much |far |a lot |so much )?better than|{BAD_REVIEWS} (?:about|of|for|on)|" \
    r"not sure (?:if |whether |that )?(?:i|we)(?:'?d| would| will|'?ll)? (?:like|enjoy|love)|" \
    rf"{NOT}\s+(?:really\s+|ever\s+|even\s+|much\s+|particularly\s+|too\s+)?" \
    rf"(?:like|liked|enjoy|enjoyed|care for|cared for|get into|got into|stand|love|loved|into|" \
    rf"interested in|" \
    rf"(?:(?:a|the|much of a|really a|such a|big|huge|biggest)\s+)*fans? of))"  # fmt: skip
# Not seen yet, or asked about: the seeker's own labels count these as films they would like.
CURIOUS = r"(?:(?:have ?n'?t|have not|had ?n'?t|had not|never|not|did ?n'?t|did not|yet to)\s+" \
    r"(?:(?:ever|yet|really|actually|even)\s+)?(?:seen|watched|see|watch|saw|heard of)|" \
    r"(?:have|did) you (?:ever )?(?:seen|watched|see|watch|heard of)|heard (?:good things )?(?:about|of)|" \
    r"(?:want|wanted|would like|'?d like|going|plan|planning|need|have|got) to (?:see|watch|check out)|" \
    r"check out|looking forward to)"  # fmt: skip
# Seen, with no feeling said: the film tells of the person's taste as a watched one does.
WATCHED = r"(?:(?:i'?ve|i have|i had|we'?ve|we have|already|just|also|finally|recently)\s+)*" \
    r"(?:seen|watched|saw)"  # fmt: skip
# "no"/"not" come last: they also start titles ("No Country for Old Men") and other triggers.
SEEN = r"(?:but not|except|not|nope|no|skip)"
# The feeling said before, carried over: "I kinda feel that way about X", "same with X", and a
# message that only goes on with the last one ("No Airplane! or the likes" … "Or Naked Gun").
SAME = r"(?:(?:feel|felt)\s+(?:that|the same|this)\s+way\s+(?:about|with|for)|" \
    r"(?:feel|felt)\s+the\s+same\s+(?:about|with|for)|same\s+(?:goes\s+)?(?:with|for)|" \
    r"^\s*(?:or|nor))"  # fmt: skip
BARE_NOT_REACH = 2  # words between a bare "not" and the title it rules out
LIKE = r"(?:(?:does ?n'?t|does not|can'?t|cannot|won'?t|never) get (?:any |much )?better than|" \
    r"(?:really\s+|also\s+|just\s+)?(?:liked|likes|like|loved|loves|love|enjoyed|enjoys|enjoy|adored|" \
    r"adores|adore|also|fan of|similar to|such as|more like|something like|films? like|movies? like|" \
    r"like the film|favou?rites?(?:\s+(?:are|were|include|is|was))?|big fan of))"  # fmt: skip
# A "like" that compares rather than feels ("horror movies like The Ring"): an earlier feeling in
# the clause wins over it.
SIMILAR = re.compile(r"(?:^|\s)(?:like|such as|similar to|more like|something like|(?:films?|movies?) like)$",
                     re.I)  # fmt: skip
# Words after a title that say how it was liked ("A and B are movies I liked", "… and hated it").
POSTFIX_LIKE = r"(?:liked|loved|enjoyed|adored|(?:was|were|is|are) (?:(?:so|very|really|pretty|just)\s+)?" \
    r"(?:good|great|amazing|fantastic|brilliant|awesome|hilarious))"  # fmt: skip
POSTFIX_DISLIKE = r"(?:hated|disliked|didn'?t (?:like|enjoy|care for)|did not (?:like|enjoy)|bored me|" \
    r"sucked|(?:was|were|is|are) (?:(?:so|very|really|pretty|just|kind of|kinda|a (?:little|bit))\s+)?" \
    r"(?:boring|awful|terrible|bad|overrated|disappointing|horrible|stupid|dumb|lame|meh|corny)|" \
    r"(?:was|were|is|are) ?n'?o?t (?:(?:that|very|really|so)\s+)?(?:good|great|funny|for me|my thing|" \
    r"my cup of tea)|(?:was|were|is|are|it'?s) (?:(?:way|much|a (?:little|bit)|just|kind of|kinda)\s+)?too " \
    r"(?:silly|long|slow|scary|boring|violent|gory|dark|sad|cheesy|weird|corny|predictable)|" \
    rf"(?:got|gets|had|has) (?:(?:a lot of|lots of|some|pretty|really|very|such)\s+)*{BAD_REVIEWS}|" \
    r"(?:(?:going to|gonna|i'?ll|will)\s+)?pass on (?:it|that|this)|shudders?|ugh+|yuck|eww+)"  # fmt: skip
# Triggers that only say the film was seen or asked about: a feeling said after the title wins.
WEAK_FEELINGS = ("watched", "curious", "same")
# A "like" with a subject or an adverb before it feels ("I did like X"); alone it may compare.
FELT_LIKE = re.compile(
    r"\b(?:i|we|he|she|they|you|did|do|does|really|also|just|truly|would|'d|kinda|definitely)\s+$", re.I
)
# "no … except X", "not my cup of tea other than X": an exception to a negative is liked.
EXCEPTION = re.compile(r"^(?:except|other than)$", re.I)
NEGATIVE_BEFORE = re.compile(r"\b(?:no|not|nothing|none|never|nope)\b|n't\b", re.I)
FEELINGS = ("same", "avoid", "dislike", "curious", "like", "watched", "seen")  # TRIGGER_RE's groups, in order
# A title whose only feeling word is an exclamation set off before it ("oh great, another X",
# "wow, X"): the exclamation reacts to the moment, it does not say how the film was. Praise or
# sarcasm, the reader cannot tell: a mention, unless the classifier reads it as panned.
INTERJECTION_WORDS = 3  # "oh my god," at most: a longer opening is a clause of its own
TASTE = frozenset({"like", "watched", "curious"})  # readings the chat files as liked
UNREAD_WORDS = 2  # unknown words about a title that make its reading unsure (not one typo)
# "the last two films I saw X": a relative clause names the films, it says no feeling of its own.
RELATIVE_WATCHED = re.compile(r"\b(?:films?|movies?|ones?)\s+(?:that\s+|which\s+)?(?:(?:i|we)\s+)?$", re.I)
# After a title with no feeling of its own, the next clause or sentence may judge it: "I saw X but
# thought it was corny", "I haven't seen X. That movie got bad press", "I've seen X. Not as good as Y".
JUDGED_LATER = re.compile(
    r"[\s.!?;,]*(?:(?:but|though|however|and)\b[\s,]*)?"  # matched at the clause's end: no ^
    r"(?:(?P<worse>not (?:as|that|so|very) (?:good|great))|"
    r"(?:(?:(?:i|we)\s+)?(?:thought|think|found|felt)\s+)?(?:it|that|this|the (?:movie|film))\b)",
    re.I,
)
STOP = (  # where the words after a trigger end, for "I found no film called …"
    r"(?=[.;!?\n]|,\s*(?:but|so|and then|please)\b|\s+(?:but|so|please|from|for|with|without|that|which"
    r"|because|in the|set in|already|yesterday|again|too|before)\b|\s+\d{4}s?\b|$)"
)
PRONOUNS = frozenset("it this that them these those one her him us me you they".split())  # noqa: SIM905
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
# A child's age or a child in the family ("my 8-year-old", "my daughter", "the grandkids"): a wish
# for family films, never a year ("old" alone still means a classic).
AGE = re.compile(r"\b(\d{1,2})[- ]?(?:years?|yrs?)[- ]?olds?\b|\b(?:years?|yrs?) old\b")
CHILDREN = re.compile(
    r"\b(?:my|our|the|with (?:my|our|the))\s+(?:(?:little|young|small|two|three|\d)\s+)?"
    r"(?:kids?|children|son|sons|daughters?|toddlers?|nephews?|nieces?|grand(?:kids?|sons?|daughters?|children)"
    r"|little ones?)\b"
)
OLDEST_CHILD = 14  # "my 15-year-old" may well want a thriller
# A year that dates something the person did ("I saw it in 2010", "back in 2005"): not a filter.
EVENT_YEAR = re.compile(
    r"\b(?:saw|seen|watched|see|watch|went to|was|were|since)\b(?:\s+[^\s.!?;]+){0,6}?\s+(?:back\s+)?"
    r"in\s+(?:about\s+|around\s+)?((?:19|20)\d\d)\b(?!\s*(?:movies?|films?))|\bback in\s+((?:19|20)\d\d)\b"
)
# "X, I mean Y": Y replaces X, with X's feeling.
CORRECTION = re.compile(
    r"[\s,.;:!-]*(?:(?:sorry|oops|no|actually)[\s,]+)*(?:i mean|i meant|or rather|correction:?)[\s,:]*", re.I
)
# Words that correct an earlier wish rather than add to it ("actually a horror film", "a drama
# instead", "on second thought, a western").
REPLACING_WISH = re.compile(
    r"\b(?:actually|instead|rather(?! not)|on second thoughts?|changed? my mind|change of plans?|"
    r"scratch that|never ?mind)\b"
)
# Apostrophes and single quotes as phones and word processors type them: read as "'".
APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'", "´": "'"})
NEGATION = re.compile(
    r"\b(?:no|not|without|nothing|avoid|hate|hated|dislike|don'?t like|didn'?t like|can'?t stand|"
    r"not a fan of|not into|never|except|skip|none|anything but|other than|not in the mood for|"
    r"(?:tired|sick) of|had enough of|rather not|don'?t want|do not want)\b(?:\s+\w+){0,3}\s*$"
)
FILLER = frozenset(
    """a an the and or but so i i'm im me my we our you your it its is are was were be been am do does did
    want wanted would like love liked loved some something anything any movie movies film films watch see
    show give recommend recommendation recommendations please pls maybe also just really very more most
    tonight today now new good great best nice of to for with in on at by from about that this these those
    what which who how can could should will let lets let's get got need looking look find kind sort
    one ones thing things thanks thank hi hello hey ok okay yes no not didn't don't can't cannot stand fan
    nothing fine already seen watched second first third last again yet else other another i've ive
    had have has much lot lots bit yesterday week weekend ago recently last night
    suggest suggestion suggestions suggested recommended recommending might may enjoy enjoyed enjoying
    next after then list here there are my favourite favourites favorite favorites favs fave faves
    similar similarly same alike watching seeing something someone somewhere anyone everyone
    please thx ty cheers hiya greetings dear guys folks friend buddy mate well um uh hmm hm
    go going gone up down out off over into onto as if than too only even ever never always still
    actually mean meant sorry oops times sounds sound looks seems though although anyway pretty
    lol haha yeah yep yup sure cool awesome oh ah wow nope nah bye goodbye care glad hahaha
    haven't hasn't isn't wasn't aren't won't wouldn't couldn't shouldn't doesn't havent didnt dont
    think thought guess wonder wondering mind tell said say know knew help helping try trying
    films films' flick flicks pick picks idea ideas option options choice choices titles title
    tv series show shows stuff whatever ones night evening weekend them they their he she his
    hers him her us we'd i'd you'd would've could've should've gonna wanna let's lemme
    them all both each every few many several mood moods feel feeling vibe vibes kinda sorta
    je voudrais veux un une des le la les de du et pour avec moi ich möchte will einen eine ein der
    die das und mit für quiero una el los las para por con y vorrei voglio il lo gli""".split()  # noqa: SIM905
)
# Words that are never a title on their own without quotes or a capital ("I loved Alien and more").
FUNCTION_WORDS = frozenset(
    """a an the and or but so i me my we you it is are was were be to of in on at for with from by
    as more some any one this that these those what which who how all no not yes ok okay then than
    too very just also else other another something anything nothing please thanks""".split()  # noqa: SIM905
)
# Everyday words that are also titles: alone, they count as a title only with evidence.
COMMON = FILLER | frozenset(
    """big home life love man men woman women girl boy boys girls kids kid day days time times war
    speed signs crash heat rush fury seven ten nine two three one five six eight twelve eleven
    run ran walk home game games house room door fear hope faith trust truth lies doubt
    friends family money power love actually rain snow sun moon star stars light dark night
    red blue green black white gold silver brave free wild true real good bad evil cars drive
    taken split us them next now later before after always never still here there yes no
    fame grease jaws hook gravity birds clue heist cold warm hot old young new""".split()  # noqa: SIM905
)
INJECTION = re.compile(
    r"\b(?:ignore (?:all |your |the |previous |any )*(?:instructions|rules|prompts?)|system prompt|"
    r"(?:list|show|dump|give me) (?:all |every |the )*(?:users|user ids|accounts|passwords?|api keys?)|"
    r"other users?'?s? (?:data|history|histories)|jailbreak|developer mode)\b"
)
# A capitalised everyday-word title that opens a sentence is one when a predicate follows it:
# an auxiliary, a past-tense verb or an adverb that starts one ("Grease just annoyed me").
SUBJECT_PREDICATE = re.compile(
    r"\s+(?:(?:is|was|were|are|has|had|have|does|did|will|would|could|can|is\s?n['’]?t|was\s?n['’]?t|"
    r"does\s?n['’]?t|did\s?n['’]?t|still|just|really|totally|honestly|never|always|actually|also|"
    r"made|makes|got|gets|kept|keeps|left|leaves|blew|put|puts|wore|felt|feels|looked|looks|took|"
    r"gave|went|held|holds|[a-z]{3,}ed)\b)"
)
MAX_TITLE_WORDS = 12
# A number right after a title: a sequel ("Toy Story 4"), unless it counts something.
SEQUEL_NUMBER = re.compile(
    r"\s*(?:part\s+)?(?:[2-9]|1\d|ii|iii|iv|vi|vii|viii)\b(?!\s*(?:times?|weeks?|days?|months?|years?|hours?|"
    r"stars?|of|out|or|to|-|/|\.\d|\d))",
    re.I,
)
# References to the chat's own cards: by position, or (in a message naming no title) by pronoun.
ORDINALS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4,
            "fifth": 5, "5th": 5, "sixth": 6, "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10,
            "last": -1}  # fmt: skip
CARD_BY_POSITION = re.compile(
    rf"\b(?:the\s+)?({'|'.join(ORDINALS)})\s+(?:one|film|movie|card|suggestion|pick)\b"
    r"|(?:\bnumber\s+|\bno\.\s*|#)(\d{1,2})\b",
    re.I,
)
CARD_BY_PRONOUN = re.compile(
    r"\b(?:that one|this one|that film|that movie|this film|this movie|it|that)\b", re.I
)
# A word said in the scope of a negation ("nothing sad", "not gory") is no meaning query.
NEGATED_WORD = re.compile(
    r"\b(?:no|not|nothing|without|never|anything but|avoid)\b"
    r"(?:\s+(?:too|so|very|really|that|a|an|the|more))*\s+[\w'-]+"
)
# Words about the person or the people they watch with ("my wife", "our list", "your picks"):
# what follows a possessive is theirs, not the film's.
POSSESSED = re.compile(r"\b(?:my|our|your)\s+[^\W_]+(?:['’-][^\W_]+)*")
# Words that name a franchise as a whole after its name ("the Harry Potter movies").
SERIES_WORD = re.compile(r"\b(?:movies|films|series|franchise|saga|trilogy|sequels|collection)\b", re.I)


@dataclass
class TitleMention:
    phrase: str  # as the person wrote it
    # "like" | "watched" (seen, no feeling said) | "curious" (not seen yet, or asked about) |
    # "dislike" | "avoid" (and its neighbours) | "seen" (just not again) | "mention" (judged in
    # words the reader cannot place: neither liked nor disliked)
    sentiment: str
    matches: list[ItemId] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)
    quoted: bool = False
    series: bool = False  # a franchise: every match is meant, no question to ask
    card: int = 0  # a reference to the chat's own card at this position (1-based), not a title


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
    other_script: bool = False  # words in a script the catalog's titles are not written in
    # References to the cards the chat showed last ("the second one", "seen it, loved it"): the
    # mention's `card` is the position (1-based); the chat fills in `matches`.
    cards: list[TitleMention] = field(default_factory=list)
    # "that was awful": a judgement of some film, with no title or card to say which one.
    unplaced_judgement: bool = False
    # Words about a named film the reader does not know (another language): it is a mention.
    unread_words: bool = False
    # "actually a horror film", "a drama instead": the genres said replace the earlier ones
    # rather than adding to them.
    replaces_genres: bool = False


def clean_message(text: str, limit: int) -> tuple[str, bool]:
    """Printable text cut to `limit` characters; True when it was cut."""
    text = unicodedata.normalize("NFKC", text or "")
    text = "".join(ch if ch.isprintable() or ch in "\n\t" else " " for ch in text)
    text = re.sub(r"[ \t]+", " ", text).strip()
    if len(text) <= limit:
        return text, False
    cut = text[:limit]
    if not text[limit].isspace() and " " in cut:  # no half word left to be read as one
        cut = cut.rsplit(" ", 1)[0]
    return cut, True


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


@dataclass
class _Link:
    """A span of the message taken as a title (or, with no rows, as a title not found)."""

    start: int
    end: int
    rows: tuple[int, ...]
    quoted: bool = False
    phrase: str = ""
    suggestions: list[str] = field(default_factory=list)
    series: bool = False  # every film of a franchise ("the Harry Potter movies")


TRIGGER_RE = re.compile(
    rf"\b(?:(?P<same>{SAME})|(?P<avoid>{AVOID})|(?P<dislike>{DISLIKE})|(?P<curious>{CURIOUS})|(?P<like>{LIKE})|"
    rf"(?P<watched>{WATCHED})|(?P<seen>{SEEN}))\b",
    re.I,
)
POSTFIX_RE = re.compile(rf"\b(?:(?P<dislike>{POSTFIX_DISLIKE})|(?P<like>{POSTFIX_LIKE}))\b", re.I)
CLAUSE_END = re.compile(
    r"[.!?;\n]+|(?<!anything )(?<!all )\b(?:but|however|though|although|whereas|except that)\b", re.I
)
# Where a message splits into stretches that may hold one title: punctuation, except the dots
# of initials and abbreviations ("L.A.", "Mr.").
CHUNK_END = re.compile(
    r"(?<![\s.][A-Za-z])(?<!^[A-Za-z])(?<!Mr|Dr|St|Jr|vs)(?<!Mrs)\.|[,;!?\n()\[\]\"“”]|:(?!\s*\w)"
)
# What may stand between two titles of one list: commas, "and", bullets, numbers, quotes.
LIST_GAP = re.compile(r"(?:[\s,;/&+|\-*•·\"'“”()\[\]]|\band\b|\bor\b|\bplus\b|\d{1,2}[.)])*", re.I)
QUOTED = re.compile(r"(?<![\w*])[\"“”«»*]([^\"“”«»*\n]{1,120})[\"“”«»*](?![\w*])")
LATIN = re.compile(r"^[a-z0-9à-ɏ'’-]+$", re.I)
MAX_FUZZY_CHUNKS = 40  # a very long message gets its typos checked in its first chunks only
MAX_FUZZY_PARTS = 21  # runs of parts tried per chunk (six parts between "and"s)


class MessageReader:
    """Turns a chat message into an `Understanding` against one catalog."""

    def __init__(self, catalog: Catalog, genres: list[str], polarity: PolarityReader | None = None) -> None:
        self.catalog = catalog
        # The classifier that may overrule the rules' feeling for a title (agent/polarity.py).
        self.polarity = polarity
        self.index = catalog.titles
        self.item_ids: list[ItemId] = catalog.frame["item_id"].tolist()
        known = {g.lower(): g for g in genres}
        self.genre_words = {w: known[g.lower()] for w, g in GENRE_WORDS.items() if g.lower() in known}
        self.genre_words.update({g.lower(): g for g in genres if g.lower() not in ("(no genres listed)",)})
        years = catalog.frame["year"].dropna()
        self.latest = int(years.max()) if len(years) else 2020
        # Which words left over describe films, from this catalog's own genres and tags.
        self.describer: WordJudge = Describer.from_catalog(catalog)

    # ------------------------------------------------------------------ titles
    def _linked_quotes(self, text: str) -> list[_Link]:
        out = []
        for found in QUOTED.finditer(text):
            phrase = found.group(1).strip(" ,;:!?")
            if not phrase or phrase.lower() in PRONOUNS:
                continue
            rows = self.index.lookup(phrase)
            if not rows and (near := self.index.fuzzy(phrase)) is not None:
                rows = list(near.items)
            if rows or phrase.lower() not in self.genre_words:
                suggestions = [] if rows else self._suggestions(phrase)
                out.append(_Link(found.start(), found.end(), tuple(rows), True, phrase, suggestions))
        return out

    def _suggestions(self, phrase: str) -> list[str]:
        return [self.index.titles[r] for r in self.index.suggest(phrase)]

    def _shouting(self, text: str) -> bool:
        """Everyday words capitalised too ("I Loved Alien And Up", "I LOVED UP"): then capitals
        say nothing about titles."""
        words = [w for w in re.findall(r"[^\W\d_]+", text) if w.lower() in FILLER and w != "I"]
        return len(words) >= 2 and sum(w[0].isupper() for w in words) / len(words) > 0.5

    def _sentence_start(self, text: str, at: int) -> bool:
        return re.search(r"(?:^|[.!?:;\n]|^\s*[-*•]|\n\s*[-*•]|\d[.)])\s*[\"'“(]?\s*$", text[:at]) is not None

    def _evidence(self, text: str, span: TitleSpan, triggers: list[re.Match], shouting: bool) -> str:
        """'strong' (a title for sure), 'list' (a title if it sits in a list of titles) or ''."""
        words = span.key.split()
        written = text[span.start : span.end]
        lowered = written.lower()
        if span.key in self.genre_words or lowered in self.genre_words:
            return ""  # "I like comedies": a genre, not the film *Comedy*
        if len(words) == 1 and re.fullmatch(TRIGGER_RE, lowered):
            return ""  # "hate", "loved": the sentence's own words
        if re.fullmatch(r"(?:19|20)\d\d", span.key) and re.search(r"[(\[]\s*$", text[: span.start]):
            return ""  # "(2001)" after a title is its year, not *2001: A Space Odyssey*
        everyday = len(words) == 1 or all(w in COMMON for w in words)
        if not everyday:
            return "strong"
        if span.year is not None:
            return "strong"
        capital = written[:1].isupper() and written != "I" and not shouting
        if capital and not (self._sentence_start(text, span.start) and words[0] in COMMON):
            return "strong"
        if capital and re.match(r"\s*[,;]\s*(?:and\s+)?[\"“]?[A-Z0-9]", text[span.end :]):
            return "strong"  # "Heat, The Barbarian Invasions, and …": the head of a list of titles
        if lowered in PRONOUNS:
            return ""  # "I loved it"
        if (
            capital
            and not (len(words) == 1 and words[0] in FUNCTION_WORDS)
            and SUBJECT_PREDICATE.match(text, span.end)
        ):
            return "strong"  # "Jaws still holds up", "Men in Black was forgettable": the subject
        if (
            len(words) == 1
            and written.islower()
            and words[0] in FILLER
            and re.match(r"\s+[\"“]?[A-Z]", text[span.end :])
        ):
            return ""  # "you should watch Get Out": a verb before a title, not *The Watch* in a list
        before = text[: span.start]
        for trigger in triggers:
            if trigger.lastgroup != "seen" or re.search(r"seen|watched", trigger.group(), re.I):
                gap = before[trigger.end() :]
                if trigger.end() <= span.start and re.fullmatch(
                    r"\s*(?:the\s+(?:film|movie)\s+|(?:films?|movies?)\s+(?:called|named)\s+)?", gap, re.I
                ):
                    return "strong"
        return "" if len(words) == 1 and words[0] in FUNCTION_WORDS else "list"  # "and more"

    def _link(self, text: str) -> list[_Link]:
        """The message's titles: quoted ones first; then, longest first, the names with enough
        evidence and the long names written with a typo; everyday-word titles when they sit in a
        list next to another title."""
        links = self._linked_quotes(text)
        links += [s for s in self._series(text) if all(s.end <= q.start or s.start >= q.end for q in links)]
        taken = [(link.start, link.end) for link in links]

        def free(start: int, end: int) -> bool:
            return all(end <= s or start >= e for s, e in taken)

        def beside(span: TitleSpan, others: list[tuple[int, int]]) -> bool:
            return any(
                (span.end <= s or span.start >= e)
                and LIST_GAP.fullmatch(_gap(span.start, span.end, s, e, text))
                for s, e in others
            )

        triggers = list(TRIGGER_RE.finditer(text))
        shouting = self._shouting(text)
        kinds: dict[TitleSpan, str] = {}
        exact = self.index.spans(text)
        for span in [*exact, *self._typos(text, taken, exact)]:
            if free(span.start, span.end):
                kinds[span] = "strong" if span.score < 100 else self._evidence(text, span, triggers, shouting)
        strong = [(s.start, s.end) for s, kind in kinds.items() if kind == "strong"]
        order = sorted(
            (s for s, kind in kinds.items() if kind),
            key=lambda s: (-s.n_tokens, s.tier, -s.score, -(s.year is not None), s.start),
        )
        chosen: list[TitleSpan] = []
        for span in order:  # longest first: "Into the Wild" before *Wild*
            if free(span.start, span.end) and (kinds[span] == "strong" or beside(span, [*strong, *taken])):
                chosen.append(span)
                taken.append((span.start, span.end))
        changed = True
        while changed:  # "I loved Alien, Heat and Up": *Up* is a title because it sits in that list
            changed = False
            for span in order:
                if span not in chosen and free(span.start, span.end) and beside(span, taken):
                    chosen.append(span)
                    taken.append((span.start, span.end))
                    changed = True
        links += [self._chosen(text, s) for s in chosen]
        return sorted(links, key=lambda link: link.start)

    def _chosen(self, text: str, span: TitleSpan) -> _Link:
        """A span taken as a title. A numbered sequel the catalog lacks ("Toy Story 4") is a
        title not found, never the first film; a franchise name shared by several titles
        ("Star Wars", "Kill Bill" before a colon) is its first film."""
        number = SEQUEL_NUMBER.match(text, span.end)
        if number and span.year is None and not self.index.lookup(text[span.start : number.end()]):
            phrase = text[span.start : number.end()]
            return _Link(span.start, number.end(), (), False, phrase, self._suggestions(phrase))
        rows = span.items
        if span.tier == 2 and len(rows) > 1:
            rows = (min(rows, key=lambda r: (self.index.years[r] or 9999, r)),)
        return _Link(span.start, span.end, rows, False, text[span.start : span.end])

    def _series(self, text: str) -> list[_Link]:
        """Franchises named as such: "the Harry Potter movies", "the Star Wars series"."""
        out: list[_Link] = []
        for word in SERIES_WORD.finditer(text):
            before = list(re.finditer(r"[^\W_][\w'&:.-]*", text[max(0, word.start() - 80) : word.start()]))
            offset = max(0, word.start() - 80)
            for n in range(min(len(before), 6), 0, -1):
                start, end = offset + before[-n].start(), offset + before[-1].end()
                if re.search(r"[,;!?()\n]", text[start:end]):
                    continue
                words = [w.lower() for w in re.findall(r"[^\W_]+", text[start:end])]
                if all(w in COMMON or w in self.genre_words for w in words):
                    continue
                rows = self.index.series(text[start:end])
                if rows:
                    phrase = re.sub(r"^(?:the|all|of)\s+", "", text[start:end], flags=re.I)
                    out.append(_Link(start, end, tuple(rows), False, phrase, series=True))
                    break
        return out

    def _typos(self, text: str, taken: list[tuple[int, int]], exact: list[TitleSpan]) -> list[TitleSpan]:
        """Long titles written with a typo: each stretch between punctuation (and each pair of
        neighbouring stretches: "Sorry, Wrong Number"), and each run of its parts between
        "and"/"or" ("Bonnie and Cylde"), that holds a word no exact name covers and is close to
        a name once boilerplate at its ends is set aside (or not: "What Dreams May Come")."""
        masked = _blank(text, taken)
        covered = np.zeros(len(text) + 1, dtype=bool)
        for span in exact:
            covered[span.start : span.end] = True
        cuts = [-1, *(m.start() for m in CHUNK_END.finditer(masked)), len(masked)]
        stretches = [(a + 1, b) for a, b in itertools.pairwise(cuts) if masked[a + 1 : b].strip()]
        stretches += [(a[0], b[1]) for a, b in itertools.pairwise(stretches) if masked[a[1]] == ","]
        boiler = {*FILLER, *self.genre_words, *_trigger_words()}
        out: dict[tuple[int, int], TitleSpan] = {}
        matched: set[tuple[int, int]] = set()  # misspelt words a smaller stretch already explained
        for begin_chunk, end_chunk in stretches[: 2 * MAX_FUZZY_CHUNKS]:  # single stretches first
            piece = masked[begin_chunk:end_chunk]
            bounds = [0, *(m.start() for m in re.finditer(r"\s(?:and|or|&)\s", piece, re.I)), len(piece)]
            parts = [
                (bounds[i], bounds[j]) for i in range(len(bounds) - 1) for j in range(i + 1, len(bounds))
            ]
            for lo, hi in sorted(parts, key=lambda p: p[1] - p[0])[:MAX_FUZZY_PARTS]:  # smallest first
                words = [  # each word without the punctuation around it
                    (begin_chunk + lo + w.start(), begin_chunk + lo + w.end())
                    for w in re.finditer(
                        r"[^\s\"“”«»,;:!?()\[\]]+(?:[^\s\"“”«»,;!?()\[\]]*[^\W_])?", piece[lo:hi]
                    )
                ]
                unknown = [
                    w for w in words
                    if _bare(text[w[0] : w[1]]) not in boiler and not covered[w[0] : w[1]].all()
                ]  # fmt: skip
                if not unknown or all(u in matched for u in unknown):
                    continue  # every word is known (a name, boilerplate) or already explained
                first = 0
                while first < len(words) and _bare(text[slice(*words[first])]) in boiler:
                    first += 1
                last = len(words)
                while last > first and _bare(text[slice(*words[last - 1])]) in boiler:
                    last -= 1
                best: TitleSpan | None = None
                variants = {
                    (first, last),
                    (first, len(words)),
                    (max(first - 1, 0), len(words)),
                    (0, len(words)),
                }
                for i, j in sorted(variants):
                    if i >= j or not any(words[i][0] <= u[0] < words[j - 1][1] for u in unknown):
                        continue
                    begin, end = words[i][0], words[j - 1][1]
                    if self.index.lookup(text[begin:end]):
                        continue  # an exact name: the exact spans have it
                    span = self.index.fuzzy(text[begin:end])
                    if span is not None and (best is None or span.score > best.score):
                        n_tokens = len(tokenize(text[begin:end]))
                        best = TitleSpan(begin, end, 0, n_tokens, span.key, span.items, span.score)
                if best is not None:
                    out[(best.start, best.end)] = best
                    matched.update(u for u in unknown if best.start <= u[0] < best.end)
        return list(out.values())

    def _not_found(self, text: str, links: list[_Link]) -> list[_Link]:
        """A capitalised phrase right after "I loved" (or another feeling) that names no title:
        reported back as not found, with close titles."""
        masked = _blank(text, [(link.start, link.end) for link in links])
        out = []
        for trigger in TRIGGER_RE.finditer(masked):
            if trigger.lastgroup == "seen":  # "no"/"not" precede too much to report misses
                continue
            start = trigger.end()
            if any(start <= link.start < start + 3 for link in links):
                continue
            ending = re.match(rf"\s*(.+?){STOP}", masked[start:], flags=re.I)
            if not ending:
                continue
            part = _split_titles(ending.group(1))[:1]
            if not part or not part[0][:1].isupper() or len(part[0].split()) > MAX_TITLE_WORDS:
                continue
            phrase = part[0]
            if phrase.lower() in self.genre_words or phrase.lower() in PRONOUNS or phrase == "I":
                continue
            at = masked.find(phrase, start)
            out.append(_Link(at, at + len(phrase), (), False, phrase, self._suggestions(phrase)))
        # A capitalised member of a list of titles ("Magnolia, The Barbarian Invasions, and …")
        for piece in re.finditer(r"[^,;\n]+", masked):
            lead = re.match(r"\s*(?:(?:and|or|&|plus)\s+)?", piece.group(), re.I)
            start = piece.start() + (lead.end() if lead else 0)
            phrase = masked[start : piece.end()].rstrip(" .!?:")
            words = phrase.split()
            if not words or len(words) > MAX_TITLE_WORDS or not phrase[:1].isupper():
                continue
            capitals = sum(
                w[:1].isupper() or w.lower() in ("of", "the", "a", "an", "and", "in") for w in words
            )
            end = start + len(phrase)
            beside = any(LIST_GAP.fullmatch(_gap(start, end, k.start, k.end, text)) for k in links)
            first = words[0].lower()
            known = phrase.lower() in self.genre_words or (
                first in FILLER and first not in ("the", "a", "an")
            )
            if capitals == len(words) and beside and not known and all(o.start != start for o in out):
                out.append(_Link(start, end, (), False, phrase, self._suggestions(phrase)))
        return out

    def _sentiment(self, text: str, link: _Link, masked: str) -> str:
        """How the person feels about one title, from its clause: the nearest feeling word
        before it (a comparing "like" gives way to an earlier feeling: "I don't like horror like
        The Ring"), unless it only says the film was seen or asked about and a feeling follows;
        NAMED (taken as liked) when no feeling word is found."""
        bounds = [0, *(m.end() for m in CLAUSE_END.finditer(masked) if m.end() <= link.start)]
        begin = max(bounds)
        after = CLAUSE_END.search(masked, link.end)
        end = after.start() if after else len(masked)
        # A bare "not"/"no" rules out only what follows it closely ("but not Alien", "no Heat"):
        # further off it negates something else ("I did not know it had a prequel, is it … X").
        # A comparing "like" keeps the whole clause's negation ("not in stuff like X").
        triggers = [
            m for m in TRIGGER_RE.finditer(masked, begin, link.start)
            if m.lastgroup != "watched" or not RELATIVE_WATCHED.search(masked, 0, m.start())
        ]  # fmt: skip
        before = [
            m for m in triggers
            if m.lastgroup != "seen" or len(masked[m.end() : link.start].split()) <= BARE_NOT_REACH
        ]  # fmt: skip
        prefix = before[-1] if before else None
        if prefix is not None and EXCEPTION.match(prefix.group()):
            sentence = re.split(r"[.!?\n]", masked[begin : prefix.start()])[-1]
            if NEGATIVE_BEFORE.search(sentence):
                return "like"
        if (
            prefix is not None
            and SIMILAR.search(prefix.group())
            and not FELT_LIKE.search(masked, 0, prefix.start())
        ):
            earlier = [
                m
                for m in triggers
                if m.end() <= prefix.start() and m.lastgroup in ("dislike", "avoid", "seen")
            ]
            prefix = earlier[-1] if earlier else prefix
        if prefix is not None and prefix.lastgroup not in WEAK_FEELINGS:
            if prefix.lastgroup == "seen" and self._after_seeing(masked, begin):
                return "curious"  # "I've seen Deadpool but not Arrival": not seen yet
            return str(prefix.lastgroup)
        postfix = POSTFIX_RE.search(masked, link.end, end)
        if postfix is not None:
            return str(postfix.lastgroup)
        if self._judged_later(text, masked, end):
            return "dislike"
        if prefix is None and _interjection(masked, begin, link.start):
            return INTERJECTED
        # No feeling word at all: taste, unless the classifier reads a judgement (NAMED).
        return str(prefix.lastgroup) if prefix is not None else NAMED

    @staticmethod
    def _judged_later(text: str, masked: str, end: int) -> bool:
        """Does the next clause or sentence speak ill of the title just named ("… but thought it
        was corny", ". That movie got bad press", ". Not as good as Y")? Only where it names no
        other title, unless it is the comparison itself."""
        found = JUDGED_LATER.match(masked, end)
        if found is None:
            return False
        after = CLAUSE_END.search(masked, found.end())
        stop = after.start() if after else len(masked)
        if found.group("worse"):
            return True
        if masked[end:stop] != text[end:stop]:
            return False  # another title: the judgement is of that one
        postfix = POSTFIX_RE.search(masked, found.start(), stop)
        return postfix is not None and postfix.lastgroup == "dislike"

    @staticmethod
    def _after_seeing(masked: str, begin: int) -> bool:
        """Does the sentence before this clause speak of seeing films (so a bare "not" that
        starts the clause means not seen)?"""
        sentence = re.split(r"[.!?;\n]", masked[:begin])[-1]
        return any(m.lastgroup in WEAK_FEELINGS for m in TRIGGER_RE.finditer(sentence))

    # ------------------------------------------------------------------ the whole message
    def read(self, message: str) -> Understanding:
        out = Understanding(message=message)
        text = message.translate(APOSTROPHES)  # one character for one: offsets stay valid
        reset = r"\s*(?:start over|reset|restart|clear|new conversation|forget (?:it|everything))[.!]*\s*"
        if re.fullmatch(reset, text, flags=re.I):
            out.reset = True
            return out
        out.injection = bool(INJECTION.search(text.lower()))
        links = self._link(text)
        links += self._not_found(text, links)
        masked = _blank(text, [(link.start, link.end) for link in links])
        feelings, out.unread_words = self._feelings(text, links, masked)
        for link, sentiment in feelings:
            items = [self.item_ids[r] for r in link.rows]
            out.titles.append(
                TitleMention(link.phrase, sentiment, items, link.suggestions, link.quoted, link.series)
            )
        out.cards = self._card_references(text, masked, bool(links))
        out.unplaced_judgement = (
            not links and not out.cards and bool(CARD_BY_PRONOUN.search(masked)) and evaluative(masked)
        )
        rest = masked.lower()
        for ref in CARD_BY_POSITION.finditer(rest):  # "the second one" is no wish
            rest = rest.replace(ref.group(), " " * len(ref.group()), 1)
        out.kids, rest = _children(rest)
        out.year_min, out.year_max, rest = _years(EVENT_YEAR.sub(" ", rest), self.latest)
        self._genres(rest, out)
        self._keep_unwanted_away(out)
        rest = self._without_genres(rest)
        if not out.injection:
            out.query, out.other_script = content_words(NEGATED_WORD.sub(" ", rest), self.describer)
        return out

    def _card_references(self, text: str, masked: str, named_titles: bool) -> list[TitleMention]:
        """'the second one sounds good', '#3', and in a message that names no title, 'I've seen
        that one' or 'seen it, loved it' (the first card), each with its feeling."""
        found: list[tuple[int, int, int]] = []  # start, end, position (-1: the last card)
        for ref in CARD_BY_POSITION.finditer(masked):
            position = ORDINALS[ref.group(1).lower()] if ref.group(1) else int(ref.group(2))
            found.append((ref.start(), ref.end(), position))
        if not found and not named_titles:
            for ref in CARD_BY_PRONOUN.finditer(masked):
                clause_triggers = TRIGGER_RE.finditer(masked[max(0, ref.start() - 40) : ref.end() + 40])
                if any(t.lastgroup != "seen" for t in clause_triggers):
                    found.append((ref.start(), ref.end(), 1))
                    break  # "seen it, loved it" is one card
        links = [_Link(start, end, (), phrase=text[start:end]) for start, end, _ in found]
        rules = [self._sentiment(text, link, _blank(masked, [(link.start, link.end)])) for link in links]
        feelings = taken_as_liked(self._classified(text, links, rules, cards=True))
        return [
            TitleMention(link.phrase, sentiment, card=position)
            for link, sentiment, (_, _, position) in zip(links, feelings, found, strict=True)
        ]

    def _feelings(self, text: str, links: list[_Link], masked: str) -> tuple[list[tuple[_Link, str]], bool]:
        """Each title with how the person feels about it; a title corrected by the next one
        ("American Pie, I mean American Pie (1999)") gives way to it, and lends it its feeling.
        And whether any title was judged in words the reader does not know (`_unread`)."""
        ordered = sorted(links, key=lambda link: link.start)
        feelings = carried([self._sentiment(text, link, masked) for link in ordered])
        if self.polarity is not None:
            feelings = self._classified(text, ordered, feelings)
        feelings, unread = self._unread(text, ordered, taken_as_liked(feelings))
        kept: list[tuple[_Link, str]] = []
        for n, link in enumerate(ordered):
            corrected = n + 1 < len(ordered) and CORRECTION.fullmatch(text[link.end : ordered[n + 1].start])
            if corrected:
                feelings[n + 1] = feelings[n]
                continue
            kept.append((link, feelings[n]))
        return kept, unread

    def _unread(self, text: str, ordered: list[_Link], feelings: list[str]) -> tuple[list[str], bool]:
        """A taste reading whose words the reader mostly does not know (another language:
        "Titanic fue muy aburrida") is a mention: there is a judgement, and no telling which.
        The readings, and whether any was changed so."""
        spans = [(link.start, link.end) for link in ordered]
        out = list(feelings)
        for n, (span, feeling) in enumerate(zip(spans, feelings, strict=True)):
            if feeling in TASTE and ordered[n].rows and self.unreadable(judgement_window(text, span, spans)):
                out[n] = "mention"
        return out, out != feelings

    def unreadable(self, words_about_a_film: str) -> bool:
        """Are most of these words (the film placeholders aside) ones that neither the catalog,
        the training talk nor VADER's lexicon uses, at least two of them?"""
        lowered = words_about_a_film.lower().replace(TARGET, " ").replace(OTHER, " ")
        found = re.findall(r"[^\W\d_]+(?:'[^\W\d_]+)?", lowered)
        unknown = [w for w in found if not self.describer.known(w) and w not in FILLER]
        return len(unknown) >= UNREAD_WORDS and 2 * len(unknown) > len(found)

    def _classified(
        self, text: str, ordered: list[_Link], rules: list[str], cards: bool = False
    ) -> list[str]:
        """The rules' feelings, read again by the polarity classifier (`polarity.decide`); the
        rules alone when it fails (a reply must never fail on it)."""
        # A "same" feeling was read in an earlier message: nothing here to classify.
        found = [n for n, link in enumerate(ordered) if (link.rows or cards) and rules[n] != "same"]
        if self.polarity is None or not found:
            return rules
        spans = [(link.start, link.end) for link in ordered]
        try:
            read = self.polarity.adjust(text, [spans[n] for n in found], [rules[n] for n in found])
        except Exception as exc:  # the embedder failed: the rules still read the message
            log.warning("polarity classifier failed (%s): feelings read by the rules", exc)
            return rules
        out = list(rules)
        for n, sentiment in zip(found, read, strict=True):
            out[n] = sentiment
        return out

    def rule_feelings(self, text: str) -> list[tuple[tuple[int, int], tuple[int, ...], str]]:
        """Each title the message names (span, catalog rows) with the rules' feeling about it,
        before any classifier (NAMED where no feeling word was found): what
        `fewrec.fit.build_polarity` learns from."""
        text = text.translate(APOSTROPHES)
        links = self._link(text)
        links += self._not_found(text, links)
        masked = _blank(text, [(link.start, link.end) for link in links])
        ordered = sorted(links, key=lambda link: link.start)
        feelings = carried([self._sentiment(text, k, masked) for k in ordered])
        return [((k.start, k.end), k.rows, feeling) for k, feeling in zip(ordered, feelings, strict=True)]

    def _genres(self, rest: str, out: Understanding) -> None:
        """Genres wished for or ruled out ("no horror", "anything but horror")."""
        for word in sorted(self.genre_words, key=len, reverse=True):
            pattern = rf"(?<![\w-]){re.escape(word)}(?![\w-])"
            for found in re.finditer(pattern, rest):
                genre = self.genre_words[word]
                target = out.exclude_genres if NEGATION.search(rest[: found.start()]) else out.genres
                if genre not in target:
                    target.append(genre)
            rest = re.sub(pattern, " ", rest)
        out.genres = [g for g in out.genres if g not in out.exclude_genres]
        out.replaces_genres = bool(out.genres) and bool(REPLACING_WISH.search(rest))

    def _keep_unwanted_away(self, out: Understanding) -> None:
        """A film not seen yet, in a genre the same message rules out ("I haven't seen It. I'm
        not interested in horror movies"), is not wanted: kept away rather than taken as taste."""
        if not out.exclude_genres:
            return
        ruled_out = set(out.exclude_genres)
        genres = self.catalog.frame["genres"]
        for mention in out.titles:
            if (
                mention.sentiment == "curious"
                and mention.matches
                and all(ruled_out & set(genres.iloc[self._rows[item]]) for item in mention.matches)
            ):
                mention.sentiment = "seen"

    @functools.cached_property
    def _rows(self) -> dict[ItemId, int]:
        return {item: row for row, item in enumerate(self.item_ids)}

    def _without_genres(self, rest: str) -> str:
        for word in sorted(self.genre_words, key=len, reverse=True):
            rest = re.sub(rf"(?<![\w-]){re.escape(word)}(?![\w-])", " ", rest)
        return rest


def taken_as_liked(feelings: list[str]) -> list[str]:
    """The readings the chat files: a title with no feeling word is taste, one judged only by an
    exclamation a mention (what the classifier leaves of them, or the rules alone)."""
    return ["like" if f == NAMED else "mention" if f == INTERJECTED else f for f in feelings]


def _interjection(masked: str, begin: int, title: int) -> bool:
    """Does the title's clause open with a short exclamation that holds a judgement word (VADER's
    lexicon), set off by a comma before the title ("oh great, another X"), and judge it in no
    other word before it?"""
    comma = masked.find(",", begin, title)
    if comma < 0:
        return False
    opening = masked[begin:comma]
    return (
        len(opening.split()) <= INTERJECTION_WORDS
        and evaluative(opening)
        and not evaluative(masked[comma:title])
    )


def carried(feelings: list[str]) -> list[str]:
    """A "same" feeling takes the feeling of the title before it in the message; the first title's "same"
    stays, for the chat to fill in from the conversation (`resolve_same`)."""
    out = list(feelings)
    for n in range(1, len(out)):
        if out[n] == "same":
            out[n] = out[n - 1]
    return out


def resolve_same(feeling: str, previous: str | None) -> str:
    """A feeling carried over from the last message: that message's last feeling, or liked."""
    return (previous or "like") if feeling == "same" else feeling


def _children(rest: str) -> tuple[bool, str]:
    """Whether the (lower-case) text asks for family films, and the text without those words.
    Children in a negation's scope ("not in the mood for children's films") are no such wish:
    their words stay for the genres to rule out."""
    kids = False
    for pattern in (KIDS, CHILDREN):
        for found in reversed(list(pattern.finditer(rest))):  # from the end: offsets stay valid
            if NEGATION.search(rest[: found.start()]):
                continue
            kids = True
            rest = rest[: found.start()] + " " * (found.end() - found.start()) + rest[found.end() :]
    for found in AGE.finditer(rest):
        kids = kids or (found.group(1) is not None and int(found.group(1)) <= OLDEST_CHILD)
    return kids, AGE.sub(" ", rest)


@functools.cache
def _trigger_words() -> frozenset[str]:
    words = re.findall(
        r"[a-z']+", " ".join([SAME, AVOID, DISLIKE, CURIOUS, LIKE, WATCHED, SEEN]).replace("'?", "'")
    )
    return frozenset(w.replace("'", "") for w in words)


def _bare(word: str) -> str:
    return re.sub(r"['’]", "", word.strip(" ,;:!?.\"'“”()-").lower())


def _gap(start: int, end: int, other_start: int, other_end: int, text: str) -> str:
    """The text between two spans that do not overlap."""
    return text[end:other_start] if end <= other_start else text[other_end:start]


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    """The text with the spans replaced by spaces (offsets stay valid)."""
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def content_words(rest: str, describer: WordJudge | None = None) -> tuple[str, bool]:
    """The meaning query left in `rest` (lower case, titles and filters taken out): its words
    that describe films, or "" when none is left; and whether words in another script were
    dropped (the content index reads the catalog's language).

    Feeling words, request boilerplate, digits and one-letter words go first; of what is left,
    `describer` (`agent/query_words.py`, the bundled catalog's when None) keeps only the words
    that describe films: judgements, filler and words about the person stay out."""
    rest = TRIGGER_RE.sub(" ", rest)
    rest = re.sub(rf"\b{POSTFIX_DISLIKE}\b", " ", rest)
    rest = POSSESSED.sub(" ", rest)
    found = list(re.finditer(r"[^\W_]+(?:['’-][^\W_]+)*", rest))
    other = [m.group() for m in found if not LATIN.match(m.group())]
    candidates = [
        m for m in found
        if LATIN.match(w := m.group()) and _bare(w) not in FILLER and w not in FILLER and not w.isdigit()
        and len(w) > 1
    ]  # fmt: skip
    judge = describer if describer is not None else bundled_describer()
    keep = [judge.describes(m.group()) for m in candidates]
    for n, (first, second) in enumerate(itertools.pairwise(candidates)):
        if rest[first.end() : second.start()] == " " and judge.phrase(first.group(), second.group()):
            keep[n] = keep[n + 1] = True  # "time travel": a phrase the catalog uses
    kept = [m.group() for m, k in zip(candidates, keep, strict=True) if k]
    if not any(len(w) >= 3 for w in kept):
        kept = []
    return " ".join(kept)[:500], bool(other)
