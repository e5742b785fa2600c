"""SASRec source: it learns an obvious sequential pattern, and its weights are cached on disk."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_module

from fewrec.retrieval.base import FitData
from fewrec.retrieval.sequential import SASRec

torch = require_module("torch", "torch (the 'embed' extra; the 'sasrec' source needs it)")


def _patterned_data(n_users: int = 60, n_items: int = 12, length: int = 12) -> FitData:
    """Every user walks the items in a cycle 0→1→2→…, starting at a random item."""
    rng = np.random.default_rng(0)
    users, items = [], []
    for user in range(n_users):
        start = int(rng.integers(0, n_items))
        users += [user] * length
        items += [(start + step) % n_items for step in range(length)]
    return FitData(
        n_users=n_users,
        n_items=n_items,
        users=np.array(users),
        items=np.array(items),
        timestamps=np.arange(len(users)),
    )


def _small(tmp_path, **kwargs) -> SASRec:
    params = dict(dim=16, max_len=8, epochs=15, batch_size=32, negatives=8, threads=1)
    return SASRec(**{**params, **kwargs}, cache_dir=tmp_path, progress=False)


def test_sasrec_learns_the_next_item(tmp_path):
    data = _patterned_data()
    model = _small(tmp_path).fit(data)
    histories = [np.array([3, 4, 5]), np.array([10, 11]), np.array([], dtype=np.int64)]
    scores = model.score(histories)
    assert scores.shape == (3, data.n_items)
    assert int(np.argmax(scores[0])) == 6
    assert int(np.argmax(scores[1])) == 0  # the cycle wraps around
    assert np.all(scores[2] == 0)  # no history, no opinion
    assert np.abs(scores[:2]).max(axis=1) == pytest.approx([1.0, 1.0])


def test_sasrec_weights_are_cached_and_reused(tmp_path, monkeypatch):
    data = _patterned_data()
    first = _small(tmp_path).fit(data)
    cached = list(tmp_path.glob("sasrec-*.pt"))
    assert len(cached) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    assert first.runs[0]["stopped"] != "budget"  # no wall clock in the default rules

    def no_training(*args, **kwargs):
        raise AssertionError("a cached model must not be trained again")

    monkeypatch.setattr(SASRec, "_train", no_training)
    again = _small(tmp_path).fit(data)
    history = [np.array([1, 2, 3])]
    assert np.allclose(first.score(history), again.score(history))

    # Other hyper-parameters or other data: another cache entry (so it trains).
    with pytest.raises(AssertionError, match="must not be trained"):
        _small(tmp_path, dim=8).fit(data)


def test_sasrec_retrains_over_a_damaged_cache_entry(tmp_path):
    data = _patterned_data()
    _small(tmp_path).fit(data)
    (entry,) = tmp_path.glob("sasrec-*.pt")
    entry.write_bytes(b"not a torch file")
    model = _small(tmp_path).fit(data)
    assert int(np.argmax(model.score([np.array([3, 4, 5])])[0])) == 6
    assert entry.stat().st_size > 100  # rewritten with real weights


def _no_training(*args, **kwargs):
    raise AssertionError("trained")


@pytest.mark.parametrize("damage", ["no record", "record for another key", "weights swapped", "old record"])
def test_sasrec_never_uses_a_stale_or_unrecorded_model(tmp_path, monkeypatch, damage):
    data = _patterned_data()
    _small(tmp_path).fit(data)
    (entry,) = tmp_path.glob("sasrec-*.pt")
    record = entry.with_suffix(".json")
    if damage == "no record":  # a crash between the weights and their record
        record.unlink()
    elif damage == "record for another key":  # e.g. written by other code
        record.write_text(record.read_text().replace('"key": "', '"key": "0'))
    elif damage == "weights swapped":  # new weights under an old record
        other = _small(tmp_path / "other", dim=16, epochs=2).fit(data)
        (other_entry,) = (tmp_path / "other").glob("sasrec-*.pt")
        entry.write_bytes(other_entry.read_bytes())
        assert other.nets
    else:  # a record from before the key was recorded
        record.write_text('{"stopped": null, "epochs_trained": 15}')
    notes: list[str] = []
    monkeypatch.setattr(SASRec, "_train", _no_training)
    with pytest.raises(AssertionError, match="trained"):
        _small(tmp_path, notify=notes.append).fit(data)
    assert notes and "is not used" in notes[0]


def test_sasrec_writes_the_weights_before_the_record_that_vouches_for_them(tmp_path, monkeypatch):
    from fewrec.retrieval import sequential

    order: list[str] = []
    original = sequential.write_atomically
    monkeypatch.setattr(sequential, "write_atomically", lambda path, data: (order.append(path.suffix),
                                                                           original(path, data)))  # fmt: skip
    _small(tmp_path).fit(_patterned_data())
    assert order == [".pt", ".json"]


def test_sasrec_cache_key_covers_code_settings_and_data(tmp_path, monkeypatch):
    from fewrec.retrieval import sequential

    data = _patterned_data()
    key = _small(tmp_path)._key(data, 0)
    assert _small(tmp_path, patience=5)._key(data, 0) != key  # stopping rules shape the weights
    assert _small(tmp_path, budget_s=60.0)._key(data, 0) != key
    assert _small(tmp_path)._key(_patterned_data(n_users=61), 0) != key
    monkeypatch.setattr(sequential, "_code_version", lambda: "another version")
    assert _small(tmp_path)._key(data, 0) != key


def test_sasrec_scores_on_one_thread_and_gives_the_threads_back(tmp_path):
    model = _small(tmp_path, threads=2).fit(_patterned_data())
    assert torch.get_num_threads() == 2  # training used what it was given
    seen: list[int] = []
    net = model.nets[0]
    original = net.forward
    net.forward = lambda x: (seen.append(torch.get_num_threads()), original(x))[1]
    scores = model.score([np.array([3, 4, 5])])
    assert seen == [1] and int(np.argmax(scores[0])) == 6
    assert torch.get_num_threads() == 2


def _noisy_cycles(n_users: int = 60, n_items: int = 30) -> list[np.ndarray]:
    """Training sequences (item index + 1) that mostly walk a cycle, with random jumps."""
    rng = np.random.default_rng(5)
    sequences = []
    for _ in range(n_users):
        walk = [int(rng.integers(1, n_items + 1))]
        for _ in range(int(rng.integers(4, 20))):
            walk.append(walk[-1] % n_items + 1 if rng.random() < 0.8 else int(rng.integers(1, n_items + 1)))
        sequences.append(np.array(walk))
    return sequences


def test_sasrec_training_keeps_the_best_validation_epoch_and_is_repeatable(tmp_path):
    from fewrec.retrieval.sequential import _validation_ndcg

    sequences = _noisy_cycles()
    validation = ([s[:-1] for s in sequences[:15]], np.array([s[-1] - 1 for s in sequences[:15]]))
    model = _small(tmp_path, epochs=5, patience=5, learning_rate=1e-2)
    net, info = model._train(sequences, 30, seed=2, validation=validation)
    scores = info["validation_ndcg"]
    assert len(scores) == info["epochs_trained"] == 5 and info["stopped"] is None
    assert info["best_epoch"] == int(np.argmax(scores)) + 1
    assert round(_validation_ndcg(net, *validation, 8, "cpu"), 5) == max(scores)  # the best epoch's weights
    again, again_info = model._train(sequences, 30, seed=2, validation=validation)
    assert again_info["losses"] == info["losses"]
    assert all(
        torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True)
    )


def test_sasrec_training_stops_on_the_loss_plateau_or_the_budget(tmp_path):
    sequences = _noisy_cycles()
    model = _small(tmp_path, epochs=8, patience=1, min_delta=0.9)  # no later epoch cuts the loss by 90%
    _, info = model._train(sequences, 30, seed=0)
    assert info["stopped"] == "plateau" and info["epochs_trained"] == 2 and len(info["losses"]) == 2
    _, cut = _small(tmp_path, epochs=3)._train(sequences, 30, seed=0, budget_s=0.0)
    assert cut["stopped"] == "budget" and 0 < cut["epochs_trained"] < 1 and len(cut["losses"]) == 1
