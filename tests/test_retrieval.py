"""Tests of the candidate sources (CF, factors), the Retriever's fusion and candidates, and
the `fewrec recommend` command."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from fewrec.cli import app
from fewrec.config import RetrievalSettings
from fewrec.data import FewrecError
from fewrec.eval.metrics import per_user_metrics, target_ranks
from fewrec.retrieval import FitData, Retriever, ScoringContext
from fewrec.retrieval.base import recency_weights
from fewrec.retrieval.cf import ALS, BPR, EASE, Popularity, TimedTransition, Transition
from fewrec.retrieval.fusion import EVIDENCE_DEPTH, fit_data, make_source

FAST_SOURCES = ["timed_transition", "transition", "ease"]


def tiny_fit_data(sequences: list[list[int]], n_items: int) -> FitData:
    users = np.concatenate([np.full(len(s), u) for u, s in enumerate(sequences)])
    items = np.concatenate([np.asarray(s) for s in sequences])
    times = np.concatenate([np.arange(len(s)) * 86400 for s in sequences])
    return FitData(n_users=len(sequences), n_items=n_items, users=users, items=items, timestamps=times)


def masked_source_ranks(scores: np.ndarray, history: np.ndarray) -> np.ndarray:
    """1-based rank of every item among the items not in `history` (ties by item index)."""
    masked = np.array(scores, dtype=np.float64, copy=True)
    masked[history] = -np.inf
    order = np.argsort(-masked, kind="stable")
    ranks = np.empty(len(masked), dtype=np.int64)
    ranks[order] = np.arange(1, len(masked) + 1)
    return ranks


# --------------------------------------------------------------------------- recency weights


def test_recency_weights_halve_every_half_life():
    w = recency_weights(5, half_life=1.0)
    np.testing.assert_allclose(w, [1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0])
    w = recency_weights(7, half_life=2.0)
    assert w[-1] == 1.0
    np.testing.assert_allclose(w[-3], 0.5)  # two items back
    np.testing.assert_allclose(w[-5], 0.25)


def test_recency_weights_zero_beyond_limit():
    w = recency_weights(6, half_life=10.0, limit=2)
    assert (w[:4] == 0).all()
    assert (w[4:] > 0).all() and w[-1] == 1.0
    assert (recency_weights(3, half_life=10.0, limit=5) > 0).all()  # limit longer than history
    np.testing.assert_allclose(recency_weights(4, half_life=0.0), np.ones(4))  # no decay


# --------------------------------------------------------------------------- tiny CF sources

A, B, C, D, E, F = range(6)


def test_transition_ranks_the_usual_follower_first():
    sequences = [[A, B, C], [A, B, D], [E, A, B], [A, C], [F, A, B, E]]
    source = Transition().fit(tiny_fit_data(sequences, 6))
    scores = source.score([np.array([A])])
    assert scores.shape == (1, 6)
    ranked = np.argsort(-scores[0], kind="stable")
    assert ranked[0] == B
    assert scores[0, B] > scores[0, C] > scores[0, D]
    # The most recent item dominates: after C then A, A's follower still wins.
    scores = source.score([np.array([C, A])])[0]
    assert np.argmax(np.where(np.isin(np.arange(6), [C, A]), -np.inf, scores)) == B


def test_transition_window_and_backward():
    sequences = [[A, B, C]] * 3
    only_next = Transition(window=1, backward=0.0).fit(tiny_fit_data(sequences, 6))
    s = only_next.score([np.array([A])])[0]
    assert s[B] > 0 and s[C] == 0  # C is two steps after A
    backward = Transition(window=1, backward=0.25).fit(tiny_fit_data(sequences, 6))
    s = backward.score([np.array([C])])[0]
    assert s[B] > 0 and s[A] == 0  # B precedes C, A never does within the window


def test_transition_matrix_matches_the_pair_counts():
    # The counts written out by hand: forward pairs within the window, backward ones at 0.25.
    rng = np.random.default_rng(3)
    sequences = [list(rng.choice(6, size=rng.integers(2, 6), replace=False)) for _ in range(20)]
    expected = np.zeros((6, 6))
    for seq in sequences:
        for i, first in enumerate(seq):
            for step, then in enumerate(seq[i + 1 : i + 3], start=1):
                expected[first, then] += 0.5 ** (step - 1)
                expected[then, first] += 0.25 * 0.5 ** (step - 1)
    expected /= np.power(np.maximum(expected.sum(axis=1, keepdims=True), 1e-9), 0.75)
    source = Transition(window=2, decay=0.5).fit(tiny_fit_data(sequences, 6))
    np.testing.assert_allclose(source.matrix.toarray(), expected, rtol=1e-5)


def timed_fit_data() -> FitData:
    """A is followed by B in 2000 and by C in 2015 (three users each)."""
    year_2000, year_2015 = 946_684_800, 1_420_070_400
    sequences = [[A, B], [A, B], [A, B], [A, C], [A, C], [A, C]]
    users = np.repeat(np.arange(6), 2)
    items = np.concatenate(sequences)
    start = [year_2000] * 3 + [year_2015] * 3
    times = np.concatenate([[t, t + 60] for t in start])
    return FitData(n_users=6, n_items=6, users=users, items=items, timestamps=times)


def test_timed_transition_follows_what_came_next_at_that_time():
    source = TimedTransition(tau_days=365).fit(timed_fit_data())
    early = ScoringContext(times=np.array([946_684_800 + 86400 * 30]))
    late = ScoringContext(times=np.array([1_420_070_400 + 86400 * 30]))
    history = [np.array([A])]
    scores_early = source.score(history, early)[0]
    scores_late = source.score(history, late)[0]
    assert scores_early[B] > 10 * scores_early[C]
    assert scores_late[C] > 10 * scores_late[B]
    assert scores_early[D] == scores_early[E] == 0.0
    # Without a reference time it is the plain, global transition model.
    untimed = source.score(history)[0]
    assert untimed[B] == pytest.approx(untimed[C])
    np.testing.assert_allclose(untimed, Transition().fit(timed_fit_data()).score(history)[0], rtol=1e-6)


def test_timed_transition_without_time_equals_transition_on_real_data(bundled_split):
    data = fit_data(bundled_split, "valid")
    histories = [bundled_split.history(u, "valid") for u in (0, 5, 99, 300)] + [np.array([], dtype=np.int64)]
    timed = TimedTransition(tau_days=100).fit(data).score(histories)
    plain = Transition().fit(data).score(histories)
    np.testing.assert_allclose(timed, plain, rtol=1e-4, atol=1e-7)
    assert not timed[-1].any()  # an empty history scores nothing


def test_timed_transition_rejects_a_non_positive_scale():
    with pytest.raises(ValueError, match="tau_days"):
        TimedTransition(tau_days=0)
    with pytest.raises(ValueError, match="tau_days"):
        make_source("timed_transition", RetrievalSettings(sources={"timed_transition": {"tau_days": -1}}))


def test_ease_scores_co_occurring_items_higher():
    # A and B always come together, C and D together, E alone: a history {A} must favour B.
    sequences = [[A, B], [B, A], [A, B, E], [C, D], [D, C], [C, D, F], [E], [F]]
    source = EASE(l2=1.0).fit(tiny_fit_data(sequences, 6))
    assert source.matrix.shape == (6, 6)
    assert np.allclose(np.diag(source.matrix), 0.0)
    s = source.score([np.array([A])])[0]
    assert s[B] > max(s[C], s[D], s[E], s[F])
    s = source.score([np.array([C])])[0]
    assert s[D] > max(s[A], s[B], s[E], s[F])
    # An empty history scores nothing.
    assert not source.score([np.array([], dtype=np.int64)]).any()


def test_popularity_counts_training_items():
    source = Popularity().fit(tiny_fit_data([[A, B], [B, C], [B]], 6))
    scores = source.score([np.array([A]), np.array([], dtype=np.int64)])
    assert scores.shape == (2, 6)
    np.testing.assert_array_equal(scores[0], [1, 3, 1, 0, 0, 0])
    np.testing.assert_array_equal(scores[0], scores[1])


def test_make_source_rejects_unknown_and_content_without_vectors():
    with pytest.raises(ValueError, match="unknown candidate source 'nope'"):
        make_source("nope", RetrievalSettings())
    with pytest.raises(ValueError, match="item vectors"):
        make_source("content", RetrievalSettings())


# ---------------------------------------------------------------- the Retriever on bundled data


@pytest.fixture(scope="module")
def retriever(bundled_split) -> Retriever:
    return Retriever(bundled_split, RetrievalSettings(), sources=FAST_SOURCES).fit("valid")


def test_retriever_unknown_source_raises(bundled_split):
    with pytest.raises(ValueError, match="nope"):
        Retriever(bundled_split, RetrievalSettings(), sources=["ease", "nope"])


def test_retriever_scoring_before_fit_raises(bundled_split):
    unfitted = Retriever(bundled_split, RetrievalSettings(), sources=["popularity"])
    with pytest.raises(RuntimeError, match="fit"):
        unfitted.score([np.array([0, 1])])
    with pytest.raises(RuntimeError, match="fit"):
        unfitted.candidates(np.array([0, 1]), k=5)


def test_retriever_drops_content_without_vectors(bundled_split):
    r = Retriever(bundled_split, RetrievalSettings(), sources=["content", "transition"])
    assert list(r.sources) == ["transition"]


@pytest.mark.parametrize("user", [0, 17, 413])
def test_candidates_are_unseen_ranked_and_explained(retriever, bundled_split, user):
    split = bundled_split
    history = split.history(user, "valid")
    context = retriever.context_for(np.array([user]), "valid")
    k = 25
    candidates = retriever.candidates(history, k, context)

    assert len(candidates) == k
    assert [c.rank for c in candidates] == list(range(1, k + 1))
    scores = [c.score for c in candidates]
    assert scores == sorted(scores, reverse=True)
    catalog_ids = set(split.catalog.ids.tolist())
    indices = [split.item_index(c.item_id) for c in candidates]
    assert all(c.item_id in catalog_ids for c in candidates)
    assert not set(indices) & set(history.tolist())
    assert len(set(indices)) == k
    for c in candidates:
        assert c.title == split.catalog.title(c.item_id)

    # Evidence: a source is listed exactly when it ranks the item within EVIDENCE_DEPTH among
    # the items the user could still get, with its raw score and that rank.
    for name, source in retriever.sources.items():
        raw = np.asarray(source.score([history], context)[0], dtype=np.float32)
        ranks = masked_source_ranks(raw, history)
        for c, index in zip(candidates, indices, strict=True):
            if ranks[index] <= EVIDENCE_DEPTH:
                assert name in c.sources, (name, c)
                assert c.sources[name] == pytest.approx(float(raw[index]), rel=1e-5)
                assert c.source_ranks[name] == ranks[index]
            else:
                assert name not in c.sources and name not in c.source_ranks
    # The top candidate is found by at least one source.
    assert candidates[0].sources


def test_candidates_match_fused_scores(retriever, bundled_split):
    history = bundled_split.history(3, "valid")
    context = retriever.context_for(np.array([3]), "valid")
    fused = retriever.score([history], context).fused[0].astype(np.float64)
    fused[history] = -np.inf
    expected = np.argsort(-fused, kind="stable")[:10]
    got = [bundled_split.item_index(c.item_id) for c in retriever.candidates(history, 10, context)]
    assert got == expected.tolist()


def test_empty_history_falls_back_to_popularity(retriever, bundled_split):
    counts = np.bincount(
        bundled_split.interactions_before("valid")["item"].to_numpy(),
        minlength=bundled_split.n_items,
    )
    expected = bundled_split.item_ids[np.argsort(-counts, kind="stable")[:10]].tolist()
    candidates = retriever.candidates(np.array([], dtype=np.int64), 10)
    assert [c.item_id for c in candidates] == expected
    for c in candidates:
        assert set(c.sources) == {"popularity"}
        assert c.sources["popularity"] == counts[bundled_split.item_index(c.item_id)]
    assert candidates[0].source_ranks == {"popularity": 1}


def test_allowed_mask_restricts_candidates(retriever, bundled_split):
    split = bundled_split
    history = split.history(5, "valid")
    context = retriever.context_for(np.array([5]), "valid")
    comedy = np.array(["Comedy" in g for g in split.catalog.frame["genres"]])
    got = retriever.candidates(history, 15, context, allowed=comedy)
    assert len(got) == 15
    assert all(comedy[split.item_index(c.item_id)] for c in got)

    unseen = np.setdiff1d(np.arange(split.n_items), history)
    few = np.zeros(split.n_items, dtype=bool)
    few[unseen[:3]] = True
    few[history[:2]] = True  # allowed but already seen: still excluded
    got = retriever.candidates(history, 10, context, allowed=few)
    assert sorted(split.item_index(c.item_id) for c in got) == unseen[:3].tolist()
    assert [c.rank for c in got] == [1, 2, 3]


def test_score_shapes_and_weights(retriever, bundled_split):
    users = np.array([0, 1, 2, 3])
    batch = retriever.score_split("valid", users)
    assert batch.fused.shape == (4, bundled_split.n_items)
    assert set(batch.by_source) == set(FAST_SOURCES)  # all three have non-zero default weights
    evidence = retriever.score([bundled_split.history(0, "valid")], evidence=True)
    assert set(evidence.by_source) == set(FAST_SOURCES)


def test_fused_validation_ndcg_regression_guard(retriever, bundled_split):
    fused = retriever.score_split("valid").fused
    ranks = target_ranks(fused, bundled_split.targets("valid"), bundled_split.histories("valid"))
    ndcg = per_user_metrics(ranks, (10,))["ndcg@10"].mean()
    assert ndcg >= 0.10, ndcg  # measured ≈ 0.110 with the tuned defaults


# --------------------------------------------------------------------------- ALS and BPR


@pytest.fixture(scope="module")
def valid_fit(bundled_split) -> FitData:
    return fit_data(bundled_split, "valid")


@pytest.fixture(scope="module")
def als(valid_fit) -> ALS:
    return ALS(factors=32, iterations=4, seed=0).fit(valid_fit)


@pytest.fixture(scope="module")
def bpr(valid_fit) -> BPR:
    return BPR(factors=32, iterations=30, seed=0).fit(valid_fit)


def target_auc(source, split, context_users: np.ndarray) -> float:
    """Mean share of unseen items that score below the user's validation target."""
    histories = split.histories("valid")
    scores = source.score(histories, ScoringContext(users=context_users))
    assert scores.shape == (split.n_users, split.n_items)
    assert np.isfinite(scores).all()
    targets = split.targets("valid")
    aucs = []
    for row, history in enumerate(histories):
        unseen = np.ones(split.n_items, dtype=bool)
        unseen[history] = False
        aucs.append((scores[row, unseen] < scores[row, targets[row]]).mean())
    return float(np.mean(aucs))


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_factor_sources_use_known_user_factors(request, bundled_split, name):
    source = request.getfixturevalue(name)
    users = np.array([0, 7, 42])
    histories = [bundled_split.history(int(u), "valid") for u in users]
    known = source.score(histories, ScoringContext(users=users))
    assert known.shape == (3, bundled_split.n_items)
    expected = source.user_factors[users] @ source.item_factors.T
    np.testing.assert_allclose(known, expected, rtol=1e-4, atol=1e-5)
    folded = source.score(histories, ScoringContext(users=np.full(3, -1)))
    assert np.isfinite(folded).all()
    assert not np.allclose(folded, known)
    # No context at all: folded in as well.
    np.testing.assert_allclose(source.score(histories), folded, rtol=1e-5, atol=1e-6)
    # An empty unknown history scores nothing (finite zeros).
    empty = source.score([np.array([], dtype=np.int64)], ScoringContext(users=np.array([-1])))
    assert empty.shape == (1, bundled_split.n_items) and not empty.any()


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_folded_in_histories_rank_held_out_items_high(request, bundled_split, name):
    source = request.getfixturevalue(name)
    folded_auc = target_auc(source, bundled_split, np.full(bundled_split.n_users, -1))
    known_auc = target_auc(source, bundled_split, np.arange(bundled_split.n_users))
    assert folded_auc > 0.7, folded_auc  # random would be 0.5
    assert known_auc > 0.7, known_auc
    assert abs(folded_auc - known_auc) < 0.05


def test_als_fold_in_is_implicits_least_squares(als, valid_fit):
    """A training user's own history folded in gives implicit's `recalculate_user` vector."""
    matrix = sp.csr_matrix(
        (np.ones(len(valid_fit.users), dtype=np.float32), (valid_fit.users, valid_fit.items)),
        shape=(valid_fit.n_users, valid_fit.n_items),
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    for user in (0, 5, 100):
        history = matrix[user].indices
        expected = np.asarray(als.model.recalculate_user(user, matrix[user])).ravel()
        np.testing.assert_allclose(als._fold_in(history), expected, rtol=1e-3, atol=1e-4)
        # Repeats in a history do not change the binary-confidence solution.
        np.testing.assert_allclose(
            als._fold_in(np.concatenate([history, history[:3]])), expected, rtol=1e-3, atol=1e-4
        )


def test_bpr_fold_in_keeps_the_item_bias_term(bpr, bundled_split):
    # implicit's BPR stores item biases in the last factor and 1.0 there for every user.
    assert np.allclose(bpr.user_factors[:, -1], 1.0)
    history = bundled_split.history(9, "valid")
    folded = bpr.score([history], ScoringContext(users=np.array([-1])))[0]
    factors = bpr.item_factors[history, :-1].mean(axis=0)
    expected = bpr.item_factors[:, :-1] @ factors + bpr.item_factors[:, -1]
    np.testing.assert_allclose(folded, expected, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- CLI recommend


@pytest.fixture
def cli_sources():
    """conftest's `cli_env` with the fast sources this module fits."""
    return FAST_SOURCES


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_cli_recommend_misspelled_title_lists_close_matches(cli_env):
    result = CliRunner().invoke(app, ["recommend", "--like", "Toy Stroy"])
    assert result.exit_code != 0
    assert isinstance(result.exception, FewrecError)
    message = str(result.exception)
    assert "Toy Stroy" in message
    assert "Close matches" in message and "Toy Story (1995)" in message
    assert not (cli_env / "data" / "chroma").exists()  # content was not needed


def test_cli_recommend_unknown_user_is_treated_as_new(cli_env):
    result = CliRunner().invoke(app, ["recommend", "--user", "999999", "--k", "5"])
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert "999999" in out and "treated as a new user" in out
    assert "Recommendations" in out
    assert "popularity (#1)" in out
