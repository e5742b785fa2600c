"""Content candidates: a user profile (recency-weighted mean of the vectors of recently
seen items) compared with every item vector from the Chroma index."""

from __future__ import annotations

import numpy as np

from fewrec.retrieval.base import FitData, ScoringContext, recency_weights
from fewrec.retrieval.store import ContentIndex


def aligned_vectors(index: ContentIndex, item_ids: np.ndarray) -> np.ndarray:
    """Item vectors in the split's item-index order (zeros for items the index lacks)."""
    ids, vectors = index.vectors()
    position = {item_id: row for row, item_id in enumerate(ids)}
    out = np.zeros((len(item_ids), vectors.shape[1] if len(vectors) else 1), dtype=np.float32)
    for row, item_id in enumerate(item_ids.tolist()):
        found = position.get(str(item_id))
        if found is not None:
            out[row] = vectors[found]
    return out


def user_profile(vectors: np.ndarray, history: np.ndarray, half_life: float, limit: int) -> np.ndarray:
    if len(history) == 0:
        return np.zeros(vectors.shape[1], dtype=np.float32)
    weights = recency_weights(len(history), half_life, limit)
    keep = weights > 0  # only the recent items: a long history would copy thousands of vectors
    profile = weights[keep].astype(np.float32) @ vectors[np.asarray(history)[keep]]
    return profile / max(float(np.linalg.norm(profile)), 1e-12)


class ContentSimilarity:
    """Cosine similarity between a user's profile and every item's text embedding."""

    name = "content"
    time_aware = False

    def __init__(self, item_vectors: np.ndarray, half_life: float = 10.0, limit: int = 50) -> None:
        self.vectors = item_vectors
        self.half_life, self.limit = half_life, limit

    def fit(self, data: FitData) -> ContentSimilarity:
        return self  # nothing to learn: the vectors come from the index

    def profiles(self, histories: list[np.ndarray]) -> np.ndarray:
        return np.stack([user_profile(self.vectors, h, self.half_life, self.limit) for h in histories])

    def score(self, histories: list[np.ndarray], context: ScoringContext | None = None) -> np.ndarray:
        if not histories:
            return np.zeros((0, len(self.vectors)), dtype=np.float32)
        return self.profiles(histories) @ self.vectors.T
