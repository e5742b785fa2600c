"""Tests of the one bootstrap (fewrec/eval/intervals.py): the per-user interval, the paired
p-value and the grouped and ratio intervals of the chat and conversation evaluations.

The fixed values below were computed once by the implementations this module replaced
(`metrics.bootstrap_interval`, `metrics.paired_bootstrap_p`, `chat_eval._bootstrap` at commit
100a1b5): the README publishes these intervals to the last digit, so they must not move.
"""

from __future__ import annotations

import numpy as np
import pytest

from fewrec.eval import intervals as iv
from fewrec.eval.metrics import per_user_metrics


@pytest.fixture(scope="module")
def fixed() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    values = per_user_metrics(rng.integers(0, 60, 200))["ndcg@10"]
    other = per_user_metrics(rng.integers(0, 80, 200))["ndcg@10"]
    hits = (rng.random(300) < 0.3).astype(float)
    ceiling = (rng.random(300) < 0.4).astype(float)
    groups = rng.integers(0, 40, 300)
    return {"values": values, "other": other, "hits": hits, "ceiling": ceiling, "groups": groups}


def test_the_per_user_interval_and_p_value_are_the_published_ones(fixed):
    values, other = fixed["values"], fixed["other"]
    assert iv.bootstrap_interval(values, seed=0) == (0.05449948017372149, 0.10938788370112912)
    assert iv.bootstrap_interval(values, seed=3, level=0.5) == (0.06984108755555052, 0.0892982385259746)
    assert iv.bootstrap_interval(values - other, seed=0) == (-0.008395107778519702, 0.06706559170944316)
    assert iv.paired_bootstrap_p(values, other, seed=0) == 0.123
    assert iv.paired_bootstrap_p(values, other, seed=5) == 0.1


def test_the_grouped_and_ratio_intervals_are_the_published_ones(fixed):
    hits, groups, ceiling = fixed["hits"], fixed["groups"], fixed["ceiling"]
    assert iv.grouped_interval(hits, groups, 0) == (0.22847682119205298, 0.3101379228409729)
    assert iv.grouped_interval(hits, groups, 2, ratio_to=ceiling) == (0.514690347970174, 0.796781191369606)
    # Only one unit has a ceiling hit: most resamples have no ratio and are left out.
    sparse = np.zeros(12)
    sparse[3] = 1.0
    assert iv.grouped_interval(hits[:12], np.arange(12), 1, ratio_to=sparse) == (1.0, 5.0)


def test_groups_of_one_are_the_per_user_bootstrap(fixed):
    values = fixed["values"]
    grouped = iv.bootstrap_means(values, resamples=500, seed=4, groups=np.arange(len(values)))
    np.testing.assert_array_equal(grouped, iv.bootstrap_means(values, resamples=500, seed=4))


def test_a_group_is_resampled_whole():
    # Two groups: one all hits, one all misses, of different sizes. Any resample is either one
    # group twice (mean 1 or 0) or both (mean 3/4): never a mixture of single values.
    hits = np.array([1.0, 1.0, 1.0, 0.0])
    means = iv.bootstrap_means(hits, resamples=200, seed=0, groups=np.array([5, 5, 5, 9]))
    assert set(np.unique(means)) <= {0.0, 0.75, 1.0}
    assert len(np.unique(means)) == 3


def test_no_values_or_no_defined_ratio_give_no_interval():
    assert iv.grouped_interval(np.array([]), np.array([]), 0) is None
    assert iv.grouped_interval(np.ones(3), np.arange(3), 0, ratio_to=np.zeros(3)) is None


def test_one_user_has_an_interval_of_one_point():
    assert iv.bootstrap_interval(np.array([0.5])) == (0.5, 0.5)


def test_bootstrap_interval_contains_the_mean():
    values = np.random.default_rng(1).random(300)
    low, high = iv.bootstrap_interval(values, seed=0)
    assert low < values.mean() < high
    assert high - low < 0.15
    assert iv.bootstrap_interval(values, seed=0) == (low, high)  # seeded
    narrow = iv.bootstrap_interval(values, level=0.5, seed=0)
    assert low <= narrow[0] <= narrow[1] <= high
    assert iv.bootstrap_interval(np.full(50, 0.25)) == (0.25, 0.25)


def test_paired_bootstrap_p():
    rng = np.random.default_rng(2)
    a = rng.random(400)
    assert iv.paired_bootstrap_p(a, a) == 1.0
    assert iv.paired_bootstrap_p(a + 0.2, a) < 0.01
    assert iv.paired_bootstrap_p(a, a + 0.2) < 0.01  # two-sided
    noise = a + rng.normal(0, 0.01, size=len(a))
    assert iv.paired_bootstrap_p(noise - (noise - a).mean(), a) > 0.2  # same mean, only noise
