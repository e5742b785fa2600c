"""Collaborative-filtering candidate sources: EASE, item-to-item transitions, item-kNN,
ALS and BPR (the last two from `implicit`), and popularity.

Every source scores a user from a recency-weighted history, because the task is the next
item: what a user watched last says more than what they watched years ago.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from fewrec.retrieval.base import FitData, recency_weights


def _history_matrix(
    histories: list[np.ndarray], n_items: int, half_life: float, limit: int | None
) -> sp.csr_matrix:
    rows, cols, vals = [], [], []
    for row, history in enumerate(histories):
        if len(history) == 0:
            continue
        weights = recency_weights(len(history), half_life, limit)
        keep = weights > 0
        rows.append(np.full(int(keep.sum()), row))
        cols.append(history[keep])
        vals.append(weights[keep])
    if not rows:
        return sp.csr_matrix((len(histories), n_items), dtype=np.float32)
    m = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(histories), n_items),
        dtype=np.float32,
    )
    m.sum_duplicates()
    return m


def _binary_matrix(data: FitData) -> sp.csr_matrix:
    m = sp.csr_matrix(
        (np.ones(len(data.users), dtype=np.float32), (data.users, data.items)),
        shape=(data.n_users, data.n_items),
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


class _ItemMatrixSource:
    """A source whose scores are (weighted history) @ item-item matrix."""

    name = "item-matrix"
    half_life: float = 10.0
    limit: int | None = None
    matrix: np.ndarray

    def score(self, histories: list[np.ndarray], times: np.ndarray | None = None) -> np.ndarray:
        h = _history_matrix(histories, self.matrix.shape[0], self.half_life, self.limit)
        return np.asarray(h @ self.matrix)


class EASE(_ItemMatrixSource):
    """Embarrassingly Shallow Autoencoder (Steck 2019): closed-form item-item weights."""

    name = "ease"

    def __init__(self, l2: float = 500.0, half_life: float = 10.0, limit: int | None = None) -> None:
        self.l2, self.half_life, self.limit = l2, half_life, limit

    def fit(self, data: FitData) -> EASE:
        x = _binary_matrix(data)
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.l2
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)
        b[np.diag_indices_from(b)] = 0.0
        self.matrix = b.astype(np.float32)
        return self


class Transition(_ItemMatrixSource):
    """Item-to-item transitions: how often item j follows item i within `window` steps in
    the training sequences (a step further counts `decay` times less), row-normalised."""

    name = "transition"

    def __init__(
        self, window: int = 3, decay: float = 0.5, half_life: float = 2.0, limit: int | None = 20,
        normalise: float = 1.0,
    ) -> None:  # fmt: skip
        self.window, self.decay, self.half_life, self.limit = window, decay, half_life, limit
        self.normalise = normalise

    def fit(self, data: FitData) -> Transition:
        users, items = np.asarray(data.users), np.asarray(data.items)
        rows, cols, vals = [], [], []
        for step in range(1, self.window + 1):
            same = users[step:] == users[:-step]
            rows.append(items[:-step][same])
            cols.append(items[step:][same])
            vals.append(np.full(int(same.sum()), self.decay ** (step - 1), dtype=np.float32))
        t = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(data.n_items, data.n_items),
        ).toarray()
        out_degree = t.sum(axis=1, keepdims=True)
        self.matrix = (t / np.power(np.maximum(out_degree, 1e-9), self.normalise)).astype(np.float32)
        return self


class ItemKNN(_ItemMatrixSource):
    """Item-item cosine neighbours (implicit's CosineRecommender), top-k per item."""

    name = "itemknn"

    def __init__(self, k: int = 100, half_life: float = 10.0, limit: int | None = None) -> None:
        self.k, self.half_life, self.limit = k, half_life, limit

    def fit(self, data: FitData) -> ItemKNN:
        from implicit.nearest_neighbours import CosineRecommender

        model = CosineRecommender(K=self.k)
        model.fit(_binary_matrix(data), show_progress=False)
        sim = model.similarity.toarray().astype(np.float32)
        np.fill_diagonal(sim, 0.0)
        self.matrix = sim
        return self


class Popularity:
    """Items by how many training users have them; the cold-start fallback."""

    name = "popularity"

    def fit(self, data: FitData) -> Popularity:
        counts = np.bincount(np.asarray(data.items), minlength=data.n_items).astype(np.float32)
        self.counts = counts
        return self

    def score(self, histories: list[np.ndarray], times: np.ndarray | None = None) -> np.ndarray:
        return np.tile(self.counts, (len(histories), 1))
