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


def test_sasrec_training_is_repeatable_to_the_bit(tmp_path):
    """The same seed and data give the same weights and losses (the README's figures rely on it);
    the best epoch, the plateau and the budget are tested in test_scale.py."""
    data = _patterned_data()
    sequences = [data.items[data.users == u] + 1 for u in range(data.n_users)]
    validation = ([s[:-1] for s in sequences[:15]], np.array([s[-1] - 1 for s in sequences[:15]]))
    model = _small(tmp_path, epochs=3, patience=5)
    net, info, _ = model._train(sequences, data.n_items, seed=2, validation=validation)
    again, again_info, _ = model._train(sequences, data.n_items, seed=2, validation=validation)
    assert info["epochs_trained"] == 3 and again_info["losses"] == info["losses"]
    assert again_info["validation_ndcg"] == info["validation_ndcg"]
    pairs = zip(net.state_dict().values(), again.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    other, _, _ = model._train(sequences, data.n_items, seed=3, validation=validation)
    assert not torch.equal(other.item.weight, net.item.weight)  # the seed is what decides
