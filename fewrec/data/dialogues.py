"""Real recommendation dialogues, a dataset like the rating files: read them, find their films
in the catalog, and list the turns where the human recommender suggested something new. The
conversation evaluation replays them (`fewrec/eval/conversation_eval.py`); the fitting of the
chat's prior, polarity and query words counts them (`fewrec/fit/`).

The format read natively is ReDial's JSONL (Li et al., "Towards Deep Conversational
Recommendations", NeurIPS 2018; CC BY 4.0): one dialogue per line, films written as `@<id>` in
the messages, `movieMentions` giving each id's "Title (Year)", and the seeker's own answers
about each film (`initiatorQuestions`: liked / seen). Any other source comes in through the
small adapter format below, or through `dialogue_from_turns` from Python:

    {"dialogue_id": "7", "turns": [
        {"role": "seeker", "text": "I loved Heat (1995), anything like it?", "films": ["Heat (1995)"]},
        {"role": "recommender", "text": "Try Collateral (2004)", "films": ["Collateral (2004)"]}],
     "labels": {"Heat (1995)": {"liked": 1, "seen": 1}}}

There the text is what the person wrote (titles inline), `films` names the films the turn
mentions as "Title (Year)", and `labels` (optional) are the seeker's own answers, 0/1/2 as in
ReDial. Both formats become `Dialogue` records; `match_films` maps their titles to catalog
items on title and year, and says which films the catalog lacks.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from fewrec.data.errors import FewrecError
from fewrec.data.models import Catalog, ItemId
from fewrec.data.titles import TRAILING_YEAR

MENTION = re.compile(r"@(\d+)")
Role = Literal["seeker", "recommender"]
YEAR_SLACK = 1  # a year one off is the same film (ReDial's years are sometimes the release abroad)


class ConversationFormatError(FewrecError):
    """A conversation file that is not in a format this reader knows."""


# --------------------------------------------------------------------------- records
class FilmLabel(BaseModel):
    """The seeker's own answers about one film (ReDial's codes: 2 = did not say)."""

    suggested: int | None = None  # 1: the recommender proposed it
    seen: int | None = None  # 0 not seen, 1 seen, 2 did not say
    liked: int | None = None  # 0 disliked, 1 liked (or would like to see), 2 did not say


class Turn(BaseModel):
    """One message, as its sender wrote it; films it mentions are `@<key>` in `text` (ReDial) or
    already written out (the adapter format), and listed in `films` by key."""

    role: Role
    text: str
    films: list[str] = Field(default_factory=list)


class Dialogue(BaseModel):
    """One conversation between a seeker and a recommender."""

    dialogue_id: str
    turns: list[Turn]
    films: dict[str, str] = Field(default_factory=dict)  # key -> "Title (Year)" as shown to people
    labels: dict[str, FilmLabel] = Field(default_factory=dict)  # key -> the seeker's answers

    def shown_text(self, turn: Turn) -> str:
        """The message as the people saw it: every `@<key>` written as its title with year."""
        return MENTION.sub(lambda m: self.films.get(m.group(1), m.group(0)), turn.text)

    @property
    def seeker_messages(self) -> int:
        return sum(t.role == "seeker" for t in self.turns)


class NewItemTurn(BaseModel):
    """A recommender turn (its consecutive messages together) naming films not mentioned
    before: those films are its targets."""

    first_turn: int  # index in Dialogue.turns of the turn's first message
    seeker_messages_before: int
    targets: list[str]  # film keys, in order of mention
    mentioned_before: list[str]  # film keys named earlier in the dialogue, by either side


# --------------------------------------------------------------------------- reading
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


EXPECTED = (
    "expected JSONL with one dialogue per line: ReDial's (messages, movieMentions, initiatorWorkerId) "
    "or fewrec's adapter format (dialogue_id, turns of role/text/films)"
)


def read_dialogues(path: Path) -> list[Dialogue]:
    """Every dialogue of a ReDial or adapter-format JSONL file; one clear line when the file
    is in another format (ConversationFormatError)."""
    path = Path(path)
    if not path.is_file():
        raise ConversationFormatError(f"{path}: no such file ({EXPECTED})")
    return list(_dialogues(path))


def _dialogues(path: Path) -> Iterator[Dialogue]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConversationFormatError(
                    f"{path} line {number}: not JSON ({exc.msg}); {EXPECTED}"
                ) from exc
            yield parse_record(record, f"{path} line {number}")


def parse_record(record: Any, where: str) -> Dialogue:
    """One dialogue from a parsed JSON line, in whichever of the two formats it is."""
    if isinstance(record, dict) and {"messages", "movieMentions", "initiatorWorkerId"} <= record.keys():
        reader: Callable[[dict], Dialogue] = from_redial
    elif isinstance(record, dict) and "turns" in record:
        reader = from_adapter
    else:
        found = ", ".join(sorted(record)[:6]) if isinstance(record, dict) else type(record).__name__
        raise ConversationFormatError(f"{where}: found {found or 'nothing'}; {EXPECTED}")
    try:
        return reader(record)
    except (ValidationError, KeyError, TypeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConversationFormatError(f"{where}: {reason}; {EXPECTED}") from exc


def from_redial(record: dict) -> Dialogue:
    """ReDial's record: the seeker is `initiatorWorkerId`; anyone else is the recommender."""
    seeker = record["initiatorWorkerId"]
    turns = [
        Turn(
            role="seeker" if message["senderWorkerId"] == seeker else "recommender",
            text=str(message["text"]),
            films=list(dict.fromkeys(MENTION.findall(str(message["text"])))),
        )
        for message in record["messages"]
    ]
    labels = record.get("initiatorQuestions") or {}  # an empty list when the seeker gave none
    return Dialogue(
        dialogue_id=str(record.get("conversationId", "")),
        turns=turns,
        # Some titles come URL-encoded ("Why Him%3F (2016)"): the interface showed them decoded.
        films={str(k): " ".join(unquote(str(v)).split()) for k, v in record["movieMentions"].items()},
        labels={str(k): FilmLabel.model_validate(v) for k, v in labels.items()},
    )


def from_adapter(record: dict) -> Dialogue:
    """The adapter format (module docstring): films are keyed by their written title."""
    turns = [dict(turn) for turn in record["turns"]]
    return dialogue_from_turns(str(record.get("dialogue_id", "")), turns, record.get("labels") or {})


def dialogue_from_turns(
    dialogue_id: str, turns: list[dict[str, Any]], labels: dict[str, dict[str, int]] | None = None
) -> Dialogue:
    """A dialogue from any source: turns of {"role": "seeker" | "recommender", "text": ...,
    "films": ["Title (Year)", ...]}, and optional labels {"Title (Year)": {"liked": 0|1|2,
    "seen": 0|1|2}} (the seeker's own answers)."""
    films: dict[str, str] = {}
    parsed = []
    for turn in turns:
        titles = [" ".join(str(t).split()) for t in turn.get("films", [])]
        films.update((t, t) for t in titles)
        parsed.append(Turn(role=turn["role"], text=str(turn["text"]), films=titles))
    return Dialogue(
        dialogue_id=dialogue_id,
        turns=parsed,
        films=films,
        labels={" ".join(k.split()): FilmLabel.model_validate(v) for k, v in (labels or {}).items()},
    )


# --------------------------------------------------------------------------- new items
def new_item_turns(dialogue: Dialogue) -> list[NewItemTurn]:
    """The recommender turns that name films not mentioned before (by either side). The
    recommender's consecutive messages count as one turn; repeating a film is not a target."""
    out: list[NewItemTurn] = []
    mentioned: list[str] = []
    seeker_messages = 0
    index = 0
    while index < len(dialogue.turns):
        turn = dialogue.turns[index]
        if turn.role == "seeker":
            seeker_messages += 1
            mentioned += [f for f in turn.films if f not in mentioned]
            index += 1
            continue
        end = index
        while end < len(dialogue.turns) and dialogue.turns[end].role == "recommender":
            end += 1
        named = list(dict.fromkeys(f for t in dialogue.turns[index:end] for f in t.films))
        targets = [f for f in named if f not in mentioned]
        if targets:
            out.append(
                NewItemTurn(
                    first_turn=index,
                    seeker_messages_before=seeker_messages,
                    targets=targets,
                    mentioned_before=list(mentioned),
                )
            )
        mentioned += targets
        index = end
    return out


# --------------------------------------------------------------------------- catalog matching
MatchKind = Literal[
    "title and year",
    "year one off",
    "no year, one film",
    "no year, most watched",
    "year differs",
    "not in catalog",
]
MATCHED_KINDS = ("title and year", "year one off", "no year, one film", "no year, most watched")


class FilmMatch(BaseModel):
    """What one written title became in the catalog."""

    written: str
    item_id: ItemId | None = None
    kind: MatchKind

    @property
    def matched(self) -> bool:
        return self.item_id is not None


class TitleMatcher:
    """ReDial titles ("The Avengers  (2012)", no year, a year one off) to catalog items, on
    title and year through the catalog's own title index ('Avengers, The (2012)' is read as
    'The Avengers'). A title the catalog has only under another year is a different film (a
    remake) and is not matched; without a year, the most watched of the films of that name."""

    def __init__(self, catalog: Catalog, watched: Callable[[ItemId], float] | None = None) -> None:
        self.catalog = catalog
        self.index = catalog.titles
        self.ids = catalog.frame["item_id"].tolist()
        self.watched = watched or (lambda _item: 0.0)
        self._cache: dict[str, FilmMatch] = {}

    def match(self, written: str) -> FilmMatch:
        written = " ".join(written.split())
        if written not in self._cache:
            self._cache[written] = self._match(written)
        return self._cache[written]

    def _match(self, written: str) -> FilmMatch:
        year_found = TRAILING_YEAR.search(written)
        name = TRAILING_YEAR.sub("", written).strip()
        rows = self.index.lookup(name) if name else []
        if not rows:
            return FilmMatch(written=written, kind="not in catalog")
        if year_found is None:
            if len(rows) == 1:
                return FilmMatch(written=written, item_id=self.ids[rows[0]], kind="no year, one film")
            best = max(rows, key=lambda r: self.watched(self.ids[r]))
            return FilmMatch(written=written, item_id=self.ids[best], kind="no year, most watched")
        year = int(year_found.group(1))
        dated = [r for r in self.index.lookup(f"{name} ({year})") if self.index.years[r] == year]
        if dated:
            best = max(dated, key=lambda r: self.watched(self.ids[r]))
            return FilmMatch(written=written, item_id=self.ids[best], kind="title and year")
        near = [
            r
            for r in rows
            if self.index.years[r] is not None and abs(int(self.index.years[r]) - year) <= YEAR_SLACK
        ]
        if near:
            best = max(near, key=lambda r: self.watched(self.ids[r]))
            return FilmMatch(written=written, item_id=self.ids[best], kind="year one off")
        return FilmMatch(written=written, kind="year differs")

    def films(self, dialogue: Dialogue) -> dict[str, FilmMatch]:
        """Each film key of a dialogue -> its match."""
        return {key: self.match(title) for key, title in dialogue.films.items()}


__all__ = [
    "ConversationFormatError",
    "Dialogue",
    "FilmLabel",
    "FilmMatch",
    "NewItemTurn",
    "TitleMatcher",
    "Turn",
    "dialogue_from_turns",
    "file_sha256",
    "new_item_turns",
    "read_dialogues",
]


# --------------------------------------------------------------------------- folds
def dialogue_folds(dialogues: list[Dialogue], k: int, seed: int) -> list[int]:
    """The fold (0 … k−1) of each dialogue, for k-fold cross-validation grouped by dialogue:
    dialogues sharing an id share a fold; the ids are dealt round-robin in a seeded order, so
    the folds differ in size by one id at most and the same seed gives the same folds."""
    if k < 2:
        raise FewrecError(f"cross-validation needs at least 2 folds, got {k}")
    ids = sorted({d.dialogue_id for d in dialogues})
    if len(ids) < k:
        raise FewrecError(f"{len(ids)} dialogues cannot fill {k} folds")
    order = np.random.default_rng(seed).permutation(len(ids))
    fold_of = {ids[int(i)]: n % k for n, i in enumerate(order)}
    return [fold_of[d.dialogue_id] for d in dialogues]
