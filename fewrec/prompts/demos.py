"""Few-shot demonstrations: real (history → next item) pairs from *other* users' training data,
chosen by similarity to the target user's history through a Chroma collection of history texts.

No leakage: a demonstration never comes from the target user, and its next item happened
before the target's cut-off time (the last moment of the target's known history).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from fewrec.data.split import LeaveOneOutSplit
from fewrec.prompts.templates import display_title
from fewrec.retrieval.embeddings import ChromaEmbeddingFunction, Embedder


@dataclass(frozen=True)
class Demonstration:
    user: int
    history: tuple[int, ...]  # item indices, oldest first
    next_item: int
    time: int


def history_text(split: LeaveOneOutSplit, items: np.ndarray | tuple[int, ...]) -> str:
    titles = split.catalog.frame["title"].to_numpy()
    return "; ".join(display_title(str(titles[i])) for i in items)


def build_demonstrations(
    split: LeaveOneOutSplit, history_items: int, per_user: int = 3
) -> list[Demonstration]:
    """Up to `per_user` pairs per user, from the end of their training sequence backwards."""
    demos = []
    for user in range(split.n_users):
        seq, times = split.train_sequence(user), split.train_times(user)
        for back in range(per_user):
            position = len(seq) - 1 - back * max(history_items, 1)
            if position < history_items:
                break
            demos.append(
                Demonstration(
                    user=user,
                    history=tuple(int(i) for i in seq[position - history_items : position]),
                    next_item=int(seq[position]),
                    time=int(times[position]),
                )
            )
    return demos


class DemonstrationPool:
    """Demonstrations in a Chroma collection, queried by history similarity with filters."""

    def __init__(
        self,
        split: LeaveOneOutSplit,
        client: Any,
        embedder: Embedder,
        history_items: int = 5,
        per_user: int = 3,
    ) -> None:
        self.split = split
        self.embedder = embedder
        self.demos = build_demonstrations(split, history_items, per_user)
        digest = hashlib.sha256(
            repr([(d.user, d.history, d.next_item, d.time) for d in self.demos]).encode()
            + embedder.name.encode()
        ).hexdigest()[:12]
        self.collection = client.get_or_create_collection(
            f"fewrec-demos-{digest}",
            embedding_function=ChromaEmbeddingFunction(embedder),
            metadata={"fewrec_schema": 1, "fewrec_model": embedder.name},
            configuration={"hnsw": {"space": "cosine"}},
        )
        if self.collection.count() < len(self.demos):  # built once per split and model
            texts = [history_text(split, d.history) for d in self.demos]
            vectors = embedder.embed(texts, progress=True)
            for start in range(0, len(self.demos), 1000):
                part = range(start, min(start + 1000, len(self.demos)))
                self.collection.upsert(
                    ids=[str(i) for i in part],
                    embeddings=vectors[start : start + len(part)],
                    metadatas=[{"user": self.demos[i].user, "time": self.demos[i].time} for i in part],
                )

    def select_many(
        self, histories: list[np.ndarray], users: list[int], cutoffs: list[int], k: int
    ) -> list[list[Demonstration]]:
        """For each target: the k most similar demonstrations from other users before the cut-off."""
        if k <= 0:
            return [[] for _ in histories]
        vectors = self.embedder.embed([history_text(self.split, h[-10:]) for h in histories])
        out = []
        for vector, user, cutoff in zip(vectors, users, cutoffs, strict=True):
            where = {"$and": [{"user": {"$ne": int(user)}}, {"time": {"$lt": int(cutoff)}}]}
            found = self.collection.query(query_embeddings=[vector], n_results=k, where=where, include=[])
            # Most similar last: the example nearest to the user's own part of the prompt.
            out.append([self.demos[int(i)] for i in reversed(found["ids"][0])])
        return out
