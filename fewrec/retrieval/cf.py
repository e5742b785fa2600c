"""Collaborative-filtering candidate sources: EASE, item-to-item transitions (global and
time-local), item-kNN, ALS and BPR (the last two from `implicit`), and popularity.

Every source scores a user from a recency-weighted history, because the task is the next
item: what a user watched last says more than what they watched years ago.

The time-aware sources (`time_aware = True`) are causal: scoring a history at reference time t
they count only training interactions at or before t, weighted exp(-(t - time) / tau). Under
the leave-one-out protocol the training data holds other users' later interactions; a
deployed recommender has no future, so neither may these sources. The other sources (EASE,
transitions, item-kNN, ALS, BPR) fit on the whole training data as the published
leave-one-out papers do, so under that protocol they also learn from other users' later
interactions; the global temporal protocol (`--protocol temporal`) fits every source on the
past alone.

Scale: item-item structures are sparse (transitions, item-kNN's top-k neighbours); EASE's dense
item-item matrix is built only up to `max_items` items (it declines to fit above, with the
setting named); a history is scored as a sparse (batch × items) weight matrix times the item
matrix; the time-aware sources answer "as of time t" from per-pair prefix sums instead of
reweighting every training pair for every user.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fewrec.retrieval.base import FitData, ScoringContext, SourceSkipped, recency_weights

log = logging.getLogger(__name__)

# Decay factors exp(±Δt / tau) stay finite in float64 while the data spans less than this many
# tau (e^700 ≈ 1e304); beyond it the time-aware sources reweight pairs one by one instead.
_PREFIX_SPAN_TAUS = 600.0
# Queries (history item × successor) handled at once by TimedTransition; bounds temporaries.
_QUERY_CHUNK = 1 << 21


def _binary_matrix(data: FitData) -> sp.csr_matrix:
    m = sp.csr_matrix(
        (np.ones(len(data.users), dtype=np.float32), (data.users, data.items)),
        shape=(data.n_users, data.n_items),
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def last_at_or_before(times: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    """Index of the last of the sorted integer `times` at or before `t` (-1: none). The query
    is made an integer too: searching int64 times with a float would convert all of them."""
    return np.searchsorted(times, np.floor(t).astype(np.int64), side="right") - 1


def causal_weights(event_times: np.ndarray, reference: float, tau_seconds: float) -> np.ndarray:
    """exp(-(t - time) / tau) for events at or before the reference time t, 0 after it."""
    age = reference - event_times
    return np.where(age >= 0, np.exp(-np.maximum(age, 0.0) / tau_seconds), 0.0)


def history_weights(
    histories: list[np.ndarray], n_items: int, half_life: float, limit: int | None
) -> sp.csr_matrix:
    """The recency weights of a batch of histories as a sparse (batch × items) float32 matrix
    (an item seen twice gets both weights)."""
    rows, cols, values = [], [], []
    for row, history in enumerate(histories):
        if len(history) == 0:
            continue
        weights = recency_weights(len(history), half_life, limit)
        keep = weights > 0
        cols.append(np.asarray(history, dtype=np.int64)[keep])
        values.append(weights[keep].astype(np.float32))
        rows.append(np.full(int(keep.sum()), row, dtype=np.int64))
    if not rows:
        return sp.csr_matrix((len(histories), n_items), dtype=np.float32)
    return sp.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(histories), n_items), dtype=np.float32,
    )  # fmt: skip


class _ItemMatrixSource:
    """A source whose scores are (weighted history) @ item-item matrix; the matrix is sparse
    CSR, or dense for EASE. Both products keep float32 and touch only the history's rows."""

    name = "item-matrix"
    time_aware = False
    half_life: float = 10.0
    limit: int | None = None
    matrix: sp.csr_matrix | np.ndarray
    n_items: int

    def score(self, histories: list[np.ndarray], context: ScoringContext | None = None) -> np.ndarray:
        weights = history_weights(histories, self.n_items, self.half_life, self.limit)
        out = weights @ self.matrix  # csr @ dense reads the dense matrix in place (both float32)
        return np.asarray(out.toarray() if sp.issparse(out) else out, dtype=np.float32)


def _symmetrise_lower(a: np.ndarray, block: int = 2048) -> None:
    """Copy the lower triangle of a square array onto its upper one, in place, block by block
    (index arrays for a whole triangle would cost more memory than the matrix)."""
    n = len(a)
    for start in range(0, n, block):
        end = min(start + block, n)
        a[start:end, end:] = a[end:, start:end].T
        square = a[start:end, start:end]
        square[np.triu_indices(end - start, 1)] = square.T[np.triu_indices(end - start, 1)]


class EASE(_ItemMatrixSource):
    """Embarrassingly Shallow Autoencoder (Steck 2019): closed-form item-item weights.

    The weights are a dense items × items matrix (the inverse of the Gram matrix), so EASE fits
    only up to `max_items` items: float32 at 20,000 items is 1.6 GB, inverted in place (LAPACK
    Cholesky), so the peak stays near that one matrix. Above it, it declines to fit.
    """

    name = "ease"
    FLOAT64_ITEMS = 8192  # up to here the inverse is computed in float64 (≤ 0.5 GB), as before

    def __init__(
        self, l2: float = 500.0, half_life: float = 10.0, limit: int | None = None,
        max_items: int | None = 20_000,
    ) -> None:  # fmt: skip
        self.l2, self.half_life, self.limit, self.max_items = l2, half_life, limit, max_items

    def fit(self, data: FitData) -> EASE:
        from scipy.linalg import lapack

        n = data.n_items
        if self.max_items is not None and n > self.max_items:
            size = n * n * 4 / 1e9
            size_text = f"{size:.1f} GB" if size >= 1 else f"{size * 1000:.0f} MB"
            raise SourceSkipped(
                f"ease skipped: {n:,} items > retrieval.sources.ease.max_items = {self.max_items:,} "
                f"(its dense item×item matrix would take {size_text}); it is left out of the fusion, the "
                "other sources keep their weights. Raise retrieval.sources.ease.max_items to fit it anyway."
            )
        dtype = np.float64 if n <= self.FLOAT64_ITEMS else np.float32
        x = _binary_matrix(data)
        gram = np.zeros((n, n), dtype=dtype)
        # X^T X a block of users at a time: the sparse product of all users can hold far more
        # entries than the dense result when a few users have thousands of items.
        for start in range(0, x.shape[0], 4096):
            part = x[start : start + 4096]
            product = (part.T @ part).tocoo()
            gram[product.row, product.col] += product.data
        gram[np.diag_indices_from(gram)] += self.l2
        # Gram + l2·I is symmetric positive definite: invert in place through its Cholesky
        # factor (the transpose of a C array is the Fortran array LAPACK writes into).
        potrf, potri = lapack.get_lapack_funcs(("potrf", "potri"), (gram,))
        factor, info = potrf(gram.T, lower=False, overwrite_a=True, clean=False)
        if info != 0:
            raise np.linalg.LinAlgError(f"EASE: Cholesky factorisation failed (info={info})")
        inverse, info = potri(factor, lower=False, overwrite_c=True)
        if info != 0:
            raise np.linalg.LinAlgError(f"EASE: inversion failed (info={info})")
        p = inverse.T  # the C-ordered view; its lower triangle holds the result
        _symmetrise_lower(p)
        diagonal = np.diag(p).copy()
        p /= -diagonal[None, :]  # B = -P / diag(P), column by column
        p[np.diag_indices_from(p)] = 0.0
        self.matrix = p if p.dtype == np.float32 else p.astype(np.float32)
        if not self.matrix.flags.c_contiguous:
            self.matrix = np.ascontiguousarray(self.matrix)
        self.n_items = n
        return self


def transition_pairs(
    data: FitData, window: int, decay: float, backward: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every (item, later item) pair within `window` steps of one user's training sequence:
    (from, to, weight, time of the later interaction). A step further counts `decay` times less;
    each pair also counts `backward` times in the reverse direction. Items are int32 and
    weights float32: at millions of interactions these arrays are the fit's largest."""
    users, items = np.asarray(data.users), np.asarray(data.items, dtype=np.int32)
    times = np.asarray(data.timestamps, dtype=np.int64)
    sources, targets, weights, when = [], [], [], []
    for step in range(1, window + 1):
        same = users[step:] == users[:-step]
        first, then, at = items[:-step][same], items[step:][same], times[step:][same]
        forward = np.full(len(first), decay ** (step - 1), dtype=np.float32)
        sources += [first, then]
        targets += [then, first]
        weights += [forward, forward * np.float32(backward)]
        when += [at, at]
    return tuple(np.concatenate(part) for part in (sources, targets, weights, when))  # type: ignore[return-value]


class Transition(_ItemMatrixSource):
    """Item-to-item transitions: how often item j follows item i within `window` steps in
    the training sequences (a step further counts `decay` times less; j *preceding* i counts
    `backward` times), rows divided by out-degree**normalise. A sparse CSR matrix."""

    name = "transition"

    def __init__(
        self, window: int = 5, decay: float = 1.0, half_life: float = 2.0, limit: int | None = 20,
        normalise: float = 0.75, backward: float = 0.25,
    ) -> None:  # fmt: skip
        self.window, self.decay, self.half_life, self.limit = window, decay, half_life, limit
        self.normalise, self.backward = normalise, backward

    def fit(self, data: FitData) -> Transition:
        sources, targets, weights, _ = transition_pairs(data, self.window, self.decay, self.backward)
        n = data.n_items
        t = sp.csr_matrix((weights, (sources, targets)), shape=(n, n), dtype=np.float32)
        del sources, targets, weights
        t.sum_duplicates()
        out_degree = np.asarray(t.sum(axis=1), dtype=np.float32).ravel()
        scale = np.power(np.maximum(out_degree, np.float32(1e-9)), np.float32(self.normalise))
        t.data /= np.repeat(scale, np.diff(t.indptr))
        t.eliminate_zeros()  # a backward weight of 0 leaves explicit zeros
        self.matrix, self.n_items = t, n
        return self


class TimedTransition:
    """Transitions as they were when this user was last active: the same pairs as
    `Transition`, each counted exp(-(user's time - pair time) / tau) if it happened at or
    before the user's time, and not at all after it (a pair dates from its later interaction).

    What follows a film changes over the years (new releases, what the site showed next), and
    the training data holds other users' sequences from 1996 to 2018. (Its gain on validation
    was measured before the source became causal, with later pairs counted too; that figure
    is withdrawn. `fewrec tune --folds 5` with and without it measures it again.)
    Without a reference time (a history typed into the chat) every pair counts fully.

    How "as of t" stays cheap: pairs are grouped by (item, successor) and sorted by time; each
    group keeps the running sum of weight·exp((time − T)/tau) for a fixed anchor T, so the
    decayed count at any t ≤ T is one binary search and a factor exp((T − t)/tau), whatever
    the number of pairs behind it.
    """

    name = "timed_transition"
    time_aware = True

    def __init__(
        self, tau_days: float = 100.0, window: int = 5, decay: float = 1.0, half_life: float = 2.0,
        limit: int | None = 20, normalise: float = 0.75, backward: float = 0.25,
    ) -> None:  # fmt: skip
        if tau_days <= 0:
            raise ValueError("tau_days must be positive")
        self.tau_days, self.window, self.decay = tau_days, window, decay
        self.half_life, self.limit, self.normalise, self.backward = half_life, limit, normalise, backward

    def fit(self, data: FitData) -> TimedTransition:
        sources, targets, weights, when = transition_pairs(data, self.window, self.decay, self.backward)
        n = data.n_items
        self.n_items = n
        tau = self.tau_days * 86400.0
        out_degree = np.bincount(sources, weights=weights, minlength=n)
        self.row_scale = np.power(np.maximum(out_degree, 1e-9), -self.normalise)
        order = np.lexsort((when, targets, sources))  # by item, then successor, then time
        sources, targets, weights, when = sources[order], targets[order], weights[order], when[order]
        del order
        starts = np.flatnonzero(np.r_[True, (sources[1:] != sources[:-1]) | (targets[1:] != targets[:-1])])
        # Group g = one (item, successor): its pairs are [pair_start[g], pair_start[g + 1]);
        # item i's groups are [item_start[i], item_start[i + 1]).
        self.group_target = targets[starts]
        self.item_start = np.searchsorted(sources[starts], np.arange(n + 1))
        self.pair_start = np.r_[starts, len(sources)]
        self.group_weight = (
            np.add.reduceat(weights.astype(np.float64), starts) if len(starts) else np.zeros(0)
        )
        self.times = np.unique(when)  # a pair's time as its rank here keeps the search keys small
        span = float(self.times[-1] - self.times[0]) if len(self.times) else 0.0
        self.prefix = span / tau < _PREFIX_SPAN_TAUS
        if self.prefix:
            group = np.repeat(np.arange(len(starts), dtype=np.int64), np.diff(self.pair_start))
            self.anchor = float(self.times[-1]) if len(self.times) else 0.0
            decayed = weights * np.exp((when - self.anchor) / tau)
            del weights
            rank = np.searchsorted(self.times, when)
            del when
            # A few users: a binary search per (item, successor) in the running sums.
            self.running = pd.Series(decayed).groupby(group).cumsum().to_numpy()
            self.keys = group * (len(self.times) + 1) + rank
            # Many users: one sweep through the pairs in time order (see `_score_sweep`).
            by_time = np.argsort(rank, kind="stable")  # stable: a group's pairs keep their order
            self.sweep_group = group[by_time].astype(np.int32 if len(starts) < 2**31 else np.int64)
            del group
            self.sweep_value = decayed[by_time]
            del by_time, decayed
            self.time_end = np.cumsum(np.bincount(rank, minlength=len(self.times)))  # pairs at or before
        else:  # a span of many tau: keep the pairs and reweight them per user
            log.info("timed_transition: data span %.0f × tau; scoring pair by pair", span / tau)
            self.pair_target, self.pair_weight, self.pair_time = targets, weights, when
        return self

    def score(self, histories: list[np.ndarray], context: ScoringContext | None = None) -> np.ndarray:
        times = context.times if context is not None and context.times is not None else None
        out = np.zeros((len(histories), self.n_items), dtype=np.float32)
        # (row, history item, recency weight) for every kept item of every history.
        rows, items, recency = [], [], []
        for row, history in enumerate(histories):
            weights = recency_weights(len(history), self.half_life, self.limit)
            keep = weights > 0
            if keep.any():
                items.append(np.asarray(history, dtype=np.int64)[keep])
                recency.append(weights[keep])
                rows.append(np.full(int(keep.sum()), row, dtype=np.int64))
        if not rows:
            return out
        row_of, item_of, weight_of = np.concatenate(rows), np.concatenate(items), np.concatenate(recency)
        groups = self.item_start[item_of + 1] - self.item_start[item_of]
        if times is not None and self.prefix:
            # A sweep reads every pair up to the latest time once; binary searches cost a
            # log factor per (item, successor) read. Take the cheaper.
            pairs = len(self.sweep_value)
            if float(groups.sum()) * np.log2(max(pairs, 2)) > 2.0 * pairs:
                self._score_sweep(
                    out, row_of, item_of, weight_of, groups, np.asarray(times, dtype=np.float64)
                )
                return out
        # Chunks of whole rows, each with at most about _QUERY_CHUNK (item, successor) groups.
        row_groups = np.bincount(row_of, weights=groups, minlength=len(histories))
        bounds = np.searchsorted(row_of, np.arange(len(histories) + 1))
        max_rows = max(1, _QUERY_CHUNK // max(self.n_items, 1))  # the dense per-chunk sum, too
        first = 0
        while first < len(histories):
            last = first + 1
            total = row_groups[first]
            while (
                last < len(histories) and last - first < max_rows and total + row_groups[last] <= _QUERY_CHUNK
            ):
                total += row_groups[last]
                last += 1
            part = slice(bounds[first], bounds[last])
            if part.stop > part.start:
                at = None if times is None else np.asarray(times, dtype=np.float64)[row_of[part]]
                self._score_part(out, row_of[part], item_of[part], weight_of[part], groups[part], at)
            first = last
        return out

    def _score_part(
        self, out: np.ndarray, row_of: np.ndarray, item_of: np.ndarray, recency: np.ndarray,
        groups: np.ndarray, at: np.ndarray | None,
    ) -> None:  # fmt: skip
        """Add the scores of these (row, history item) entries to `out`."""
        if not self.prefix and at is not None:
            return self._score_pairs(out, row_of, item_of, recency, at)
        entry, group = self._expand(item_of, groups)
        if at is None:
            values = self.group_weight[group]
            scale = self.row_scale[item_of]
        else:
            when = at[entry]
            rank = last_at_or_before(self.times, when)
            found = np.searchsorted(self.keys, group * (len(self.times) + 1) + rank, side="right") - 1
            counted = found >= self.pair_start[group]
            values = np.where(counted, self.running[np.maximum(found, 0)], 0.0)
            values *= np.exp((self.anchor - when) / (self.tau_days * 86400.0))
            scale = self._causal_scale(entry, values, len(item_of))
        values = values * (recency * scale)[entry]
        cells = row_of[entry] * self.n_items + self.group_target[group]
        first = int(row_of[0])
        rows = int(row_of[-1]) - first + 1
        out[first : first + rows] += (
            np.bincount(cells - first * self.n_items, weights=values, minlength=rows * self.n_items)
            .reshape(rows, self.n_items)
            .astype(np.float32)
        )

    def _expand(self, item_of: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For every (item, successor) group of these entries' items: its entry, and its index."""
        entry = np.repeat(np.arange(len(item_of)), groups)
        group = np.arange(len(entry)) - np.repeat(np.cumsum(groups) - groups, groups)
        group += np.repeat(self.item_start[item_of], groups)
        return entry, group

    def _causal_scale(self, entry: np.ndarray, values: np.ndarray, entries: int) -> np.ndarray:
        """Out-degrees as they stood at the reference time too: a later pair must not change
        the normalisation either."""
        degree = np.bincount(entry, weights=values, minlength=entries)
        return np.power(np.maximum(degree, 1e-9), -self.normalise)

    def _score_sweep(
        self, out: np.ndarray, row_of: np.ndarray, item_of: np.ndarray, recency: np.ndarray,
        groups: np.ndarray, times: np.ndarray,
    ) -> None:  # fmt: skip
        """Rows in time order; the running decayed count of every (item, successor) advances
        to each row's time by adding the pairs in between (in the order the binary-search path
        sums them, so both give the same numbers), and the row reads its items' groups."""
        tau = self.tau_days * 86400.0
        running = np.zeros(len(self.group_target), dtype=np.float64)
        bounds = np.searchsorted(row_of, np.arange(len(times) + 1))
        done = 0
        for row in np.argsort(times, kind="stable"):
            first, last = bounds[row], bounds[row + 1]
            if first == last:
                continue
            t = float(times[row])
            rank = int(last_at_or_before(self.times, t))
            end = int(self.time_end[rank]) if rank >= 0 else 0
            if end > done:
                np.add.at(running, self.sweep_group[done:end], self.sweep_value[done:end])
                done = end
            entry, group = self._expand(item_of[first:last], groups[first:last])
            values = running[group] * np.exp((self.anchor - t) / tau)
            scale = self._causal_scale(entry, values, last - first)
            values *= (recency[first:last] * scale)[entry]
            out[row] = np.bincount(self.group_target[group], weights=values, minlength=self.n_items)

    def _score_pairs(
        self, out: np.ndarray, row_of: np.ndarray, item_of: np.ndarray, recency: np.ndarray, at: np.ndarray
    ) -> None:
        """Pair by pair (data spanning many tau): each pair reweighted for each entry's time."""
        tau = self.tau_days * 86400.0
        for row in np.unique(row_of):
            mine = row_of == row
            spans = [
                np.arange(self.pair_start[self.item_start[i]], self.pair_start[self.item_start[i + 1]])
                for i in item_of[mine]
            ]
            lengths = [len(span) for span in spans]
            pairs = np.concatenate(spans)
            weights = self.pair_weight[pairs] * causal_weights(self.pair_time[pairs], float(at[mine][0]), tau)
            segment = np.repeat(np.arange(len(spans)), lengths)
            degree = np.bincount(segment, weights=weights, minlength=len(spans))
            scale = np.power(np.maximum(degree, 1e-9), -self.normalise)
            weights = weights * np.repeat(recency[mine] * scale, lengths)
            out[row] += np.bincount(self.pair_target[pairs], weights=weights, minlength=self.n_items).astype(
                np.float32
            )


class ItemKNN(_ItemMatrixSource):
    """Item-item cosine neighbours (implicit's CosineRecommender), top-k per item, kept as a
    sparse matrix (k entries per row)."""

    name = "itemknn"

    def __init__(self, k: int = 100, half_life: float = 10.0, limit: int | None = None) -> None:
        self.k, self.half_life, self.limit = k, half_life, limit

    def fit(self, data: FitData) -> ItemKNN:
        from implicit.nearest_neighbours import CosineRecommender

        model = CosineRecommender(K=self.k)
        with warnings.catch_warnings():
            # Given CSR, implicit still converts a matrix of its own and warns about it, once
            # per fit: a line that says nothing to the user, repeated for every grid point.
            warnings.filterwarnings("ignore", message="Method expects CSR input")
            model.fit(_binary_matrix(data), show_progress=False)
        sim = sp.csr_matrix(model.similarity, dtype=np.float32)
        sim.sum_duplicates()
        # No item is its own neighbour: drop the diagonal entries.
        rows = np.repeat(np.arange(sim.shape[0]), np.diff(sim.indptr))
        sim.data[rows == sim.indices] = 0.0
        sim.eliminate_zeros()
        self.matrix, self.n_items = sim, data.n_items
        return self


class Popularity:
    """Items by how many training users have them; the cold-start fallback."""

    name = "popularity"
    time_aware = False

    def fit(self, data: FitData) -> Popularity:
        counts = np.bincount(np.asarray(data.items), minlength=data.n_items).astype(np.float32)
        self.counts = counts
        self.n_items = data.n_items
        return self

    def score(self, histories: list[np.ndarray], context: ScoringContext | None = None) -> np.ndarray:
        return np.tile(self.counts, (len(histories), 1))


class TimePopularity:
    """Items popular among *other* users around the time this user was last active.

    A user's next item tends to be something that was being watched then (new releases, a
    season's favourites). Each training interaction at or before the user's time counts
    exp(-Δt / tau) towards its item; later ones do not count.

    Like `TimedTransition`, "as of t" never reweights every training interaction per user:
    a few users binary-search each item's running sum of exp((time − T)/tau) over its
    interactions in time order; a batch sweeps the interactions once, in time order, with the
    users sorted by time. The user's own interactions are then taken out.
    """

    name = "timepop"
    time_aware = True

    def __init__(self, tau_days: float = 100.0) -> None:
        self.tau_days = tau_days

    def fit(self, data: FitData) -> TimePopularity:
        users = np.asarray(data.users)
        items = np.asarray(data.items, dtype=np.int64)
        times = np.asarray(data.timestamps, dtype=np.int64)
        self.n_items = data.n_items
        self.counts = np.bincount(items, minlength=self.n_items).astype(np.float32)
        # The user's own interactions, to take out again (fit data is ordered by user).
        self.user_start = np.searchsorted(users, np.arange(data.n_users + 1))
        self.items, self.times = items, times
        tau = self.tau_days * 86400.0
        self.unique_times = np.unique(times)
        span = float(self.unique_times[-1] - self.unique_times[0]) if len(times) else 0.0
        self.prefix = span / tau < _PREFIX_SPAN_TAUS
        if self.prefix:
            order = np.lexsort((times, items))
            by_item, when = items[order], times[order]
            self.item_start = np.searchsorted(by_item, np.arange(self.n_items + 1))
            self.anchor = float(self.unique_times[-1]) if len(times) else 0.0
            decayed = np.exp((when - self.anchor) / tau)
            rank = np.searchsorted(self.unique_times, when)
            self.running = pd.Series(decayed).groupby(by_item).cumsum().to_numpy()
            self.keys = by_item * (len(self.unique_times) + 1) + rank
            by_time = np.argsort(rank, kind="stable")  # stable: an item's interactions keep their order
            self.sweep_item, self.sweep_value = by_item[by_time].astype(np.int32), decayed[by_time]
            self.time_end = np.cumsum(np.bincount(rank, minlength=len(self.unique_times)))
        else:
            self.users = users
        return self

    def score(self, histories: list[np.ndarray], context: ScoringContext | None = None) -> np.ndarray:
        out = np.zeros((len(histories), self.n_items), dtype=np.float32)
        if context is None or context.times is None:  # no time known: plain popularity
            out[:] = self.counts
            return out
        tau = self.tau_days * 86400.0
        users = context.users
        times = np.asarray(context.times, dtype=np.float64)
        # A sweep adds every interaction up to the latest time once; binary searches cost a
        # log factor per item and user. Take the cheaper.
        interactions = len(self.items)
        sweep = self.prefix and len(times) * self.n_items * np.log2(max(interactions, 2)) > 2.0 * interactions
        running = np.zeros(self.n_items, dtype=np.float64)
        seen = np.zeros(self.n_items, dtype=np.int64)
        done = 0
        for row in np.argsort(times, kind="stable"):
            when = float(times[row])
            user = int(users[row]) if users is not None and users[row] >= 0 else None
            if not self.prefix:
                weights = causal_weights(self.times, when, tau)
                if user is not None:
                    weights = weights * (self.users != user)
                out[row] = np.bincount(self.items, weights=weights, minlength=self.n_items)
                continue
            rank = int(last_at_or_before(self.unique_times, when))
            if sweep:
                end = int(self.time_end[rank]) if rank >= 0 else 0
                if end > done:  # one by one, in the order the running sums add them
                    np.add.at(running, self.sweep_item[done:end], self.sweep_value[done:end])
                    seen += np.bincount(self.sweep_item[done:end], minlength=self.n_items)
                    done = end
                values, counted = running.copy(), seen
            else:
                item = np.arange(self.n_items, dtype=np.int64)
                keys = item * (len(self.unique_times) + 1) + rank
                found = np.searchsorted(self.keys, keys, side="right") - 1
                counted = found - self.item_start[:-1] + 1  # interactions at or before t, per item
                values = np.where(counted > 0, self.running[np.maximum(found, 0)], 0.0)
            values *= np.exp((self.anchor - when) / tau)
            if user is not None:
                own = slice(self.user_start[user], self.user_start[user + 1])
                own_weights = causal_weights(self.times[own], when, tau)
                values -= np.bincount(self.items[own], weights=own_weights, minlength=self.n_items)
                # An item only this user had by then scores exactly 0, not subtraction noise.
                own_counted = np.bincount(
                    self.items[own], weights=self.times[own] <= when, minlength=self.n_items
                )
                values[counted <= own_counted] = 0.0
                np.maximum(values, 0.0, out=values)
            out[row] = values
        return out


class _ImplicitFactors:
    """ALS / BPR from `implicit`. A training user is scored with their learned factors; a
    history from anyone else is folded in (ALS: solved exactly; BPR: mean item factors)."""

    name = "factors"
    time_aware = False
    model: Any

    def fit(self, data: FitData) -> _ImplicitFactors:
        from threadpoolctl import threadpool_limits

        # implicit runs its own threads; a multi-threaded BLAS underneath slows it down.
        with threadpool_limits(1, "blas"):
            self.model.fit(_binary_matrix(data), show_progress=False)
        self.n_items = data.n_items
        self.item_factors = np.asarray(self.model.item_factors)
        self.user_factors = np.asarray(self.model.user_factors)
        self._gram = self.item_factors.T @ self.item_factors  # ALS fold-in: once, not per history
        return self

    def _fold_in(self, history: np.ndarray) -> np.ndarray:
        return self.item_factors[history].mean(axis=0)

    def score(self, histories: list[np.ndarray], context: ScoringContext | None = None) -> np.ndarray:
        users = context.users if context is not None and context.users is not None else None
        vectors = np.zeros((len(histories), self.item_factors.shape[1]), dtype=np.float32)
        for row, history in enumerate(histories):
            if users is not None and 0 <= users[row] < len(self.user_factors):
                vectors[row] = self.user_factors[users[row]]
            elif len(history):
                vectors[row] = self._fold_in(history)
        return vectors @ self.item_factors.T


class ALS(_ImplicitFactors):
    name = "als"

    def _fold_in(self, history: np.ndarray) -> np.ndarray:
        # The exact least-squares user vector for this history (implicit's recalculate_user).
        # implicit trains with confidence alpha * r (r = 1 here), not 1 + alpha * r.
        yty = self._gram
        y = self.item_factors[np.unique(history)]
        alpha = self.model.alpha
        a = yty + y.T @ y * (alpha - 1.0) + self.model.regularization * np.eye(len(yty))
        return np.linalg.solve(a, y.sum(axis=0) * alpha)

    def __init__(
        self,
        factors: int = 64,
        iterations: int = 15,
        regularization: float = 0.05,
        alpha: float = 1.0,
        seed: int = 0,
    ) -> None:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):  # implicit warns at construction otherwise
            self.model = AlternatingLeastSquares(
                factors=factors, iterations=iterations, regularization=regularization, alpha=alpha,
                random_state=seed, num_threads=1,
            )  # fmt: skip


class BPR(_ImplicitFactors):
    name = "bpr"

    def _fold_in(self, history: np.ndarray) -> np.ndarray:
        # implicit keeps each item's bias in the last factor and 1.0 there for every user.
        vector = self.item_factors[history].mean(axis=0)
        vector[-1] = 1.0
        return vector

    def __init__(
        self, factors: int = 64, iterations: int = 100, learning_rate: float = 0.01, seed: int = 0
    ) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        self.model = BayesianPersonalizedRanking(
            factors=factors, iterations=iterations, learning_rate=learning_rate, random_state=seed,
            num_threads=1,
        )  # fmt: skip
