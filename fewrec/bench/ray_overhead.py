"""What Ray costs and whether it changes anything (`fewrec bench --ray auto|ADDRESS`): the same
evaluation as `fewrec eval` (retrieval stage, every baseline, history cuts 1, 3, 5) run once in
this process and once with its users sharded over Ray actors, timed end to end (Ray's start,
its workers and shipping the fitted models included), and every metric compared to the last
digit. Trained weights (SASRec) are cached before either run, so neither pays for training."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from fewrec.agent.pipeline import Pipeline
from fewrec.config import Settings
from fewrec.eval.baselines import run_baseline
from fewrec.eval.runner import ALL_BASELINES, EvalReport, evaluate
from fewrec.eval.verify import figures

OVERHEAD_TARGET = 0.25  # issue 14: sharded evaluation at most 25% slower on the bundled data


def _differences(single: EvalReport, sharded: EvalReport) -> list[str]:
    """Every figure that is not identical between the two runs (empty: the same numbers): those
    `fewrec compare-results` compares, here to the last bit."""
    a, b = (figures(r.model_dump(mode="json")) for r in (single, sharded))
    return [
        f"{key}: {a.get(key)!r} vs {b.get(key)!r}"
        for key in sorted(a.keys() | b.keys())
        if a.get(key) != b.get(key)
    ]


def run_ray_bench(
    settings: Settings,
    address: str = "auto",
    workers: int | None = None,
    users: int | None = None,
    baselines: list[str] | None = None,
    history_cuts: list[int] | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Both runs on the test split; returns the figures (seconds, overhead, differences)."""
    from fewrec.distributed import RayPool, connect, is_connected, shutdown

    baselines = list(ALL_BASELINES) if baselines is None else baselines
    cuts = [1, 3, 5] if history_cuts is None else history_cuts
    pipeline = Pipeline(settings, fit_on="test", progress=True, say=say)
    split, settings = pipeline.split, pipeline.settings
    vectors = pipeline.item_vectors  # the content index is built once, outside both timings
    say("caching trained weights before timing (SASRec trains here once if it has to) …")
    pipeline.retriever_for("test")
    options = {
        "split_name": "test", "stages": ["retrieval"], "baselines": baselines, "history_cuts": cuts,
        "users": users, "item_vectors": vectors,
    }  # fmt: skip
    if "sasrec" in baselines:  # its grid trains two more models: cache them too
        run_baseline(
            "sasrec", split, settings.retrieval.model_copy(update={"seed": 0}), "test",
            split.eval_users("test")[:1], model_dir=settings.model_dir,
        )  # fmt: skip
    say("one process …")
    started = time.perf_counter()
    single = evaluate(split, settings, **options)
    single_s = time.perf_counter() - started
    say(f"one process: {single_s:.1f} s; now sharded over Ray …")
    joined_before = is_connected()  # a caller's cluster (a test's) is left as it was
    started = time.perf_counter()
    try:
        cluster = connect(address, say=say)
        with RayPool(workers) as pool:  # its actors start while evaluate() fits
            ready_s = time.perf_counter() - started
            n_workers = pool.workers
            sharded = evaluate(split, settings, ray=pool, **options)
    finally:
        if not joined_before:
            shutdown()
    ray_s = time.perf_counter() - started
    differences = _differences(single, sharded)
    overhead = ray_s / single_s - 1.0
    return {
        "dataset": split.name,
        "users": single.users,
        "baselines": baselines,
        "history_cuts": cuts,
        "cluster": cluster,
        "workers": n_workers,
        "cpus_here": os.cpu_count(),
        "load_at_end": list(os.getloadavg()),
        "one_process_s": round(single_s, 2),
        "ray_s": round(ray_s, 2),
        "ray_connect_s": round(ready_s, 2),
        "overhead": round(overhead, 4),
        "overhead_target": OVERHEAD_TARGET,
        "overhead_check": f"{'met' if overhead <= OVERHEAD_TARGET else 'missed'}: {overhead:+.1%} "
        f"(target ≤ {OVERHEAD_TARGET:+.0%})",
        "identical_metrics": not differences,
        "differences": differences,
        "fused_ndcg@10": single.method("fewrec retrieval (fused)").metrics["ndcg@10"],
    }
