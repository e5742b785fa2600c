"""Real-size data on a laptop: the synthetic generator, batched scoring (the same top-k as
scoring everyone at once), sparse item-item sources (the same scores as the dense ones they
replaced), EASE declining above its item limit, and SASRec within its time budget."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from conftest import only_sources, require_module

from fewrec.config import RetrievalSettings
from fewrec.data import load_dataset
from fewrec.data.split import leave_one_out
from fewrec.data.synthetic import generate, to_dataset, write_csv
from fewrec.eval.baselines import run_baseline
from fewrec.retrieval.base import (
    FitData,
    ScoringContext,
    SourceSkipped,
    mask_seen,
    recency_weights,
    recommend,
    top_n,
)
from fewrec.retrieval.cf import EASE, ItemKNN, TimedTransition, TimePopularity, Transition, transition_pairs
from fewrec.retrieval.fusion import Retriever, fit_data

CHEAP = ["timed_transition", "transition", "ease", "timepop", "itemknn", "als"]


@pytest.fixture(scope="module")
def small_split():
    """A generated dataset, split as `fewrec eval` splits (a few hundred users and items)."""
    return leave_one_out(to_dataset(generate(400, 300, 8000, seed=3)))


# --------------------------------------------------------------------------- the generator


def test_generator_has_the_asked_shape_and_realistic_structure():
    frame = generate(2000, 1500, 40_000, seed=1)
    assert list(frame.columns) == ["user_id", "item_id", "timestamp"]
    assert len(frame) == 40_000
    assert frame["user_id"].nunique() == 2000
    assert frame["item_id"].between(1, 1500).all()
    counts = frame["item_id"].value_counts().to_numpy()
    assert counts[:15].sum() / len(frame) > 0.10  # the top 1% of items hold > 10% of interactions
    lengths = frame.groupby("user_id").size()
    assert lengths.min() >= 5 and lengths.max() > 10 * lengths.median()  # a heavy tail
    assert not frame.duplicated(["user_id", "item_id"]).any()  # no user repeats an item
    steps = frame.groupby("user_id")["timestamp"].diff().dropna()
    assert (steps > 0).all()  # strictly increasing per user
    # Sequential structure: consecutive pairs repeat far more often than chance would have them.
    same = frame["user_id"].to_numpy()[1:] == frame["user_id"].to_numpy()[:-1]
    pairs = pd.Series(
        list(zip(frame["item_id"].to_numpy()[:-1][same], frame["item_id"].to_numpy()[1:][same], strict=True))
    )
    assert pairs.value_counts().iloc[:200].sum() / len(pairs) > 0.05
    pd.testing.assert_frame_equal(frame, generate(2000, 1500, 40_000, seed=1))  # seeded


def test_generated_csv_loads_as_a_dataset(tmp_path):
    path = write_csv(generate(300, 200, 4000, seed=2), tmp_path / "interactions.csv")
    split = load_dataset(path, cache_dir=None)
    assert split.n_users > 250 and split.n_items > 100
    assert split.n_interactions <= 4000


# --------------------------------------------------------------------------- batching


def test_top_n_equals_a_full_stable_sort_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(50, 37)).astype(np.float32)  # many ties
    scores[3] = 0.0  # a row of nothing but ties
    scores[5, :30] = -np.inf
    scores[7, ::3] = -0.0  # equal to 0.0: ties broken by index, like any other
    for n in (1, 5, 10, 36, 37, 40):
        for array in (scores, scores.astype(np.float64) + 1e-12 * np.arange(37)):
            ids, values = top_n(array, n)
            expected = np.argsort(-array, axis=1, kind="stable")[:, :n]
            np.testing.assert_array_equal(ids, expected)
            np.testing.assert_array_equal(values, np.take_along_axis(array, expected, axis=1))


def test_batched_scoring_gives_the_same_top_k_as_unbatched(small_split):
    split = small_split
    users = np.arange(split.n_users)
    histories = [split.history(int(u), "test") for u in users]
    whole = Retriever(split, RetrievalSettings(batch_users=100_000), sources=CHEAP, progress=False).fit(
        "test"
    )
    batched = Retriever(split, RetrievalSettings(batch_users=7), sources=CHEAP, progress=False).fit("test")
    context = whole.context_for(users, "test")
    one, many = whole.recommend(histories, 50, context), batched.recommend(histories, 50, context)
    np.testing.assert_array_equal(one.ids, many.ids)
    # Equal to the last float32 bit, except ALS: BLAS may round a matrix product's last bit
    # differently for another number of rows.
    np.testing.assert_allclose(one.scores, many.scores, rtol=1e-6)
    # And the same as ranking everyone's dense scores at once.
    dense = mask_seen(whole.score(histories, context).fused, histories)
    np.testing.assert_array_equal(one.ids, np.argsort(-dense, axis=1, kind="stable")[:, :50])
    # Every source through the generic contract, too.
    for name, source in whole.sources.items():
        top = recommend(source, histories, 20, context, batch_users=13)
        full = mask_seen(np.asarray(source.score(histories, context), dtype=np.float32), histories)
        np.testing.assert_array_equal(top.ids, np.argsort(-full, axis=1, kind="stable")[:, :20], err_msg=name)


# --------------------------------------------------------------------------- sparse sources


def _dense_history_scores(
    matrix: np.ndarray, histories: list[np.ndarray], half_life: float, limit
) -> np.ndarray:
    """The scoring the dense sources did: recency weights @ the history's rows, row by row."""
    out = np.zeros((len(histories), matrix.shape[1]), dtype=np.float32)
    for row, history in enumerate(histories):
        if len(history):
            weights = recency_weights(len(history), half_life, limit)
            keep = weights > 0
            out[row] = weights[keep].astype(np.float32) @ matrix[np.asarray(history)[keep]]
    return out


@pytest.fixture(scope="module")
def fitted(small_split):
    data = fit_data(small_split, "test")
    users = np.arange(small_split.n_users)
    histories = [small_split.history(int(u), "test") for u in users]
    context = ScoringContext(users=users, times=small_split.reference_times(users, "test"))
    return data, histories, context


def test_sparse_transition_and_itemknn_equal_their_dense_versions(fitted):
    data, histories, _ = fitted
    sources, targets, weights, _ = transition_pairs(data, 5, 1.0, 0.25)
    dense = np.zeros((data.n_items, data.n_items), dtype=np.float32)
    np.add.at(dense, (sources, targets), weights)
    dense = dense / np.power(np.maximum(dense.sum(axis=1, keepdims=True), 1e-9), 0.75)
    transition = Transition().fit(data)
    np.testing.assert_allclose(transition.matrix.toarray(), dense, rtol=1e-5, atol=1e-8)
    expected = _dense_history_scores(dense.astype(np.float32), histories, 2.0, 20)
    got = transition.score(histories)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(
        top_n(mask_seen(got, histories), 20)[0], top_n(mask_seen(expected, histories), 20)[0]
    )

    knn = ItemKNN(k=50, half_life=10.0, limit=50).fit(data)
    from implicit.nearest_neighbours import CosineRecommender

    from fewrec.retrieval.cf import _binary_matrix

    model = CosineRecommender(K=50)
    model.fit(_binary_matrix(data), show_progress=False)
    sim = model.similarity.toarray().astype(np.float32)
    np.fill_diagonal(sim, 0.0)
    np.testing.assert_allclose(knn.matrix.toarray(), sim, rtol=1e-6)
    assert knn.matrix.getnnz() <= 50 * data.n_items  # top-k per item, kept sparse
    np.testing.assert_allclose(
        knn.score(histories), _dense_history_scores(sim, histories, 10.0, 50), rtol=1e-5, atol=1e-6
    )


def test_time_aware_sources_equal_reweighting_every_pair(fitted):
    """Running sums read by binary search (a few users) or by one sweep (a batch) give what
    reweighting each training pair for each user gave, and the same numbers as each other."""
    data, histories, context = fitted
    tau = 30 * 86400.0
    timed = TimedTransition(tau_days=30).fit(data)
    sources, targets, weights, when = transition_pairs(data, 5, 1.0, 0.25)
    rows = np.arange(0, len(histories), 17)
    batch = timed.score([histories[r] for r in rows], context.rows(rows))  # sweeps
    for out, row in zip(batch, rows, strict=True):
        t = float(context.times[row])
        expected = np.zeros(data.n_items)
        recency = recency_weights(len(histories[row]), 2.0, 20)
        for item, w in zip(histories[row][recency > 0], recency[recency > 0], strict=True):
            mine = sources == item
            pair = weights[mine] * np.where(when[mine] <= t, np.exp(-(t - when[mine]) / tau), 0.0)
            expected += np.bincount(
                targets[mine], weights=pair * w * max(pair.sum(), 1e-9) ** -0.75, minlength=data.n_items
            )
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-9)
        alone = timed.score([histories[row]], context.rows(slice(row, row + 1)))[0]  # binary search
        np.testing.assert_array_equal(alone, out)

    timepop = TimePopularity(tau_days=30).fit(data)
    got = timepop.score(histories[:40], context.rows(slice(0, 40)))  # sweeps
    for row in range(40):
        t = float(context.times[row])
        others = data.users != context.users[row]
        w = np.where(data.timestamps <= t, np.exp(-(t - data.timestamps) / tau), 0.0) * others
        expected = np.bincount(data.items, weights=w, minlength=data.n_items)
        np.testing.assert_allclose(got[row], expected, rtol=1e-6, atol=1e-12)
        none_by_others = np.bincount(data.items[others & (data.timestamps <= t)], minlength=data.n_items) == 0
        assert (got[row][none_by_others] == 0).all()  # exactly 0, not subtraction noise
        alone = timepop.score([histories[row]], context.rows(slice(row, row + 1)))[0]  # binary search
        np.testing.assert_array_equal(alone, got[row])


# --------------------------------------------------------------------------- EASE's limit


def test_ease_above_its_item_limit_is_skipped_with_a_note(small_split, caplog):
    limit = small_split.n_items - 1
    with pytest.raises(SourceSkipped, match=r"retrieval\.sources\.ease\.max_items"):
        EASE(max_items=limit).fit(fit_data(small_split, "test"))
    settings = RetrievalSettings(sources=only_sources("ease", "transition")).with_source(
        "ease", max_items=limit
    )
    with caplog.at_level(logging.WARNING, logger="fewrec.retrieval"):
        retriever = Retriever(small_split, settings, progress=False).fit("test")
    assert list(retriever.sources) == ["transition"]
    (note,) = retriever.notes
    assert f"{small_split.n_items:,} items > retrieval.sources.ease.max_items = {limit:,}" in note
    assert "left out of the fusion" in note and note in caplog.text
    candidates = retriever.candidates(small_split.history(0, "test"), 10)
    assert len(candidates) == 10 and all("ease" not in c.sources for c in candidates)
    # The EASE baseline keeps the same limit: it comes back skipped, with the reason.
    result = run_baseline("ease", small_split, settings, "test", np.arange(5))
    assert result.skipped is not None and "ease.max_items" in result.skipped


def test_an_evaluation_with_ease_over_its_limit_runs_and_says_why(small_split, tmp_path):
    from fewrec.config import Settings
    from fewrec.eval.runner import evaluate

    retrieval = RetrievalSettings(
        sources=only_sources(
            "ease", "transition", ease={"weight": 1.0, "max_items": small_split.n_items - 1},
            transition={"weight": 1.0},
        ),
        batch_users=64,
    )  # fmt: skip
    report = evaluate(
        small_split, Settings(data_dir=tmp_path, retrieval=retrieval), baselines=["ease", "popularity"]
    )
    names = [m.name for m in report.methods]
    assert names == ["fewrec retrieval (fused)", "source: transition", "popularity"]
    assert any(n.startswith("ease skipped:") for n in report.notes)
    assert any(n.startswith("baseline ease: ease skipped:") for n in report.notes)
    assert report.method("fewrec retrieval (fused)").metrics["ndcg@10"] > 0


def test_ease_at_or_below_its_limit_is_the_closed_form(fitted):
    data, _, _ = fitted
    source = EASE(l2=50.0, half_life=1.0, limit=50, max_items=data.n_items).fit(data)
    from fewrec.retrieval.cf import _binary_matrix

    x = _binary_matrix(data)
    gram = (x.T @ x).toarray().astype(np.float64) + 50.0 * np.eye(data.n_items)
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    np.testing.assert_allclose(source.matrix, b.astype(np.float32), rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- SASRec's budget


def _patterned(n_users: int = 80, n_items: int = 12, length: int = 12) -> FitData:
    rng = np.random.default_rng(0)
    starts = rng.integers(0, n_items, n_users)
    items = ((starts[:, None] + np.arange(length)[None, :]) % n_items).ravel()
    users = np.repeat(np.arange(n_users), length)
    return FitData(
        n_users=n_users, n_items=n_items, users=users, items=items, timestamps=np.arange(len(users))
    )


def test_sasrec_stops_at_its_budget_says_so_and_shows_progress(tmp_path, capsys):
    require_module("torch", "torch (the 'embed' extra)")
    from fewrec.retrieval.sequential import SASRec

    notes: list[str] = []
    model = SASRec(
        dim=16, max_len=8, epochs=10_000, batch_size=8, negatives=8, threads=1, cache_dir=tmp_path,
        budget_s=1.0, patience=0, notify=notes.append, progress=True,
    )  # fmt: skip
    model.fit(_patterned())
    (run,) = model.runs
    assert run["stopped"] == "budget" and run["epochs_trained"] < 10_000
    assert notes[0].startswith("SASRec: training on 960 interactions (cpu), up to 10000 epochs, at most 1 s")
    assert notes[1].startswith("SASRec: stopped after") and "depends on the machine's load" in notes[1]
    assert "SASRec seed 0, epoch" in capsys.readouterr().err  # the progress bar
    assert model.score([np.array([3, 4, 5])]).shape == (1, 12)
    # A later fit with the same budget reuses the cut weights (and says so) ...
    notes.clear()
    again = SASRec(
        dim=16, max_len=8, epochs=10_000, batch_size=8, negatives=8, threads=1, cache_dir=tmp_path,
        budget_s=1.0, patience=0, notify=notes.append, progress=False,
    ).fit(_patterned())  # fmt: skip
    assert again.runs[0]["stopped"] == "budget" and "cut by the time budget" in notes[0]
    # ... another budget is another model.
    assert SASRec(budget_s=5.0, patience=0)._key(_patterned(), 0) != model._key(_patterned(), 0)


def test_sasrec_stops_on_a_loss_plateau_and_skips_large_data_without_a_gpu(tmp_path, monkeypatch):
    torch = require_module("torch", "torch (the 'embed' extra)")
    from fewrec.retrieval.sequential import SASRec, plateau_epoch

    assert plateau_epoch([5.0, 4.0, 3.99, 3.995, 3.99], patience=3, min_delta=0.01) == 5
    assert plateau_epoch([5.0, 4.0, 3.0, 2.0], patience=3, min_delta=0.01) is None
    assert plateau_epoch([5.0, 5.0, 5.0, 5.0], patience=0, min_delta=0.01) is None
    model = SASRec(dim=16, max_len=8, epochs=200, batch_size=32, negatives=8, threads=1, cache_dir=tmp_path,
                   patience=2, min_delta=0.5, progress=False, notify=lambda _: None)  # fmt: skip
    model.fit(_patterned())
    assert model.runs[0]["stopped"] == "plateau" and model.runs[0]["epochs_trained"] == 3

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(
        SourceSkipped, match=r"retrieval\.sources\.sasrec\.max_interactions = 100 and no CUDA GPU"
    ):
        SASRec(max_interactions=100, progress=False).fit(_patterned())


def test_sasrec_stops_on_validation_of_held_out_training_items_and_keeps_the_best_epoch(tmp_path):
    require_module("torch", "torch (the 'embed' extra)")
    from fewrec.retrieval.sequential import SASRec, _hold_out_last, _validation_ndcg

    data = _patterned()
    sequences = [data.items[data.users == u] + 1 for u in range(data.n_users)]
    training, (histories, targets) = _hold_out_last(sequences, 20)
    assert len(histories) == len(targets) == 20
    held = [row for row in range(data.n_users) if len(training[row]) < len(sequences[row])]
    assert len(held) == 20  # one item fewer for each validation user, the rest untouched
    for row, history, target in zip(held, histories, targets, strict=True):
        assert np.array_equal(training[row], sequences[row][:-1]) and np.array_equal(history, training[row])
        assert target == sequences[row][-1]  # their last *training* item: before any split target

    notes: list[str] = []
    model = SASRec(
        dim=16, max_len=8, epochs=60, batch_size=32, negatives=8, threads=1, cache_dir=tmp_path,
        patience=2, min_delta=0.0, validation_users=20, progress=False, notify=notes.append,
    )  # fmt: skip
    model.fit(data)
    (run,) = model.runs
    curve = run["validation_ndcg"]
    assert run["stopped"] == "plateau" and len(curve) < 60 and "validation plateau" in notes[-1]
    assert run["best_epoch"] == int(np.argmax(curve)) + 1 and max(curve) > 0.5  # the cycle is learnt
    # The weights kept are the best epoch's, not the last one's.
    assert _validation_ndcg(model.nets[0], histories, targets, 8, "cpu") == pytest.approx(max(curve))
    assert not model.nets[0].training
    # A loss-stopped model is another cache entry: neither stands in for the other.
    loss_stopped = SASRec(dim=16, max_len=8, epochs=60, batch_size=32, negatives=8, patience=2, min_delta=0.0,
                          validation_users=0)  # fmt: skip
    assert loss_stopped._key(data, 0) != model._key(data, 0)


def test_the_facade_path_still_notes_that_sasrec_trains(small_split, tmp_path, caplog):
    """`Recommender` builds its Retriever with progress=False: the note still reaches the log."""
    require_module("torch", "torch (the 'embed' extra)")
    settings = RetrievalSettings(sources=only_sources("sasrec")).with_source(
        "sasrec", epochs=1, dim=16, negatives=8, max_len=8
    )
    with caplog.at_level(logging.WARNING, logger="fewrec.retrieval"):
        retriever = Retriever(small_split, settings, model_dir=tmp_path, progress=False).fit("test")
    assert any(n.startswith("SASRec: training on") for n in retriever.notes)
    assert "SASRec: training on" in caplog.text
