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
    assert not list(tmp_path.glob("tmp-*"))  # no temporary file left behind

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
