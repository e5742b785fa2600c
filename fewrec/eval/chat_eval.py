"""The chat evaluation (`fewrec eval-chat`): does the chat recommend as well as the API it wraps?

For a seeded sample of held-out users, each user's recent liked items (before the held-out
one) are written into messages in many phrasings (`chat_phrasings.toml`), each sent to a fresh
conversation that scores as of the user's reference time. The last turn's cards are scored
against the held-out item (hits@5/10/20) next to two references on exactly the same request:
- ceiling: `Recommender.recommend` given exactly the intended items, the intended genre or
  decade filter and the cards of earlier turns excluded, with no query (a known user: their id);
- popularity: the most popular items passing the same filter, the intended items excluded.
Every message is also accounted title by title: linked correctly, asked back (offered in a
"which one did you mean?"), missed, or wrongly linked (an item the message did not name, or a
named one with the wrong feeling). A message with any missed or wrong title is misread.

The query weights (`chat.query_weight_with_titles`, `chat.query_weight`) matter only where a
message carries content words; they are chosen on the *validation* targets, by the chat's
hits@20 on the families that carry such words, never on the test targets (a fitting step:
`fewrec.fit.chat_weights`, which the command line hands the evaluation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from fewrec.agent.chat import ChatAgent, ChatState
from fewrec.agent.recommender import Filters, Recommender, describe_filters
from fewrec.config import Settings
from fewrec.data.models import ItemId
from fewrec.data.split import LeaveOneOutSplit, SplitName
from fewrec.data.traits import has_titles
from fewrec.eval import metrics as m
from fewrec.eval import provenance as prov
from fewrec.eval.chat_phrasings import (
    Family,
    OtherItems,
    Phrasings,
    Rendered,
    family_seed,
    load_phrasings,
    render,
    shared_titles,
)
from fewrec.eval.harness import named, place_of, popularity_order, progress_bar, seeded_sample, with_chat
from fewrec.eval.intervals import grouped_interval
from fewrec.eval.report import (
    commit_line,
    error_bars,
    fill,
    incomplete,
    links,
    note_lines,
    pct,
    pyplot,
    save_figure,
    span,
    table,
    texts,
    write_run,
)
from fewrec.eval.runner import EvalError
from fewrec.prompts.templates import display_title

KS = (5, 10, 20)
CARDS = max(KS)  # the chat shows this many cards in the evaluation, so hits@20 can be read off them
DEFAULT_USERS = 200
DEFAULT_QUERY_WEIGHTS = (0.0, 0.1, 0.25, 0.5)
TARGET_RATIO = 0.95  # chat hits@20 at least this share of the ceiling's, in every family
TARGET_MISREAD = 0.02  # at most this share of messages with a missed or wrongly linked title
EXAMPLES_PER_FAMILY = 20
METHODS = ("chat", "ceiling", "popularity")


# --------------------------------------------------------------------------- result records
class MessageExample(BaseModel):
    """One message the chat misread, asked back on, or read with words left over."""

    user_id: str
    turns: list[str]
    intended: list[str]
    linked: list[str]
    missed: list[str] = Field(default_factory=list)
    wrong: list[str] = Field(default_factory=list)
    asked_back: list[str] = Field(default_factory=list)
    query: str = ""
    filters: str = ""
    intended_filters: str = ""
    chat_rank: int | None = None  # 1-based rank of the held-out item among the cards
    ceiling_rank: int | None = None


class FamilyResult(BaseModel):
    """Every number of one phrasing family (or of all of them pooled: name 'all')."""

    name: str
    description: str = ""
    messages: int = 0
    users: int = 0
    skipped: dict[str, int] = Field(default_factory=dict)  # reason -> users not asked this way
    hits: dict[str, dict[str, float]] = Field(default_factory=dict)  # method -> hits@k -> share
    intervals_at_20: dict[str, tuple[float, float]] = Field(default_factory=dict)  # method -> 95% CI
    ratio_at_20: float | None = None  # chat / ceiling hits@20 (None: the ceiling never hit)
    ratio_interval: tuple[float, float] | None = None
    misread_rate: float = 0.0
    # Messages naming a title another catalog item shares as written (no year: "The Jungle Book"),
    # and the misread rate of the rest: what a reader could get right without asking back.
    shared_title_rate: float = 0.0
    misread_rate_unshared: float | None = None
    missed_rate: float = 0.0  # share of messages with a missed title
    wrong_rate: float = 0.0  # share of messages with a wrongly linked title
    asked_back_rate: float = 0.0  # share of messages with a title asked back (not a misread)
    stray_query_rate: float | None = None  # words read as a meaning query where none was meant
    filter_mismatch_rate: float = 0.0  # genre/year filter not the one the message asked for
    no_cards_rate: float = 0.0  # the last turn showed no card (the chat failed, or found nothing)
    titles: dict[str, int] = Field(default_factory=dict)  # intended, linked, missed, wrong, asked_back
    seconds_p50: float = 0.0  # per chat turn
    seconds_p95: float = 0.0
    partial: bool = False  # interrupted while running this family
    examples: list[MessageExample] = Field(default_factory=list)


class WeightSweep(BaseModel):
    """The query weights tried on the validation targets, and the ones chosen."""

    split: str = "valid"
    users: int = 0
    families: list[str] = Field(default_factory=list)
    weights: list[float] = Field(default_factory=list)
    chat_hits_at_20: dict[str, dict[str, float]] = Field(default_factory=dict)  # weight -> family -> hits
    ceiling_hits_at_20: dict[str, float] = Field(default_factory=dict)  # family -> hits (no query)
    messages: dict[str, int] = Field(default_factory=dict)
    chosen: dict[str, float] = Field(default_factory=dict)  # setting name -> weight
    complete: bool = True


class ChatEvalReport(prov.RunRecord):
    kind: Literal["chat"] = "chat"
    dataset: str
    split: SplitName
    split_protocol: str = "loo"
    split_description: str = ""
    users: int
    seed: int
    cards: int = CARDS
    phrasings: str = ""
    query_weights: dict[str, float] = Field(default_factory=dict)  # the values the test run used
    sweep: WeightSweep | None = None
    families: list[FamilyResult] = Field(default_factory=list)
    overall: FamilyResult | None = None
    targets: dict[str, float] = Field(
        default_factory=lambda: {"ratio_at_20": TARGET_RATIO, "misread_rate": TARGET_MISREAD}
    )

    def family(self, name: str) -> FamilyResult:
        return named(self.families, name)


# --------------------------------------------------------------------------- one message
@dataclass
class Accounting:
    """What the conversation made of the titles a message named, against its ground truth."""

    correct: list[ItemId] = field(default_factory=list)
    missed: list[ItemId] = field(default_factory=list)
    asked_back: list[ItemId] = field(default_factory=list)
    wrong: list[ItemId] = field(default_factory=list)  # linked but not named, or with the wrong feeling
    # Of `wrong`: named items taken with another feeling (liked as disliked or the reverse): the
    # per-film sentiment's misreads, apart from titles linked to the wrong film.
    wrong_feeling: list[ItemId] = field(default_factory=list)

    @property
    def misread(self) -> bool:
        return bool(self.missed or self.wrong)


_KEPT_AWAY = ("disliked", "nothing like")


def account(intended: list[ItemId], state: ChatState, disliked: list[ItemId] | None = None) -> Accounting:
    """Item by item: each intended (liked) item is liked (correct), offered in a pending
    question (asked back), taken with another feeling (wrong) or absent (missed); each disliked
    one likewise, where kept away (disliked, or "nothing like") is correct; a mention (the
    reply asks how the film was) counts as asked back; every other item the conversation
    linked, in any list, is wrong (a corrected title among them)."""
    disliked = list(disliked or [])
    out = Accounting()
    for item, right in (*((i, ("liked",)) for i in intended), *((i, _KEPT_AWAY) for i in disliked)):
        place = place_of(state, item, first=right)
        if place in right:
            out.correct.append(item)
        elif place in ("mentioned", "asked back"):
            out.asked_back.append(item)
        elif place == "not read":
            out.missed.append(item)
        else:  # kept with another feeling
            out.wrong.append(item)
            out.wrong_feeling.append(item)
    named = {*intended, *disliked}
    for item in [*state.liked, *state.disliked, *state.avoid_like, *state.excluded, *state.mentioned]:
        if item not in named and item not in out.wrong:
            out.wrong.append(item)
    return out


@dataclass
class MessageRecord:
    family: str
    user: int
    rendered: Rendered
    accounting: Accounting
    ranks: dict[str, int | None]  # method -> 0-based rank of the held-out item (None: not in the top)
    query: str
    filters_ok: bool
    filters: str
    intended_filters: str
    seconds: list[float]
    shared_title: bool = False
    cards: int = 0  # shown in the last turn

    @property
    def misread(self) -> bool:
        """A title missed or wrongly linked, or a genre or year filter not the one meant."""
        return self.accounting.misread or not self.filters_ok


def intended_filters(rendered: Rendered) -> Filters:
    """The filter the message means (its ground truth): the genre or decade asked for, the
    genres ruled out, family films for a child."""
    genres = [*([rendered.genre] if rendered.genre else []), *rendered.more_genres]
    years = rendered.years or (None, None)
    return Filters(
        genres=genres, exclude_genres=list(rendered.ruled_out), year_min=years[0], year_max=years[1]
    )


def _same_filters(a: Filters, b: Filters) -> bool:
    return (
        {g.lower() for g in a.genres} == {g.lower() for g in b.genres}
        and {g.lower() for g in a.exclude_genres} == {g.lower() for g in b.exclude_genres}
        and (a.year_min, a.year_max) == (b.year_min, b.year_max)
    )


@dataclass
class Truth:
    """What one conversation means, as item ids: the ceiling is given this, and the reader is
    held to it. `liked` holds the intended items and the earlier cards the last turn liked."""

    liked: list[ItemId]
    disliked: list[ItemId]
    filters: Filters


class Scorer:
    """Runs messages through one chat agent and scores them with its recommender."""

    def __init__(self, agent: Any, recommender: Recommender, split_name: SplitName) -> None:
        self.agent = agent
        self.recommender = recommender
        self.split = recommender.split
        self.split_name = split_name
        self.targets = self.split.targets(split_name)
        self._popular = popularity_order(recommender)
        # Items whose title another item shares, written with its year and without.
        self.shared = {with_year: shared_titles(self.split.catalog, with_year) for with_year in (False, True)}

    def item_id(self, index: int) -> ItemId:
        return self.split.item_ids[index].item()

    def converse(
        self, rendered: Rendered, user: int, as_of: int
    ) -> tuple[Any, ChatState, ChatState, list[float]]:
        """A fresh conversation: every turn of `rendered`; the last turn, the state after it,
        the state before it and the seconds of each turn."""
        if rendered.known_user:
            state, _ = self.agent.start(str(self.split.user_ids[user]))
            state = state.model_copy(update={"as_of": as_of})
        else:
            state = ChatState(as_of=as_of)
        before = state
        seconds: list[float] = []
        turn = None
        for text in rendered.turns:
            before = state
            turn, state = self.agent.respond(state, text)
            seconds.append(float(turn.seconds))
        return turn, state, before, seconds

    def truth(self, rendered: Rendered, before: ChatState) -> Truth:
        """The message's ground truth as item ids; a card the last turn refers to is the one
        the previous turn showed at that place (none: nothing to refer to)."""
        cards = before.last_cards
        liked_cards = [cards[p - 1] for p in rendered.liked_cards if 1 <= p <= len(cards)]
        return Truth(
            liked=[*(self.item_id(i) for i in rendered.intended), *liked_cards],
            disliked=[self.item_id(i) for i in rendered.disliked],
            filters=intended_filters(rendered),
        )

    def rank_in(self, items: list[ItemId], target: int) -> int | None:
        if target < 0:
            return None
        wanted = self.item_id(target)
        return items.index(wanted) if wanted in items else None

    def ceiling(
        self, rendered: Rendered, user: int, as_of: int, truth: Truth, shown_before: list[ItemId],
        with_query: bool = True,
    ) -> list[ItemId]:  # fmt: skip
        """The Python API given the ground truth: the liked items as the history, the disliked
        ones and the earlier turns' cards excluded, the filter meant, the mood words with the
        chat's query weight (unless `with_query` is off); no conversation prior."""
        chat = self.recommender.settings.chat
        recs = self.recommender.recommend(
            user_id=self.split.user_ids[user].item() if rendered.known_user else None,
            history=list(truth.liked), k=CARDS, filters=truth.filters,
            exclude=[*shown_before, *truth.disliked], explain=False, as_of=as_of,
            query=rendered.mood if with_query else None,
            query_weight=chat.query_weight_with_titles if truth.liked else chat.query_weight,
        )  # fmt: skip
        return [r.item_id for r in recs]

    def popularity(
        self, rendered: Rendered, user: int, truth: Truth, shown_before: list[ItemId]
    ) -> list[ItemId]:
        allowed = self.recommender.allowed_mask(truth.filters)
        allowed = np.ones(self.split.n_items, dtype=bool) if allowed is None else allowed.copy()
        if rendered.known_user:  # the ceiling never repeats the user's own items either
            allowed[self.split.history(user, self.recommender.fit_on)] = False
        for item in [*truth.liked, *truth.disliked, *shown_before]:
            allowed[self.split.item_index(item)] = False
        top = self._popular[allowed[self._popular]][:CARDS]
        return [self.item_id(int(i)) for i in top]

    def run(self, rendered: Rendered, user: int, as_of: int, references: bool = True) -> MessageRecord:
        turn, state, before, seconds = self.converse(rendered, user, as_of)
        shown_before = list(before.shown)
        cards = [r.item_id for r in (turn.recommendations if turn is not None else [])]
        target = int(self.targets[user])
        truth = self.truth(rendered, before)
        ranks: dict[str, int | None] = {"chat": self.rank_in(cards, target)}
        if references:
            ranks["ceiling"] = self.rank_in(self.ceiling(rendered, user, as_of, truth, shown_before), target)
            ranks["popularity"] = self.rank_in(self.popularity(rendered, user, truth, shown_before), target)
        named = {*rendered.intended, *rendered.disliked, *rendered.corrected}
        return MessageRecord(
            family=rendered.family, user=user, rendered=rendered,
            accounting=account(truth.liked, state, truth.disliked), ranks=ranks,
            query=state.query, filters_ok=_same_filters(state.filters, truth.filters),
            filters=describe_filters(state.filters), intended_filters=describe_filters(truth.filters),
            seconds=seconds, shared_title=bool(named & self.shared[rendered.with_year]),
            cards=len(cards),
        )  # fmt: skip


# --------------------------------------------------------------------------- sampling
RatingTable = tuple[np.ndarray, np.ndarray, dict]  # items, ratings, each user's rows of them


def _ratings_by_user(split: LeaveOneOutSplit, split_name: SplitName) -> RatingTable:
    """(items, ratings, rows by user) of every interaction known before the targets, a user's
    rows in history order; the ratings of held-out items the split does not keep are NaN."""
    frame = split.interactions_before(split_name)
    ratings = frame["rating"].to_numpy(dtype=np.float64, na_value=np.nan)
    return frame["item"].to_numpy(), ratings, frame.groupby("user").indices


def user_items(
    split: LeaveOneOutSplit, user: int, split_name: SplitName,
    table: RatingTable, phrasings: Phrasings, rng: np.random.Generator,
) -> tuple[list[int], OtherItems]:  # fmt: skip
    """The user's last 3–6 liked items before the target (count seeded), oldest first: rated at
    least `min_rating` where ratings exist, else (or when too few are) the last items. And the
    items a family may name besides them, most recent first: those rated at most
    `max_disliked_rating` (none without trustworthy ratings: the table's rows of the user are
    not their history), and every other item of their history."""
    history, (items, ratings, rows) = split.history(user, split_name), table
    mine = rows.get(user, np.zeros(0, dtype=np.int64))
    trusted = len(mine) == len(history) and np.array_equal(items[mine], history)
    rated = ratings[mine] if trusted else np.full(len(history), np.nan)
    liked = history[np.nan_to_num(rated, nan=-np.inf) >= phrasings.min_rating]
    pool = liked if len(liked) >= phrasings.min_items else history
    n = int(rng.integers(phrasings.min_items, phrasings.max_items + 1))
    taken = [int(i) for i in pool[-n:]]
    low = history[np.nan_to_num(rated, nan=np.inf) <= phrasings.max_disliked_rating]
    return taken, OtherItems(
        disliked=tuple(int(i) for i in low[::-1] if int(i) not in taken),
        others=tuple(int(i) for i in history[::-1] if int(i) not in taken),
    )


def sample_users(split: LeaveOneOutSplit, split_name: SplitName, users: int, seed: int) -> np.ndarray:
    eligible = split.eval_users(split_name)
    eligible = eligible[split.targets(split_name)[eligible] >= 0]
    if not 1 <= users <= len(eligible):
        raise EvalError(
            f"--users must be between 1 and {len(eligible)} (the users with a {split_name} target), "
            f"got {users}"
        )
    return seeded_sample(eligible, users, seed)


# --------------------------------------------------------------------------- summaries
def _title(split: LeaveOneOutSplit, item: ItemId) -> str:
    return display_title(split.catalog.title(item))


def _hit_rates(out: FamilyResult, records: list[MessageRecord], seed: int) -> None:
    """hits@k per method, their intervals, and the chat's ratio to the ceiling."""
    users = np.array([r.user for r in records])
    ranks = {k: [r.ranks[k] for r in records] for k in METHODS if all(k in r.ranks for r in records)}
    out.hits, out.intervals_at_20 = m.rates_and_intervals(ranks, KS, users, seed, "hits")
    if out.hits.get("ceiling", {}).get("hits@20"):
        out.ratio_at_20 = out.hits["chat"]["hits@20"] / out.hits["ceiling"]["hits@20"]
        chat, ceiling = (m.hits_within(ranks[method], CARDS) for method in ("chat", "ceiling"))
        out.ratio_interval = grouped_interval(chat, users, seed, ratio_to=ceiling)


def _reading_rates(out: FamilyResult, records: list[MessageRecord], query_meant: bool | None) -> None:
    """How the messages were read against their ground truth."""

    def rate(of: Callable[[MessageRecord], object], among: list[MessageRecord] = records) -> float:
        return float(np.mean([bool(of(r)) for r in among]))

    out.misread_rate = rate(lambda r: r.misread)
    out.shared_title_rate = rate(lambda r: r.shared_title)
    unshared = [r for r in records if not r.shared_title]
    out.misread_rate_unshared = rate(lambda r: r.misread, unshared) if unshared else None
    out.missed_rate = rate(lambda r: r.accounting.missed)
    out.wrong_rate = rate(lambda r: r.accounting.wrong)
    out.asked_back_rate = rate(lambda r: r.accounting.asked_back)
    linked, missed, asked_back, wrong, feeling = (
        sum(len(getattr(r.accounting, name)) for r in records)
        for name in ("correct", "missed", "asked_back", "wrong", "wrong_feeling")
    )
    out.titles = {"intended": linked + missed + asked_back + feeling, "linked": linked, "missed": missed,
                  "asked_back": asked_back, "wrong": wrong, "wrong_feeling": feeling}  # fmt: skip
    if query_meant is False:
        out.stray_query_rate = rate(lambda r: r.query.strip())
    out.filter_mismatch_rate = rate(lambda r: not r.filters_ok)
    out.no_cards_rate = rate(lambda r: r.cards == 0)


def _example(r: MessageRecord, split: LeaveOneOutSplit) -> MessageExample:
    a = r.accounting
    return MessageExample(
        user_id=str(split.user_ids[r.user]), turns=r.rendered.turns,
        intended=[_title(split, split.item_ids[i].item()) for i in r.rendered.intended],
        linked=[_title(split, i) for i in a.correct],
        missed=[_title(split, i) for i in a.missed], wrong=[_title(split, i) for i in a.wrong],
        asked_back=[_title(split, i) for i in a.asked_back], query=r.query, filters=r.filters,
        intended_filters=r.intended_filters,
        chat_rank=None if r.ranks.get("chat") is None else r.ranks["chat"] + 1,  # type: ignore[operator]
        ceiling_rank=None if r.ranks.get("ceiling") is None else r.ranks["ceiling"] + 1,  # type: ignore[operator]
    )  # fmt: skip


def summarise(
    name: str, description: str, records: list[MessageRecord], split: LeaveOneOutSplit, seed: int,
    skipped: dict[str, int] | None = None, query_meant: bool | None = None,
) -> FamilyResult:  # fmt: skip
    """The numbers of one family (or of all records pooled)."""
    out = FamilyResult(name=name, description=description, messages=len(records), skipped=dict(skipped or {}))
    if not records:
        return out
    out.users = len({r.user for r in records})
    _hit_rates(out, records, seed)
    _reading_rates(out, records, query_meant)
    seconds = np.array([s for r in records for s in r.seconds]) if any(r.seconds for r in records) else None
    if seconds is not None:
        out.seconds_p50, out.seconds_p95 = m.p50_p95(seconds)

    def worth_showing(r: MessageRecord) -> int:  # 0: not at all; else the lower the sooner
        if r.misread:
            return 1
        if query_meant is False and r.query.strip():
            return 2
        return 3 if r.accounting.asked_back else 0

    # Misreads first: they are what a reader's author needs to see; asking back is by design.
    notable = sorted((r for r in records if worth_showing(r)), key=worth_showing)
    out.examples = [_example(r, split) for r in notable[:EXAMPLES_PER_FAMILY]]
    return out


# --------------------------------------------------------------------------- the run
AgentFactory = Callable[[Recommender], Any]
# (split, settings, families, grid, users, seed, phrasings, progress=, make_agent=)
WeightSweeper = Callable[..., WeightSweep]


@dataclass
class Messages:
    """One split's messages, ready to score: each family's (user, message) pairs, the users it
    skipped (reason -> count), the users' reference times, and the scorer that answers them."""

    scorer: Scorer
    messages: dict[str, list[tuple[int, Rendered]]]
    skipped: dict[str, dict[str, int]]
    times: dict[int, int]

    def count(self) -> int:
        return sum(len(m) for m in self.messages.values())


def prepare_messages(
    split: LeaveOneOutSplit, split_name: SplitName, settings: Settings, weights: dict[str, float],
    families: list[Family], users: np.ndarray, phrasings: Phrasings, seed: int,
    recommender: Recommender | None, make_agent: AgentFactory,
) -> Messages:  # fmt: skip
    """Every family written for every user of the sample, and a scorer whose recommender (fitted
    on `split_name`; None: one is fitted) answers with the evaluation's cards and `weights` in
    settings of its own: a recommender passed in keeps its settings."""
    recommender = recommender or Recommender(settings, split=split, fit_on=split_name)
    if recommender.fit_on != split_name:
        raise EvalError(f"the recommender must be fitted on {split_name!r}, not {recommender.fit_on!r}")
    recommender = with_chat(recommender, cards=CARDS, **weights)
    table = _ratings_by_user(split, split_name)
    out = Messages(Scorer(make_agent(recommender), recommender, split_name), {}, {}, {})
    out.times = dict(zip(users.tolist(), split.reference_times(users, split_name).tolist(), strict=True))
    items = {
        int(u): user_items(split, int(u), split_name, table, phrasings, np.random.default_rng([seed, int(u)]))
        for u in users
    }
    for family in families:
        out.messages[family.name], skipped = [], out.skipped.setdefault(family.name, {})
        for u, (liked, other) in items.items():
            rendered = render(
                family, liked, split.catalog, phrasings, family_seed(seed, u, family.name), other
            )
            if isinstance(rendered, str):
                skipped[rendered] = skipped.get(rendered, 0) + 1
            else:
                out.messages[family.name].append((u, rendered))
    return out


def evaluate_chat(
    split: LeaveOneOutSplit,
    settings: Settings | None = None,
    *,
    split_name: SplitName = "test",
    users: int = DEFAULT_USERS,
    seed: int = 0,
    families: list[str] | None = None,
    phrasings: Phrasings | Path | str | None = None,
    query_weights: list[float] | None = None,
    progress: bool = False,
    say: Callable[[str], None] | None = None,
    on_result: Callable[[ChatEvalReport], None] | None = None,
    recommender: Recommender | None = None,
    make_agent: AgentFactory = ChatAgent,
    sweep: WeightSweeper | None = None,
) -> ChatEvalReport:
    """Run the chat evaluation; see the module docstring.

    `query_weights`: the grid `sweep` tries on validation for the families that carry a query
    (None: DEFAULT_QUERY_WEIGHTS; []: no sweep). Without `sweep` the configured weights are
    used; the command line hands it `fewrec.fit.chat_weights.sweep_query_weights`. `on_result`
    is called after the sweep and after every family, so a caller can save partial results;
    Ctrl-C stops the run and returns the report marked incomplete.
    """
    settings = (settings or Settings()).model_copy(deep=True)  # the caller's stay as they were
    settings.chat.cards = CARDS
    say = say or (lambda _msg: None)
    book = _check_inputs(split, split_name, phrasings, query_weights)
    chosen_families = book.select(families)
    sample = sample_users(split, split_name, users, seed)
    grid = list(DEFAULT_QUERY_WEIGHTS) if query_weights is None else list(query_weights)
    report = ChatEvalReport(
        dataset=split.name, split=split_name, split_protocol=split.protocol,
        split_description=split.describe(), users=len(sample), seed=seed, phrasings=book.source,
    )  # fmt: skip
    report.start_run(settings.model_dump(mode="json"))
    records: list[MessageRecord] = []
    try:
        query_families = [f for f in chosen_families if f.has_query]
        if sweep is not None and grid and query_families:
            say(f"choosing the query weights on validation targets: {', '.join(map(str, grid))}")
            report.sweep = sweep(split, settings, query_families, grid, users, seed, book, progress=progress,
                                 make_agent=make_agent)  # fmt: skip
            _keep_sweep(report, settings, split_name, on_result)
        report.query_weights = {
            "query_weight_with_titles": settings.chat.query_weight_with_titles,
            "query_weight": settings.chat.query_weight,
        }
        report.settings = settings.model_dump(mode="json")
        run = prepare_messages(split, split_name, settings, report.query_weights, chosen_families, sample,
                               book, seed, recommender, make_agent)  # fmt: skip
        _score_families(report, run, chosen_families, records, seed, say, on_result, progress)
    except KeyboardInterrupt:
        report.interrupted("the families listed are complete unless marked partial")
    report.overall = summarise("all", "every family pooled", records, split, seed)
    if report.overall.no_cards_rate > 0:
        # Cards are what is scored: a chat that failed is a miss here, and must be seen as such.
        report.notes.append(
            f"{report.overall.no_cards_rate:.1%} of messages got no card in their last turn (the chat "
            "failed, or nothing fitted): they count as misses; see the log for errors"
        )
    report.finish_run()
    return report


def _score_families(
    report: ChatEvalReport, run: Messages, families: list[Family], records: list[MessageRecord], seed: int,
    say: Callable[[str], None], on_result: Callable[[ChatEvalReport], None] | None, progress: bool,
) -> None:  # fmt: skip
    """Score the families one after the other into `report` (and `records`), saving after each."""
    split = run.scorer.split
    bar = progress_bar(run.count(), f"chat ({run.scorer.split_name})", "msg", progress)
    try:
        for family in families:
            mine: list[MessageRecord] = []
            try:
                for u, rendered in run.messages[family.name]:
                    mine.append(run.scorer.run(rendered, u, run.times[u]))
                    bar.update()
            finally:  # an interrupted family still reports the messages it got through
                result = summarise(family.name, family.description, mine, split, seed,
                                   run.skipped[family.name], family.has_query)  # fmt: skip
                result.partial = len(mine) < len(run.messages[family.name])
                report.families.append(result)
                records += mine
            say(_family_line(result))
            if on_result:
                report.overall = summarise("all", "every family pooled", records, split, seed)
                on_result(report)
    finally:
        bar.close()


def _check_inputs(
    split: LeaveOneOutSplit, split_name: SplitName, phrasings: Phrasings | Path | str | None,
    query_weights: list[float] | None,
) -> Phrasings:  # fmt: skip
    """The phrasings to use, once the split and the weights are known to be usable."""
    if not has_titles(split.catalog):  # titles a person could type, not the item ids
        raise EvalError(
            f"the chat evaluation needs item titles people can type, and {split.name!r} has none "
            "(its titles are the item ids); load it with its titles (e.g. Amazon's meta file)"
        )
    book = phrasings if isinstance(phrasings, Phrasings) else load_phrasings(phrasings)
    if split_name not in ("valid", "test"):
        raise EvalError(f"the chat evaluation runs on 'valid' or 'test', not {split_name!r}")
    if any(not 0.0 <= w <= 1.0 for w in query_weights or []):
        raise EvalError("--query-weights must lie between 0 and 1")
    return book


def _keep_sweep(
    report: ChatEvalReport, settings: Settings, split_name: SplitName,
    on_result: Callable[[ChatEvalReport], None] | None,
) -> None:  # fmt: skip
    """Use the weights the sweep chose; an interrupted sweep stops the run."""
    assert report.sweep is not None
    for name, value in report.sweep.chosen.items():
        setattr(settings.chat, name, value)
    if not report.sweep.complete:
        raise KeyboardInterrupt
    if split_name == "valid":
        report.notes.append(
            "the query weights were chosen on the same validation targets this run scores: "
            "the query families' numbers are in-sample"
        )
    if on_result:
        on_result(report)


def _family_line(r: FamilyResult) -> str:
    hits = {m: r.hits.get(m, {}).get("hits@20", 0.0) for m in METHODS}
    ratio = "–" if r.ratio_at_20 is None else f"{r.ratio_at_20:.2f}"
    return (
        f"{r.name}: hits@20 chat {hits['chat']:.3f}, ceiling {hits['ceiling']:.3f}, popularity "
        f"{hits['popularity']:.3f}, ratio {ratio}, misread {r.misread_rate:.1%} ({r.messages} messages)"
    )


# --------------------------------------------------------------------------- report files
def _met(value: bool) -> str:
    return "met" if value else "**not met**"


def markdown(report: ChatEvalReport) -> str:
    rows = [*report.families, *([report.overall] if report.overall else [])]
    lines = fill(
        texts("chat")["report"], dataset=report.dataset, split=report.split, users=report.users,
        seed=report.seed, protocol=report.split_description or report.split_protocol,
        phrasings=report.phrasings, cards=report.cards, incomplete=incomplete(report),
        commit=commit_line(report), weights=_weights(report),
        weights_from="chosen on validation targets, below" if _chosen(report) else "configured",
        family_table=_family_rows(rows), title_table=_title_rows(rows), targets=_targets(report),
        sweep=_sweep_lines(report), examples=_example_lines(report), notes=note_lines(report),
    )  # fmt: skip
    return "\n".join(lines) + "\n"


def _targets(report: ChatEvalReport) -> list[str]:
    return ["", *target_lines(report)] if report.overall is not None else []


def _sweep_lines(report: ChatEvalReport) -> list[str]:
    s = report.sweep
    if s is None:
        return []
    chosen = "Chosen (put them in `[chat]` of a config file to keep them): " + ", ".join(
        f"`{k} = {v}`" for k, v in s.chosen.items()
    )
    chosen += "" if s.complete else " (from an interrupted sweep)"
    rows = [[weight, *(f"{row.get(f, 0):.3f}" for f in s.families)]
            for weight, row in [*s.chat_hits_at_20.items(), ("ceiling", s.ceiling_hits_at_20)]]  # fmt: skip
    return fill(texts("chat")["sweep"], users=s.users, table=table(["weight", *s.families], rows),
                chosen=["", chosen] if s.chosen else [])  # fmt: skip


def _example_lines(report: ChatEvalReport) -> list[str]:
    examples = [_example_line(r.name, e) for r in report.families for e in r.examples[:3]]
    return fill(texts("chat")["examples"], examples=examples) if examples else []


def _weights(report: ChatEvalReport) -> str:
    return ", ".join(f"`{k} = {v}`" for k, v in report.query_weights.items())


def _chosen(report: ChatEvalReport) -> bool:
    return bool(report.sweep and report.sweep.chosen)


def _hits(r: FamilyResult, columns: tuple[tuple[str, int], ...]) -> list[str]:
    """hits@k of (method, k) pairs, as the tables show them."""
    return [f"{r.hits.get(method, {}).get(f'hits@{k}', 0):.3f}" for method, k in columns]


def _family_rows(rows: list[FamilyResult]) -> list[str]:
    headers = "family | messages | chat @5 | chat @10 | chat @20 | ceiling @5 | ceiling @10 | ceiling @20 " \
        "| popularity @20 | chat/ceiling @20 (95% CI) | misread | asked back | stray query " \
        "| filter differs | no cards | s/turn p50 / p95"  # fmt: skip
    columns = (("chat", 5), ("chat", 10), ("chat", 20), ("ceiling", 5), ("ceiling", 10), ("ceiling", 20),
               ("popularity", 20))  # fmt: skip
    cells = [
        [f"**{r.name}**" if r.name == "all" else r.name + (" (partial)" if r.partial else ""), r.messages,
         *_hits(r, columns),
         "–" if r.ratio_at_20 is None else f"{r.ratio_at_20:.2f} ({span(r.ratio_interval, 2)})",
         *map(pct, (r.misread_rate, r.asked_back_rate, r.stray_query_rate, r.filter_mismatch_rate,
                    r.no_cards_rate)),
         f"{r.seconds_p50:.3f} / {r.seconds_p95:.3f}"]
        for r in rows
    ]  # fmt: skip
    return table(headers, cells)


def _title_rows(rows: list[FamilyResult]) -> list[str]:
    headers = "family | intended | linked | asked back | missed | wrong | of which the wrong feeling " \
        "| messages missed | messages wrong | messages naming a shared title | misread, the other messages " \
        "| skipped"  # fmt: skip
    counts = ("intended", "linked", "asked_back", "missed", "wrong", "wrong_feeling")
    cells = [
        [r.name, *(r.titles.get(c, 0) for c in counts),
         *map(pct, (r.missed_rate, r.wrong_rate, r.shared_title_rate, r.misread_rate_unshared)),
         "; ".join(f"{why}: {n}" for why, n in r.skipped.items())]
        for r in rows
    ]  # fmt: skip
    return table(headers, cells)


def _example_line(name: str, e: MessageExample) -> str:
    text = " ⏎ ".join(t.replace("\n", " / ") for t in e.turns)
    parts = [f"linked {e.linked}"]
    found = (("missed", e.missed), ("wrong", e.wrong), ("asked back", e.asked_back))
    parts += [f"{label} {value}" for label, value in found if value]
    if e.query:
        parts.append(f"query {e.query!r}")
    if e.filters != e.intended_filters:
        parts.append(f"filters '{e.filters}' (meant '{e.intended_filters}')")
    return f"- {name}: “{text}” → " + "; ".join(parts)


def target_lines(report: ChatEvalReport) -> list[str]:
    """The two targets, stated with what was measured."""
    ratios = {r.name: r.ratio_at_20 for r in report.families}
    low = [f"{n} {v:.2f}" if v is not None else f"{n} (no ceiling hit)" for n, v in ratios.items()
           if v is None or v < TARGET_RATIO]  # fmt: skip
    misread = report.overall.misread_rate if report.overall else 0.0
    return [
        f"Target chat hits@20 ≥ {TARGET_RATIO:.0%} of the ceiling in every family: {_met(not low)}"
        + (f" (below: {', '.join(low)})." if low else "."),
        f"Target misread-title rate ≤ {TARGET_MISREAD:.0%}: {_met(misread <= TARGET_MISREAD)} "
        f"({misread:.1%} of {report.overall.messages if report.overall else 0} messages"
        + (
            f"; {unshared:.1%} of those naming no title another item shares)."
            if (unshared := report.overall.misread_rate_unshared if report.overall else None) is not None
            else ")."
        ),
    ]


def plot(report: ChatEvalReport, folder: Path) -> list[Path]:
    """hits@20 per family: chat, ceiling and popularity side by side, with 95% intervals."""
    rows = [r for r in [*report.families, *([report.overall] if report.overall else [])] if r.messages]
    if not rows:
        return []
    plt = pyplot()
    colours = {"chat": "tab:blue", "ceiling": "tab:green", "popularity": "tab:gray"}
    height = 0.27
    fig, ax = plt.subplots(figsize=(8, 0.75 * len(rows) + 1.5))
    positions = np.arange(len(rows))
    for n, method in enumerate(METHODS):
        values = [r.hits.get(method, {}).get("hits@20", 0.0) for r in rows]
        intervals = [r.intervals_at_20.get(method, (v, v)) for r, v in zip(rows, values, strict=True)]
        ax.barh(positions + (n - 1) * height, values, height, xerr=error_bars(values, intervals),
                color=colours[method], capsize=2, label=method)  # fmt: skip
    ax.set_yticks(positions, [r.name for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"hits@20 (held-out item among the {report.cards} cards)")
    ax.set_title(f"chat evaluation: {report.dataset}, {report.split} split, {report.users} users")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return [save_figure(fig, folder / "hits_by_family.png")]


def write(report: ChatEvalReport, folder: Path, with_plots: bool = True) -> list[Path]:
    return write_run(report, folder, markdown(report), (lambda f: plot(report, f)) if with_plots else None)


README_MARKERS = ("<!-- results-chat:start -->", "<!-- results-chat:end -->")


def readme_section(report: ChatEvalReport, folder: Path, readme: Path) -> str:
    """A short results table for the README's chat block, linking the full report and plot."""
    rows = [[f"**{r.name}**" if r.name == "all" else r.name,
             *_hits(r, (("chat", 10), ("chat", 20), ("ceiling", 20), ("popularity", 20))),
             "–" if r.ratio_at_20 is None else f"{r.ratio_at_20:.2f}",
             *map(pct, (r.misread_rate, r.misread_rate_unshared, r.asked_back_rate))]
            for r in [*report.families, *([report.overall] if report.overall else [])]]  # fmt: skip
    headers = "family | chat hits@10 | chat hits@20 | ceiling hits@20 | popularity hits@20 " \
        "| chat/ceiling @20 | misread | misread, no shared title | asked back"  # fmt: skip
    return "\n".join(fill(
        texts("chat")["readme"], dataset=report.dataset, split=report.split, users=report.users,
        seed=report.seed, families=len(report.families), commit=(report.git_commit or "unknown")[:10],
        weights=_weights(report), weights_from=" (chosen on validation targets)." if _chosen(report) else ".",
        table=table(headers, rows), targets=_targets(report),
        links=links(folder, readme, "Full report, with the messages read differently than meant",
                    "hits_by_family.png", "hits@20 by phrasing family"),
    ))  # fmt: skip


__all__ = ["ChatEvalReport", "evaluate_chat", "markdown", "write"]
