"""Bootstrap intervals and paired p-values: the one resampling behind every interval fewrec reports.

`bootstrap_means` draws the resamples; the rest read percentiles or a p-value off them:
- `bootstrap_interval`: the mean over users (`fewrec eval`'s 95% CI);
- `paired_bootstrap_p`: the difference of two methods on the same users, two-sided;
- `grouped_interval`: units resampled in groups (a user's messages, a dialogue's turns), of
  the mean or of a ratio of two sums (the chat's hits against the API's).

Why not `scipy.stats.bootstrap`: it draws the same resamples (one `integers(0, n, (B, n))`
from the generator) and gives the same per-user interval, but it refuses a sample of one
observation (`evaluate(users=1)`, a family of one user), cannot drop the resamples whose ratio
is undefined (no API hit among the drawn users), and reads its percentiles at levels that differ
in the last bit from the chat's published 2.5 / 97.5. The published intervals must not move, so
the resampling stays here, once.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

INTERVAL_RESAMPLES = 1000
PAIRED_RESAMPLES = 2000
# The chat's and conversations' published intervals read these percentiles as written; the
# per-user interval computes its tails from `level` (2.500000000000002 at 0.95): both are kept
# as they were, so that no published interval moves in its last digit.
GROUPED_PERCENTILES = (2.5, 97.5)


def bootstrap_means(
    values: np.ndarray,
    *,
    resamples: int,
    seed: int,
    groups: np.ndarray | None = None,
    ratio_to: np.ndarray | None = None,
) -> np.ndarray:
    """The bootstrap distribution of mean(`values`), or of sum(`values`) / sum(`ratio_to`).

    Each resample draws len(units) units with replacement, a unit being one value or, with
    `groups`, all the values of one group. Resamples whose `ratio_to` sums to 0 have no ratio
    and are left out (the distribution may then be shorter than `resamples`)."""
    values = np.asarray(values)
    sizes: np.ndarray | None = None
    below = None if ratio_to is None else np.asarray(ratio_to)
    if groups is not None:
        _, codes = np.unique(groups, return_inverse=True)
        n_groups = codes.max() + 1
        sizes = np.bincount(codes, minlength=n_groups).astype(np.float64)
        below = None if below is None else np.bincount(codes, weights=below, minlength=n_groups)
        values = np.bincount(codes, weights=values, minlength=n_groups)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(values), size=(resamples, len(values)))
    if below is not None:
        denominators = below[draws].sum(axis=1)
        defined = denominators > 0
        return values[draws].sum(axis=1)[defined] / denominators[defined]
    if sizes is None:
        return values[draws].mean(axis=1)
    return values[draws].sum(axis=1) / sizes[draws].sum(axis=1)


def percentile_interval(distribution: np.ndarray, low: float, high: float) -> tuple[float, float]:
    return float(np.percentile(distribution, low)), float(np.percentile(distribution, high))


def bootstrap_interval(
    values: np.ndarray, n: int = INTERVAL_RESAMPLES, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap over users of the mean."""
    tail = (1 - level) / 2 * 100
    return percentile_interval(bootstrap_means(values, resamples=n, seed=seed), tail, 100 - tail)


def paired_bootstrap_p(a: np.ndarray, b: np.ndarray, n: int = PAIRED_RESAMPLES, seed: int = 0) -> float:
    """Two-sided p-value that mean(a) - mean(b) is 0, by a paired bootstrap over users.

    0.0 means that no resample crossed zero: report it as "p < 1/n", not as 0."""
    means = bootstrap_means(a - b, resamples=n, seed=seed)
    share = min(float((means <= 0).mean()), float((means >= 0).mean()))
    return min(1.0, 2 * share)


def grouped_interval(
    values: np.ndarray,
    groups: np.ndarray,
    seed: int,
    ratio_to: np.ndarray | None = None,
    resamples: int = INTERVAL_RESAMPLES,
) -> tuple[float, float] | None:
    """95% percentile bootstrap over groups (the values of one group resampled together) of the
    mean of `values`, or of sum(values) / sum(ratio_to); None with no values or no defined ratio."""
    if not len(values):
        return None
    distribution = bootstrap_means(values, resamples=resamples, seed=seed, groups=groups, ratio_to=ratio_to)
    if not len(distribution):
        return None
    return percentile_interval(distribution, *GROUPED_PERCENTILES)


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """The t interval of the mean of `values` (k − 1 degrees of freedom): the cross-validated
    conversations' interval over the folds' figures."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, mean
    spread = np.std(values, ddof=1) / np.sqrt(len(values))
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * spread)
    return mean - half, mean + half
