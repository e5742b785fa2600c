"""Realistic synthetic interaction data for scale tests: `generate(n_users, n_items,
n_interactions, seed)` and `write_csv` into the `user_id,item_id,timestamp` CSV that
`fewrec eval --dataset FILE.csv` reads (the generic CSV loader).

What makes it realistic enough to exercise every candidate source:
- item popularity follows a power law (a Zipf exponent, items shuffled so ids say nothing);
- per-user history lengths are heavy-tailed (a Pareto tail over a minimum length), scaled so
  the total is exactly the number asked for;
- taste: items belong to clusters and each user has a home cluster they often draw from
  (collaborative signal for EASE, item-kNN, ALS and BPR);
- sequence: the next item is often one of a few "successor" items of the previous one (signal
  for the transition sources and SASRec);
- timestamps strictly increase within a user (gaps of minutes to days), users start at
  different times over a five-year span (so time-aware sources and the temporal protocol
  have something to work with).

A user never repeats an item (as in rating data such as MovieLens), so every held-out item
can be ranked. Everything is vectorised over users: the only Python loop runs over positions
within a history (at most the longest history), not over interactions.

`python -m fewrec.data.synthetic USERS ITEMS INTERACTIONS OUT.csv [--seed S]` writes a file.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fewrec.data.models import Dataset, Interactions, build_catalog

START = 1_420_070_400  # 2015-01-01: the span's start, Unix seconds
SPAN = 5 * 365 * 86_400  # users start within the first 80% of it


def _lengths(rng: np.random.Generator, n_users: int, n_items: int, total: int, tail: float) -> np.ndarray:
    """Per-user history lengths: minimum + Pareto(tail) excess, summing exactly to `total`."""
    minimum = int(min(5, total // n_users))  # 5: what the 5-core filter of the splits needs
    if minimum < 1:
        raise ValueError(f"{total} interactions cannot give each of {n_users} users one")
    # A user never repeats an item (at most half the catalog each), and even the heaviest user
    # stays within what real logs show (a few thousand items).
    cap = max(minimum, min(n_items // 2, max(2000, 50 * total // n_users)))
    if total > cap * n_users:
        raise ValueError(f"{total} interactions do not fit {n_users} users × {cap} items each")
    lengths = np.full(n_users, minimum, dtype=np.int64)
    left = total - minimum * n_users
    excess = rng.pareto(tail, n_users) + 1e-3
    # Scale the excess to what is left, then hand out the rounding remainder (and anything
    # capped away) to random users that still have room.
    share = np.minimum(np.floor(excess / excess.sum() * left), cap - minimum).astype(np.int64)
    lengths += share
    left -= int(share.sum())
    while left > 0:
        room = np.flatnonzero(lengths < cap)
        pick = rng.choice(room, size=min(left, len(room)), replace=False)
        lengths[pick] += 1
        left -= len(pick)
    return lengths


def generate(
    n_users: int,
    n_items: int,
    n_interactions: int,
    seed: int = 0,
    *,
    zipf: float = 0.9,
    length_tail: float = 1.3,
    clusters: int | None = None,
    successors: int = 5,
    follow: float = 0.5,
    taste: float = 0.6,
) -> pd.DataFrame:
    """Interactions `user_id, item_id, timestamp` (ids from 1), ordered by user then time.

    `zipf`: popularity exponent; `length_tail`: Pareto tail index of history lengths (smaller
    is heavier); `clusters`: taste clusters (default: about one per 250 items); `successors`:
    successor items per item; `follow`: chance the next item is a successor of the previous
    one; `taste`: chance an item that is not a successor comes from the user's home cluster.
    """
    if min(n_users, n_items, n_interactions) < 1:
        raise ValueError("users, items and interactions must all be at least 1")
    # One generator, drawn from in a fixed order: the same seed gives the same data.
    rng = np.random.default_rng(seed)
    lengths = _lengths(rng, n_users, n_items, n_interactions, length_tail)
    sampler = _ItemSampler(rng, n_items, zipf, clusters)
    follow_to, next_cdf = _successor_table(rng, sampler, successors)
    home = rng.integers(0, sampler.n_clusters, n_users)
    # Users longest first, so the users still active at position t are a prefix 0..active[t].
    order = np.argsort(-lengths, kind="stable")
    sorted_lengths = lengths[order]
    offsets = np.r_[0, np.cumsum(sorted_lengths)]
    walks = _Walks(follow_to, next_cdf, follow, taste)
    items = walks.draw(rng, sampler, sorted_lengths, home[order], offsets)
    user_of = np.repeat(np.arange(n_users), sorted_lengths)  # in sorted-user order
    items = _without_repeats(rng, user_of, items, n_items, sampler.draw_global)
    times = _timestamps(rng, sorted_lengths, offsets)
    user_ids = order[user_of] + 1
    frame = pd.DataFrame({"user_id": user_ids, "item_id": items + 1, "timestamp": times})
    frame = frame.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    return frame


class _ItemSampler:
    """Draws item indices by popularity (a Zipf law over a random order of the items), from the
    whole catalog or from a user's taste cluster."""

    def __init__(self, rng: np.random.Generator, n_items: int, zipf: float, clusters: int | None) -> None:
        self.rng, self.n_items = rng, n_items
        popularity = np.empty(n_items)
        popularity[rng.permutation(n_items)] = 1.0 / np.arange(1, n_items + 1) ** zipf
        popularity /= popularity.sum()
        self.global_cdf = np.cumsum(popularity)
        self.global_cdf[-1] = 1.0
        self.n_clusters = max(1, min(n_items, clusters if clusters is not None else n_items // 250))
        self.cluster = rng.integers(0, self.n_clusters, n_items)
        self.by_cluster, self.within, self.empty = _cluster_cdf(self.cluster, popularity, self.n_clusters)

    def draw_global(self, size: int) -> np.ndarray:
        return np.minimum(np.searchsorted(self.global_cdf, self.rng.random(size)), self.n_items - 1)

    def draw_cluster(self, home: np.ndarray) -> np.ndarray:
        at = np.searchsorted(self.within, home + self.rng.random(len(home)), side="right")
        out = self.by_cluster[np.minimum(at, self.n_items - 1)]
        if len(self.empty):  # a cluster without items: fall back to the whole catalog
            lost = np.isin(home, self.empty)
            out[lost] = self.draw_global(int(lost.sum()))
        return out


def _cluster_cdf(
    cluster: np.ndarray, popularity: np.ndarray, n_clusters: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(items by cluster, their CDF, empty clusters): each cluster's items by popularity, and
    cluster c's CDF spans [c, c + 1)."""
    by_cluster = np.argsort(cluster, kind="stable")
    in_order = cluster[by_cluster]
    bounds = np.searchsorted(in_order, np.arange(n_clusters + 1))
    running = np.r_[0.0, np.cumsum(popularity[by_cluster])]
    before, sums = running[bounds[:-1]], running[bounds[1:]] - running[bounds[:-1]]
    within = in_order + (running[1:] - before[in_order]) / np.where(sums > 0, sums, 1.0)[in_order]
    filled = np.flatnonzero(np.diff(bounds) > 0)
    within[bounds[filled + 1] - 1] = filled + 1.0  # each cluster's last item closes it exactly
    return by_cluster, within, np.flatnonzero(np.diff(bounds) == 0)


def _successor_table(
    rng: np.random.Generator, sampler: _ItemSampler, successors: int
) -> tuple[np.ndarray, np.ndarray]:
    """(each item's successors, the CDF over their slots): mostly from the item's own cluster,
    weighted like popularity; the first successor is the likeliest (weights halve down the list)."""
    n_next = max(1, successors)
    follow_to = sampler.draw_cluster(np.repeat(sampler.cluster, n_next)).reshape(sampler.n_items, n_next)
    stray = rng.random(follow_to.shape) < 0.2
    follow_to[stray] = sampler.draw_global(int(stray.sum()))
    next_cdf = np.cumsum(0.5 ** np.arange(n_next))
    next_cdf /= next_cdf[-1]
    return follow_to, next_cdf


@dataclass(frozen=True)
class _Walks:
    """How a history goes on: a successor of the previous item (chance `follow`), else an item
    from the home cluster (chance `taste`) or from the whole catalog."""

    follow_to: np.ndarray
    next_cdf: np.ndarray
    follow: float
    taste: float

    def draw(
        self, rng: np.random.Generator, sampler: _ItemSampler, lengths: np.ndarray, home: np.ndarray,
        offsets: np.ndarray,
    ) -> np.ndarray:  # fmt: skip
        """Every history's items, users longest first (`lengths` sorted down), position by
        position over the users still active."""
        longest = int(lengths[0])
        active = np.searchsorted(-lengths, -np.arange(1, longest + 1), side="right")
        items = np.empty(int(offsets[-1]), dtype=np.int64)
        previous = np.full(len(lengths), -1, dtype=np.int64)
        n_next = self.follow_to.shape[1]
        for t in range(longest):
            n = int(active[t])
            home_t = home[:n]
            pick = np.where(rng.random(n) < self.taste, sampler.draw_cluster(home_t), sampler.draw_global(n))
            if t > 0:
                chain = rng.random(n) < self.follow
                slot = np.minimum(np.searchsorted(self.next_cdf, rng.random(n)), n_next - 1)
                successor = self.follow_to[previous[:n], slot]
                pick = np.where(chain, successor, pick)
            items[offsets[:n] + t] = pick
            previous[:n] = pick
        return items


def _timestamps(rng: np.random.Generator, lengths: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """A start per user within the span, then gaps from minutes to days (log-normal, ≥ 1 s)."""
    gaps = np.maximum(1, rng.lognormal(mean=8.0, sigma=2.0, size=int(offsets[-1]))).astype(np.int64)
    gaps[offsets[:-1]] = 0
    clock = np.cumsum(gaps)
    clock -= np.repeat(clock[offsets[:-1]], lengths)
    begin = START + rng.integers(0, int(SPAN * 0.8), len(lengths))
    return np.repeat(begin, lengths) + clock


def _without_repeats(
    rng: np.random.Generator, users: np.ndarray, items: np.ndarray, n_items: int, draw
) -> np.ndarray:
    """Replace each repeat of an item within a user by a fresh draw (popularity-weighted, then
    uniform once popular draws keep colliding), so every user's items are distinct."""
    items = items.copy()
    for attempt in range(64):
        key = users * n_items + items
        order = np.argsort(key, kind="stable")  # stable: the first occurrence stays
        dup = np.zeros(len(items), dtype=bool)
        dup[order[1:]] = key[order[1:]] == key[order[:-1]]
        count = int(dup.sum())
        if count == 0:
            return items
        items[dup] = draw(count) if attempt < 16 else rng.integers(0, n_items, count)
    raise RuntimeError("could not make every user's items distinct; ask for fewer interactions")


def to_dataset(frame: pd.DataFrame, name: str = "synthetic") -> Dataset:
    """The generated interactions as a loaded `Dataset` (every rating 1, titles "item N"), as
    the CSV loader would give it, without the round trip through a file."""
    interactions = frame.assign(rating=1.0)[["user_id", "item_id", "rating", "timestamp"]]
    ids = pd.Series(np.sort(frame["item_id"].unique()))
    catalog = build_catalog(ids, "item " + ids.astype(str), years=pd.Series([None] * len(ids)))
    return Dataset(name, catalog, Interactions(interactions.reset_index(drop=True)))


def write_csv(frame: pd.DataFrame, path: Path | str) -> Path:
    """Write `user_id,item_id,timestamp` rows; `fewrec eval --dataset PATH` reads the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame[["user_id", "item_id", "timestamp"]].to_csv(path, index=False)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Write realistic synthetic interactions (power-law popularity, taste clusters, "
        "sequential successors) as a user_id,item_id,timestamp CSV that `fewrec --dataset` reads."
    )
    parser.add_argument("users", type=int)
    parser.add_argument("items", type=int)
    parser.add_argument("interactions", type=int)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    frame = generate(args.users, args.items, args.interactions, args.seed)
    print(f"wrote {write_csv(frame, args.out)}: {len(frame)} interactions")


if __name__ == "__main__":
    main()
