"""SASRec's batches: cut by length where mixed batches would be mostly padding (data like Amazon's),
mixed where they would not (the bundled MovieLens, whose published weights stay), the same
weights for the same data either way; a longer fit goes on from a shorter one to the same bits;
and one evaluation trains each SASRec model once."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_module

from fewrec.config import RetrievalSettings, Settings, source_names
from fewrec.data.split import leave_one_out
from fewrec.data.synthetic import generate, to_dataset
from fewrec.retrieval import sequential
from fewrec.retrieval.base import FitData
from fewrec.retrieval.fusion import fit_data
from fewrec.retrieval.sequential import BatchPlan, SASRec, batch_plan, by_length, epoch_batches

torch = require_module("torch", "torch (the 'embed' extra; the 'sasrec' source needs it)")


def _window_lengths(data: FitData, max_len: int) -> np.ndarray:
    """The lengths of the windows SASRec trains on: each history cut from its end."""
    _, counts = np.unique(data.users, return_counts=True)
    window = max_len + 1
    return np.array([min(window, end) for n in counts for end in range(n, 1, -(window - 1))])


def test_batches_are_cut_by_length_only_where_mixed_ones_would_be_mostly_padding(bundled_split):
    assert by_length(np.array([51, 3, 2, 2, 4, 5]))  # a few long windows among many short ones
    assert not by_length(np.array([51, 51, 40, 30, 12]))
    assert not by_length(np.array([], dtype=np.int64))
    # The bundled data keeps mixed batches: the weights behind the published figures.
    for split_name in ("all", "test", "valid"):
        assert not by_length(_window_lengths(fit_data(bundled_split, split_name), 50))
    short = leave_one_out(to_dataset(generate(3000, 800, 24_000, seed=0), "short"))
    assert by_length(_window_lengths(fit_data(short, "test"), 50))


def test_an_epoch_by_length_covers_every_window_once_with_little_padding():
    rng = np.random.default_rng(0)
    lengths = np.where(rng.random(5000) < 0.03, 51, rng.integers(2, 10, 5000))
    order = np.random.default_rng(1).permutation(len(lengths))
    batches = epoch_batches(order, 128, np.random.default_rng(2), lengths)
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(len(lengths)))
    assert all(len(b) <= 128 for b in batches)
    padded = sum(int(lengths[b].max()) * len(b) for b in batches)
    mixed = sum(int(lengths[b].max()) * len(b) for b in epoch_batches(order, 128, rng))
    assert padded < 0.3 * mixed  # the padding, not the windows, is what goes
    again = epoch_batches(order, 128, np.random.default_rng(2), lengths)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))


def test_a_batch_by_length_holds_at_most_the_items_of_batch_size_mean_windows(bundled_split):
    rng = np.random.default_rng(0)
    lengths = np.where(rng.random(5000) < 0.03, 51, rng.integers(2, 10, 5000))
    plan = batch_plan(lengths, 128)
    assert plan == BatchPlan(True, int(np.ceil(128 * lengths.mean())), numpy_dropout=True, fused_adam=True)
    order = np.random.default_rng(1).permutation(len(lengths))
    batches = epoch_batches(order, 128, np.random.default_rng(2), lengths, cap=plan.cap)
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(len(lengths)))
    assert all(len(b) * int(lengths[b].max()) <= plan.cap or len(b) == 1 for b in batches)
    assert all(len(b) <= 128 for b in batches)
    assert min(len(b) for b in batches) < 128 // 2  # the full windows' batches were cut
    # A window longer than the cap still trains, alone in its batch.
    alone = epoch_batches(np.arange(3), 128, np.random.default_rng(0), np.array([2, 60, 2]), cap=50)
    assert sorted(len(b) for b in alone) == [1, 2]
    # The bundled data keeps the plan of the published weights: mixed, torch's dropout, AdamW as before.
    for split_name in ("all", "test", "valid"):
        assert batch_plan(_window_lengths(fit_data(bundled_split, split_name), 50), 128) == BatchPlan(False)


def test_numpy_dropout_is_lent_to_the_net_for_training_only():
    """The dropout modules draw from the run's numpy generator while an epoch trains and are the
    net's own again after: its state and its modules' classes are what they were."""
    net = sequential._build_net(20, 8, 6, 2, 1, 0.5)
    before = [(name, type(m)) for name, m in net.named_modules()]
    rng = np.random.default_rng(0)
    x = torch.ones(4, 6, 8)
    with sequential._dropout_from(net, rng):
        dropouts = [m for m in net.modules() if type(m).__name__ == "NumpyDropout"]
        assert len(dropouts) == 1 + 3 * 2  # the embeddings', and three in each layer
        net.train()
        kept = dropouts[0](x)
        assert set(torch.unique(kept).tolist()) == {0.0, 2.0}  # kept values scaled by 1 / (1 - p)
        assert 0.4 < float((kept > 0).float().mean()) < 0.6
        again = sequential._numpy_dropout()(0.5, np.random.default_rng(0))(x)
        assert torch.equal(kept, again)  # the generator alone decides the mask
        net.eval()
        assert torch.equal(dropouts[0](x), x)
    assert [(name, type(m)) for name, m in net.named_modules()] == before
    with sequential._dropout_from(net, None):  # mixed batches: nothing is lent
        assert [(name, type(m)) for name, m in net.named_modules()] == before


def test_mixed_batches_do_not_read_the_generator():
    """What keeps the bundled weights bit for bit: the mixed path draws what it drew before."""
    rng = np.random.default_rng(3)
    state = rng.bit_generator.state
    batches = epoch_batches(np.arange(300), 128, rng)
    assert rng.bit_generator.state == state
    assert [len(b) for b in batches] == [128, 128, 44]
    assert np.array_equal(np.concatenate(batches), np.arange(300))


def _short_histories(n_users: int = 200, n_items: int = 30) -> FitData:
    """Mostly 3-item histories and a few long ones: windows by length."""
    rng = np.random.default_rng(0)
    lengths = np.where(np.arange(n_users) % 25 == 0, 20, 3)
    users = np.repeat(np.arange(n_users), lengths)
    items = np.concatenate([rng.choice(n_items, n, replace=False) for n in lengths])
    return FitData(
        n_users=n_users, n_items=n_items, users=users, items=items, timestamps=np.arange(len(users))
    )


def test_training_by_length_is_repeatable_to_the_bit(tmp_path):
    data = _short_histories()
    models = [
        SASRec(dim=16, max_len=8, epochs=3, batch_size=16, negatives=8, threads=1, progress=False).fit(data)
        for _ in range(2)
    ]
    first, second = (m.nets[0].state_dict() for m in models)
    assert models[0].runs[0]["batches"] == "by length"
    assert models[0].runs[0]["losses"] == models[1].runs[0]["losses"]
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_on_mostly_short_windows_early_stopping_reads_held_out_users_not_the_loss(monkeypatch):
    """By default (validation_users None) the training loss's rule holds where batches are mixed
    (the bundled data's published weights); where windows are mostly short, held-out users'
    NDCG@10 decides. 0 asks for the loss, and a number for that many users, on any data."""
    monkeypatch.setattr(sequential, "SHORT_WINDOW_VALIDATION_USERS", 50)
    params = dict(dim=16, max_len=8, epochs=2, batch_size=16, negatives=8, threads=1, progress=False)
    short = SASRec(**params).fit(_short_histories()).runs[0]
    assert short["batches"] == "by length"
    assert short["validation_users"] == 50 and len(short["validation_ndcg"]) == 2
    on_the_loss = SASRec(**params, validation_users=0).fit(_short_histories()).runs[0]
    assert on_the_loss["batches"] == "by length" and "validation_ndcg" not in on_the_loss
    rng = np.random.default_rng(0)  # every history 12 items: full windows, mixed batches
    users = np.repeat(np.arange(60), 12)
    items = np.concatenate([rng.choice(30, 12, replace=False) for _ in range(60)])
    long = FitData(n_users=60, n_items=30, users=users, items=items, timestamps=np.arange(len(users)))
    mixed = SASRec(**params).fit(long).runs[0]
    assert mixed["batches"] == "mixed" and "validation_ndcg" not in mixed
    chosen = SASRec(**params, validation_users=20).fit(long).runs[0]  # asked for: read anywhere
    assert chosen["validation_users"] == 20


def _count_epochs(monkeypatch) -> list[int]:
    """Epochs trained, one entry per `_train` call (a fit the model cache answered has none)."""
    trained: list[int] = []
    train, train_epoch = SASRec._train, SASRec._train_epoch

    def counting_train(self, *args, **kwargs):
        trained.append(0)
        return train(self, *args, **kwargs)

    def counting_epoch(self, run):
        trained[-1] += 1
        return train_epoch(self, run)

    monkeypatch.setattr(SASRec, "_train", counting_train)
    monkeypatch.setattr(SASRec, "_train_epoch", counting_epoch)
    return trained


@pytest.mark.parametrize("validation_users", [0, 20])
def test_a_longer_fit_goes_on_from_a_shorter_one_to_the_same_bits(monkeypatch, validation_users):
    monkeypatch.setattr(sequential, "_PAUSED", {})
    data = _short_histories()
    params = dict(dim=16, max_len=8, batch_size=16, negatives=8, threads=1, progress=False,
                  patience=0, validation_users=validation_users)  # fmt: skip
    straight = SASRec(epochs=4, **params).fit(data)
    sequential._PAUSED.clear()
    trained = _count_epochs(monkeypatch)
    fresh_short = SASRec(epochs=2, **params).fit(data)
    sequential._PAUSED.clear()
    short = SASRec(epochs=2, **params).fit(data)
    torch.rand(7)  # whatever draws from torch's generator in between is not what dropout reads
    longer = SASRec(epochs=4, **params).fit(data)
    assert trained == [2, 2, 2]  # the longer fit trained only the epochs the shorter had not
    assert longer.runs[0]["losses"] == straight.runs[0]["losses"]
    assert longer.runs[0]["epochs_trained"] == 4
    for a, b in ((longer, straight), (short, fresh_short)):  # the shorter fit's net is its own
        first, second = a.nets[0].state_dict(), b.nets[0].state_dict()
        assert all(torch.equal(first[name], second[name]) for name in first)
    again = SASRec(epochs=3, **params).fit(data)  # fewer epochs than the paused run: from the start
    assert trained[-1] == 3 and again.runs[0]["epochs_trained"] == 3


def test_one_evaluation_trains_each_sasrec_model_once(tmp_path, monkeypatch):
    """The SASRec source and the SASRec baseline's refit for the test split are one model (the
    baseline reads the source's from the model cache), and the baseline's grid trains the
    validation split's model once, going on from 1 epoch to 2."""
    from fewrec.eval.runner import evaluate

    monkeypatch.setattr(sequential, "_PAUSED", {})
    trained = _count_epochs(monkeypatch)
    split = leave_one_out(to_dataset(generate(150, 40, 1500, seed=0), "tiny"))
    small = {"dim": 8, "max_len": 8, "negatives": 8, "epochs": 2, "grid": [{"epochs": 1}, {"epochs": 2}]}
    off = {name: {"enabled": False} for name in source_names() if name != "sasrec"}
    settings = Settings(data_dir=tmp_path, retrieval=RetrievalSettings(sources={**off, "sasrec": small}))
    report = evaluate(split, settings, baselines=["sasrec"], stages=["retrieval"], history_cuts=[])
    chosen = report.method("sasrec").params["sasrec_epochs"]
    # The source (2 epochs on the test split's training data); the grid on the validation
    # split's: 1 epoch, then 1 more; the refit on the test split's: the source's model if 2
    # epochs were chosen, else 1 epoch.
    assert trained == ([2, 1, 1] if chosen == 2 else [2, 1, 1, 1])
    if chosen == 2:
        assert report.method("sasrec").metrics == report.method("source: sasrec").metrics
