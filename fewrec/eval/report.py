"""The evaluations' files: results.json (every number), report.md (tables), PNG plots and the
block each rewrites in docs/RESULTS.md. `write_run`, `table` (every Markdown table), the figure
helpers and the README block functions serve every report (`fewrec eval`'s, the chat's, the
conversations', the speed figures'); the rows of `fewrec eval`'s tables are here too, the
others' beside their runs.

Files are written to a temporary name and renamed, so a crash never leaves a half-written
results.json that a later reader trusts.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from fewrec.data.errors import FewrecError
from fewrec.data.files import remove_stale_temporaries, write_atomically
from fewrec.eval.provenance import Provenance, RunRecord, check_publishable
from fewrec.eval.runner import EvalReport, MethodResult

log = logging.getLogger(__name__)

TEXTS = Path(__file__).with_name("report_texts.toml")
_SLOT = re.compile(r"\{(\w+)\}")
METRIC_COLUMNS = ("ndcg@5", "ndcg@10", "ndcg@20", "recall@5", "recall@10", "recall@20", "mrr@10")


@cache
def texts(evaluation: str) -> dict[str, str]:
    """The prose of one evaluation's reports (`report_texts.toml`), by name."""
    return tomllib.loads(TEXTS.read_text(encoding="utf-8"))[evaluation]


def fill(template: str, **slots: object) -> list[str]:
    """The lines of `template` with its slots filled: a line that is only `{name}` whose value is
    a list becomes those lines (none: the line goes); any other `{name}` becomes str(value)."""
    lines: list[str] = []
    for line in template.split("\n"):
        whole = _SLOT.fullmatch(line)
        if whole is not None and isinstance(slots[whole.group(1)], list):
            lines += slots[whole.group(1)]  # type: ignore[arg-type]
        else:
            lines.append(_SLOT.sub(lambda m: str(slots[m.group(1)]), line))
    return lines


def incomplete(report: RunRecord) -> str:
    return "" if report.complete else " **INCOMPLETE RUN** (interrupted)."


def commit_line(report: RunRecord, then: str = ".") -> str:
    return f"Commit `{report.git_commit or 'unknown'}`, started {report.started}{then}"


def note_lines(report: RunRecord) -> list[str]:
    return ["", *(f"Note: {n}" for n in report.notes)]


def markdown(report: EvalReport) -> str:
    """report.md: one section after another, each from the report's list of methods."""
    lines = fill(
        texts("eval")["report"], dataset=report.dataset, split=report.split, protocol=report.protocol,
        split_protocol=report.split_description or report.split_protocol, users=report.users,
        seed=report.seed, incomplete=incomplete(report), commit=commit_line(report),
        tie_line=_tie_lines(report), metrics_table=_metrics_table(report),
        candidate_recall=_candidate_recall_table(report), coverage_table=_coverage_table(report),
        ties=_ties_table(report), slices=_slices_table(report), llm=_llm_tables(report),
        comparison=_comparison_lines(report), notes=note_lines(report),
    )  # fmt: skip
    return "\n".join(lines) + "\n"


def _metrics_table(report: EvalReport) -> list[str]:
    ci = "ndcg@10"
    rows = [[r.name, r.kind, *(num(r.metrics[c], 4) for c in METRIC_COLUMNS), span(r.intervals.get(ci), 4)]
            for r in report.methods]  # fmt: skip
    rows += [[r.name, "published, not measured", *(num(r.metrics.get(c), 4) for c in METRIC_COLUMNS), None]
             for r in report.published]  # fmt: skip
    return table(["method", "kind", *METRIC_COLUMNS, "95% CI NDCG@10"], rows)


def _candidate_recall_table(report: EvalReport) -> list[str]:
    ours = [r for r in report.methods if r.candidate_recall]
    if not ours:
        return []
    rows = [[r.name, *(f"{v:.4f}" for v in r.candidate_recall.values())] for r in ours]
    return fill(texts("eval")["candidate_recall"], table=table(["method", *ours[0].candidate_recall], rows))


def _coverage_table(report: EvalReport) -> list[str]:
    rows = [[r.name, f"{r.coverage_at_10:.4f}", f"{r.long_tail_at_10:.4f}",
             "(with fused)" if r.seconds is None else r.seconds] for r in report.methods]  # fmt: skip
    return table("method | coverage@10 | long-tail share@10 | seconds", rows)


def _ties_table(report: EvalReport) -> list[str]:
    if not any(r.ties for r in report.methods):
        return []
    rows = [
        [r.name, *(f"{r.ties.get(group, {}).get(m, 0):.4f}" for group in ("tied", "untied")
                   for m in ("ndcg@10", "recall@10")),
         _valid(r), ", ".join(f"{k}={v}" for k, v in r.params.items()) if r.kind == "baseline" else ""]
        for r in report.methods
    ]  # fmt: skip
    headers = "method | NDCG@10 tied | Recall@10 tied | NDCG@10 untied | Recall@10 untied | valid NDCG@10 " \
        "| chosen parameters"  # fmt: skip
    return fill(texts("eval")["ties"], table=table(headers, rows))


def _valid(r: MethodResult) -> str:
    return "" if r.validation_ndcg_at_10 is None else f"{r.validation_ndcg_at_10:.4f}"


def _slices_table(report: EvalReport) -> list[str]:
    if not report.slices:
        return []
    methods = sorted({name for cut in report.slices.values() for name in cut})
    rows = [[cut, *(num(by_method.get(n, {}).get("ndcg@10"), 4) for n in methods)]
            for cut, by_method in sorted(report.slices.items(), key=lambda kv: int(kv[0]))]  # fmt: skip
    return fill(texts("eval")["slices"], table=table(["k", *methods], rows))


def _llm_tables(report: EvalReport) -> list[str]:
    if not report.llm:
        return []
    headers = "k | backend | p50 s/user | p95 s/user | prompt tokens p50 | fallbacks | users | MRR LLM | " \
        "MRR retrieval | MRR random (expected) | best alpha (valid)"  # fmt: skip
    rows = []
    for k, info in report.llm.items():
        w = info.get("within_candidates", {})
        rows.append([
            k, f"{info.get('backend')} ({info.get('mode')})", f"{info.get('per_user_seconds_p50', 0):.2f}",
            f"{info.get('per_user_seconds_p95', 0):.2f}", f"{info.get('prompt_tokens_p50', 0):.0f}",
            len(info.get("fallback_users", [])), w.get("users", 0),
            *(f"{w.get(m, float('nan')):.4f}" for m in ("mrr_llm", "mrr_retrieval", "mrr_random_expected")),
            info.get("best_alpha", "–"),
        ])  # fmt: skip
    sweeps = [
        f"\nNDCG@10 by alpha ({k}): " + ", ".join(f"{a}: {v:.4f}" for a, v in sweep.items())
        for k, info in report.llm.items()
        if (sweep := info.get("alpha_sweep_ndcg@10"))
    ]
    return fill(texts("eval")["llm"], table=table(headers, rows), sweeps=sweeps)


def _comparison_lines(report: EvalReport) -> list[str]:
    c = report.comparison
    if c is None:
        return []
    return [
        "",
        f"Paired bootstrap over users, {c.metric}: {c.method} − {c.baseline} = {c.difference:+.4f} "
        f"(95% CI {c.interval[0]:+.4f} to {c.interval[1]:+.4f}, {c.resamples} resamples); "
        f"{c.verdict}. The baseline was chosen as the best by {c.chosen_on}.",
    ]


def _tie_lines(report: EvalReport) -> list[str]:
    if report.ties is None:
        return []
    t = report.ties
    total = max(t.tied_users + t.untied_users, 1)
    order = "item id (the paper's order)" if t.order == "id" else "a seeded random key"
    return [
        f"Ties: {t.tied_users} of {total} users ({t.tied_users / total:.0%}) have a target that shares "
        f"its timestamp with the item before it; same-second interactions are ordered by {order}."
    ]


def plots(report: EvalReport, folder: Path) -> list[Path]:
    plt = pyplot()
    written: list[Path] = []
    if report.methods:
        bars = [*report.methods, *report.published]
        names = [r.name for r in bars]
        values = [r.metrics["ndcg@10"] for r in bars]
        # A published figure has no interval: a bar without a whisker.
        whiskers = [r.intervals.get("ndcg@10", (v, v)) for r, v in zip(bars, values, strict=True)]
        colours = ["tab:blue" if r.kind == "fewrec" else "tab:gray" for r in report.methods]
        colours += ["tab:orange"] * len(report.published)
        fig, ax = plt.subplots(figsize=(8, 0.4 * len(names) + 1.5))
        ax.barh(names, values, xerr=error_bars(values, whiskers), color=colours, capsize=3)
        ax.invert_yaxis()
        ax.set_xlabel(f"NDCG@10 ({report.protocol}; orange = published, not measured)")
        ax.set_title(f"{report.dataset}, {report.split} split, {report.users} users")
        fig.tight_layout()
        written.append(save_figure(fig, folder / "ndcg_by_method.png"))
    if report.slices:
        fig, ax = plt.subplots(figsize=(6, 4))
        cuts = sorted(report.slices, key=int)
        methods = sorted({n for c in report.slices.values() for n in c})
        for name in methods:
            ys = [report.slices[c].get(name, {}).get("ndcg@10") for c in cuts]
            ax.plot([int(c) for c in cuts], ys, marker="o", label=name)
        ax.set_xlabel("history length k (last k items)")
        ax.set_ylabel("NDCG@10")
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(save_figure(fig, folder / "ndcg_by_history_length.png"))
    return written


def pyplot() -> Any:
    """matplotlib's pyplot, drawing into files (no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def error_bars(values: Sequence[float], intervals: Sequence[Sequence[float]]) -> list[list[float]]:
    """matplotlib's `xerr` for bars with these intervals: the distances below and above each
    value (never negative: a value outside its interval draws no whisker on that side)."""
    return [[max(v - lo, 0) for v, (lo, _) in zip(values, intervals, strict=True)],
            [max(hi - v, 0) for v, (_, hi) in zip(values, intervals, strict=True)]]  # fmt: skip


def save_figure(fig: Any, path: Path) -> Path:
    """PNG bytes in memory first, then one atomic move: never a half-written plot. The figure
    is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    write_atomically(path, buffer.getvalue())
    pyplot().close(fig)
    return path


def clean_run_folder(folder: Path) -> None:
    """Remove what a killed earlier run left half-written in `folder`, and say so in one line."""
    stale = remove_stale_temporaries(folder)
    if stale:
        log.warning(
            "%s: removed %d temporary file(s) left by a killed run (%s); the finished files were whole",
            folder, len(stale), ", ".join(p.name for p in stale),
        )  # fmt: skip


def write_run(
    report: RunRecord, folder: Path, text: str, plot: Callable[[Path], list[Path]] | None = None
) -> list[Path]:
    """Any evaluation's files: results.json, report.md (`text`) and, with `plot`, its plots."""
    folder.mkdir(parents=True, exist_ok=True)
    clean_run_folder(folder)
    write_atomically(folder / "results.json", report.model_dump_json(indent=2).encode())
    write_atomically(folder / "report.md", text.encode())
    return [folder / "results.json", folder / "report.md", *(plot(folder) if plot is not None else [])]


def write(report: EvalReport, folder: Path, with_plots: bool = True) -> list[Path]:
    return write_run(report, folder, markdown(report), (lambda f: plots(report, f)) if with_plots else None)


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def span(interval: Sequence[float] | None, digits: int = 3) -> str:
    """An interval as `low–high`; empty when there is none."""
    return "" if interval is None else f"{interval[0]:.{digits}f}–{interval[1]:.{digits}f}"


def table(headers: str | Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """Every report's Markdown table; `headers` a list, or one string "a | b | c". A cell of
    None is left blank (`| |`, as the published anchors' rows have always been written), any
    other is written as str() of it."""
    names = headers.split(" | ") if isinstance(headers, str) else headers

    def line(cells: Sequence[object]) -> str:
        return "|" + "|".join(" " if c is None else f" {c} " for c in cells) + "|"

    return [line(names), "|" + "---|" * len(names), *(line(row) for row in rows)]


def links(folder: Path, readme: Path, report_text: str, plot: str, plot_text: str) -> list[str]:
    """The end of a README block: the full report and the plot, relative to the README."""
    rel = os.path.relpath(folder, readme.parent)
    return ["", f"{report_text}: [{rel}/report.md]({rel}/report.md).", "", f"![{plot_text}]({rel}/{plot})"]


def readme_section(report: EvalReport, folder: Path, readme: Path) -> str:
    """A short results table for the README, linking the full report and plot."""
    headers = "method | NDCG@10 | Recall@10 | Recall@20 | 95% CI NDCG@10 | NDCG@10 tied | NDCG@10 untied " \
        "| valid NDCG@10"  # fmt: skip
    candidates = []
    for r in report.methods:
        if r.candidate_recall:
            depths = ", ".join(f"{k.split('@')[1]}: {v:.3f}" for k, v in r.candidate_recall.items())
            candidates += ["", f"Candidate recall of {r.name} (held-out item among the first N): {depths}."]
    c = report.comparison
    comparison = [] if c is None else [
        "", f"Against the best baseline by validation NDCG@10 ({c.baseline}): {c.difference:+.4f} NDCG@10 "
        f"(95% CI {c.interval[0]:+.4f} to {c.interval[1]:+.4f}); {c.verdict}.",
    ]  # fmt: skip
    return "\n".join(fill(
        texts("eval")["readme"], dataset=report.dataset, split=report.split, protocol=report.protocol,
        split_protocol=report.split_description or report.split_protocol, users=report.users,
        seed=report.seed, commit=(report.git_commit or "unknown")[:10], tie_line=_tie_lines(report),
        table=table(headers, [*_readme_rows(report)]), candidate_recall=candidates, comparison=comparison,
        links=links(folder, readme, "Full report", "ndcg_by_method.png", "NDCG@10 by method"),
    ))  # fmt: skip


def _readme_rows(report: EvalReport) -> Iterator[list[object]]:
    for r in report.methods:
        name = f"**{r.name}**" if r.kind == "fewrec" else r.name
        figures = [f"{r.metrics[m]:.4f}" for m in ("ndcg@10", "recall@10", "recall@20")]
        ties = [f"{r.ties.get(group, {}).get('ndcg@10', 0):.4f}" for group in ("tied", "untied")]
        yield [name, *figures, span(r.intervals.get("ndcg@10"), 4), *ties, _valid(r)]
    for r in report.published:
        measured = [f"{r.metrics['ndcg@10']:.4f}", f"{r.metrics['recall@10']:.4f}", "–"]
        yield [f"{r.name} (published, not measured)", *measured, None, None, None, None]


def readme_markers(report: EvalReport) -> tuple[str, str]:
    """Each protocol (and tie order) has its own block in docs/RESULTS.md."""
    return markers_for(report.split_protocol, report.ties.order if report.ties is not None else "id")


def markers_for(protocol: str, ties: str) -> tuple[str, str]:
    """The block a run of this protocol and tie order rewrites, known before the run starts."""
    label = "results" if protocol == "loo" else f"results-{protocol}"
    if ties != "id":
        label += f"-ties-{ties}"
    return readme_markers_named(label)


def readme_markers_named(label: str) -> tuple[str, str]:
    return f"<!-- {label}:start -->", f"<!-- {label}:end -->"


def check_markers(readme: Path, markers: tuple[str, str]) -> None:
    """Stop before the run, in one line, when `readme` cannot take its block: a missing file or
    marker would otherwise be found only after minutes of work, with nothing written to it."""
    try:
        text = readme.read_text()
    except OSError as exc:
        raise FewrecError(f"cannot update {readme}: {exc.strerror or exc}") from exc
    missing = [marker for marker in markers if marker not in text]
    if missing:
        raise FewrecError(f"cannot update {readme}: it has no {' and no '.join(missing)} marker")


def publish(readme: Path, section: str, markers: tuple[str, str], provenance: Provenance | None,
            complete: bool) -> None:  # fmt: skip
    """Put a run's `section` in `readme`, only from a complete run of committed code
    (`fewrec.eval.provenance.check_publishable`); one clear line otherwise."""
    check_publishable(provenance, complete, readme)
    try:
        update_readme(readme, section, markers)
    except (OSError, ValueError) as exc:
        raise FewrecError(f"cannot update {readme}: {exc}") from exc


def update_readme(readme: Path, section: str, markers: tuple[str, str]) -> None:
    """Replace the text between the `markers` of `readme` with `section`."""
    start, end = markers
    text = readme.read_text()
    missing = [marker for marker in markers if marker not in text]
    if missing:
        raise ValueError(f"{readme} has no {' and no '.join(missing)} marker")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    write_atomically(readme, f"{head}{start}\n{section}\n{end}{tail}".encode())
