"""Evaluating the LLM stage: score each user's retrieval candidates with the reranker, then
turn the scores into full rankings (candidates first, in the new order; every other item after
them, in retrieval order) so that the usual full-ranking metrics apply unchanged."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from fewrec.agent.rerank import LLMReranker, fuse
from fewrec.data.split import LeaveOneOutSplit, SplitName
from fewrec.prompts.demos import DemonstrationPool
from fewrec.retrieval.base import mask_seen, top_n

ALPHA_GRID = tuple(round(a, 2) for a in np.linspace(0.0, 1.0, 11))


@dataclass
class CandidateScores:
    """Per user (row): the candidates, their retrieval and LLM scores, and any fallback."""

    candidates: np.ndarray  # (n, C) item indices, retrieval order
    retrieval: np.ndarray  # (n, C)
    llm: np.ndarray  # (n, C); NaN where the LLM fell back
    fallbacks: list[str | None] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def top_candidates(fused: np.ndarray, histories: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The `n` best unseen items of each row (ties by item index) and their scores."""
    return top_n(mask_seen(np.array(fused, dtype=np.float64, copy=True), histories), n)


def cutoff_times(split: LeaveOneOutSplit, rows: np.ndarray, split_name: SplitName) -> list[int]:
    return [int(t) for t in split.reference_times(rows, split_name)]


def score_with_llm(
    reranker: LLMReranker,
    pool: DemonstrationPool | None,
    split: LeaveOneOutSplit,
    split_name: SplitName,
    rows: np.ndarray,
    histories: list[np.ndarray],
    fused: np.ndarray,
    k_shot: int,
    n_candidates: int,
) -> CandidateScores:
    candidates, retrieval = top_candidates(fused, histories, n_candidates)
    demos = (
        pool.select_many(histories, [int(u) for u in rows], cutoff_times(split, rows, split_name), k_shot)
        if pool is not None and k_shot > 0
        else [[] for _ in rows]
    )
    llm = np.full(candidates.shape, np.nan)
    out = CandidateScores(candidates=candidates, retrieval=retrieval, llm=llm)
    for row in tqdm(range(len(rows)), desc=f"LLM scoring (k={k_shot})", unit="user"):
        result = reranker.score(histories[row], [int(c) for c in candidates[row]], demos[row], seed=row)
        if result.fallback is None:
            llm[row] = result.scores
        out.fallbacks.append(result.fallback)
        out.prompt_tokens.append(result.prompt_tokens)
        out.seconds.append(result.seconds)
    return out


def full_ranking(scores: CandidateScores, fused: np.ndarray, order_by: np.ndarray) -> np.ndarray:
    """Score matrix whose ranking puts the candidates first (ordered by `order_by`, NaN rows keep
    the retrieval order) and everything else after them in retrieval order."""
    base = np.array(fused, dtype=np.float64, copy=True)
    n = scores.candidates.shape[1]
    top = np.nanmax(base[np.isfinite(base)]) if np.isfinite(base).any() else 0.0
    fallback = np.isnan(order_by).any(axis=1, keepdims=True)  # these rows keep the retrieval order
    values = np.where(fallback, -np.arange(n, dtype=np.float64), order_by)
    ranks = np.argsort(np.argsort(-values, axis=1, kind="stable"), axis=1, kind="stable")
    # Candidates sit above everything else: top + 1 … top + n, best first.
    np.put_along_axis(base, scores.candidates, top + n - ranks, axis=1)
    return base


def fused_order(scores: CandidateScores, alpha: float) -> np.ndarray:
    out = np.full(scores.llm.shape, np.nan)
    for row in range(len(out)):
        if not np.isnan(scores.llm[row]).any():
            out[row] = fuse(scores.llm[row], scores.retrieval[row], alpha)
    return out


def within_candidates(scores: CandidateScores, targets: np.ndarray, seed: int = 0) -> dict[str, float]:
    """MRR of the target among the candidates, for users whose target is a candidate:
    LLM order vs retrieval order vs a random order."""
    rng = np.random.default_rng(seed)
    found = scores.candidates == np.asarray(targets)[:, None]
    rows = np.flatnonzero(found.any(axis=1) & ~np.isnan(scores.llm).any(axis=1))
    if not len(rows):
        return {"users": 0}
    n = scores.candidates.shape[1]
    position = found[rows].argmax(axis=1)  # the target's place in retrieval order
    llm = scores.llm[rows]
    llm_rank = (llm >= llm[np.arange(len(rows)), position][:, None]).sum(axis=1) - 1  # ties count against it
    drawn = np.array([int(rng.integers(0, n)) for _ in rows])  # one draw per user, in row order
    return {
        "users": len(rows),
        "mrr_llm": float(np.mean(1.0 / (llm_rank + 1))),
        "mrr_retrieval": float(np.mean(1.0 / (position + 1))),
        "mrr_random": float(np.mean(1.0 / (drawn + 1))),
        "mrr_random_expected": float(np.mean(1.0 / np.arange(1, n + 1))),
    }
