"""What a dataset really carries: titles to embed, and times that are dates.

Public sets are often shipped without either: `user_id,item_id,timestamp` files with no item
file (the loader then titles every item with its id) and a "timestamp" that is each user's
position, 0..n. Read as if they were real, ids get embedded as text (minutes of work for a
source that knows nothing) and positions show as dates in 1970, while the time-aware sources
compare one user's position with another's. These checks let the rest of fewrec tell.

The rules (kept simple so that a user can predict them):
- **Titles.** An item has a title when its title is neither empty nor its own id written as
  text. A catalog has titles when at least half of its items do (`TITLED_SHARE`).
- **Times.** Timestamps are Unix seconds. The data has *no times* when every interaction has
  the same timestamp (e.g. 0: no timestamp column), and *positions* when the largest one is
  below 10^8 (1973-03-03): no interaction log of a recommender predates that, so such numbers
  are an order (per-user positions or a running counter), not dates. Otherwise *seconds*.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from fewrec.data.models import Catalog

TimeKind = Literal["seconds", "positions", "none"]

# 10^8 s after the epoch is 1973-03-03; anything smaller is an order, not a date.
REAL_TIME_MIN = 100_000_000
TITLED_SHARE = 0.5


def time_kind(timestamps: np.ndarray | pd.Series) -> TimeKind:
    """'seconds' (real Unix times), 'positions' (an order only) or 'none' (all equal)."""
    values = np.asarray(timestamps)
    if len(values) == 0 or values.min() == values.max():
        return "none"
    return "positions" if int(values.max()) < REAL_TIME_MIN else "seconds"


def titled_items(catalog: Catalog) -> np.ndarray:
    """Per item: does it have a title other than its own id?"""
    frame = catalog.frame
    titles = frame["title"].fillna("").astype(str).str.strip()
    ids = frame["item_id"].astype(str).str.strip()
    return ((titles != "") & (titles != ids)).to_numpy()


def has_titles(catalog: Catalog) -> bool:
    """Does the catalog carry real titles (see the module docstring for the rule)?"""
    if len(catalog) == 0:
        return False
    return bool(titled_items(catalog).mean() >= TITLED_SHARE)


def time_range(timestamps: np.ndarray | pd.Series) -> tuple[str, str]:
    """The first and last time as a user should read them: dates for real times, positions
    ('position 0') for an order, '–' when there are no times."""
    values = np.asarray(timestamps)
    kind = time_kind(values)
    if kind == "none":
        return "–", "–"
    if kind == "positions":
        return f"position {int(values.min())}", f"position {int(values.max())}"
    try:
        as_date = pd.to_datetime([int(values.min()), int(values.max())], unit="s", utc=True)
    except (OverflowError, ValueError):  # e.g. milliseconds: beyond the calendar pandas knows
        return f"{int(values.min())} s", f"{int(values.max())} s"
    return str(as_date[0].date()), str(as_date[1].date())
