"""Writing an EvalReport: results.json (every number), report.md (tables) and PNG plots.

Files are written to a temporary name and renamed, so a crash never leaves a half-written
results.json that a later reader trusts.
"""

from __future__ import annotations

import io
import os
import tempfile
from datetime import datetime
from pathlib import Path

from fewrec.eval.runner import EvalReport

METRIC_COLUMNS = ("ndcg@5", "ndcg@10", "ndcg@20", "recall@5", "recall@10", "recall@20", "mrr@10")


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def default_run_dir(root: Path = Path("runs")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = root / stamp
    n = 1
    while path.exists():
        n += 1
        path = root / f"{stamp}-{n}"
    return path


def markdown(report: EvalReport) -> str:
    lines = [
        f"# fewrec evaluation — {report.dataset}, {report.split} split",
        "",
        f"Protocol: **{report.protocol}**, leave-one-out, {report.users} users, seed {report.seed}."
        + ("" if report.complete else " **INCOMPLETE RUN** (interrupted)."),
        f"Commit `{report.git_commit or 'unknown'}`, started {report.started}.",
        "",
        "| method | kind | " + " | ".join(METRIC_COLUMNS) + " | 95% CI NDCG@10 |",
        "|---|---|" + "---|" * len(METRIC_COLUMNS) + "---|",
    ]
    for r in report.methods:
        ci = r.intervals.get("ndcg@10")
        cells = " | ".join(f"{r.metrics[c]:.4f}" for c in METRIC_COLUMNS)
        lines.append(f"| {r.name} | {r.kind} | {cells} | {f'{ci[0]:.4f}–{ci[1]:.4f}' if ci else ''} |")
    for r in report.published:
        cells = " | ".join(f"{r.metrics[c]:.4f}" if c in r.metrics else "–" for c in METRIC_COLUMNS)
        lines.append(f"| {r.name} | published, not measured | {cells} | |")
    ours = [r for r in report.methods if r.candidate_recall]
    if ours:
        lines += [
            "",
            "Candidate recall (share of users whose held-out item is among the first N candidates):",
            "",
        ]
        lines += [
            "| method | " + " | ".join(ours[0].candidate_recall) + " |",
            "|---|" + "---|" * len(ours[0].candidate_recall),
        ]
        for r in ours:
            lines.append(
                f"| {r.name} | " + " | ".join(f"{v:.4f}" for v in r.candidate_recall.values()) + " |"
            )
    lines += ["", "| method | coverage@10 | long-tail share@10 | seconds |", "|---|---|---|---|"]
    for r in report.methods:
        seconds = "(with fused)" if r.seconds is None else r.seconds
        lines.append(f"| {r.name} | {r.coverage_at_10:.4f} | {r.long_tail_at_10:.4f} | {seconds} |")
    if report.slices:
        methods = sorted({name for cut in report.slices.values() for name in cut})
        lines += ["", "Few-shot slices (history cut to the last k items), NDCG@10:", ""]
        lines += ["| k | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
        for cut, by_method in sorted(report.slices.items(), key=lambda kv: int(kv[0])):
            cells = " | ".join(f"{by_method[n]['ndcg@10']:.4f}" if n in by_method else "–" for n in methods)
            lines.append(f"| {cut} | {cells} |")
    if report.llm:
        lines += [
            "",
            "LLM stage (per k-shot): latency, prompt tokens, fallbacks, and MRR of the held-out item "
            "within the candidates (users whose held-out item is a candidate) for the LLM order, the "
            "retrieval order and a random order:",
            "",
            "| k | backend | p50 s/user | p95 s/user | prompt tokens p50 | fallbacks | users | MRR LLM "
            "| MRR retrieval | MRR random (expected) | best alpha (valid) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for k, info in report.llm.items():
            w = info.get("within_candidates", {})
            nan = float("nan")
            cells = [
                k,
                f"{info.get('backend')} ({info.get('mode')})",
                f"{info.get('per_user_seconds_p50', 0):.2f}",
                f"{info.get('per_user_seconds_p95', 0):.2f}",
                f"{info.get('prompt_tokens_p50', 0):.0f}",
                str(len(info.get("fallback_users", []))),
                str(w.get("users", 0)),
                f"{w.get('mrr_llm', nan):.4f}",
                f"{w.get('mrr_retrieval', nan):.4f}",
                f"{w.get('mrr_random_expected', nan):.4f}",
                str(info.get("best_alpha", "–")),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        for k, info in report.llm.items():
            sweep = info.get("alpha_sweep_ndcg@10")
            if sweep:
                cells = ", ".join(f"{a}: {v:.4f}" for a, v in sweep.items())
                lines.append(f"\nNDCG@10 by alpha ({k}): {cells}")
    if report.comparison:
        c = report.comparison
        lines += [
            "",
            f"Paired bootstrap over users, {c.metric}: {c.method} − {c.baseline} = {c.difference:+.4f} "
            f"(95% CI {c.interval[0]:+.4f} to {c.interval[1]:+.4f}); {c.verdict}.",
        ]
    lines += [""] + [f"Note: {n}" for n in report.notes]
    return "\n".join(lines) + "\n"


def plots(report: EvalReport, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    if report.methods:
        names = [r.name for r in report.methods] + [r.name for r in report.published]
        values = [r.metrics["ndcg@10"] for r in report.methods] + [
            r.metrics["ndcg@10"] for r in report.published
        ]
        lows = [r.metrics["ndcg@10"] - r.intervals["ndcg@10"][0] for r in report.methods] + [0] * len(
            report.published
        )
        highs = [r.intervals["ndcg@10"][1] - r.metrics["ndcg@10"] for r in report.methods] + [0] * len(
            report.published
        )
        colours = ["tab:blue" if r.kind == "fewrec" else "tab:gray" for r in report.methods]
        colours += ["tab:orange"] * len(report.published)
        fig, ax = plt.subplots(figsize=(8, 0.4 * len(names) + 1.5))
        ax.barh(names, values, xerr=[lows, highs], color=colours, capsize=3)
        ax.invert_yaxis()
        ax.set_xlabel(f"NDCG@10 ({report.protocol}; orange = published, not measured)")
        ax.set_title(f"{report.dataset}, {report.split} split, {report.users} users")
        fig.tight_layout()
        path = folder / "ndcg_by_method.png"
        _save_figure(fig, path)
        plt.close(fig)
        written.append(path)
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
        path = folder / "ndcg_by_history_length.png"
        _save_figure(fig, path)
        plt.close(fig)
        written.append(path)
    return written


def _save_figure(fig, path: Path) -> None:
    """PNG bytes in memory first, then one atomic move: never a half-written plot."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    write_atomically(path, buffer.getvalue())


def write(report: EvalReport, folder: Path, with_plots: bool = True) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / "results.json", report.model_dump_json(indent=2).encode())
    write_atomically(folder / "report.md", markdown(report).encode())
    written = [folder / "results.json", folder / "report.md"]
    if with_plots:
        written += plots(report, folder)
    return written


README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"


def readme_section(report: EvalReport, folder: Path, readme: Path) -> str:
    """A short results table for the README, linking the full report and plot."""
    rel = os.path.relpath(folder, readme.parent)
    lines = [
        f"`fewrec eval` on {report.dataset}, {report.split} split, {report.protocol}, "
        f"{report.users} users, seed {report.seed}, commit `{(report.git_commit or 'unknown')[:10]}`.",
        "",
        "| method | NDCG@10 | Recall@10 | Recall@20 | MRR@10 | 95% CI NDCG@10 |",
        "|---|---|---|---|---|---|",
    ]
    for r in report.methods:
        ci = r.intervals.get("ndcg@10")
        name = f"**{r.name}**" if r.kind == "fewrec" else r.name
        lines.append(
            f"| {name} | {r.metrics['ndcg@10']:.4f} | {r.metrics['recall@10']:.4f} | "
            f"{r.metrics['recall@20']:.4f} | {r.metrics['mrr@10']:.4f} | "
            f"{f'{ci[0]:.4f}–{ci[1]:.4f}' if ci else ''} |"
        )
    for r in report.published:
        lines.append(
            f"| {r.name} (published, not measured) | {r.metrics['ndcg@10']:.4f} | "
            f"{r.metrics['recall@10']:.4f} | – | – | |"
        )
    for r in report.methods:
        if r.candidate_recall:
            depths = ", ".join(f"{k.split('@')[1]}: {v:.3f}" for k, v in r.candidate_recall.items())
            lines += ["", f"Candidate recall of {r.name} (held-out item among the first N): {depths}."]
    if report.comparison:
        c = report.comparison
        lines += ["", f"Against the best baseline ({c.baseline}): {c.difference:+.4f} NDCG@10; {c.verdict}."]
    lines += [
        "",
        f"Full report: [{rel}/report.md]({rel}/report.md).",
        "",
        f"![NDCG@10 by method]({rel}/ndcg_by_method.png)",
    ]
    return "\n".join(lines)


def update_readme(readme: Path, section: str) -> None:
    """Replace the text between the results markers of `readme` with `section`."""
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme} has no {README_START} … {README_END} markers")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    write_atomically(readme, f"{head}{README_START}\n{section}\n{README_END}{tail}".encode())
