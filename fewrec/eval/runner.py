"""Batch evaluation: every stage and baseline on the same split, users and seed.

`evaluate(...) -> EvalReport` is the one code path behind `fewrec eval` and
`python -m fewrec eval`. Scores are computed for the split's evaluation users at once (dense
numpy), metrics per user, then means with bootstrap intervals, the same metrics on the users
whose target is tied in time with the item before it and on the rest, and a paired test
against the baseline that is best *on validation*.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, Field

from fewrec.agent.pipeline import build_retriever
from fewrec.config import Settings
from fewrec.data.errors import FewrecError
from fewrec.data.split import LeaveOneOutSplit, SplitName
from fewrec.eval import intervals as iv
from fewrec.eval import metrics as m
from fewrec.eval import provenance as prov
from fewrec.eval.baselines import BASELINES, run_baseline
from fewrec.eval.ranking import FUSED, Ranked, RankedRows, RankJob, dense_batches, rank_batches, rank_rows
from fewrec.retrieval.fusion import SOURCE_NAMES

if TYPE_CHECKING:
    from fewrec.agent.pipeline import Pipeline
    from fewrec.agent.rerank import LLMReranker
    from fewrec.distributed import RayPool
    from fewrec.prompts.demos import DemonstrationPool

STAGES = ("retrieval", "rerank", "fused")
LLM_STAGES = ("rerank", "fused")
ALL_BASELINES = ("random", *BASELINES)
CANDIDATE_DEPTHS = (20, 50, 100)

# The published anchors (the LlamaRec paper, Yue et al. 2023), measured on the paper's
# leave-one-out protocol with ties by item id: shown only next to it. Published, not measured.
PUBLISHED = {
    "SASRec (LlamaRec paper)": {"ndcg@10": 0.0522, "recall@10": 0.0993},
    "LRURec retriever (LlamaRec paper)": {"ndcg@10": 0.0705, "recall@10": 0.1426},
    "LlamaRec, Llama-2-7B QLoRA (LlamaRec paper)": {"ndcg@10": 0.0759, "recall@10": 0.1524},
}


class MethodResult(BaseModel):
    name: str
    kind: Literal["fewrec", "source", "baseline", "published"]
    params: dict = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = Field(default_factory=dict)
    candidate_recall: dict[str, float] = Field(default_factory=dict)
    coverage_at_10: float | None = None
    long_tail_at_10: float | None = None
    seconds: float | None = None
    validation_ndcg_at_10: float | None = None  # baselines: of the grid point chosen on validation
    ties: dict[str, dict[str, float]] = Field(default_factory=dict)  # "tied"/"untied" -> metrics


class TieSummary(BaseModel):
    """Users whose target shares its timestamp with the item before it: for them "what came
    next" was decided by the tie order (`order`), not by time."""

    order: str  # "id" or "random"
    tied_users: int
    untied_users: int


class Comparison(BaseModel):
    method: str
    baseline: str
    metric: str
    difference: float
    interval: tuple[float, float]
    p_value: float
    resamples: int
    p_text: str  # "p=0.012", or "p < 1/2000" when no resample crossed zero
    chosen_on: str = "validation NDCG@10"
    verdict: str


class EvalReport(prov.RunRecord):
    dataset: str
    split: SplitName
    protocol: str  # "full ranking" or "sampled: 1 held-out + N-1 random negatives"
    split_protocol: str = "loo"  # "loo" (the paper's leave-one-out) or "temporal" (global time cut)
    split_description: str = ""
    ties: TieSummary | None = None
    users: int
    seed: int
    stages: list[str]
    history_cuts: list[int] = Field(default_factory=list)
    methods: list[MethodResult] = Field(default_factory=list)
    published: list[MethodResult] = Field(default_factory=list)
    slices: dict[str, dict[str, dict[str, float]]] = Field(default_factory=dict)  # cut -> method -> metrics
    comparison: Comparison | None = None
    llm: dict = Field(default_factory=dict)  # LLM stage: timing, fallbacks, alpha sweep, within-candidate MRR

    def method(self, name: str) -> MethodResult:
        for result in self.methods:
            if result.name == name:
                return result
        raise KeyError(name)


class EvalError(FewrecError):
    """Bad evaluation arguments."""


def validate_args(
    split: LeaveOneOutSplit, stages: list[str], baselines: list[str], users: int | None, cuts: list[int],
    split_name: SplitName = "test",
) -> None:  # fmt: skip
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise EvalError(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    unknown = [b for b in baselines if b not in ALL_BASELINES]
    if unknown:
        raise EvalError(f"unknown baseline(s) {', '.join(unknown)}; choose from {', '.join(ALL_BASELINES)}")
    available = len(split.eval_users(split_name))
    if users is not None and not 1 <= users <= available:
        raise EvalError(
            f"--users must be between 1 and {available} (the users with a {split_name} target "
            f"under this protocol), got {users}"
        )
    if any(c < 1 for c in cuts):
        raise EvalError("history cuts must be ≥ 1 item")


def evaluate(
    split: LeaveOneOutSplit,
    settings: Settings | None = None,
    *,
    split_name: SplitName = "test",
    stages: list[str] | None = None,
    baselines: list[str] | None = None,
    history_cuts: list[int] | None = None,
    users: int | None = None,
    sampled: int | None = None,
    seed: int = 0,
    item_vectors: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
    on_result: Callable[[EvalReport], None] | None = None,
    reranker: LLMReranker | None = None,
    demo_pool: DemonstrationPool | None = None,
    k_shots: list[int] | None = None,
    ray: RayPool | None = None,
    pipeline: Pipeline | None = None,
    weights_from: str | None = None,
) -> EvalReport:
    """Evaluate fewrec's stages and the baselines on one split; see the module docstring.

    `on_result` is called after every method, so a caller can save partial results; a
    KeyboardInterrupt stops the run and returns the report marked incomplete. With `ray`, the
    users are ranked shard by shard on its actors (fitting stays here): the same numbers.
    With `pipeline` (over `split`), the retriever for `split_name` and the LLM stages' reranker
    and demonstration pool come from it (`item_vectors`, `reranker`, `demo_pool` are then not
    needed); `settings` defaults to its settings. `weights_from` says where the fusion weights
    came from (default: the pipeline's account of it) for the report's provenance.
    """
    if pipeline is not None and pipeline.split is not split:
        raise EvalError("the pipeline given to evaluate() serves another split")
    settings = settings or (pipeline.settings if pipeline is not None else Settings())
    stages = stages or ["retrieval"]
    baselines = list(ALL_BASELINES) if baselines is None else baselines
    history_cuts = history_cuts or []
    validate_args(split, stages, baselines, users, history_cuts, split_name)
    llm_stages = [s for s in stages if s in LLM_STAGES]
    if llm_stages and reranker is None and pipeline is not None:
        reranker = pipeline.reranker
        if reranker is None:
            raise EvalError(f"stage(s) {', '.join(llm_stages)} need an LLM backend: {pipeline.llm_error}")
    if llm_stages and reranker is None:
        raise EvalError(f"stage(s) {', '.join(llm_stages)} need an LLM backend (reranker)")
    k_shots = [settings.rerank.k_shot] if k_shots is None else k_shots
    if any(k < 0 for k in k_shots):
        raise EvalError("--k-shot values must be ≥ 0")
    if llm_stages and demo_pool is None and pipeline is not None and any(k > 0 for k in k_shots):
        demo_pool = pipeline.demo_pool
    say = progress or (lambda _msg: None)

    rng = np.random.default_rng(seed)
    eligible = split.eval_users(split_name)
    rows = eligible if users is None else np.sort(rng.choice(eligible, users, replace=False))
    targets = split.targets(split_name)[rows]
    tied = split.tied(split_name)[rows]
    histories = [split.history(int(u), split_name) for u in rows]
    popularity = np.bincount(split.interactions_before(split_name)["item"], minlength=split.n_items)

    report = EvalReport(
        dataset=split.name,
        split=split_name,
        protocol="full ranking" if not sampled else f"sampled: 1 held-out + {sampled - 1} random negatives",
        users=len(rows),
        split_protocol=split.protocol,
        split_description=split.describe(),
        ties=TieSummary(
            order=str(settings.split.ties), tied_users=int(tied.sum()), untied_users=int((~tied).sum())
        ),
        seed=seed,
        stages=stages,
        history_cuts=history_cuts,
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        settings=settings.model_dump(mode="json"),
    )
    if weights_from is None:
        given = "fusion weights: as given to evaluate()"
        weights_from = pipeline.weights_from if pipeline is not None else given
    report.provenance = prov.capture(report.settings, weights_from)
    report.git_commit, report.versions = report.provenance.commit, report.provenance.versions
    per_user: dict[str, dict[str, np.ndarray]] = {}

    batch_users = settings.retrieval.batch_users

    def record(
        name: str, kind: str, ranked: Ranked | np.ndarray, params: dict, started: float | None,
        validation: float | None = None,
    ) -> None:  # fmt: skip
        if isinstance(ranked, np.ndarray):  # dense scores (the LLM stages)
            ranked = rank_batches(dense_batches(ranked, batch_users), targets, histories, sampled, seed)
        values = m.per_user_metrics(ranked.ranks)
        per_user[name] = values
        top10 = ranked.top10
        result = MethodResult(
            name=name,
            kind=kind,  # type: ignore[arg-type]
            params=params,
            metrics=m.summarise(values),
            intervals={k: iv.bootstrap_interval(v, seed=seed) for k, v in values.items() if k[-3:] == "@10"},
            coverage_at_10=m.coverage(top10, split.n_items),
            long_tail_at_10=m.long_tail_share(top10.ravel(), popularity),
            seconds=None if started is None else round(time.perf_counter() - started, 3),
            validation_ndcg_at_10=validation,
            ties={
                label: {"users": float(part.sum()), **{k: float(v[part].mean()) if part.any() else 0.0
                                                       for k, v in values.items() if k.endswith("@10")}}
                for label, part in (("tied", tied), ("untied", ~tied))
            },
        )  # fmt: skip
        if kind == "fewrec" and not sampled:
            result.candidate_recall = {
                f"recall@{d}": float((ranked.ranks < d).mean()) for d in CANDIDATE_DEPTHS
            }
        report.methods.append(result)
        say(f"{name}: NDCG@10 {result.metrics['ndcg@10']:.4f}, Recall@10 {result.metrics['recall@10']:.4f}")
        if on_result:
            on_result(report)

    def run_job(job: RankJob) -> RankedRows:
        """Rank every evaluated user for one fitted retriever: here, or shard by shard on Ray."""
        if ray is None:
            return rank_rows(job, slice(0, len(rows)))
        return RankedRows.concat(ray.map_rows(rank_rows, job, len(rows), batch_users))

    def record_cuts(name: str, cut_ranks: dict[int, np.ndarray]) -> None:
        for cut, ranks in cut_ranks.items():
            report.slices.setdefault(str(cut), {})[name] = m.summarise(m.per_user_metrics(ranks))

    def noted(notes: list[str]) -> None:
        """Keep the retriever's notes (a skipped source, SASRec's training) in the report; they
        were logged already as they happened."""
        report.notes.extend(note for note in notes if note not in report.notes)

    try:
        if "retrieval" in stages or llm_stages:
            started = time.perf_counter()
            if pipeline is not None:
                retriever = pipeline.retriever_for(split_name)
            else:
                retriever = build_retriever(
                    split, settings.retrieval, split_name, item_vectors, settings.model_dir
                )
            noted(retriever.notes)
            job = RankJob(
                retriever, histories, targets, retriever.context_for(rows, split_name), FUSED, sampled, seed,
                each_source=True, keep_fused=bool(llm_stages), cuts=history_cuts,
            )  # fmt: skip
            done = run_job(job)
            del job
            weights = {"weights": settings.retrieval.weights}
            record(FUSED, "fewrec", done.ranked.pop(FUSED), weights, started)
            for k in k_shots if llm_stages and reranker is not None else []:
                _llm_stage(report, record, reranker, demo_pool, split, split_name, rows, histories,
                           targets, done.fused, k, settings, llm_stages, seed)  # fmt: skip
            done.fused = None
            for name, ranked in done.ranked.items():
                record(name, "source", ranked, {}, None)  # timed with the fused row
            record_cuts(FUSED, done.cut_ranks)
        for name in baselines:
            started = time.perf_counter()
            say(f"baseline {name} (tuned on validation) …")
            result = run_baseline(
                name, split, settings.retrieval.model_copy(update={"seed": seed}), split_name, rows,
                model_dir=settings.model_dir, progress=progress is not None,
            )  # fmt: skip
            if result.skipped is not None:
                noted([f"baseline {name}: {result.skipped}"])
                continue
            # The history-cut slices of the baselines that read the history as a set of items.
            cuts = history_cuts if name in ("popularity", "ease", "item-knn", "markov") else []
            if result.retriever is None:  # seeded noise: drawn here, batch after batch
                ranked = rank_batches(result.score_batches(), targets, histories, sampled, seed)
                cut_ranks: dict[int, np.ndarray] = {}
            else:
                context = result.retriever.context_for(rows, split_name)
                done = run_job(RankJob(result.retriever, histories, targets, context, name, sampled, seed,
                                       cuts=cuts))  # fmt: skip
                ranked, cut_ranks = done.ranked[name], done.cut_ranks
            params, validation = result.params, result.validation_ndcg
            del result  # a fitted baseline can be gigabytes: gone before the next one fits
            record(name, "baseline", ranked, params, started, validation)
            record_cuts(name, cut_ranks)
    except KeyboardInterrupt:
        report.complete = False
        report.notes.append("interrupted: the methods listed are complete, the rest were not run")

    if not sampled:
        report.published = (
            [MethodResult(name=n, kind="published", metrics=v) for n, v in PUBLISHED.items()]
            if split.name == "ml-latest-small"
            and split_name == "test"
            and split.protocol == "loo"
            and settings.split.ties == "id"
            else []
        )
    if report.complete:
        report.comparison = _compare(report, per_user, seed)
    else:  # the best baseline by validation may be one that never ran: no verdict
        done = {r.name for r in report.methods}
        missing = [
            b
            for b in baselines
            if b not in done and not any(n.startswith(f"baseline {b}:") for n in report.notes)
        ]
        report.notes.append(
            "no comparison with the best baseline: the run stopped before "
            + (", ".join(missing) if missing else "it finished")
            + " ran"
        )
    report.finished = datetime.now(UTC).isoformat(timespec="seconds")
    report.provenance.finish()
    return report


def _llm_stage(
    report: EvalReport, record: Callable, reranker: LLMReranker, pool: DemonstrationPool | None,
    split: LeaveOneOutSplit, split_name: SplitName, rows: np.ndarray, histories: list[np.ndarray],
    targets: np.ndarray, fused: np.ndarray, k: int, settings: Settings, stages: list[str], seed: int,
) -> None:  # fmt: skip
    from fewrec.eval import llm_stage

    started = time.perf_counter()
    scores = llm_stage.score_with_llm(
        reranker, pool, split, split_name, rows, histories, fused, k, settings.rerank.candidates
    )
    fallbacks = [split.user_ids[rows[i]].item() for i, f in enumerate(scores.fallbacks) if f is not None]
    seconds = np.array(scores.seconds) if scores.seconds else np.zeros(1)
    info = {
        "backend": reranker.backend.name,
        "mode": settings.rerank.mode,
        "candidates": settings.rerank.candidates,
        "per_user_seconds_p50": float(np.percentile(seconds, 50)),
        "per_user_seconds_p95": float(np.percentile(seconds, 95)),
        "prompt_tokens_p50": float(np.median(scores.prompt_tokens)) if scores.prompt_tokens else 0.0,
        "fallback_users": fallbacks,
        "fallback_reasons": sorted({f for f in scores.fallbacks if f}),
        "within_candidates": llm_stage.within_candidates(scores, targets, seed),
    }
    if "rerank" in stages:
        record(
            f"fewrec LLM only (k={k})",
            "fewrec",
            llm_stage.full_ranking(scores, fused, scores.llm),
            {"k_shot": k},
            started,
        )
    if "fused" in stages:
        alpha = settings.rerank.alpha
        sweep = {}
        for a in llm_stage.ALPHA_GRID:
            ranks = m.target_ranks(
                llm_stage.full_ranking(scores, fused, llm_stage.fused_order(scores, a)), targets, histories
            )
            sweep[str(a)] = float(m.per_user_metrics(ranks, (10,))["ndcg@10"].mean())
        info["alpha_sweep_ndcg@10"] = sweep
        if split_name == "valid":
            info["best_alpha"] = float(max(sweep, key=lambda a: (sweep[a], -float(a))))
        order = llm_stage.fused_order(scores, alpha)
        record(f"fewrec fused (k={k}, alpha={alpha})", "fewrec", llm_stage.full_ranking(scores, fused, order),
               {"k_shot": k, "alpha": alpha}, started)  # fmt: skip
    report.llm[f"k={k}"] = info


def format_p(p: float, resamples: int) -> str:
    """A bootstrap p-value as it can honestly be stated: never 0 from a finite number of draws."""
    return f"p < 1/{resamples}" if p == 0.0 else f"p={p:.3f}"


def _compare(report: EvalReport, per_user: dict[str, dict[str, np.ndarray]], seed: int) -> Comparison | None:
    """Our last fewrec row against the baseline with the best *validation* NDCG@10."""
    ours = [r for r in report.methods if r.kind == "fewrec"]
    others = [r for r in report.methods if r.kind == "baseline" and r.validation_ndcg_at_10 is not None]
    if not ours or not others:
        return None
    metric = "ndcg@10"
    method = ours[-1].name
    best = max(others, key=lambda r: r.validation_ndcg_at_10 or 0.0).name
    a, b = per_user[method][metric], per_user[best][metric]
    diff = a - b
    p = iv.paired_bootstrap_p(a, b, n=iv.PAIRED_RESAMPLES, seed=seed)
    p_text = format_p(p, iv.PAIRED_RESAMPLES)
    low, high = iv.bootstrap_interval(diff, seed=seed)
    if p < 0.05:
        verdict = f"{method} is {'better' if diff.mean() > 0 else 'worse'} than {best} ({p_text})"
    else:
        verdict = f"the difference to {best} is within the noise ({p_text})"
    return Comparison(
        method=method, baseline=best, metric=metric, difference=float(diff.mean()),
        interval=(low, high), p_value=p, resamples=iv.PAIRED_RESAMPLES, p_text=p_text, verdict=verdict,
    )  # fmt: skip


__all__ = ["SOURCE_NAMES", "EvalReport", "MethodResult", "evaluate"]
