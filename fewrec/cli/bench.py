"""`fewrec bench`: speed figures on this machine, on the dataset (load, index, latency, memory),
on synthetic data at real sizes (--scale), or one process against Ray (--ray)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from fewrec.cli.common import check_ray, console, load_settings, note, progress_line, publish_block
from fewrec.cli.options import ConfigOption, DatasetOption, FormatOption, RayWorkersOption
from fewrec.config import Settings
from fewrec.data.errors import FewrecError

if TYPE_CHECKING:
    from fewrec.bench.scale import Scale, ScaleResult

UsersOption = Annotated[int, typer.Option(help="Users sampled for latency figures.")]
LlmUsersOption = Annotated[int, typer.Option(help="Users sampled for LLM rerank latency (0: skip).")]
ChatSessionsOption = Annotated[int, typer.Option(help="Scripted chat sessions timed (0: skip).")]
LoadThreadsOption = Annotated[
    int, typer.Option(help="Load test: recommend from N threads and N chat sessions (0: skip).")
]
FiguresOutOption = Annotated[
    Path | None,
    typer.Option(help="Where to save the figures as JSON (default runs/bench.json, --scale: bench-scale)."),
]
ScaleOption = Annotated[
    str | None,
    typer.Option(
        help="Scale figures on synthetic data instead: a (30k users × 20k items × 300k interactions, "
        "with the retrieval evaluation over all users), b (200k × 50k × 5M, 10,000 users scored), or a,b."
    ),
]
ScaleSizeOption = Annotated[
    str | None,
    typer.Option(help="--scale: other sizes, USERSxITEMSxINTERACTIONS (one scale), e.g. 5000x3000x60000."),
]
ScaleScoreUsersOption = Annotated[
    int | None, typer.Option(help="--scale: users scored per source (default: all for a, 10,000 for b).")
]
ScaleSourcesOption = Annotated[
    str | None,
    typer.Option(
        help="--scale: only these sources (comma-separated; default all; 'none': the whole retriever)."
    ),
]
ScaleEvaluateOption = Annotated[
    bool | None,
    typer.Option(help="--scale: run the retrieval evaluation over all users (default: for a only)."),
]
ScaleTimeoutOption = Annotated[
    float | None, typer.Option(help="--scale: seconds allowed per step (default: no limit).")
]
BenchRayOption = Annotated[
    str | None,
    typer.Option(
        "--ray",
        help="Time `fewrec eval` in one process and sharded over Ray (auto or ADDRESS); same metrics?",
    ),
]
SpeedReadmeOption = Annotated[
    Path | None,
    typer.Option(help="Also rewrite the speed block of this file, docs/RESULTS.md (from a clean tree)."),
]
RAY_FIGURES = ("dataset", "users", "cluster", "workers", "one_process_s", "ray_s", "ray_connect_s",
               "overhead_check", "identical_metrics")  # fmt: skip


def bench(
    users: UsersOption = 200,
    llm_users: LlmUsersOption = 30,
    chat_sessions: ChatSessionsOption = 10,
    load_threads: LoadThreadsOption = 20,
    out: FiguresOutOption = None,
    scale: ScaleOption = None,
    scale_size: ScaleSizeOption = None,
    scale_score_users: ScaleScoreUsersOption = None,
    scale_sources: ScaleSourcesOption = None,
    scale_evaluate: ScaleEvaluateOption = None,
    scale_timeout: ScaleTimeoutOption = None,
    ray: BenchRayOption = None,
    ray_workers: RayWorkersOption = None,
    readme: SpeedReadmeOption = None,
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
) -> None:
    """Speed figures on this machine: load, index build, retrieval latency, peak memory (or, with
    --scale, per-source fit/scoring time and peak memory on synthetic data at real sizes)."""
    from fewrec.data.files import write_atomically

    settings = load_settings(config, dataset, format)
    if ray is not None:
        check_ray(ray, ray_workers)
        figures = ray_bench(settings, ray, ray_workers)
        target = out or Path("runs/bench-ray.json")
        write_atomically(target, json.dumps(figures, indent=2).encode())
    elif scale is not None:
        scales = chosen_scales(scale, scale_size, scale_score_users, scale_evaluate)
        result = scale_bench(settings, scales, source_names(scale_sources), scale_timeout)
        target = out or Path("runs/bench-scale.json")
        write_atomically(target, result.model_dump_json(indent=2).encode())
    else:
        machine_bench(settings, users, llm_users, chat_sessions, load_threads, out, readme)
        return
    console.print(f"wrote {target}")


def machine_bench(
    settings: Settings, users: int, llm_users: int, chat_sessions: int, load_threads: int, out: Path | None,
    readme: Path | None,
) -> None:  # fmt: skip
    """`fewrec bench` on the dataset: run, print the figures, save them (and the README section)."""
    from fewrec.bench.speed import README_MARKERS, readme_section, run_bench
    from fewrec.data.files import write_atomically
    from fewrec.eval.report import check_markers

    if readme is not None:
        check_markers(readme, README_MARKERS)  # before minutes of timing, not after
    launcher = None
    if load_threads > 0:
        from fewrec.ui.app import launch as launcher
    result = run_bench(
        settings, users=users, llm_users=llm_users, chat_sessions=chat_sessions, load_threads=load_threads,
        page_launcher=launcher,
    )  # fmt: skip
    table = Table(title="fewrec bench (this machine)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in result.figures.items():
        table.add_row(key, str(value))
    console.print(table)
    target = out or Path("runs/bench.json")
    write_atomically(target, result.model_dump_json(indent=2).encode())
    console.print(f"wrote {target}")
    section = partial(readme_section, result, target)
    publish_block(readme, result, section, README_MARKERS, "speed section")


def ray_bench(settings: Settings, address: str, workers: int | None) -> dict[str, Any]:
    """`fewrec bench --ray`: time eval in one process and on Ray; print the figures."""
    from fewrec.bench.ray_overhead import run_ray_bench

    figures = run_ray_bench(settings, address, workers, say=note)
    table = Table(title="fewrec eval: one process vs sharded over Ray (this machine)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in RAY_FIGURES:
        table.add_row(key, str(figures[key]))
    console.print(table)
    for difference in figures["differences"]:
        console.print(f"  differs: {difference}", highlight=False)
    return figures


def chosen_scales(
    names: str, size: str | None, score_users: int | None, evaluate: bool | None
) -> list[Scale]:
    """The scales --scale names, with --scale-size, --scale-score-users and --scale-evaluate."""
    from fewrec.bench.scale import SCALES

    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in SCALES]
    if unknown or not chosen:
        raise FewrecError(f"unknown --scale {names!r}; choose a, b or a,b")
    scales = [SCALES[n].model_copy() for n in chosen]
    if size is not None:
        if len(scales) != 1:
            raise FewrecError("--scale-size applies to one scale at a time")
        try:
            u, i, n = (int(x.replace("_", "")) for x in size.lower().split("x"))
        except ValueError as exc:
            raise FewrecError(f"--scale-size expects USERSxITEMSxINTERACTIONS, got {size!r}") from exc
        scales[0] = scales[0].model_copy(update={"users": u, "items": i, "interactions": n})
    if score_users is not None:
        scales = [s.model_copy(update={"score_users": score_users}) for s in scales]
    if evaluate is not None:
        scales = [s.model_copy(update={"evaluate": evaluate}) for s in scales]
    return scales


def source_names(sources: str | None) -> list[str] | None:
    """--scale-sources: the sources to time (None: all; []: only the whole retriever)."""
    from fewrec.retrieval.fusion import SOURCE_NAMES

    source_list = [x.strip() for x in sources.split(",") if x.strip()] if sources else None
    if sources is not None and sources.strip() == "none":  # only the whole retriever (and evaluation)
        source_list = []
    bad = [x for x in source_list or [] if x not in SOURCE_NAMES]
    if bad:
        raise FewrecError(f"unknown source(s) {', '.join(bad)}; known: {', '.join(SOURCE_NAMES)}")
    return source_list


def scale_bench(
    settings: Settings, scales: list[Scale], sources: list[str] | None, timeout_s: float | None
) -> ScaleResult:
    """`fewrec bench --scale`: run the scales asked for and print a table per scale."""
    from fewrec.bench.scale import run_scale_bench

    result = run_scale_bench(
        scales, settings.retrieval, sources, seed=settings.seed, timeout_s=timeout_s, say=progress_line
    )
    for name, figures in result.scales.items():
        console.print(scale_table(name, figures, result.machine))
        for line in scale_notes(figures):
            console.print(f"  {line}", highlight=False)
    return result


def scale_table(name: str, figures: dict[str, Any], machine: dict[str, Any]) -> Table:
    """One scale's fit and scoring figures, a row per source (and the retriever, the evaluation)."""
    size_info = figures["size"]
    table = Table(
        title=f"scale {name}: {size_info['users']:,} users × {size_info['items']:,} items × "
        f"{size_info['interactions']:,} interactions (cpus {machine['cpus']}, "
        f"load {machine['load_at_start']} → {machine.get('load_at_end')})"
    )
    for column in ("source", "fit s", "fit peak MB", "users", "score s", "score peak MB"):
        table.add_column(column, justify="left" if column == "source" else "right", no_wrap=True)
    for source, r in scale_rows(figures):
        keys = ("fit_s", "fit_peak_mb", "score_users", "score_s", "score_peak_mb")
        cells = [r.get(k, "–") for k in keys]
        if source == "evaluation":  # one figure for the whole run: its seconds and peak
            cells = ["", "", r.get("score_users", "–"), r.get("seconds", "–"), r.get("peak_mb", "–")]
        table.add_row(source, *(str(c) for c in cells))
    return table


def scale_rows(figures: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name, figures) per source, then the whole retriever and the evaluation where run."""
    rows = list(figures["sources"].items())
    if "retriever" in figures:
        rows.append(("all (one retriever)", figures["retriever"]))
    if "evaluate" in figures:
        evaluated = figures["evaluate"]
        rows.append(("evaluation", {**evaluated, "score_users": evaluated.get("users")}))
    return rows


def scale_notes(figures: dict[str, Any]) -> list[str]:
    """The lines under a scale's table: why a row is empty, its notes, the NDCG and the checks."""
    lines: list[str] = []
    for source, r in scale_rows(figures):
        why = r.get("error") or r.get("skipped")
        lines += [f"{source}: {why}"] if why else [f"{source}: {n}" for n in r.get("notes", [])]
    if "evaluate" in figures and "ndcg@10" in figures["evaluate"]:
        ndcg = figures["evaluate"]["ndcg@10"]
        shown = ", ".join(f"{k.removeprefix('source: ')} {v}" for k, v in ndcg.items())
        lines.append(f"evaluation NDCG@10 (synthetic data): {shown}")
    lines += [f"{check}: {verdict}" for check, verdict in figures.get("checks", {}).items()]
    return lines
