"""The conversation evaluation (`fewrec eval-conversations FILE`): real dialogues between two
people replayed into the chat, scored where the human recommender suggested something new, and
the chat's reading of every film checked against the seeker's own labels.

Each dialogue's seeker messages go, in order, into one chat conversation through
`ChatAgent.respond`, exactly as the Gradio page sends them (a fresh `agent.start()`, state kept
by the caller, no reference time: a new user is served "now"), with every `@id` written as
its title and year, as ReDial's interface showed it. Two modes, both reported:
- seeker_only: the chat hears the seeker alone;
- with_recommender: the human recommender's messages count as the chat's own turns: the films
  it named join `ChatState.shown`, the chat's record of the cards it has shown, and become its
  `last_cards`, what "seen it, loved it" or "the second one" refer to (the chat offers no
  other way to hear what it "said", so the caller sets those fields, as the page keeps the
  state).
In both modes the seeker never saw the chat's own cards: after each reply `last_cards` goes
back to what the seeker last saw (the human's films, or nothing in seeker_only), so a "seen
it, loved it" written about a human's suggestion is never filed against a card of the chat's.
The chat's cards carry no explanation here (`chat.explain` off): only their ranks are scored.
At each recommender turn naming films not mentioned before (its targets; see
`dialogues.new_item_turns`) four rankings of 20 are scored, every film already mentioned
in the dialogue removed from each alike (Recall@1/5/10/20 over the targets the catalog has):
the chat's cards from its reply to the latest seeker message; the chat given the seeker's
messages so far as one message, in a fresh conversation; the Python API (`Recommender`) given
every film mentioned so far as liked; popularity. After each dialogue, each film the seeker
labelled is looked up in the chat's state (liked, disliked, "nothing like", seen/not again,
asked back, not read) and compared with the label.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from fewrec.agent.chat import ChatAgent, ChatState, ChatTurn
from fewrec.agent.recommender import Recommender, describe_filters
from fewrec.data.dialogues import (
    MATCHED_KINDS,
    Dialogue,
    NewItemTurn,
    TitleMatcher,
    file_sha256,
    new_item_turns,
    read_dialogues,
)
from fewrec.data.models import ItemId
from fewrec.eval import metrics as m
from fewrec.eval import provenance as prov
from fewrec.eval.harness import (
    PLACES,
    Anchor,
    anchors,
    named,
    place_of,
    popularity_order,
    progress_bar,
    seeded_sample,
    with_chat,
)
from fewrec.eval.report import (
    commit_line,
    fill,
    incomplete,
    links,
    note_lines,
    num,
    pct,
    pyplot,
    save_figure,
    span,
    table,
    texts,
    write_run,
)
from fewrec.eval.runner import EvalError

KS = (1, 5, 10, 20)
CARDS = max(KS)  # the chat shows this many cards in the evaluation (the page shows 5)
METHODS = ("chat", "chat_whole", "api", "prior", "popularity")
METHOD_NAMES = {
    "chat": "the chat, turn by turn",
    "chat_whole": "the chat, the seeker's messages so far as one message",
    "api": "the Python API, given every film mentioned so far",
    "prior": "the chat's conversation prior alone, given every film mentioned so far",
    "popularity": "popularity",
}
Mode = Literal["seeker_only", "with_recommender"]
MODES: tuple[Mode, ...] = ("seeker_only", "with_recommender")
MODE_NAMES = {
    "seeker_only": "the seeker's messages only",
    "with_recommender": "the human recommender's films handed to the chat as its own shown cards",
}
# read as a known film ("mentioned": judged in words the reader could not place)
OPINION_PLACES = ("liked", "disliked", "nothing like", "seen / not again", "mentioned")
EXAMPLES = 30  # misread films kept per mode (report.md shows the first 12)
MISSING_LISTED = 20
PUBLISHED_NOTE = "published, not measured, other catalog (ReDial's test split)"
README_MARKERS = ("<!-- results-conversations:start -->", "<!-- results-conversations:end -->")


# --------------------------------------------------------------------------- result records
class FilmCounts(BaseModel):
    """How the dialogues' films (each film once per dialogue) matched the catalog."""

    mentions: int = 0
    by_kind: dict[str, int] = Field(default_factory=dict)  # match kind -> mentions
    missing: int = 0  # mentions the catalog lacks (not in it, or only under another year)
    missing_titles: dict[str, int] = Field(default_factory=dict)  # the most frequent, with counts


class Reading(BaseModel):
    """Where the chat put the labelled films, against the seeker's labels."""

    films: int = 0
    liked: dict[str, int] = Field(default_factory=dict)  # place -> films the seeker liked
    disliked: dict[str, int] = Field(default_factory=dict)
    unsaid: dict[str, int] = Field(default_factory=dict)  # liked not said
    seen: dict[str, int] = Field(default_factory=dict)  # place -> films the seeker had seen
    not_seen: dict[str, int] = Field(default_factory=dict)
    liked_kept: float | None = None  # share of liked films in the liked list
    disliked_not_liked: float | None = None  # share of disliked films not in the liked list
    seen_accuracy: float | None = None  # seen = read as a known film (any list), not seen = not read


class MisreadFilm(BaseModel):
    """A labelled film the chat read against the seeker's label, with the message that named it."""

    dialogue_id: str
    message: str  # the seeker's last message naming the film, as sent to the chat
    film: str
    label: str  # liked / disliked
    after_message: str  # where the chat put it right after that message
    final: str  # where it was at the end of the dialogue
    understood: list[str] = Field(default_factory=list)  # the chat's "I took … as …" lines
    query: str = ""
    filters: str = ""


class ModeResult(BaseModel):
    mode: Mode
    description: str
    turns_scored: int = 0
    turns_before_seeker: int = 0  # the recommender suggested before the seeker said anything
    turns_without_catalog_target: int = 0
    targets: int = 0  # new films at the scored turns
    targets_in_catalog: int = 0
    recall: dict[str, dict[str, float]] = Field(default_factory=dict)  # over targets in the catalog
    recall_all_targets: dict[str, dict[str, float]] = Field(default_factory=dict)  # the rest as misses
    intervals_at_20: dict[str, tuple[float, float]] = Field(default_factory=dict)  # over dialogues
    cards_scored: dict[str, float] = Field(default_factory=dict)  # mean ranking length after removal
    whole_messages_cut: int = 0  # "so far" messages longer than the chat reads
    chat_turns: int = 0
    no_cards: int = 0  # chat replies with no card
    without_cards: list[tuple[str, str]] = Field(default_factory=list)  # (message, reply), the first few
    seconds_p50: float = 0.0
    seconds_p95: float = 0.0
    reading: dict[str, Reading] = Field(default_factory=dict)  # scope -> reading
    misread: list[MisreadFilm] = Field(default_factory=list)


class FoldResult(BaseModel):
    """One fold of the cross-validation: its dialogues replayed with the prior of the others."""

    fold: int
    dialogues: int  # replayed (seeker_only)
    prior_dialogues: int  # counted in this fold's prior: the other folds' dialogues, never its own
    form: str = ""  # the prior's form, chosen on the other folds alone
    turns_scored: int = 0
    targets_in_catalog: int = 0
    recall: dict[str, dict[str, float]] = Field(default_factory=dict)  # method -> recall@k
    seconds: float = 0.0


class CrossValidation(BaseModel):
    """k-fold cross-validation over the given dialogues, grouped by dialogue: each fold is
    replayed (seeker_only) with a prior counted, and its form chosen, on the other folds only."""

    files: list[str]
    dialogues: int
    folds: int
    seed: int
    sample: int | None = None  # dialogues replayed per fold (a seeded sample), None: all
    fitted_form: bool = True
    mode: Mode = "seeker_only"
    interval: str = "95% t interval over the folds' figures (k − 1 degrees of freedom)"
    per_fold: list[FoldResult] = Field(default_factory=list)
    mean: dict[str, dict[str, float]] = Field(default_factory=dict)  # method -> recall@k, over folds
    intervals: dict[str, dict[str, tuple[float, float]]] = Field(default_factory=dict)
    pooled: dict[str, dict[str, float]] = Field(default_factory=dict)  # all folds' targets together
    seconds: float = 0.0
    complete: bool = True  # False: interrupted; the folds done so far are reported


class ConversationsReport(prov.RunRecord):
    kind: Literal["conversations"] = "conversations"
    conversations_file: str
    sha256: str
    dataset: str
    catalog_items: int
    dialogues_in_file: int
    dialogues: int = 0  # replayed
    sample: int | None = None  # --dialogues
    seed: int = 0
    skipped: dict[str, int] = Field(default_factory=dict)  # reason -> dialogues not replayed
    cards: int = CARDS
    scored_as_of: str = "now: no reference time, as the page serves a new user"
    films: FilmCounts = Field(default_factory=FilmCounts)
    modes: list[ModeResult] = Field(default_factory=list)
    published: list[Anchor] = Field(default_factory=lambda: anchors("conversations"))  # beside the recall
    seconds: float = 0.0  # the replay and scoring
    setup_seconds: float | None = None  # loading the data, fitting the sources, building the index
    cross_validation: CrossValidation | None = None  # `--cv-folds`

    def mode(self, name: str) -> ModeResult:
        return named(self.modes, name, "mode")


# --------------------------------------------------------------------------- one dialogue
@dataclass
class ScoredTurn:
    dialogue: int  # position in the run, for the bootstrap
    targets: int
    ranks: dict[str, list[int | None]]  # method -> 0-based rank of each catalog target
    cards: dict[str, int]  # method -> ranking length after removing mentioned films


@dataclass
class MessageReading:
    """What the chat made of one seeker message's films, right after it."""

    text: str
    places: dict[str, str]  # film key -> place
    understood: list[str]
    query: str
    filters: str


@dataclass
class Replay:
    """One dialogue in one mode."""

    scored: list[ScoredTurn] = field(default_factory=list)
    before_seeker: int = 0
    without_catalog_target: int = 0
    targets: int = 0
    whole_cut: int = 0
    seconds: list[float] = field(default_factory=list)
    no_cards: int = 0
    without_cards: list[tuple[str, str]] = field(default_factory=list)  # (message, reply)
    readings: list[MessageReading] = field(default_factory=list)
    final: ChatState | None = None


def ranks_of(
    targets: list[ItemId], ranked: list[ItemId], removed: set[ItemId]
) -> tuple[list[int | None], int]:
    """0-based ranks of the targets in `ranked` once `removed` items are taken out and the
    rest cut to CARDS; and how long that ranking is."""
    kept = [item for item in ranked if item not in removed][:CARDS]
    return [kept.index(t) if t in kept else None for t in targets], len(kept)


class Replayer:
    """Replays dialogues through one chat agent and scores them with its recommender."""

    def __init__(self, agent: ChatAgent, recommender: Recommender, matcher: TitleMatcher) -> None:
        self.agent = agent
        self.recommender = recommender
        self.matcher = matcher
        self.popular = [recommender.split.item_ids[i].item() for i in popularity_order(recommender)]
        # The reference rankings do not depend on the mode: computed once per turn of a dialogue.
        self._references: dict[tuple[int, int], dict[str, list[ItemId]]] = {}

    def items(self, dialogue: Dialogue, keys: list[str]) -> list[ItemId]:
        """The catalog items of film keys, in order, without the films the catalog lacks."""
        found = (self.matcher.match(dialogue.films[key]) for key in keys if key in dialogue.films)
        return list(dict.fromkeys(f.item_id for f in found if f is not None and f.item_id is not None))

    def reference_rankings(
        self, point: NewItemTurn, dialogue: Dialogue, position: int
    ) -> dict[str, list[ItemId]]:
        """The API given every film mentioned so far as liked, the chat's prior alone given
        them, and popularity (mode-free)."""
        key = (position, point.first_turn)
        if key not in self._references:
            self._references = {k: v for k, v in self._references.items() if k[0] == position}
            mentioned = self.items(dialogue, point.mentioned_before)
            api = self.recommender.recommend(
                history=list(mentioned), k=CARDS, exclude=list(mentioned), explain=False
            )
            needed = CARDS + len(mentioned)
            self._references[key] = {
                "api": [r.item_id for r in api],
                "prior": self.prior_alone(mentioned),
                "popularity": self.popular[:needed],
            }
        return self._references[key]

    def prior_alone(self, mentioned: list[ItemId]) -> list[ItemId]:
        """The chat's prior's own first CARDS films (none when the chat has no prior)."""
        prior = getattr(self.agent, "prior", None)  # a scripted stand-in may have none
        if prior is None:
            return []
        split = self.recommender.split
        indices = [split.item_index(i) for i in mentioned if split.has_item(i)]
        ranked = prior.ranking(indices, self.agent.settings.prior_popularity, CARDS)
        return [split.item_ids[i].item() for i in ranked]

    def whole_dialogue_cards(
        self, dialogue: Dialogue, point: NewItemTurn, mode: Mode, replay: Replay
    ) -> list[ItemId]:
        """The chat, fresh, given the seeker's messages before `point` as one message."""
        before = dialogue.turns[: point.first_turn]
        text = "\n".join(dialogue.shown_text(t) for t in before if t.role == "seeker")
        state, _ = self.agent.start(None)
        if mode == "with_recommender":
            said = [f for t in before if t.role == "recommender" for f in t.films]
            # The last human suggestions are what "seen it, loved it" refers to.
            last_said = next((t.films for t in reversed(before) if t.role == "recommender" and t.films), [])
            state = state.model_copy(
                update={"shown": self.items(dialogue, said), "last_cards": self.items(dialogue, last_said)}
            )
        if len(text) > self.agent.settings.max_message_chars:
            replay.whole_cut += 1
        turn, _ = self.agent.respond(state, text)
        return [r.item_id for r in turn.recommendations]

    def score(
        self,
        dialogue: Dialogue,
        position: int,
        point: NewItemTurn,
        mode: Mode,
        last: ChatTurn,
        replay: Replay,
    ) -> None:
        """Every method's ranks of the turn's catalog targets."""
        targets = self.items(dialogue, point.targets)
        replay.targets += len(point.targets)
        if not targets:
            replay.without_catalog_target += 1
            return
        removed = set(self.items(dialogue, point.mentioned_before))
        rankings = {
            "chat": [r.item_id for r in last.recommendations],
            "chat_whole": self.whole_dialogue_cards(dialogue, point, mode, replay),
            **self.reference_rankings(point, dialogue, position),
        }
        ranks: dict[str, list[int | None]] = {}
        cards: dict[str, int] = {}
        for method in METHODS:
            ranks[method], cards[method] = ranks_of(targets, rankings[method], removed)
        replay.scored.append(ScoredTurn(dialogue=position, targets=len(targets), ranks=ranks, cards=cards))

    def send(
        self, dialogue: Dialogue, text: str, films: list[str], state: ChatState, replay: Replay
    ) -> tuple[ChatTurn, ChatState]:
        """One seeker message to the chat, as the page sends it; what it made of the films."""
        turn, state = self.agent.respond(state, text)
        replay.seconds.append(float(turn.seconds))
        if not turn.recommendations:
            replay.no_cards += 1
            replay.without_cards.append((text, turn.reply))
        places = {key: place_of(state, item) for key in films for item in self.items(dialogue, [key])}
        if places:
            replay.readings.append(
                MessageReading(
                    text=text,
                    places=places,
                    understood=list(turn.understood),
                    query=state.query,
                    filters=describe_filters(state.filters),
                )
            )
        return turn, state

    def replay(self, dialogue: Dialogue, position: int, mode: Mode) -> Replay:
        """The dialogue in one mode: seeker messages to the chat, scored at every new-item turn."""
        points = {p.first_turn: p for p in new_item_turns(dialogue)}
        replay = Replay()
        state, _ = self.agent.start(None)
        last: ChatTurn | None = None
        for index, turn in enumerate(dialogue.turns):
            if index in points:
                if last is None:  # nothing asked of the chat yet: no card to score
                    replay.before_seeker += 1
                else:
                    self.score(dialogue, position, points[index], mode, last, replay)
            if turn.role == "seeker":
                seen_cards = state.last_cards
                last, state = self.send(dialogue, dialogue.shown_text(turn), turn.films, state, replay)
                # The seeker never saw the chat's cards: their "seen it, loved it" answers the
                # human recommender's films (with_recommender), or films the chat cannot know.
                state = state.model_copy(update={"last_cards": seen_cards})
            elif mode == "with_recommender":
                said = self.items(dialogue, turn.films)
                shown = [*state.shown, *(i for i in said if i not in state.shown)]
                # Its films are the cards "the second one" or "seen it, loved it" refer to.
                update = {"shown": shown, "last_cards": said} if said else {"shown": shown}
                state = state.model_copy(update=update)
        replay.final = state
        return replay


# --------------------------------------------------------------------------- summaries
def summarise_recall(result: ModeResult, replays: list[Replay], seed: int) -> None:
    scored = [turn for replay in replays for turn in replay.scored]
    result.turns_scored = len(scored)
    result.turns_before_seeker = sum(r.before_seeker for r in replays)
    result.turns_without_catalog_target = sum(r.without_catalog_target for r in replays)
    result.targets = sum(r.targets for r in replays)
    result.targets_in_catalog = sum(t.targets for t in scored)
    # Recall over the catalog's targets (one rank each), and over all (the rest as misses).
    ranks = {method: [r for turn in scored for r in turn.ranks[method]] for method in METHODS}
    groups = np.array([t.dialogue for t in scored for _ in range(t.targets)])
    result.recall, result.intervals_at_20 = m.rates_and_intervals(ranks, KS, groups, seed)
    result.recall_all_targets = {k: m.hit_rates(r, KS, over=result.targets) for k, r in ranks.items()}
    for method in METHODS if scored else ():
        result.cards_scored[method] = float(np.mean([t.cards[method] for t in scored]))
    result.whole_messages_cut = sum(r.whole_cut for r in replays)
    seconds = [s for r in replays for s in r.seconds]
    result.chat_turns = len(seconds)
    result.no_cards = sum(r.no_cards for r in replays)
    result.without_cards = [pair for r in replays for pair in r.without_cards][:EXAMPLES]
    if seconds:
        result.seconds_p50, result.seconds_p95 = m.p50_p95(seconds)


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def reading_of(pairs: list[tuple[str, int | None, int | None]]) -> Reading:
    """(place, liked label, seen label) of each labelled film -> the Reading."""

    def places(label: int | None, of_seen: bool = False) -> dict[str, int]:
        return dict(Counter(p for p, liked, seen in pairs if (seen if of_seen else liked) == label))

    unsaid = dict(Counter(p for p, liked, _ in pairs if liked not in (0, 1)))
    out = Reading(films=len(pairs), liked=places(1), disliked=places(0), unsaid=unsaid, seen=places(1, True),
                  not_seen=places(0, True))  # fmt: skip
    out.liked_kept = _share(out.liked.get("liked", 0), sum(out.liked.values()))
    out.disliked_not_liked = _share(
        sum(out.disliked.values()) - out.disliked.get("liked", 0), sum(out.disliked.values())
    )
    right = sum(n for p, n in out.seen.items() if p in OPINION_PLACES)
    right += sum(n for p, n in out.not_seen.items() if p not in OPINION_PLACES)
    out.seen_accuracy = _share(right, sum(out.seen.values()) + sum(out.not_seen.values()))
    return out


def seeker_named(dialogue: Dialogue) -> set[str]:
    return {f for t in dialogue.turns if t.role == "seeker" for f in t.films}


def summarise_reading(
    result: ModeResult, dialogues: list[Dialogue], replays: list[Replay], replayer: Replayer
) -> None:
    """Per labelled catalog film: the chat's place for it after the dialogue, against the label;
    for the films the seeker named, and for all labelled films."""
    scopes: dict[str, list[tuple[str, int | None, int | None]]] = {
        "named by the seeker": [],
        "all labelled": [],
    }
    misread: list[tuple[int, MisreadFilm]] = []
    for dialogue, replay in zip(dialogues, replays, strict=True):
        named = seeker_named(dialogue)
        for key, label in dialogue.labels.items():
            items = replayer.items(dialogue, [key])
            if not items or replay.final is None:
                continue
            place = place_of(replay.final, items[0])
            scopes["all labelled"].append((place, label.liked, label.seen))
            if key in named:
                scopes["named by the seeker"].append((place, label.liked, label.seen))
                example = misread_film(dialogue, replay, key, label.liked, place)
                if example is not None:
                    misread.append(example)
    result.reading = {scope: reading_of(pairs) for scope, pairs in scopes.items()}
    misread.sort(key=lambda pair: pair[0])  # the worst first; stable: dialogue order within
    result.misread = [m for _, m in misread[:EXAMPLES]]


SEVERITY = {
    ("disliked", "liked"): 0,
    ("liked", "disliked"): 1,
    ("liked", "nothing like"): 1,
    ("liked", "seen / not again"): 2,
    ("liked", "asked back"): 3,
    ("liked", "not read"): 3,
}


def misread_film(
    dialogue: Dialogue, replay: Replay, key: str, liked: int | None, final: str
) -> tuple[int, MisreadFilm] | None:
    """The film as a misread example (with its severity), when the chat's place contradicts
    the seeker's label: liked but not kept as liked, or disliked and taken as liked."""
    label = {0: "disliked", 1: "liked"}.get(liked if liked is not None else 2)
    severity = SEVERITY.get((label or "", final))
    if label is None or severity is None:
        return None
    last = next((r for r in reversed(replay.readings) if key in r.places), None)
    if last is None:
        return None
    return severity, MisreadFilm(
        dialogue_id=dialogue.dialogue_id,
        message=last.text,
        film=dialogue.films.get(key, key),
        label=label,
        after_message=last.places[key],
        final=final,
        understood=last.understood,
        query=last.query,
        filters=last.filters,
    )


def count_films(dialogues: list[Dialogue], matcher: TitleMatcher) -> FilmCounts:
    matches = [match for dialogue in dialogues for match in matcher.films(dialogue).values()]
    missing = Counter(match.written for match in matches if not match.matched)
    return FilmCounts(
        mentions=len(matches), by_kind=dict(Counter(match.kind for match in matches)),
        missing=sum(missing.values()),
        missing_titles=dict(sorted(missing.items(), key=lambda kv: (-kv[1], kv[0]))[:MISSING_LISTED]),
    )  # fmt: skip


# --------------------------------------------------------------------------- the run
def choose_dialogues(dialogues: list[Dialogue], sample: int | None, seed: int) -> list[Dialogue]:
    """All dialogues, or a seeded sample of them in file order."""
    if sample is None or sample >= len(dialogues):
        return list(dialogues)
    if sample < 1:
        raise EvalError(f"--dialogues must be at least 1, got {sample}")
    return [dialogues[int(i)] for i in seeded_sample(np.arange(len(dialogues)), sample, seed)]


def evaluate_conversations(
    path: Path,
    recommender: Recommender,
    *,
    dialogues: list[Dialogue] | None = None,
    sample: int | None = None,
    seed: int = 0,
    progress: bool = False,
    make_agent: Callable[[Recommender], ChatAgent] = ChatAgent,
    modes: tuple[Mode, ...] = MODES,
) -> ConversationsReport:
    """Run the evaluation (module docstring) over the file's dialogues (or those given, read
    from it already). Ctrl-C stops it: the dialogues replayed so far are reported, marked."""
    started = time.perf_counter()
    every = read_dialogues(path) if dialogues is None else dialogues
    report = ConversationsReport(
        conversations_file=str(path), sha256=file_sha256(Path(path)), dataset=recommender.split.name,
        catalog_items=len(recommender.split.catalog), dialogues_in_file=len(every), sample=sample, seed=seed,
    )  # fmt: skip
    report.start_run(recommender.settings.model_dump(mode="json"))
    # Ranks are scored, not the cards' words: no explanations (much faster).
    recommender = with_chat(recommender, cards=CARDS, explain=False)
    matcher = TitleMatcher(recommender.split.catalog, _watched(recommender))
    chosen = choose_dialogues(every, sample, seed)
    silent = [d for d in chosen if d.seeker_messages == 0]
    if silent:
        report.skipped["no seeker message"] = len(silent)
        report.notes.append(f"{len(silent)} dialogue(s) with no seeker message were skipped")
    chosen = [d for d in chosen if d.seeker_messages]
    replayer = Replayer(make_agent(recommender), recommender, matcher)
    outcomes: list[dict[Mode, Replay]] = []  # per dialogue replayed, each mode's replay
    bar = progress_bar(len(chosen), "dialogues", "dialogue", progress)
    try:
        for position, dialogue in enumerate(chosen):
            outcomes.append({mode: replayer.replay(dialogue, position, mode) for mode in modes})
            bar.update()
    except KeyboardInterrupt:
        report.interrupted(f"{len(outcomes)} of {len(chosen)} dialogues replayed")
    finally:
        bar.close()
    done = chosen[: len(outcomes)]
    report.dialogues, report.films = len(done), count_films(done, matcher)
    for mode in modes:
        result = ModeResult(mode=mode, description=MODE_NAMES[mode])
        summarise_recall(result, [o[mode] for o in outcomes], seed)
        summarise_reading(result, done, [o[mode] for o in outcomes], replayer)
        report.modes.append(result)
    if report.films.missing:
        report.notes.append(
            f"{report.films.missing} of {report.films.mentions} film mentions are not in the catalog "
            f"({report.dataset}, {report.catalog_items:,} items): targets among them count as misses in "
            "'recall, all targets' and are left out of 'recall' (the catalog's targets)"
        )
    report.finish_run()
    report.seconds = round(time.perf_counter() - started, 1)
    return report


def _watched(recommender: Recommender) -> Callable[[ItemId], float]:
    counts = recommender.retriever.popularity.counts
    return lambda item: float(counts[recommender.split.item_index(item)])


# --------------------------------------------------------------------------- report files
def recall_rows(report: ConversationsReport, bold_chat: bool = False) -> list[str]:
    """The Recall@1/5/10/20 table: every mode and method, then the published anchors."""
    rows = [
        [result.mode, f"**{METHOD_NAMES[method]}**" if bold_chat and method == "chat"
         else METHOD_NAMES[method],
         *_recalls(result.recall.get(method, {})), span(result.intervals_at_20.get(method)),
         num(result.recall_all_targets.get(method, {}).get("recall@20"))]
        for result in report.modes for method in METHODS
    ]  # fmt: skip
    rows += [
        [PUBLISHED_NOTE, f"{a.name} ({a.source})", *_recalls(a.metrics), None, None] for a in report.published
    ]
    return table(["mode", "method", *(f"R@{k}" for k in KS), "95% CI R@20", "R@20, all targets"], rows)


def _recalls(recall: dict[str, float]) -> list[str]:
    return [num(recall.get(f"recall@{k}")) for k in KS]


def reading_rows(report: ConversationsReport) -> list[str]:
    rows = [
        [result.mode, scope, r.films, f"{pct(r.liked_kept)} of {sum(r.liked.values())}",
         f"{pct(r.disliked_not_liked)} of {sum(r.disliked.values())}", pct(r.seen_accuracy)]
        for result in report.modes for scope, r in result.reading.items()
    ]  # fmt: skip
    headers = (
        "mode | films | labelled films | liked kept as liked | disliked not taken as liked | seen accuracy"
    )
    return table(headers, rows)


def place_rows(result: ModeResult, scope: str) -> list[str]:
    r = result.reading.get(scope, Reading())
    labels = {"liked": r.liked, "disliked": r.disliked, "liked not said": r.unsaid, "seen": r.seen,
              "not seen": r.not_seen}  # fmt: skip
    return table(
        ["seeker's label", *PLACES], [[label, *(n.get(p, 0) for p in PLACES)] for label, n in labels.items()]
    )


def markdown(report: ConversationsReport) -> str:
    films, text = report.films, texts("conversations")
    sampled = f" (a seeded sample of {report.sample}, seed {report.seed})" if report.sample else ""
    skipped = "; ".join(f"{why}: {n}" for why, n in report.skipped.items())
    missing = list(films.missing_titles.items())[:10]
    frequent = (" The most frequent: " + "; ".join(f"{t} ×{n}" for t, n in missing) + ".") if missing else ""
    loading = f"(and {report.setup_seconds:.0f} s loading)." if report.setup_seconds is not None else "."
    places = [line for result in report.modes for line in fill(
        text["places"], mode=result.mode, table=place_rows(result, "named by the seeker"))]  # fmt: skip
    lines = fill(
        text["report"], name=Path(report.conversations_file).name, path=report.conversations_file,
        sha=report.sha256[:16], dialogues=report.dialogues, in_file=report.dialogues_in_file, sampled=sampled,
        skipped=f"; skipped: {skipped}" if skipped else "", dataset=report.dataset,
        items=f"{report.catalog_items:,}", cards=report.cards, as_of=report.scored_as_of,
        incomplete=incomplete(report), commit=commit_line(report, f", {report.seconds:.0f} s ") + loading,
        mentions=films.mentions, kinds=", ".join(f"{k} {films.by_kind.get(k, 0)}" for k in MATCHED_KINDS),
        missing=films.missing, absent=films.by_kind.get("not in catalog", 0),
        year_differs=films.by_kind.get("year differs", 0),
        frequent=frequent,
        turns=[turn_line(result) for result in report.modes], recall_table=recall_rows(report),
        reading_table=reading_rows(report), places=places, cv=cv_lines(report), misread=misread_lines(report),
        without_cards=without_card_lines(report), notes=note_lines(report),
    )  # fmt: skip
    return "\n".join(lines) + "\n"


def turn_line(result: ModeResult) -> str:
    return "\n".join(fill(
        texts("conversations")["turn"], mode=result.mode, description=result.description,
        scored=result.turns_scored, in_catalog=result.targets_in_catalog, targets=result.targets,
        turns=result.turns_scored + result.turns_without_catalog_target,
        without=result.turns_without_catalog_target, before=result.turns_before_seeker,
        p50=f"{result.seconds_p50:.3f}", p95=f"{result.seconds_p95:.3f}", no_cards=result.no_cards,
        chat_turns=result.chat_turns, cut=result.whole_messages_cut,
    ))  # fmt: skip


def misread_lines(report: ConversationsReport) -> list[str]:
    lines: list[str] = []
    shown: list[MisreadFilm] | None = None
    for result in report.modes:
        if not result.misread:
            continue
        if result.misread == shown:
            lines += ["", f"Worst-read seeker messages ({result.mode}): the same as above."]
            continue
        shown = result.misread
        lines += [
            "",
            f"## Worst-read seeker messages ({result.mode}; disliked taken as liked first; "
            f"{len(result.misread)} in results.json)",
            "",
        ]
        for film in result.misread[:12]:
            did = f"after it: {film.after_message}; at the end: {film.final}"
            said = " ".join(film.understood)
            extra = [f"query *{film.query[:60]}*"] if film.query else []
            extra += [f"filters {film.filters}"] if film.filters else []
            lines.append(
                f"- “{film.message[:200]}” — *{film.film}*, seeker said **{film.label}** → {did}"
                + (f" (chat: {said[:160]})" if said else "")
                + "".join(f"; {x}" for x in extra)
            )
    return lines


def without_card_lines(report: ConversationsReport) -> list[str]:
    """The first messages the chat answered without a card (they score as misses)."""
    result = report.modes[0] if report.modes else None
    if result is None or not result.without_cards:
        return []
    lines = [
        "",
        f"## Replies without cards ({result.mode}: {result.no_cards} of {result.chat_turns}; the first 8)",
        "",
    ]
    for message, reply in result.without_cards[:8]:
        # The last two paragraphs say why there is no card: the constraints kept, and "Nothing left …".
        why = " / ".join(reply.strip().split("\n\n")[-2:]) if reply.strip() else "(no reply)"
        lines.append(f"- “{message[:160]}” → {why[:240]}")
    return lines


def plot(report: ConversationsReport, folder: Path) -> list[Path]:
    """Recall@k per method, one panel per mode, the GPT-4 published anchor drawn alongside."""
    if not report.modes or not any(r.turns_scored for r in report.modes):
        return []
    plt = pyplot()
    fig, axes = plt.subplots(1, len(report.modes), figsize=(11, 4), sharey=True, squeeze=False)
    width = 0.8 / (len(METHODS) + 1)
    positions = np.arange(len(KS))
    anchor = report.published[0]
    hatched = {"color": "none", "edgecolor": "gray", "hatch": "//"}  # the published anchor
    for ax, result in zip(axes[0], report.modes, strict=True):
        series = [*((METHOD_NAMES[k], result.recall.get(k, {}), {}) for k in METHODS),
                  (f"{anchor.name} ({PUBLISHED_NOTE})", anchor.metrics, hatched)]  # fmt: skip
        for n, (label, recall, style) in enumerate(series):
            values = [recall.get(f"recall@{k}", 0.0) for k in KS]
            ax.bar(positions + n * width, values, width, label=label, **style)
        ax.set_xticks(positions + width * len(METHODS) / 2, [f"R@{k}" for k in KS])
        ax.set_title(f"{result.mode}: {result.targets_in_catalog} targets", fontsize=9)
    axes[0][0].set_ylabel("recall (targets in the catalog)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=3, frameon=False)
    fig.suptitle(
        f"conversations: {Path(report.conversations_file).name}, {report.dialogues} dialogues", fontsize=10
    )
    fig.tight_layout(rect=(0, 0.12, 1, 1))  # room for the legend below the panels
    return [save_figure(fig, folder / "recall_by_method.png")]


def write(report: ConversationsReport, folder: Path, with_plots: bool = True) -> list[Path]:
    return write_run(report, folder, markdown(report), (lambda f: plot(report, f)) if with_plots else None)


def cv_rows(cv: CrossValidation) -> list[str]:
    """The cross-validated table: mean over folds, its interval, the pooled figure."""
    from fewrec.eval.conversation_cv import CV_METHOD_NAMES, cv_methods

    names = {**METHOD_NAMES, **CV_METHOD_NAMES}
    rows = [
        [names[method], *_recalls(cv.mean[method]), span(cv.intervals[method]["recall@10"]),
         span(cv.intervals[method]["recall@20"]),
         f"{cv.pooled[method]['recall@10']:.3f} / {cv.pooled[method]['recall@20']:.3f}"]
        for method in cv_methods(cv)
    ]  # fmt: skip
    headers = ["method (seeker_only, cross-validated)", *(f"R@{k}" for k in KS), "95% CI R@10", "95% CI R@20",
               "R@10 / R@20 pooled"]  # fmt: skip
    return table(headers, rows)


def _cv_files(cv: CrossValidation, joiner: str) -> str:
    return joiner.join(f"`{Path(f).name}`" for f in cv.files)


def cv_lines(report: ConversationsReport) -> list[str]:
    cv = report.cross_validation
    if cv is None:
        return []
    form = (
        "its form chosen on those folds alone (an inner 5-fold cross-validation of the prior by itself)"
        if cv.fitted_form
        else "its plain form"
    )
    folds = []
    for fold in cv.per_fold:
        chat = fold.recall.get("chat", {})
        folds.append(
            f"- fold {fold.fold + 1}: {fold.dialogues} dialogues, {fold.targets_in_catalog} targets in the "
            f"catalog, prior of {fold.prior_dialogues} dialogues ({fold.form}); chat R@10 "
            f"{num(chat.get('recall@10'))}, R@20 {num(chat.get('recall@20'))}"
        )
    sampled = f", a seeded sample of {cv.sample} dialogues replayed per fold" if cv.sample else ""
    return fill(
        texts("conversations")["cv"], folds=cv.folds, dialogues=cv.dialogues, files=_cv_files(cv, ", "),
        seed=cv.seed, sampled=sampled, mode=cv.mode, form=form, interval=cv.interval,
        seconds=f"{cv.seconds:.0f}", incomplete="" if cv.complete else " **INCOMPLETE** (interrupted).",
        table=cv_rows(cv), fold_lines=folds,
    )  # fmt: skip


def readme_section(report: ConversationsReport, folder: Path, readme: Path) -> str:
    """The README block: recall side by side with the published anchors, and the reading."""
    text, cv = texts("conversations"), report.cross_validation
    cv_block = [] if cv is None else fill(
        text["cv_readme"], folds=cv.folds, dialogues=cv.dialogues, files=_cv_files(cv, " and "),
        table=cv_rows(cv),
    )  # fmt: skip
    return "\n".join(fill(
        text["readme"], name=Path(report.conversations_file).name, dialogues=report.dialogues,
        dataset=report.dataset, commit=(report.git_commit or "unknown")[:10], missing=report.films.missing,
        mentions=report.films.mentions, recall_table=recall_rows(report, bold_chat=True), cv=cv_block,
        reading_table=reading_rows(report),
        links=links(folder, readme, "Full report, with the worst-read messages", "recall_by_method.png",
                    "Recall@k by method"),
    ))  # fmt: skip


__all__ = ["ConversationsReport", "evaluate_conversations", "markdown", "write"]
