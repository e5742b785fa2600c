"""`QueryMix`: the pipeline stage that steers a ranking by words — the fused retriever's
ranking of a history mixed with what the content index finds for a free-text query.

Its own config, `QueryMixConfig`, says how deep the index is read; the mix's weight comes with
each request (`RecRequest.query_weight`, default `chat.query_weight`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import numpy as np
from pydantic import BaseModel, Field

from fewrec.data.split import LeaveOneOutSplit
from fewrec.retrieval.base import Candidate, ScoringContext
from fewrec.retrieval.fusion import Retriever
from fewrec.retrieval.store import VectorStoreError

QUERY_SOURCE = "query"  # the evidence name of the words' match on a candidate


class QueryMixConfig(BaseModel):
    """How a query is read against the content index."""

    pool: int = Field(default=300, ge=1)  # items the index returns for a query before the mix


def unit(values: np.ndarray) -> np.ndarray:
    """Scaled to 0–1 (all 0 when every value is the same)."""
    spread = values.max() - values.min() if len(values) else 0.0
    return (values - values.min()) / spread if spread > 0 else np.zeros_like(values)


class QueryMix:
    """Candidates for a history and (optionally) words; `query_content(text, k)` asks the
    content index for (stored id, similarity) pairs and raises VectorStoreError when it cannot."""

    def __init__(
        self, split: LeaveOneOutSplit, retriever: Retriever,
        query_content: Callable[[str, int], list[tuple[str, float]]], config: QueryMixConfig | None = None,
    ) -> None:  # fmt: skip
        self.split = split
        self.retriever = retriever
        self.query_content = query_content
        self.config = config or QueryMixConfig()

    def candidates(
        self, history: np.ndarray, depth: int, context: ScoringContext, allowed: np.ndarray | None,
        query: str | None, query_weight: float, notes: list[str], sources: Collection[str] | None = None,
    ) -> list[Candidate]:  # fmt: skip
        """The top `depth` items; without words, the retriever's own ranking. A content index
        that fails costs the words only (a note says so): the taste still ranks."""
        retriever, split, pool_size = self.retriever, self.split, self.config.pool
        query = (query or "").strip()
        if not query:
            return retriever.candidates(history, depth, context, allowed, sources)
        try:
            hits = self.query_content(query, pool_size)
        except VectorStoreError as exc:
            notes.append(f"the content index is unavailable, your words were not used ({exc})")
            return retriever.candidates(history, depth, context, allowed, sources)
        similarity = np.full(split.n_items, np.nan)
        for stored_id, value in hits:
            if split.has_item(stored_id):
                similarity[split.item_index(stored_id)] = value
        pool = np.isfinite(similarity)
        if allowed is not None:
            pool &= allowed
        if not pool.any():
            return retriever.candidates(history, depth, context, allowed, sources)

        if not len(history):  # nothing known of the person's taste: the words decide
            found = retriever.candidates(history, pool_size, context, pool, sources)
            sims = np.array([similarity[split.item_index(c.item_id)] for c in found])
            final = unit(sims) + 0.01 * unit(np.array([c.score for c in found]))
        else:
            # Taste proposes, and so do the words: the top of the taste ranking and the items
            # the query found, mixed by `query_weight` (chosen on `fewrec eval-chat`). An item
            # only the query found ranks below the taste list on taste; weight 0 is the taste
            # ranking itself, so words that say nothing about taste cannot cost anything.
            found = retriever.candidates(history, max(pool_size, depth), context, allowed, sources)
            listed = {split.item_index(c.item_id) for c in found} | set(history.tolist())
            floor = min((c.score for c in found), default=0.0)
            for item in np.flatnonzero(pool):
                if int(item) not in listed:
                    item_id = split.item_ids[item].item()
                    title = split.catalog.title(item_id)
                    found.append(Candidate(item_id=item_id, title=title, score=floor, rank=len(found) + 1))
            sims = np.array([similarity[split.item_index(c.item_id)] for c in found])
            sims = np.where(np.isfinite(sims), sims, np.nanmin(sims) if np.isfinite(sims).any() else 0.0)
            final = query_weight * unit(sims) + (1.0 - query_weight) * unit(
                np.array([c.score for c in found])
            )
        order = np.argsort(-final, kind="stable")[:depth]
        out = []
        for rank, i in enumerate(order, start=1):
            sources_found, ranks = dict(found[i].sources), dict(found[i].source_ranks)
            item = split.item_index(found[i].item_id)
            if np.isfinite(similarity[item]):  # the query found it
                sources_found[QUERY_SOURCE] = float(similarity[item])
                ranks[QUERY_SOURCE] = int(np.sum(similarity[pool] > similarity[item])) + 1
            update = {"rank": rank, "score": float(final[i]), "sources": sources_found, "source_ranks": ranks}
            out.append(found[i].model_copy(update=update))
        return out


__all__ = ["QUERY_SOURCE", "QueryMix", "QueryMixConfig", "unit"]
