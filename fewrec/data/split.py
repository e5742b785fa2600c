"""The evaluation splits: the LlamaRec paper's leave-one-out and a leak-free global temporal
split, and few-shot views of them.

Leave-one-out (`protocol="loo"`, the paper's): all ratings are interactions; items without a
title are dropped; iterative 5-core filtering (users and items with >= min_count
interactions); each user's items ordered by (timestamp, item id); the last item is the test
target, the second-last the validation target, the rest is training history. Other users'
later interactions are in the training data, and 15% of the bundled users' test items share
their second with the item before them, so "next" is then decided by the item id (`ties`).

Global temporal (`protocol="temporal"`, LensKit's `split_global_time`): everything before a
cut time T is known; each user's first interaction at or after T is their target and their
history is what came before T. Validation uses an earlier cut with the same rule, fitted on
what came before it. Nothing from after T is ever seen: the users, the items and the core
filter come from the interactions before T, and a target whose item did not exist then
counts as a miss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from fewrec.data.errors import DatasetError, UnknownIdError
from fewrec.data.models import Catalog, Dataset, ItemId, UserId
from fewrec.data.traits import TimeKind, time_kind

SplitName = Literal["valid", "test", "all"]  # "all": everything known, for serving
Protocol = Literal["loo", "temporal"]
TieOrder = Literal["id", "random"]
PROTOCOLS: tuple[str, ...] = ("loo", "temporal")
TIE_ORDERS: tuple[str, ...] = ("id", "random")


class SplitSettings(BaseModel):
    """What defines a split (also part of the cache key)."""

    model_config = ConfigDict(extra="forbid")  # a typo in a key is an error

    min_count: int = 5
    min_rating: float | None = None  # None: every rating is an interaction (the paper's rule)
    holdout: int = 2  # last = test, second-last = valid
    protocol: Protocol = "loo"
    # Interactions in the same second: ordered by item id (the paper's, and the published
    # anchors', order) or by a seeded random key, to show how much a method leans on the id order.
    ties: TieOrder = "id"
    tie_seed: int = 0
    # Temporal protocol: the test and validation cut times, as a date ('2017-01-01'), Unix
    # seconds, or a quantile of the interaction times (0 < q < 1). None: the defaults below.
    test_cut: str | float | None = None
    valid_cut: str | float | None = None


# A target whose item the split's vocabulary lacks (first seen after the cut): it counts as a
# miss. -1 means "no target" (a user with no interaction after the cut).
NO_TARGET = -1
UNKNOWN_ITEM = -2
DEFAULT_TEST_CUT = 0.9  # quantile of interaction times: the last 10% of events lie after T
DEFAULT_VALID_CUT = 0.8


def core_filter(frame: pd.DataFrame, min_count: int) -> pd.DataFrame:
    """Iteratively drop users and items with fewer than `min_count` interactions."""
    while True:
        item_counts = frame["item_id"].map(frame["item_id"].value_counts())
        user_counts = frame["user_id"].map(frame["user_id"].value_counts())
        keep = (item_counts >= min_count) & (user_counts >= min_count)
        if keep.all():
            return frame
        frame = frame[keep]


@dataclass(frozen=True)
class LeaveOneOutSplit:
    """Chronological leave-one-out split with contiguous user/item indices.

    `train` holds (user, item, rating, timestamp) as indices, ordered by user then
    (timestamp, item id). `valid_item[u]` / `test_item[u]` are item indices.
    """

    name: str
    catalog: Catalog  # only the items that survived filtering, in item-index order
    user_ids: np.ndarray  # index -> raw user id
    train: pd.DataFrame  # columns: user, item, rating, timestamp (indices)
    valid_item: np.ndarray
    test_item: np.ndarray
    valid_time: np.ndarray
    test_time: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.catalog)

    @property
    def item_ids(self) -> np.ndarray:
        return self.catalog.ids

    @property
    def n_interactions(self) -> int:
        return len(self.train) + 2 * self.n_users

    @cached_property
    def _user_index(self) -> dict[UserId, int]:
        return {u: i for i, u in enumerate(self.user_ids.tolist())}

    @cached_property
    def _item_index(self) -> dict[ItemId, int]:
        return {it: i for i, it in enumerate(self.item_ids.tolist())}

    def user_index(self, user_id: object) -> int:
        key = _coerce(user_id, self.user_ids)
        if key not in self._user_index:
            raise UnknownIdError("user", user_id, self.user_ids[:2000].tolist())
        return self._user_index[key]

    def has_user(self, user_id: object) -> bool:
        return _coerce(user_id, self.user_ids) in self._user_index

    def item_index(self, item_id: object) -> int:
        key = _coerce(item_id, self.item_ids)
        if key not in self._item_index:
            raise UnknownIdError("item", item_id)
        return self._item_index[key]

    def has_item(self, item_id: object) -> bool:
        return _coerce(item_id, self.item_ids) in self._item_index

    @cached_property
    def _train_offsets(self) -> np.ndarray:
        counts = np.bincount(self.train["user"].to_numpy(), minlength=self.n_users)
        return np.concatenate([[0], np.cumsum(counts)])

    def train_sequence(self, user: int) -> np.ndarray:
        start, end = self._train_offsets[user], self._train_offsets[user + 1]
        return self.train["item"].to_numpy()[start:end]

    def train_times(self, user: int) -> np.ndarray:
        start, end = self._train_offsets[user], self._train_offsets[user + 1]
        return self.train["timestamp"].to_numpy()[start:end]

    def history(self, user: int, split: SplitName, last: int | None = None) -> np.ndarray:
        """The items a user has seen before the `split` target, oldest first.

        For 'valid' that is the training sequence; for 'test' it also holds the validation
        item. `last` cuts it to the most recent `last` items (the few-shot view).
        """
        seq = self.train_sequence(user)
        if split == "test":
            seq = np.append(seq, self.valid_item[user])
        elif split == "all":
            seq = np.append(seq, [self.valid_item[user], self.test_item[user]])
        elif split != "valid":
            raise ValueError(f"unknown split {split!r}; expected 'valid', 'test' or 'all'")
        if last is not None:
            if last < 1:
                raise ValueError("a history cut must keep at least one item")
            seq = seq[-last:]
        return seq

    def histories(self, split: SplitName, last: int | None = None) -> list[np.ndarray]:
        return [self.history(u, split, last) for u in range(self.n_users)]

    def targets(self, split: SplitName) -> np.ndarray:
        if split == "valid":
            return self.valid_item
        if split == "test":
            return self.test_item
        raise ValueError(f"unknown split {split!r}; expected 'valid' or 'test'")

    def interactions_before(self, split: SplitName) -> pd.DataFrame:
        """Every interaction a model may learn from when predicting `split` targets."""
        if split == "valid":
            return self.train
        if split not in ("test", "all"):
            raise ValueError(f"unknown split {split!r}; expected 'valid', 'test' or 'all'")
        held = [(self.valid_item, self.valid_time)]
        if split == "all":
            held.append((self.test_item, self.test_time))
        extra = [
            pd.DataFrame(
                {"user": np.arange(self.n_users), "item": items, "rating": np.nan, "timestamp": times}
            )
            for items, times in held
        ]
        frame = pd.concat([self.train, *extra], ignore_index=True)
        # Each held-out item follows the user's training sequence in the split's own order
        # (which may break same-second ties at random), so only the user needs sorting.
        return frame.sort_values("user", kind="stable").reset_index(drop=True)

    protocol: ClassVar[str] = "loo"

    def eval_users(self, split: SplitName) -> np.ndarray:
        """The users that hold a `split` target (here: everyone)."""
        self.targets(split)  # validates the name
        return np.arange(self.n_users)

    @cached_property
    def time_kind(self) -> TimeKind:
        """'seconds', 'positions' or 'none': whether the timestamps are dates at all (the rule
        is in `fewrec.data.traits`)."""
        times = [self.train["timestamp"].to_numpy(), self.valid_time, self.test_time]
        return time_kind(np.concatenate([np.asarray(t, dtype=np.int64) for t in times]))

    @property
    def has_times(self) -> bool:
        """Are the timestamps real Unix times (not positions, not all equal)?"""
        return self.time_kind == "seconds"

    def reference_times(self, users: np.ndarray, split: SplitName) -> np.ndarray:
        """The moment each user is scored at: their last activity before the `split` target.
        Time-aware sources count nothing after it.

        Without real times (positions, or one time for everything) one user's "time" says
        nothing about another's, so every user is scored as of the last timestamp of the data:
        the time-aware sources then see every training interaction, i.e. use the order only
        (`fewrec.state.fit_to_data` also switches their decay off)."""
        users = np.asarray(users, dtype=np.int64)
        if not self.has_times:
            return np.full(len(users), self._last_time, dtype=np.int64)
        if split == "valid":
            return np.array([self.train_times(int(u))[-1] for u in users], dtype=np.int64)
        if split == "test":
            return self.valid_time[users]
        if split == "all":
            return self.test_time[users]
        raise ValueError(f"unknown split {split!r}; expected 'valid', 'test' or 'all'")

    @cached_property
    def _last_time(self) -> int:
        train = self.train["timestamp"].to_numpy()
        return int(max(self.test_time.max(initial=0), self.valid_time.max(initial=0), train.max(initial=0)))

    def tied(self, split: SplitName) -> np.ndarray:
        """Per user: does the `split` target share its timestamp with the item before it? For
        those users "what came next" was decided by the tie order, not by time."""
        if split == "test":
            return self.test_time == self.valid_time
        if split == "valid":
            return self.valid_time == np.array([self.train_times(u)[-1] for u in range(self.n_users)])
        raise ValueError(f"unknown split {split!r}; expected 'valid' or 'test'")

    def describe(self) -> str:
        return "leave-one-out (last item = test, second-last = validation; the LlamaRec paper's)"

    def shifted(self, steps: int) -> tuple[LeaveOneOutSplit, np.ndarray]:
        """A pseudo-validation split `steps` items earlier, and the users it holds targets for.

        Its validation target is each user's `steps`-th last training item and its training
        data everything before that, so tuning gets more targets than the one validation item
        per user, all strictly before the real validation and test targets. Users with `steps`
        or fewer training items keep their training data and are left out of the returned users.
        Only its validation side is meant for use: its test targets are the real ones.
        """
        if steps < 1:
            raise ValueError("a pseudo-validation split must move at least one item")
        from_end = self.train.groupby("user", sort=False).cumcount(ascending=False).to_numpy()
        lengths = np.diff(self._train_offsets)
        users = np.flatnonzero(lengths > steps)
        moved = np.isin(self.train["user"].to_numpy(), users)
        targets = self.train[moved & (from_end == steps - 1)].sort_values("user")
        valid_item, valid_time = self.valid_item.copy(), self.valid_time.copy()
        valid_item[targets["user"].to_numpy()] = targets["item"].to_numpy()
        valid_time[targets["user"].to_numpy()] = targets["timestamp"].to_numpy()
        train = self.train[~moved | (from_end >= steps)].reset_index(drop=True)
        pseudo = LeaveOneOutSplit(
            name=f"{self.name} (pseudo-validation {steps} back)", catalog=self.catalog,
            user_ids=self.user_ids, train=train, valid_item=valid_item, test_item=self.test_item,
            valid_time=valid_time, test_time=self.test_time,
        )  # fmt: skip
        return pseudo, users

    def stats(self) -> dict[str, int]:
        return {
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "train": len(self.train),
        }


def _coerce(value: object, reference: np.ndarray) -> object:
    if reference.dtype.kind == "i" and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    if isinstance(value, np.integer):
        return int(value)
    return value


def chronological(frame: pd.DataFrame, settings: SplitSettings) -> pd.DataFrame:
    """Interactions ordered by user, then time; same-second ties by item id or a seeded key.

    Item indices are sorted like raw ids, so ordering by index breaks ties like the raw id."""
    if settings.ties == "id":
        return frame.sort_values(["user", "timestamp", "item"], kind="stable").reset_index(drop=True)
    key = np.random.default_rng(settings.tie_seed).permutation(len(frame))
    keyed = frame.assign(_tie=key).sort_values(["user", "timestamp", "_tie"], kind="stable")
    return keyed.drop(columns="_tie").reset_index(drop=True)


def usable_interactions(dataset: Dataset, settings: SplitSettings) -> pd.DataFrame:
    """The interactions every protocol starts from: above `min_rating`, of items with a title."""
    frame = dataset.interactions.frame[["user_id", "item_id", "rating", "timestamp"]]
    if settings.min_rating is not None:
        frame = frame[frame["rating"] >= settings.min_rating]
    titled = dataset.catalog.frame.loc[dataset.catalog.frame["title"].str.strip() != "", "item_id"]
    return frame[frame["item_id"].isin(titled)]


def leave_one_out(dataset: Dataset, settings: SplitSettings | None = None) -> LeaveOneOutSplit:
    settings = settings or SplitSettings()
    frame = core_filter(usable_interactions(dataset, settings), settings.min_count)
    if frame.empty:
        raise DatasetError(
            f"no interactions left after {settings.min_count}-core filtering of {dataset.name!r}; "
            "the dataset is too small or too sparse for this split"
        )
    short = frame.groupby("user_id").size()
    if (short < settings.holdout + 1).any():  # only when min_count < holdout + 1
        frame = frame[frame["user_id"].isin(short[short >= settings.holdout + 1].index)]

    item_ids = np.sort(frame["item_id"].unique())
    user_ids = np.sort(frame["user_id"].unique())
    ordered = pd.DataFrame(
        {
            "user": np.searchsorted(user_ids, frame["user_id"].to_numpy()),
            "item": np.searchsorted(item_ids, frame["item_id"].to_numpy()),
            "rating": frame["rating"].to_numpy(dtype=np.float32),
            "timestamp": frame["timestamp"].to_numpy(dtype=np.int64),
        }
    )
    ordered = chronological(ordered, settings)
    position_from_end = ordered.groupby("user").cumcount(ascending=False).to_numpy()
    test = ordered[position_from_end == 0]
    valid = ordered[position_from_end == 1]
    train = ordered[position_from_end >= settings.holdout].reset_index(drop=True)

    catalog_frame = dataset.catalog.frame.set_index("item_id").loc[item_ids].reset_index()
    return LeaveOneOutSplit(
        name=dataset.name,
        catalog=Catalog(catalog_frame),
        user_ids=user_ids,
        train=train,
        valid_item=valid["item"].to_numpy(),
        test_item=test["item"].to_numpy(),
        valid_time=valid["timestamp"].to_numpy(),
        test_time=test["timestamp"].to_numpy(),
    )


@dataclass(frozen=True)
class TemporalSplit(LeaveOneOutSplit):
    """Global temporal split (LensKit's `split_global_time`): the same interface as
    `LeaveOneOutSplit`, but a split's history and fit data are everything before its cut.

    `train` holds what came before the validation cut; `events` every interaction with an item
    of the vocabulary, in order; `interactions` also those with items outside it (targets only).
    `valid_item` / `test_item` are `NO_TARGET` for users without an interaction after that cut,
    and `UNKNOWN_ITEM` when that interaction's item did not exist for the models at the cut.
    """

    events: pd.DataFrame = field(default_factory=pd.DataFrame)
    interactions: pd.DataFrame = field(default_factory=pd.DataFrame)
    valid_cut: int = 0
    test_cut: int = 0
    protocol: ClassVar[str] = "temporal"

    @property
    def n_interactions(self) -> int:
        return len(self.events)

    @cached_property
    def _event_offsets(self) -> np.ndarray:
        counts = np.bincount(self.events["user"].to_numpy(), minlength=self.n_users)
        return np.concatenate([[0], np.cumsum(counts)])

    def _cut(self, split: SplitName) -> int | None:
        if split == "valid":
            return self.valid_cut
        if split == "test":
            return self.test_cut
        if split == "all":
            return None
        raise ValueError(f"unknown split {split!r}; expected 'valid', 'test' or 'all'")

    @cached_property
    def _known_counts(self) -> dict[str, np.ndarray]:
        """How many of each user's interactions lie before each split's cut (events are in
        time order within a user, so these are the first ones)."""
        users, times = self.events["user"].to_numpy(), self.events["timestamp"].to_numpy()
        counts = {"all": np.diff(self._event_offsets)}
        for name, cut in (("valid", self.valid_cut), ("test", self.test_cut)):
            counts[name] = np.bincount(users[times < cut], minlength=self.n_users)
        return counts

    def _known(self, split: SplitName) -> np.ndarray:
        self._cut(split)  # raises for an unknown name
        return self._known_counts[split]

    def history(self, user: int, split: SplitName, last: int | None = None) -> np.ndarray:
        start = self._event_offsets[user]
        seq = self.events["item"].to_numpy()[start : start + self._known(split)[user]]
        if last is not None:
            if last < 1:
                raise ValueError("a history cut must keep at least one item")
            seq = seq[-last:]
        return seq

    def eval_users(self, split: SplitName) -> np.ndarray:
        """Users with an interaction after the cut (its item known then or not) and at least one
        before it."""
        targets = self.targets(split)
        return np.flatnonzero((targets != NO_TARGET) & (self._known(split) > 0))

    def interactions_before(self, split: SplitName) -> pd.DataFrame:
        cut = self._cut(split)
        if cut is None:
            return self.events
        return self.events[self.events["timestamp"].to_numpy() < cut].reset_index(drop=True)

    def reference_times(self, users: np.ndarray, split: SplitName) -> np.ndarray:
        """Everyone is scored at the cut: what was known then, and nothing later."""
        users = np.asarray(users, dtype=np.int64)
        cut = self._cut(split)
        if cut is None:
            last = self._event_offsets[users + 1] - 1
            return self.events["timestamp"].to_numpy()[np.maximum(last, 0)]
        return np.full(len(users), cut, dtype=np.int64)

    def tied(self, split: SplitName) -> np.ndarray:
        """Per user: does another of their interactions share the target's second (so which one
        is "first after the cut" was decided by the tie order)?"""
        targets = self.targets(split)
        when = self.test_time if split == "test" else self.valid_time
        users = self.events["user"].to_numpy()
        same = (self.events["timestamp"].to_numpy() == when[users]) & (targets[users] >= 0)
        return np.bincount(users[same], minlength=self.n_users) > 1

    def describe(self) -> str:
        return (
            f"global temporal (fit on what came before the cut; target = each user's first "
            f"interaction after it): test cut {_date(self.test_cut)}, validation cut {_date(self.valid_cut)}"
        )

    def shifted(self, steps: int) -> tuple[TemporalSplit, np.ndarray]:
        """A pseudo-validation split whose cut lies `steps` validation windows earlier; its
        targets are each user's first interaction in the window before the next cut, so all lie
        before the real validation targets. Only its validation side is meant for use."""
        if steps < 1:
            raise ValueError("a pseudo-validation split must move at least one window")
        window = self.test_cut - self.valid_cut
        earlier = _temporal_from_events(
            f"{self.name} (pseudo-validation {steps} back)", self.catalog, self.user_ids, self.interactions,
            valid_cut=self.valid_cut - steps * window, test_cut=self.valid_cut - (steps - 1) * window,
        )  # fmt: skip
        return earlier, earlier.eval_users("valid")

    def stats(self) -> dict[str, int]:
        return {
            **super().stats(),
            "test users": len(self.eval_users("test")),
            "valid users": len(self.eval_users("valid")),
        }


def _date(seconds: int) -> str:
    try:
        return str(pd.to_datetime(int(seconds), unit="s", utc=True).date())
    except (OverflowError, ValueError):
        return f"{int(seconds)} s"


def resolve_cut(spec: str | float | None, default: float, times: np.ndarray, what: str) -> int:
    """A cut time in Unix seconds from a date, Unix seconds or a quantile of `times`."""
    spec = default if spec is None else spec
    value: float | None = None
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        value = float(spec)
    else:
        text = str(spec).strip()
        try:
            value = float(text)
        except ValueError:
            try:
                value = pd.Timestamp(text, tz="UTC").timestamp()
            except (ValueError, TypeError) as exc:
                raise DatasetError(
                    f"cannot read the {what} cut {spec!r}: give a date (2017-01-01), Unix seconds, "
                    "or a quantile of the interaction times between 0 and 1"
                ) from exc
    cut = int(np.quantile(times, value, method="higher")) if 0.0 < value < 1.0 else int(value)
    first, last = int(times.min()), int(times.max())
    if not first < cut <= last:
        raise DatasetError(
            f"the {what} cut {spec!r} ({_date(cut)}) is outside the data, which runs from "
            f"{_date(first)} to {_date(last)}: the cut must leave interactions before and after it"
        )
    return cut


def _temporal_from_events(
    name: str, catalog: Catalog, user_ids: np.ndarray, interactions: pd.DataFrame, valid_cut: int,
    test_cut: int,
) -> TemporalSplit:  # fmt: skip
    """`interactions`: every interaction of the split's users in time order, those with items
    outside the vocabulary as `UNKNOWN_ITEM` (they can only be targets)."""
    items = interactions["item"].to_numpy()
    events = interactions[items >= 0].reset_index(drop=True)
    all_times = interactions["timestamp"].to_numpy()
    times = events["timestamp"].to_numpy()
    n_users = len(user_ids)
    # When each vocabulary item was first interacted with: a target seen for the first time at or
    # after its cut did not exist for the models then.
    first_seen = np.full(len(catalog), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_seen, events["item"].to_numpy(), times)

    def first_after(start: int, end: int | None) -> tuple[np.ndarray, np.ndarray]:
        inside = all_times >= start if end is None else (all_times >= start) & (all_times < end)
        first = interactions[inside].drop_duplicates("user")  # in time order within each user
        item = np.full(n_users, NO_TARGET, dtype=np.int64)
        when = np.full(n_users, NO_TARGET, dtype=np.int64)
        target = first["item"].to_numpy()
        known = target >= 0
        known[known] = first_seen[target[known]] < start
        item[first["user"].to_numpy()] = np.where(known, target, UNKNOWN_ITEM)
        when[first["user"].to_numpy()] = first["timestamp"].to_numpy()
        return item, when

    valid_item, valid_time = first_after(valid_cut, test_cut)
    test_item, test_time = first_after(test_cut, None)
    return TemporalSplit(
        name=name, catalog=catalog, user_ids=user_ids,
        train=events[times < valid_cut].reset_index(drop=True),
        valid_item=valid_item, test_item=test_item, valid_time=valid_time, test_time=test_time,
        events=events, valid_cut=valid_cut, test_cut=test_cut, interactions=interactions,
    )  # fmt: skip


def temporal_split(dataset: Dataset, settings: SplitSettings | None = None) -> TemporalSplit:
    """The global temporal split of `dataset`, with nothing from after the test cut in its
    vocabulary: the users and items are those the `min_count`-core filter keeps among the
    interactions *before* the cut. Each user's target is their first interaction at or after a
    cut; when its item is not in the vocabulary (first seen after the test cut, or kept out by
    the filter) or had no interaction before that cut, the target stays and counts as a miss
    (`UNKNOWN_ITEM`). Validation ranks over the same vocabulary, which may hold items first seen
    between the two cuts: no source has an interaction with them to fit on then.
    """
    settings = settings or SplitSettings(protocol="temporal")
    frame = usable_interactions(dataset, settings)
    times = frame["timestamp"].to_numpy()
    kind = time_kind(times)
    if kind == "none":
        raise DatasetError(
            f"{dataset.name!r} has no timestamps (every interaction has the same time), so it cannot be "
            "split by time; use the leave-one-out protocol (--protocol loo)"
        )
    if kind == "positions":  # a cut at "position 40" would mean a different moment for each user
        raise DatasetError(
            f"{dataset.name!r} has positions, not times (every timestamp is below 10^8, i.e. before "
            "1973), so it cannot be split by time; use the leave-one-out protocol (--protocol loo)"
        )
    test_cut = resolve_cut(settings.test_cut, DEFAULT_TEST_CUT, times, "test")
    valid_cut = resolve_cut(settings.valid_cut, DEFAULT_VALID_CUT, times, "validation")
    if valid_cut >= test_cut:
        raise DatasetError(
            f"the validation cut ({_date(valid_cut)}) must come before the test cut ({_date(test_cut)})"
        )
    known = core_filter(frame[times < test_cut], settings.min_count)
    if known.empty:
        raise DatasetError(
            f"no interactions left before the test cut ({_date(test_cut)}) after {settings.min_count}-core "
            f"filtering of {dataset.name!r}; choose a later cut (--test-cut)"
        )
    item_ids = np.sort(known["item_id"].unique())
    user_ids = np.sort(frame.loc[frame["user_id"].isin(known["user_id"]), "user_id"].unique())
    mine = frame[frame["user_id"].isin(user_ids)]
    events = _indexed(mine, user_ids, item_ids, settings)
    catalog_frame = dataset.catalog.frame.set_index("item_id").loc[item_ids].reset_index()
    split = _temporal_from_events(dataset.name, Catalog(catalog_frame), user_ids, events, valid_cut, test_cut)
    for what in ("test", "valid"):
        if len(split.eval_users(what)) == 0:  # type: ignore[arg-type]
            raise DatasetError(
                f"no user has both a history before the {what} cut and an interaction after it; "
                "choose another cut (--test-cut / --valid-cut)"
            )
    return split


def _indexed(
    frame: pd.DataFrame, user_ids: np.ndarray, item_ids: np.ndarray, settings: SplitSettings
) -> pd.DataFrame:
    """Interactions as (user, item, rating, timestamp) indices in time order per user; an item
    outside `item_ids` gets `UNKNOWN_ITEM` (kept only as someone's target, never as history)."""
    raw_items = frame["item_id"].to_numpy()
    position = np.searchsorted(item_ids, raw_items)
    inside = position < len(item_ids)
    inside[inside] = item_ids[position[inside]] == raw_items[inside]
    # Ordered by the raw id's place among the vocabulary's ids (unknown items just after the
    # known id they follow), so same-second ties break as by raw id.
    indexed = pd.DataFrame(
        {
            "user": np.searchsorted(user_ids, frame["user_id"].to_numpy()),
            "item": 2 * position + ~inside,
            "rating": frame["rating"].to_numpy(dtype=np.float32),
            "timestamp": frame["timestamp"].to_numpy(dtype=np.int64),
        }
    )
    ordered = chronological(indexed, settings)
    key = ordered["item"].to_numpy()
    ordered["item"] = np.where(key % 2 == 0, key // 2, UNKNOWN_ITEM)
    return ordered
