"""No number may see the future or a held-out item.

- Every time-aware source is causal: other users' interactions dated after a row's reference
  time never change that row's scores (a property test over generated future interactions).
- Every other source ignores reference times altogether (so it cannot leak through them).
- Fitting, tuning, baselines and demonstrations never read a test item: scrambling the test
  targets changes nothing before scoring.
- The temporal protocol never fits on, or shows as history, anything at or after its cut.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from conftest import only_sources
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fewrec.config import RetrievalSettings
from fewrec.data import load_raw
from fewrec.data.models import Catalog, Dataset, Interactions, build_catalog
from fewrec.data.split import UNKNOWN_ITEM, SplitSettings, temporal_split
from fewrec.eval.baselines import run_baseline
from fewrec.eval.metrics import masked_target_ranks
from fewrec.fit.tune import validation_queries
from fewrec.prompts.demos import build_demonstrations
from fewrec.retrieval import FitData, Retriever, ScoringContext
from fewrec.retrieval.fusion import SOURCE_NAMES, make_source

N_USERS, N_ITEMS = 12, 15
DAY = 86_400
START = 1_500_000_000
REFERENCE = START + 40 * DAY  # the scored user's "now"


def past_data() -> FitData:
    """Twelve users, each with eight interactions between START and REFERENCE."""
    rng = np.random.default_rng(7)
    users = np.repeat(np.arange(N_USERS), 8)
    items = rng.integers(0, N_ITEMS, size=len(users))
    times = START + np.sort(rng.integers(0, 40 * DAY, size=(N_USERS, 8)), axis=1).ravel()
    return FitData(n_users=N_USERS, n_items=N_ITEMS, users=users, items=items, timestamps=times)


def with_future(data: FitData, future: list[tuple[int, int, int]]) -> FitData:
    """`data` plus (user, item, seconds after REFERENCE) events of users other than user 0,
    kept in (user, time) order as the splits keep them."""
    users = np.concatenate([data.users, [u for u, _, _ in future]])
    items = np.concatenate([data.items, [i for _, i, _ in future]])
    times = np.concatenate([data.timestamps, [REFERENCE + s for _, _, s in future]])
    order = np.lexsort((times, users))
    return FitData(
        n_users=data.n_users, n_items=data.n_items, users=users[order], items=items[order],
        timestamps=times[order],
    )  # fmt: skip


def build(name: str):
    settings = RetrievalSettings(
        sources={"sasrec": {"epochs": 1, "dim": 16, "negatives": 5}, "als": {"iterations": 3},
                 "bpr": {"iterations": 3}, "itemknn": {"k": 5}}
    )  # fmt: skip
    vectors = np.random.default_rng(1).normal(size=(N_ITEMS, 8)).astype(np.float32)
    return make_source(name, settings, item_vectors=vectors, progress=False)


HISTORY = [np.array([3, 1, 4, 1, 5], dtype=np.int64)]
CONTEXT = ScoringContext(users=np.array([0]), times=np.array([REFERENCE]))


def test_the_time_aware_sources_are_the_ones_that_read_time():
    aware = {name for name in SOURCE_NAMES if build(name).time_aware}
    assert aware == {"timed_transition", "timepop"}


@pytest.mark.parametrize("name", [n for n in SOURCE_NAMES if n not in ("timed_transition", "timepop")])
def test_sources_that_are_not_time_aware_ignore_reference_times(name):
    source = build(name).fit(past_data())
    assert source.time_aware is False
    now = source.score(HISTORY, CONTEXT)
    later = source.score(
        HISTORY, ScoringContext(users=np.array([0]), times=np.array([REFERENCE + 900 * DAY]))
    )
    np.testing.assert_array_equal(now, later)


future_events = st.lists(
    st.tuples(
        st.integers(1, N_USERS - 1),  # never user 0, the one being scored
        st.integers(0, N_ITEMS - 1),
        st.integers(0, 400 * DAY),  # at or after the reference time
    ),
    min_size=1,
    max_size=30,
)


@pytest.mark.parametrize("name", ["timed_transition", "timepop"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(future=future_events)
def test_time_aware_sources_never_see_later_interactions(name, future):
    """A reference time t counts interactions at or before t: events exactly at t count, so the
    generated future starts one second after it."""
    future = [(u, i, max(s, 1)) for u, i, s in future]
    before = build(name).fit(past_data()).score(HISTORY, CONTEXT)
    after = build(name).fit(with_future(past_data(), future)).score(HISTORY, CONTEXT)
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", ["timed_transition", "timepop"])
def test_time_aware_sources_do_use_the_past(name):
    """The property above must not hold by accident (a source that ignores everything)."""
    data = past_data()
    earlier = [(u, i, -s) for u, i, s in [(3, 9, 5 * DAY), (4, 9, 4 * DAY), (5, 3, 3 * DAY), (6, 9, DAY)]]
    before = build(name).fit(data).score(HISTORY, CONTEXT)
    after = build(name).fit(with_future(data, earlier)).score(HISTORY, CONTEXT)
    assert not np.allclose(after, before)


# --------------------------------------------------------------------------- held-out items


@pytest.fixture(scope="module")
def scrambled(bundled_split):
    """The bundled split with every test target replaced by a random item."""
    rng = np.random.default_rng(3)
    test_item = rng.integers(0, bundled_split.n_items, size=bundled_split.n_users)
    assert (test_item != bundled_split.test_item).mean() > 0.99
    return dataclasses.replace(bundled_split, test_item=test_item)


WEIGHTS = {
    "timed_transition": 1.0,
    "transition": 0.5,
    "ease": 0.5,
    "timepop": 0.2,
    "itemknn": 0.1,
    "als": 0.2,
}
CHEAP = RetrievalSettings(
    sources=only_sources(*WEIGHTS, **{name: {"weight": weight} for name, weight in WEIGHTS.items()})
    | {"als": {"weight": 0.2, "iterations": 3}}
)


def test_fitting_for_the_test_split_never_reads_a_test_item(bundled_split, scrambled):
    users = np.arange(0, bundled_split.n_users, 7)
    scores = []
    for split in (bundled_split, scrambled):
        retriever = Retriever(split, CHEAP, progress=False).fit("test")
        batch = retriever.score_split("test", users)
        scores.append([batch.fused, *batch.by_source.values()])
    for a, b in zip(*scores, strict=True):
        np.testing.assert_array_equal(a, b)


def test_tuning_never_reads_a_test_item(bundled_split, scrambled):
    real = validation_queries(bundled_split, CHEAP, pseudo=1, progress=False)
    fake = validation_queries(scrambled, CHEAP, pseudo=1, progress=False)
    for a, b in zip(real, fake, strict=True):
        np.testing.assert_array_equal(a.targets, b.targets)
        for name in a.scores:
            np.testing.assert_array_equal(a.scores[name], b.scores[name])


@pytest.mark.parametrize("name", ["popularity", "markov"])
def test_baselines_never_read_a_test_item(bundled_split, scrambled, name):
    users = np.arange(0, bundled_split.n_users, 5)
    real = run_baseline(name, bundled_split, RetrievalSettings(), "test", users)
    fake = run_baseline(name, scrambled, RetrievalSettings(), "test", users)
    assert real.params == fake.params
    assert real.validation_ndcg == fake.validation_ndcg
    np.testing.assert_array_equal(real.scores, fake.scores)


def test_demonstrations_never_read_a_held_out_item(bundled_split, scrambled):
    assert build_demonstrations(bundled_split, 5) == build_demonstrations(scrambled, 5)


# --------------------------------------------------------------------------- temporal protocol


@pytest.fixture(scope="module")
def bundled_raw():
    return load_raw()


@pytest.fixture(scope="module")
def temporal(bundled_raw):
    return temporal_split(bundled_raw, SplitSettings(protocol="temporal"))


def test_temporal_split_fits_and_shows_only_the_past(temporal):
    for name, cut in (("valid", temporal.valid_cut), ("test", temporal.test_cut)):
        assert (temporal.interactions_before(name)["timestamp"] < cut).all()
        users = temporal.eval_users(name)
        assert len(users) > 0
        targets, when = (
            (temporal.test_item, temporal.test_time)
            if name == "test"
            else (temporal.valid_item, temporal.valid_time)
        )
        for user in users[:50]:
            user = int(user)
            events = temporal.events[temporal.events["user"] == user]
            known = events[events["timestamp"] < cut]
            np.testing.assert_array_equal(temporal.history(user, name), known["item"].to_numpy())
            every = temporal.interactions[temporal.interactions["user"] == user]
            after = every[every["timestamp"] >= cut]
            assert when[user] == after["timestamp"].min()
            assert targets[user] == UNKNOWN_ITEM or targets[user] in set(
                after.loc[after["timestamp"] == when[user], "item"]
            )
        np.testing.assert_array_equal(temporal.reference_times(users, name), np.full(len(users), cut))


def _with_future(raw, cut: int, users: list, item: int = 10**9, title: str = "Brand New (2099)"):
    """`raw` plus an interaction with a new item, one second after `cut`, for each of `users`."""
    frame = raw.interactions.frame
    extra = pd.DataFrame({"user_id": users, "item_id": item, "rating": 5.0, "timestamp": cut + 1})
    catalog = pd.concat(
        [raw.catalog.frame, build_catalog(pd.Series([item]), pd.Series([title])).frame], ignore_index=True
    )
    return Dataset(raw.name, Catalog(catalog), Interactions(pd.concat([frame, extra], ignore_index=True)))


def test_the_temporal_vocabulary_and_core_filter_come_from_before_the_cut(bundled_raw, temporal):
    """Make a new item the most watched film after the cut, the first film after the cut of
    many users: the users, items and histories do not change; those users' targets are that
    item, which did not exist at the cut, and count as misses."""
    users = temporal.user_ids[temporal.eval_users("test")][:20].tolist()
    # The same cuts (a quantile cut would move with the added interactions).
    cuts = SplitSettings(
        protocol="temporal", test_cut=str(temporal.test_cut), valid_cut=str(temporal.valid_cut)
    )
    future = temporal_split(_with_future(bundled_raw, temporal.test_cut, users), cuts)
    np.testing.assert_array_equal(future.item_ids, temporal.item_ids)
    np.testing.assert_array_equal(future.user_ids, temporal.user_ids)
    pd.testing.assert_frame_equal(future.interactions_before("test"), temporal.interactions_before("test"))
    rows = [future.user_index(u) for u in users]
    assert (future.test_item[rows] == UNKNOWN_ITEM).all()
    assert set(rows) <= set(future.eval_users("test").tolist())  # still evaluated: as misses
    ranked = run_baseline("popularity", future, RetrievalSettings(), "test", np.array(rows)).retriever
    assert ranked is not None
    scores = ranked.score_split("test", np.array(rows)).fused
    ranks = masked_target_ranks(scores, future.test_item[rows])
    assert (ranks == future.n_items).all()


def test_temporal_scores_do_not_change_when_the_future_does(temporal):
    """Replace every interaction after the test cut with random items: the test fit and the
    users' histories are untouched (only the targets move)."""
    rng = np.random.default_rng(5)
    events = temporal.events.copy()
    later = events["timestamp"].to_numpy() >= temporal.test_cut
    events.loc[later, "item"] = rng.integers(0, temporal.n_items, size=int(later.sum()))
    changed = dataclasses.replace(temporal, events=events)
    users = temporal.eval_users("test")
    scores = [
        Retriever(split, CHEAP, progress=False).fit("test").score_split("test", users).fused
        for split in (temporal, changed)
    ]
    np.testing.assert_array_equal(scores[0], scores[1])
