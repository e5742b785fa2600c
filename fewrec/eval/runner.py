"""Batch evaluation: every stage and baseline on the same split, users and seed.

`evaluate(...) -> EvalReport` is the one code path behind `fewrec eval` and
`python -m fewrec eval`. It is a loop over methods (`Method`): the fused retriever, the LLM
stages over its candidates, each of its sources and the baselines, each fitted and ranked for
the split's evaluation users in turn (`_methods`). From each method's per-user ranks come its
metrics, means with bootstrap intervals, the same metrics on the users whose target is tied in
time with the item before it and on the rest, and the history-cut slices; from the list, a
paired test of the last fewrec method against the baseline that is best *on validation*.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
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
from fewrec.eval.baselines import BASELINES, baseline_grids, run_baseline
from fewrec.eval.harness import anchors, named, seeded_sample
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

# "fewrec": the fused retriever and the LLM stages; "source": one source of the fused retriever.
MethodKind = Literal["fewrec", "source", "baseline", "published"]


class MethodResult(BaseModel):
    """A method's figures in results.json."""

    name: str
    kind: MethodKind
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
        return named(self.methods, name)


class EvalError(FewrecError):
    """Bad evaluation arguments."""


def validate_args(
    split: LeaveOneOutSplit, stages: list[str], baselines: list[str], users: int | None, cuts: list[int],
    split_name: SplitName = "test",
) -> None:  # fmt: skip
    for what, given, known in (("stage", stages, STAGES), ("baseline", baselines, ALL_BASELINES)):
        if unknown := [v for v in given if v not in known]:
            raise EvalError(f"unknown {what}(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    available = len(split.eval_users(split_name))
    if users is not None and not 1 <= users <= available:
        raise EvalError(
            f"--users must be between 1 and {available} (the users with a {split_name} target "
            f"under this protocol), got {users}"
        )
    if any(c < 1 for c in cuts):
        raise EvalError("history cuts must be ≥ 1 item")


@dataclass
class Method:
    """One method an evaluation ranks: what a fitted ranker left per evaluated user (`Ranked`)
    and what the report says about it. The fused retriever, each of its sources, the LLM stages
    and the baselines are all methods; every figure (intervals, ties, slices, the comparison) is
    computed from the list of them. Methods are fitted one at a time (`_methods`): a fitted
    baseline can be gigabytes, gone before the next one fits."""

    name: str
    kind: MethodKind
    ranked: Ranked
    params: dict = field(default_factory=dict)
    seconds: float | None = None  # None: timed with the method ranked in the same pass
    validation_ndcg_at_10: float | None = None  # where the method was chosen on validation
    cut_ranks: dict[int, np.ndarray] = field(default_factory=dict)  # history cut -> target ranks


@dataclass
class EvaluatedUsers:
    """The users an evaluation scores and what each method is measured against, with the one
    way to rank them (here, or shard by shard on Ray: the same numbers)."""

    split: LeaveOneOutSplit
    split_name: SplitName
    rows: np.ndarray
    targets: np.ndarray
    tied: np.ndarray
    histories: list[np.ndarray]
    popularity: np.ndarray
    sampled: int | None
    seed: int
    batch_users: int
    ray: RayPool | None = None

    @staticmethod
    def draw(
        split: LeaveOneOutSplit, split_name: SplitName, users: int | None, seed: int, sampled: int | None,
        batch_users: int, ray: RayPool | None,
    ) -> EvaluatedUsers:  # fmt: skip
        """Every eligible user, or a seeded sample of `users` of them."""
        rows = seeded_sample(split.eval_users(split_name), users, seed)
        return EvaluatedUsers(
            split, split_name, rows, split.targets(split_name)[rows], split.tied(split_name)[rows],
            [split.history(int(u), split_name) for u in rows],
            np.bincount(split.interactions_before(split_name)["item"], minlength=split.n_items),
            sampled, seed, batch_users, ray,
        )  # fmt: skip

    def rank(self, job: RankJob) -> RankedRows:
        """Rank every evaluated user for one fitted retriever."""
        if self.ray is None:
            return rank_rows(job, slice(0, len(self.rows)))
        return RankedRows.concat(self.ray.map_rows(rank_rows, job, len(self.rows), self.batch_users))

    def rank_batches(self, batches: Iterable[tuple[slice, np.ndarray]]) -> Ranked:
        return rank_batches(batches, self.targets, self.histories, self.sampled, self.seed)

    def rank_dense(self, scores: np.ndarray) -> Ranked:
        """Rank scores that are dense already (the LLM stages')."""
        return self.rank_batches(dense_batches(scores, self.batch_users))


@dataclass
class EvalPlan:
    """What one evaluation runs, its arguments resolved and checked."""

    settings: Settings
    stages: list[str]
    baselines: list[str]
    history_cuts: list[int]
    llm_stages: list[str]
    k_shots: list[int]
    reranker: LLMReranker | None = None
    demo_pool: DemonstrationPool | None = None
    pipeline: Pipeline | None = None
    item_vectors: np.ndarray | None = None
    progress: Callable[[str], None] | None = None


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
    plan = _plan(
        split, split_name, users, settings, stages, baselines, history_cuts, reranker, demo_pool, k_shots,
        pipeline, item_vectors, progress,
    )  # fmt: skip
    say = progress or (lambda _msg: None)
    evaluated = EvaluatedUsers.draw(
        split, split_name, users, seed, sampled, plan.settings.retrieval.batch_users, ray
    )
    report = _new_report(evaluated, plan)
    if weights_from is None:
        given = "fusion weights: as given to evaluate()"
        weights_from = pipeline.weights_from if pipeline is not None else given
    report.start_run(plan.settings.model_dump(mode="json"), weights_from)
    per_user: dict[str, dict[str, np.ndarray]] = {}
    try:
        for method in _methods(evaluated, report, plan):
            result, per_user[method.name] = _method_result(evaluated, method)
            report.methods.append(result)
            _record_slices(report, method)
            metrics = result.metrics
            say(f"{result.name}: NDCG@10 {metrics['ndcg@10']:.4f}, Recall@10 {metrics['recall@10']:.4f}")
            if on_result:
                on_result(report)
    except KeyboardInterrupt:
        report.interrupted("the methods listed are complete, the rest were not run")
    _conclude(report, evaluated, plan, per_user)
    return report


def _plan(
    split: LeaveOneOutSplit, split_name: SplitName, users: int | None, settings: Settings | None,
    stages: list[str] | None, baselines: list[str] | None, history_cuts: list[int] | None,
    reranker: LLMReranker | None, demo_pool: DemonstrationPool | None, k_shots: list[int] | None,
    pipeline: Pipeline | None, item_vectors: np.ndarray | None, progress: Callable[[str], None] | None,
) -> EvalPlan:  # fmt: skip
    """`evaluate`'s arguments with their defaults (the pipeline's where it has them), checked:
    an EvalError for what cannot run, the LLM stages without a backend included."""
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
    return EvalPlan(
        settings, stages, baselines, history_cuts, llm_stages, k_shots, reranker, demo_pool, pipeline,
        item_vectors, progress,
    )  # fmt: skip


def _new_report(evaluated: EvaluatedUsers, plan: EvalPlan) -> EvalReport:
    split, sampled, tied = evaluated.split, evaluated.sampled, evaluated.tied
    return EvalReport(
        dataset=split.name,
        split=evaluated.split_name,
        protocol="full ranking" if not sampled else f"sampled: 1 held-out + {sampled - 1} random negatives",
        users=len(evaluated.rows),
        split_protocol=split.protocol,
        split_description=split.describe(),
        ties=TieSummary(
            order=str(plan.settings.split.ties), tied_users=int(tied.sum()), untied_users=int((~tied).sum())
        ),
        seed=evaluated.seed,
        stages=plan.stages,
        history_cuts=plan.history_cuts,
    )


def _methods(evaluated: EvaluatedUsers, report: EvalReport, plan: EvalPlan) -> Iterator[Method]:
    """Every method of the run, in the report's order, each fitted and ranked when it is reached:
    the fused retriever, the LLM stages over its candidates, its sources, then the baselines."""
    settings = plan.settings
    if "retrieval" in plan.stages or plan.llm_stages:
        started = time.perf_counter()
        if plan.pipeline is not None:
            retriever = plan.pipeline.retriever_for(evaluated.split_name)
        else:
            retriever = build_retriever(
                evaluated.split,
                settings.retrieval,
                evaluated.split_name,
                plan.item_vectors,
                settings.model_dir,
            )
        _keep_notes(report, retriever.notes)
        context = retriever.context_for(evaluated.rows, evaluated.split_name)
        job = RankJob(
            retriever, evaluated.histories, evaluated.targets, context, FUSED, evaluated.sampled,
            evaluated.seed, each_source=True, keep_fused=bool(plan.llm_stages), cuts=plan.history_cuts,
        )  # fmt: skip
        done = evaluated.rank(job)
        del job
        yield Method(FUSED, "fewrec", done.ranked.pop(FUSED), {"weights": settings.retrieval.weights},
                     _since(started), cut_ranks=done.cut_ranks)  # fmt: skip
        for k in plan.k_shots if plan.llm_stages and plan.reranker is not None else []:
            yield from _llm_methods(report, evaluated, plan, done.fused, k)
        done.fused = None
        for name, ranked in done.ranked.items():
            yield Method(name, "source", ranked)  # timed with the fused row
    for name in plan.baselines:
        yield from _baseline_method(evaluated, report, plan, name)


def _baseline_method(
    evaluated: EvaluatedUsers, report: EvalReport, plan: EvalPlan, name: str
) -> Iterator[Method]:
    """The baseline `name` tuned on validation and ranked; nothing when it was skipped (noted)."""
    settings, progress = plan.settings, plan.progress
    started = time.perf_counter()
    if progress is not None:
        points = len(baseline_grids(settings.retrieval)[name][1]) if name != "random" else 1
        how = f"the best of {points} grid points on validation" if points > 1 else "one grid point: not tuned"
        progress(f"baseline {name} ({how}) …")
    result = run_baseline(
        name, evaluated.split, settings.retrieval.model_copy(update={"seed": evaluated.seed}),
        evaluated.split_name, evaluated.rows, model_dir=settings.model_dir, progress=progress is not None,
    )  # fmt: skip
    if result.skipped is not None:
        _keep_notes(report, [f"baseline {name}: {result.skipped}"])
        return
    # The history-cut slices of the baselines that read the history as a set of items.
    cuts = plan.history_cuts if name in ("popularity", "ease", "item-knn", "markov") else []
    if result.retriever is None:  # seeded noise: drawn here, batch after batch
        ranked, cut_ranks = evaluated.rank_batches(result.score_batches()), {}
    else:
        context = result.retriever.context_for(evaluated.rows, evaluated.split_name)
        job = RankJob(result.retriever, evaluated.histories, evaluated.targets, context, name,
                      evaluated.sampled, evaluated.seed, cuts=cuts)  # fmt: skip
        done = evaluated.rank(job)
        ranked, cut_ranks = done.ranked[name], done.cut_ranks
        del job, done
    params, validation = result.params, result.validation_ndcg
    del result  # a fitted baseline can be gigabytes: gone before the next one fits
    yield Method(name, "baseline", ranked, params, _since(started), validation, cut_ranks)


def _llm_methods(
    report: EvalReport, evaluated: EvaluatedUsers, plan: EvalPlan, fused: np.ndarray, k: int
) -> Iterator[Method]:
    """The LLM stages with `k` demonstrations over the fused candidates: LLM only, and fused
    with the retrieval score; their timing and diagnostics go to `report.llm`."""
    from fewrec.eval import llm_stage

    settings, reranker = plan.settings, plan.reranker
    assert reranker is not None
    started = time.perf_counter()
    split, rows, targets, seed = evaluated.split, evaluated.rows, evaluated.targets, evaluated.seed
    scores = llm_stage.score_with_llm(
        reranker, plan.demo_pool, split, evaluated.split_name, rows, evaluated.histories, fused, k,
        settings.rerank.candidates,
    )  # fmt: skip
    fallbacks = [split.user_ids[rows[i]].item() for i, f in enumerate(scores.fallbacks) if f is not None]
    p50, p95 = m.p50_p95(np.array(scores.seconds) if scores.seconds else np.zeros(1))
    info = {
        "backend": reranker.backend.name,
        "mode": settings.rerank.mode,
        "candidates": settings.rerank.candidates,
        "per_user_seconds_p50": p50,
        "per_user_seconds_p95": p95,
        "prompt_tokens_p50": float(np.median(scores.prompt_tokens)) if scores.prompt_tokens else 0.0,
        "fallback_users": fallbacks,
        "fallback_reasons": sorted({f for f in scores.fallbacks if f}),
        "within_candidates": llm_stage.within_candidates(scores, targets, seed),
    }
    if "rerank" in plan.llm_stages:
        ranked = evaluated.rank_dense(llm_stage.full_ranking(scores, fused, scores.llm))
        yield Method(f"fewrec LLM only (k={k})", "fewrec", ranked, {"k_shot": k}, _since(started))
    if "fused" in plan.llm_stages:
        alpha = settings.rerank.alpha
        sweep = {}
        for a in llm_stage.ALPHA_GRID:
            ranks = m.target_ranks(
                llm_stage.full_ranking(scores, fused, llm_stage.fused_order(scores, a)), targets,
                evaluated.histories,
            )  # fmt: skip
            sweep[str(a)] = float(m.per_user_metrics(ranks, (10,))["ndcg@10"].mean())
        info["alpha_sweep_ndcg@10"] = sweep
        if evaluated.split_name == "valid":
            info["best_alpha"] = float(max(sweep, key=lambda a: (sweep[a], -float(a))))
        order = llm_stage.fused_order(scores, alpha)
        ranked = evaluated.rank_dense(llm_stage.full_ranking(scores, fused, order))
        yield Method(f"fewrec fused (k={k}, alpha={alpha})", "fewrec", ranked, {"k_shot": k, "alpha": alpha},
                     _since(started))  # fmt: skip
    report.llm[f"k={k}"] = info


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 3)


def _keep_notes(report: EvalReport, notes: list[str]) -> None:
    """Keep the retriever's notes (a skipped source, SASRec's training) in the report; they
    were logged already as they happened."""
    report.notes.extend(note for note in notes if note not in report.notes)


def _method_result(evaluated: EvaluatedUsers, method: Method) -> tuple[MethodResult, dict[str, np.ndarray]]:
    """A method's figures (means, intervals, coverage, tied and untied users) and its
    per-user metrics (for the paired comparison)."""
    values = m.per_user_metrics(method.ranked.ranks)
    at_10 = {k: v for k, v in values.items() if k.endswith("@10")}
    top10, tied = method.ranked.top10, evaluated.tied
    result = MethodResult(
        name=method.name,
        kind=method.kind,
        params=method.params,
        metrics=m.summarise(values),
        intervals={k: iv.bootstrap_interval(v, seed=evaluated.seed) for k, v in at_10.items()},
        coverage_at_10=m.coverage(top10, evaluated.split.n_items),
        long_tail_at_10=m.long_tail_share(top10.ravel(), evaluated.popularity),
        seconds=method.seconds,
        validation_ndcg_at_10=method.validation_ndcg_at_10,
        ties={
            label: {"users": float(part.sum()), **{k: float(v[part].mean()) if part.any() else 0.0
                                                   for k, v in at_10.items()}}
            for label, part in (("tied", tied), ("untied", ~tied))
        },
    )  # fmt: skip
    if method.kind == "fewrec" and not evaluated.sampled:
        ranks = method.ranked.ranks
        result.candidate_recall = {f"recall@{d}": float((ranks < d).mean()) for d in CANDIDATE_DEPTHS}
    return result, values


def _record_slices(report: EvalReport, method: Method) -> None:
    for cut, ranks in method.cut_ranks.items():
        report.slices.setdefault(str(cut), {})[method.name] = m.summarise(m.per_user_metrics(ranks))


def _conclude(
    report: EvalReport, evaluated: EvaluatedUsers, plan: EvalPlan, per_user: dict[str, dict[str, np.ndarray]]
) -> None:
    """The published anchors (`anchors.toml`) where they apply, the comparison with the best
    baseline (or why there is none), and the end of the run."""
    split = evaluated.split
    setting = (split.name, evaluated.split_name, split.protocol, plan.settings.split.ties)
    if not evaluated.sampled and setting == ("ml-latest-small", "test", "loo", "id"):  # the anchors' own
        report.published = [
            MethodResult(name=a.name, kind="published", metrics=a.metrics) for a in anchors("retrieval")
        ]
    if report.complete:
        report.comparison = _compare(report.methods, per_user, evaluated.seed)
    else:  # the best baseline by validation may be one that never ran: no verdict
        done = {r.name for r in report.methods} | {n.split(":")[0] for n in report.notes}  # "baseline B: why"
        stopped = ", ".join(b for b in plan.baselines if not {b, f"baseline {b}"} & done) or "it finished"
        report.notes.append(f"no comparison with the best baseline: the run stopped before {stopped} ran")
    report.finish_run()


def format_p(p: float, resamples: int) -> str:
    """A bootstrap p-value as it can honestly be stated: never 0 from a finite number of draws."""
    return f"p < 1/{resamples}" if p == 0.0 else f"p={p:.3f}"


def _compare(
    methods: list[MethodResult], per_user: dict[str, dict[str, np.ndarray]], seed: int
) -> Comparison | None:
    """Our last fewrec row against the baseline with the best *validation* NDCG@10."""
    ours = [r for r in methods if r.kind == "fewrec"]
    others = [r for r in methods if r.kind == "baseline" and r.validation_ndcg_at_10 is not None]
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


__all__ = ["SOURCE_NAMES", "EvalReport", "Method", "MethodResult", "evaluate"]
