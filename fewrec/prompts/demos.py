"""Few-shot demonstrations: real (history → next item) pairs from *other* users' training data,
chosen by similarity to the target user's history through a Chroma collection of history texts.

No leakage: a demonstration never comes from the target user, and its next item happened
before the target's cut-off time (the last moment of the target's known history). Without real
times (`LeaveOneOutSplit.has_times`) one user's time says nothing about another's, so only the
first rule applies.

A catalog without titles (`fewrec.data.traits.has_titles`: the titles are the item ids) has no
text worth embedding: there the demonstrations are chosen by the items their histories share
with the target's (cosine over item sets), in memory, and Chroma is not used at all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from fewrec.data.split import LeaveOneOutSplit
from fewrec.data.traits import has_titles
from fewrec.prompts.templates import display_title
from fewrec.retrieval.embeddings import ChromaEmbeddingFunction, Embedder
from fewrec.retrieval.shipped import embed_shipped


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
    """Demonstrations in a Chroma collection, queried by history similarity with filters (for a
    catalog without titles: in memory, by shared items; `client` and `embedder` go unused)."""

    def __init__(
        self,
        split: LeaveOneOutSplit,
        client: Any,
        embedder: Embedder | None,
        history_items: int = 5,
        per_user: int = 3,
    ) -> None:
        self.split = split
        self.embedder = embedder
        self.demos = build_demonstrations(split, history_items, per_user)
        self.timed = split.has_times
        self.by_text = has_titles(split.catalog)
        self.collection: Any = None
        if not self.by_text:
            self._by_items = _item_sets([d.history for d in self.demos], split.n_items)
            self._users = np.array([d.user for d in self.demos], dtype=np.int64)
            self._times = np.array([d.time for d in self.demos], dtype=np.int64)
            return
        if client is None or embedder is None:
            raise ValueError(
                "a catalog with titles needs a Chroma client and an embedder for its demonstrations"
            )
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
            vectors = embed_shipped(embedder, texts, progress=True)  # shipped for the bundled data
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
        if not self.by_text:
            return [
                self._select_by_items(h[-10:], u, c, k)
                for h, u, c in zip(histories, users, cutoffs, strict=True)
            ]
        vectors = self.embedder.embed([history_text(self.split, h[-10:]) for h in histories])
        out = []
        for vector, user, cutoff in zip(vectors, users, cutoffs, strict=True):
            other: dict = {"user": {"$ne": int(user)}}
            where = {"$and": [other, {"time": {"$lt": int(cutoff)}}]} if self.timed else other
            found = self.collection.query(query_embeddings=[vector], n_results=k, where=where, include=[])
            # Most similar last: the example nearest to the user's own part of the prompt.
            out.append([self.demos[int(i)] for i in reversed(found["ids"][0])])
        return out

    def _select_by_items(self, history: np.ndarray, user: int, cutoff: int, k: int) -> list[Demonstration]:
        """The k demonstrations whose histories share most with `history` (cosine over item sets,
        ties by position in the pool), from other users (and before the cut-off when timed)."""
        items = np.unique(np.asarray(history, dtype=np.int64))
        if len(items) == 0:
            similarity = np.zeros(len(self.demos))
        else:
            similarity = np.asarray(self._by_items[:, items].sum(axis=1)).ravel() / np.sqrt(len(items))
        allowed = self._users != int(user)
        if self.timed:
            allowed &= self._times < int(cutoff)
        rows = np.flatnonzero(allowed)
        best = rows[np.argsort(-similarity[rows], kind="stable")[:k]]
        # Most similar last, as from Chroma: the example nearest to the user's own part of the prompt.
        return [self.demos[int(i)] for i in reversed(best)]


def _item_sets(histories: list[tuple[int, ...]], n_items: int) -> sparse.csc_matrix:
    """Histories as rows of 1/sqrt(|set|) over their distinct items (unit rows: a product with a
    0/1 query is the cosine times the query's norm); column-compressed for slicing by item."""
    rows, cols = [], []
    for row, history in enumerate(histories):
        distinct = np.unique(np.asarray(history, dtype=np.int64))
        rows.append(np.full(len(distinct), row))
        cols.append(distinct)
    if not histories:
        return sparse.csc_matrix((0, n_items), dtype=np.float32)
    r, c = np.concatenate(rows), np.concatenate(cols)
    sizes = np.bincount(r, minlength=len(histories)).astype(np.float32)
    values = 1.0 / np.sqrt(np.maximum(sizes[r], 1.0))
    return sparse.csc_matrix((values, (r, c)), shape=(len(histories), n_items), dtype=np.float32)
