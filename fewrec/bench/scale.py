"""Scale figures on this machine (`fewrec bench --scale a,b`): realistic synthetic data at real
sizes, and for each candidate source its fit seconds and peak memory and the seconds to score
many users (top 100 each), plus, for the smaller size, the whole retrieval evaluation over all
users (what `fewrec eval --stages retrieval --baselines none` runs).

Every step runs in its own subprocess, so each peak is that step's own: the kernel's high-water
mark of resident memory (VmHWM), reset between fitting and scoring. The figures are checked
against the targets of issue 14 and saved as JSON with the machine's cores, memory and load.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from fewrec.config import RetrievalSettings
from fewrec.eval.harness import seeded_sample
from fewrec.eval.provenance import load_average

GB = 1024.0  # MB per GB, as the peaks are in MB


class Scale(BaseModel):
    """One synthetic size and what is measured on it."""

    name: str
    users: int
    items: int
    interactions: int
    score_users: int | None  # users scored per source (None: all)
    evaluate: bool  # also run the retrieval evaluation over all users
    combined: bool = False  # also fit every source in one retriever and score `score_users` with it
    targets: dict[str, float] = Field(default_factory=dict)


SCALES: dict[str, Scale] = {
    "a": Scale(
        name="a", users=30_000, items=20_000, interactions=300_000, score_users=None, evaluate=True,
        targets={"evaluate_s": 600, "evaluate_peak_mb": 4 * GB},
    ),
    "b": Scale(
        name="b", users=200_000, items=50_000, interactions=5_000_000, score_users=10_000, evaluate=False,
        combined=True, targets={"fit_s": 1200, "fit_peak_mb": 12 * GB, "score_s": 120},
    ),
}  # fmt: skip
CONTENT_DIM = 384  # the default embedding model's width; synthetic items get random vectors


class ScaleResult(BaseModel):
    machine: dict[str, Any] = Field(default_factory=dict)
    scales: dict[str, dict[str, Any]] = Field(default_factory=dict)


# --------------------------------------------------------------------------- measuring


def _status_mb(field: str) -> float:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) / 1024.0 if match else float("nan")


def _reset_peak() -> None:
    """Start a new high-water mark (Linux: '5' to clear_refs resets VmHWM to the current RSS)."""
    # Without it (not Linux) the peak covers the whole process so far, which only overstates it.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _machine() -> dict[str, Any]:
    memory = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(int(memory.group(1)) / 1024**2, 1) if memory else None,
        "python": sys.version.split()[0],
    }


# --------------------------------------------------------------------------- the workers


def _worker_prepare(args: dict[str, Any]) -> dict[str, Any]:
    """Generate the data, split it as `fewrec eval` does, and save the split for the others."""
    from fewrec.data.cache import save_split
    from fewrec.data.split import leave_one_out
    from fewrec.data.synthetic import generate, to_dataset

    started = time.perf_counter()
    frame = generate(args["users"], args["items"], args["interactions"], seed=args["seed"])
    generate_s = time.perf_counter() - started
    counts = np.sort(frame["item_id"].value_counts().to_numpy())[::-1]
    top = counts[: max(1, args["items"] // 100)].sum() / len(frame)
    started = time.perf_counter()
    split = leave_one_out(to_dataset(frame, f"synthetic-{args['name']}"))
    split_s = time.perf_counter() - started
    save_split(split, Path(args["folder"]))
    return {
        "generate_s": round(generate_s, 1),
        "split_s": round(split_s, 1),
        "peak_mb": round(_status_mb("VmHWM"), 1),
        "top_1pct_items_share": round(float(top), 3),
        "after_5core": {"users": split.n_users, "items": split.n_items, "interactions": split.n_interactions},
    }


def _load_split(folder: str) -> Any:
    from fewrec.data.cache import load_split

    split = load_split(Path(folder))
    if split is None:
        raise RuntimeError(f"no prepared split in {folder}")
    return split


def _vectors(n_items: int) -> np.ndarray:
    vectors = np.random.default_rng(0).normal(size=(n_items, CONTENT_DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _worker_fit(args: dict[str, Any]) -> dict[str, Any]:
    """Fit on the test split's known data, then the top 100 of `score_users` users (a seeded
    sample; None: all): one source (`source`), or every configured source in one retriever, as
    `Recommender` holds them."""
    from fewrec.retrieval.fusion import Retriever

    split = _load_split(args["folder"])
    settings = RetrievalSettings.model_validate(args["retrieval"])
    name = args.get("source")
    only = None if name is None else [name]
    if name is not None:
        settings = settings.with_source(name, weight=1.0)
    vectors = _vectors(split.n_items) if settings.needs_content(only) else None
    out: dict[str, Any] = {} if name is None else {"baseline_rss_mb": round(_status_mb("VmRSS"), 1)}
    _reset_peak()
    started = time.perf_counter()
    retriever = Retriever(
        split, settings, vectors, sources=only, model_dir=Path(args["model_dir"]), progress=False
    )
    retriever.fit("test")
    out["fit_s"] = round(time.perf_counter() - started, 1)
    out["fit_peak_mb"] = round(_status_mb("VmHWM"), 1)
    if name is None:
        out["sources"] = list(retriever.sources)
    out["notes"] = list(retriever.notes)
    if name is not None and name not in retriever.sources:
        out["skipped"] = "; ".join(retriever.notes)
        return out
    users = np.arange(split.n_users)
    if args["score_users"] is not None and args["score_users"] < split.n_users:
        users = seeded_sample(users, args["score_users"], 0)
    histories = [split.history(int(u), "test") for u in users]
    context = retriever.context_for(users, "test")
    _reset_peak()
    started = time.perf_counter()
    retriever.recommend(histories, 100, context)
    out["score_users"] = len(users)
    out["score_s"] = round(time.perf_counter() - started, 1)
    out["score_peak_mb"] = round(_status_mb("VmHWM"), 1)
    return out


def _worker_evaluate(args: dict[str, Any]) -> dict[str, Any]:
    """The retrieval evaluation over all users, every configured source (SASRec trains afresh)."""
    from fewrec.config import Settings
    from fewrec.eval.runner import evaluate

    split = _load_split(args["folder"])
    retrieval = RetrievalSettings.model_validate(args["retrieval"])
    settings = Settings(data_dir=Path(args["data_dir"]), retrieval=retrieval)
    vectors = _vectors(split.n_items) if retrieval.needs_content() else None
    _reset_peak()
    started = time.perf_counter()
    report = evaluate(split, settings, stages=["retrieval"], baselines=[], item_vectors=vectors)
    seconds = time.perf_counter() - started
    return {
        "users": report.users,
        "seconds": round(seconds, 1),
        "peak_mb": round(_status_mb("VmHWM"), 1),
        "ndcg@10": {r.name: round(r.metrics["ndcg@10"], 4) for r in report.methods},
        "recall@20": {r.name: round(r.metrics["recall@20"], 4) for r in report.methods},
        "notes": report.notes,
    }


WORKERS = {"prepare": _worker_prepare, "fit": _worker_fit, "evaluate": _worker_evaluate}


def _run_worker(kind: str, args: dict[str, Any], timeout_s: float | None) -> dict[str, Any]:
    """One step in a fresh interpreter; its JSON result, or what went wrong."""
    with tempfile.NamedTemporaryFile("w+", suffix=".json", delete=False) as handle:
        result_path = handle.name
    command = [sys.executable, "-m", "fewrec.bench.scale", kind, json.dumps(args), result_path]
    load_before = load_average()
    started = time.perf_counter()
    try:
        done = subprocess.run(command, timeout=timeout_s, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return {"error": f"exit {done.returncode}: {' | '.join(tail)}", "wall_s": round(wall, 1)}
        result = json.loads(Path(result_path).read_text())
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s or 0:.0f} s", "wall_s": round(timeout_s or 0.0, 1)}
    finally:
        Path(result_path).unlink(missing_ok=True)
    result["wall_s"] = round(wall, 1)
    result["load_before_after"] = [load_before, load_average()]
    return result


# --------------------------------------------------------------------------- the bench


def run_scale_bench(
    scales: list[Scale],
    retrieval: RetrievalSettings | None = None,
    sources: list[str] | None = None,
    seed: int = 0,
    timeout_s: float | None = None,
    say: Any = print,
) -> ScaleResult:
    """Measure each scale; `sources` (each fitted and scored alone) defaults to every source
    fewrec has; an empty list measures only the whole retriever (`combined`)."""
    from fewrec.retrieval.fusion import SOURCE_NAMES

    retrieval = retrieval or RetrievalSettings()
    names = list(SOURCE_NAMES) if sources is None else list(sources)  # []: the whole retriever only
    out = ScaleResult(machine={**_machine(), "load_at_start": load_average()})
    for scale in scales:
        figures: dict[str, Any] = {"size": scale.model_dump(exclude={"name"}), "sources": {}}
        out.scales[scale.name] = figures
        with tempfile.TemporaryDirectory(prefix=f"fewrec-scale-{scale.name}-") as tmp:
            common = {
                "folder": str(Path(tmp) / "split"),
                "retrieval": retrieval.model_dump(mode="json"),
                "score_users": scale.score_users,
            }
            say(f"scale {scale.name}: generating {scale.users:,} users × {scale.items:,} items × "
                f"{scale.interactions:,} interactions …")  # fmt: skip
            args = {**scale.model_dump(), **common, "seed": seed}
            figures["prepare"] = prepared = _run_worker("prepare", args, timeout_s)
            if "error" in prepared:
                say(f"  prepare failed: {prepared['error']}")
                continue
            say(
                f"  {prepared['after_5core']} after 5-core filtering ({prepared['generate_s']} s to generate)"
            )
            for name in names:
                say(f"  {name} …")
                args = {**common, "source": name, "model_dir": str(Path(tmp) / f"models-{name}")}
                figures["sources"][name] = result = _run_worker("fit", args, timeout_s)
                say(f"  {name}: {_one_line(result)}")
            if scale.combined:
                say(f"  every source in one retriever: fit, then score {scale.score_users or 'all'} users …")
                args = {**common, "model_dir": str(Path(tmp) / "models-all")}
                figures["retriever"] = result = _run_worker("fit", args, timeout_s)
                say(f"  one retriever: {_one_line(result)}")
            if scale.evaluate:
                say("  retrieval evaluation over all users …")
                evaluated = {**common, "data_dir": str(Path(tmp) / "eval-data")}
                figures["evaluate"] = result = _run_worker("evaluate", evaluated, timeout_s)
                say(f"  evaluation: {_one_line(result)}")
        figures["checks"] = _checks(scale, figures)
    out.machine["load_at_end"] = load_average()
    return out


def _one_line(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"failed ({result['error']})"
    if "skipped" in result:
        return f"skipped ({result['skipped']})"
    parts = [f"{k} {result[k]}" for k in ("fit_s", "fit_peak_mb", "score_s", "score_peak_mb") if k in result]
    if "seconds" in result:
        parts = [f"{result['seconds']} s", f"peak {result['peak_mb']} MB"]
    return ", ".join(parts)


def _checks(scale: Scale, figures: dict[str, Any]) -> dict[str, str]:
    """Each target of the issue against what was measured: 'met', 'missed' or 'not measured'."""
    ran = [r for r in figures.get("sources", {}).values() if "fit_s" in r and "error" not in r]
    evaluated = figures.get("evaluate", {})
    # The fit and scoring targets are about the whole retriever: measured in one process when
    # it ran (`combined`), else summed over the sources (an estimate: their peaks do not add up).
    combined = figures.get("retriever", {})
    how = "one retriever" if "fit_s" in combined else "sum over the sources"
    fit_s = combined.get("fit_s", sum(r["fit_s"] for r in ran) if ran else None)
    score_s = combined.get("score_s", sum(r.get("score_s", 0.0) for r in ran) if ran else None)
    peak = combined.get("fit_peak_mb", max((r["fit_peak_mb"] for r in ran), default=None))
    peak_of = "one retriever" if "fit_peak_mb" in combined else "largest single source"
    measured = {  # target -> (what, the figure measured or None, unit)
        "evaluate_s": ("evaluation time", evaluated.get("seconds"), "s"),
        "evaluate_peak_mb": ("evaluation peak memory", evaluated.get("peak_mb"), "MB"),
        "fit_s": (f"fit time ({how})", fit_s, "s"),
        "fit_peak_mb": (f"fit peak memory ({peak_of})", peak, "MB"),
        "score_s": (f"scoring {scale.score_users or 'all'} users ({how})", score_s, "s"),
    }
    checks: dict[str, str] = {}
    for key, (what, value, unit) in measured.items():
        if key in scale.targets and (scale.evaluate or not key.startswith("evaluate")):
            limit = scale.targets[key]
            checks[what] = "not measured" if value is None else (
                f"{'met' if value <= limit else 'missed'}: {value:,.0f} {unit} (target ≤ {limit:,.0f})"
            )  # fmt: skip
    return checks


def main(argv: list[str] | None = None) -> None:
    """The worker entry point: `python -m fewrec.bench.scale KIND ARGS_JSON RESULT_PATH`."""
    kind, args, result_path = argv or sys.argv[1:4]
    result = WORKERS[kind](json.loads(args))
    Path(result_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
