"""The evaluation split of the LlamaRec paper, and few-shot views of it.

All ratings are interactions; items without a title are dropped; iterative 5-core filtering
(users and items with >= min_count interactions); each user's items ordered by
(timestamp, item id); the last item is the test target, the second-last the validation
target, the rest is training history.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from fewrec.data.errors import DatasetError, UnknownIdError
from fewrec.data.models import Catalog, Dataset, ItemId, UserId

SplitName = Literal["valid", "test", "all"]  # "all": everything known, for serving


class SplitSettings(BaseModel):
    """What defines a split (also part of the cache key)."""

    model_config = ConfigDict(extra="forbid")  # a typo in a key is an error

    min_count: int = 5
    min_rating: float | None = None  # None: every rating is an interaction (the paper's rule)
    holdout: int = 2  # last = test, second-last = valid


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
        return frame.sort_values(["user", "timestamp", "item"], kind="stable").reset_index(drop=True)

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


def leave_one_out(dataset: Dataset, settings: SplitSettings | None = None) -> LeaveOneOutSplit:
    settings = settings or SplitSettings()
    frame = dataset.interactions.frame[["user_id", "item_id", "rating", "timestamp"]]
    if settings.min_rating is not None:
        frame = frame[frame["rating"] >= settings.min_rating]
    titled = dataset.catalog.frame.loc[dataset.catalog.frame["title"].str.strip() != "", "item_id"]
    frame = frame[frame["item_id"].isin(titled)]
    frame = core_filter(frame, settings.min_count)
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
    # Item indices are sorted like raw ids, so ordering by index breaks ties like the raw id.
    ordered = ordered.sort_values(["user", "timestamp", "item"], kind="stable").reset_index(drop=True)
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
