"""What every evaluation shares besides its run record (`provenance.RunRecord`), its metrics
(`metrics.py`) and its files (`report.py`): the seeded sample, the published anchors
(`anchors.toml`), the popularity order, where a chat's state keeps an item, and a recommender
that answers with the evaluation's settings while the caller's stay as they were.

One copy of each, so that `fewrec eval`, `eval-chat`, `eval-conversations` and the tuning draw
the same users from the same seed and read a conversation the same way.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from pydantic import AliasChoices, BaseModel, Field

if TYPE_CHECKING:
    from tqdm import tqdm

    from fewrec.agent.chat import ChatState
    from fewrec.agent.recommender import Recommender
    from fewrec.config import Settings
    from fewrec.data.models import ItemId

ANCHORS = Path(__file__).with_name("anchors.toml")
Row = TypeVar("Row")


def seeded_sample(pool: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """`n` of `pool` drawn without replacement from `seed`, in the pool's order (None: all)."""
    if n is None:
        return pool
    return np.sort(np.random.default_rng(seed).choice(pool, n, replace=False))


class Anchor(BaseModel):
    """A published figure, shown beside measured ones and never measured here."""

    name: str
    source: str
    # The conversations' results.json written before this model called them "recall".
    metrics: dict[str, float] = Field(validation_alias=AliasChoices("metrics", "recall"))


@cache
def _anchor_file(path: Path) -> dict[str, list[dict]]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def anchors(table: str, path: Path = ANCHORS) -> list[Anchor]:
    """The anchors of one evaluation (`retrieval`, `conversations`), in the file's order."""
    return [Anchor(**row) for row in _anchor_file(path)[table]]


def named(rows: Iterable[Row], name: str, key: str = "name") -> Row:
    """The row of a report whose `key` is `name` (a KeyError when none is)."""
    for row in rows:
        if getattr(row, key) == name:
            return row
    raise KeyError(name)


def popularity_order(recommender: Recommender) -> np.ndarray:
    """Item indices, the most watched first (ties by index): the popularity reference."""
    return np.argsort(-recommender.retriever.popularity.counts, kind="stable")


# Where a conversation keeps an item, in the order the evaluations look: a list of the state
# first, then a pending "which one did you mean?".
PLACES = ("liked", "disliked", "nothing like", "seen / not again", "mentioned", "asked back", "not read")


def place_of(state: ChatState, item: ItemId, first: tuple[str, ...] = ()) -> str:
    """Where `state` keeps `item` (PLACES); the places in `first` are looked at before the rest,
    for an item the state may keep twice."""
    lists = {
        "liked": state.liked,
        "disliked": state.disliked,
        "nothing like": state.avoid_like,
        "seen / not again": state.excluded,
        "mentioned": state.mentioned,
    }
    for place in [*first, *(p for p in lists if p not in first)]:
        if item in lists[place]:
            return place
    if any(item in choice.options for choice in state.pending):
        return "asked back"
    return "not read"


def progress_bar(total: int, desc: str, unit: str, enabled: bool) -> tqdm:
    """A progress bar on the terminal that leaves no line behind (none when not `enabled`)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=False)


def with_settings(recommender: Recommender, settings: Settings) -> Recommender:
    """`recommender` answering with `settings`, its fitted parts shared: the evaluation sets
    its cards and weights there, and the caller's recommender keeps its own settings."""
    _ = recommender.retriever  # fitted once, before the copy, so both use the same one
    view = copy.copy(recommender)
    view.pipeline = copy.copy(recommender.pipeline)
    view.pipeline.settings = settings
    return view


def with_chat(recommender: Recommender, **changes: object) -> Recommender:
    """`recommender` answering with these `chat` settings changed (the evaluation's cards, its
    query weights, no prior) in settings of its own: the caller's stay as they were."""
    settings = recommender.settings.model_copy(deep=True)
    for name, value in changes.items():
        setattr(settings.chat, name, value)
    return with_settings(recommender, settings)
