"""Do two sets of results agree? `fewrec compare-results docs runs/verify` (`make verify-results`).

Every `results*/results.json` under the first folder is compared with the one of the same name
under the second, rounded to the digits the reports print: of a ranking evaluation, each
method's metrics, intervals, tied/untied figures and candidate recall, the history-cut slices
and the comparison with the best baseline; of the chat's and the conversations' evaluations,
every number they report but their seconds. Provenance (commit, settings hash, load) is shown,
never compared: the point is that the figures do not depend on the machine's load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

PRINTED_DIGITS = 4
# The evaluations whose every number is a figure, but for these: time, and the run's record.
WHOLE_REPORTS = ("chat", "conversations")
NOT_FIGURES = frozenset(
    {"seconds", "seconds_p50", "seconds_p95", "setup_seconds", "provenance", "versions", "settings"}
)


class FolderComparison(BaseModel):
    name: str
    compared: int = 0  # numbers compared
    differences: list[str] = Field(default_factory=list)
    missing: str | None = None  # why the pair could not be compared
    provenance: dict[str, Any] = Field(default_factory=dict)


def _numbers(value: Any, path: str, skip: frozenset[str] = frozenset()) -> dict[str, float]:
    """Every number in a JSON value, by its path (not under a key in `skip`)."""
    out: dict[str, float] = {}
    if isinstance(value, bool) or value is None:
        return out
    if isinstance(value, int | float):
        out[path] = float(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in skip:
                out.update(_numbers(item, f"{path}.{key}", skip))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out.update(_numbers(item, f"{path}[{index}]", skip))
    return out


def figures(results: dict[str, Any]) -> dict[str, float]:
    """The figures of one results.json that must reproduce (timings and provenance left out)."""
    if results.get("kind") in WHOLE_REPORTS:
        return _numbers(results, results["kind"], NOT_FIGURES)
    out: dict[str, float] = {}
    for method in results.get("methods", []):
        name = method.get("name", "?")
        for part in ("metrics", "intervals", "ties", "candidate_recall"):
            out.update(_numbers(method.get(part), f"{name}.{part}"))
        for part in ("coverage_at_10", "long_tail_at_10", "validation_ndcg_at_10"):
            out.update(_numbers(method.get(part), f"{name}.{part}"))
    out.update(_numbers(results.get("slices"), "slices"))
    comparison = results.get("comparison") or {}
    out.update(_numbers({k: comparison.get(k) for k in ("difference", "interval", "p_value")}, "comparison"))
    out.update(_numbers(results.get("users"), "users"))
    return out


def compare_files(first: Path, second: Path, digits: int = PRINTED_DIGITS) -> FolderComparison:
    result = FolderComparison(name=first.parent.name)
    try:
        a, b = json.loads(first.read_text()), json.loads(second.read_text())
    except (OSError, ValueError) as exc:
        result.missing = f"cannot read {exc.filename if isinstance(exc, OSError) else second}: {exc}"
        return result
    for label, data in (("first", a), ("second", b)):
        p = data.get("provenance") or {}
        result.provenance[label] = {
            "commit": (p.get("commit") or data.get("git_commit") or "?")[:10], "dirty": p.get("dirty"),
            "settings": p.get("settings_sha256"), "load": p.get("load_average_start"),
            "complete": data.get("complete"),
        }  # fmt: skip
    fa, fb = figures(a), figures(b)
    for key in sorted(fa.keys() | fb.keys()):
        if key not in fa or key not in fb:
            result.differences.append(f"{key}: only in {'first' if key in fa else 'second'}")
        elif round(fa[key], digits) != round(fb[key], digits):
            result.differences.append(f"{key}: {fa[key]:.{digits}f} vs {fb[key]:.{digits}f}")
    result.compared = len(fa.keys() & fb.keys())
    return result


def compare_folders(first: Path, second: Path) -> list[FolderComparison]:
    """Each results*/results.json of `first` against the same file in `second`."""
    return [
        compare_files(path, other) if (other := second / path.parent.name / "results.json").exists()
        else FolderComparison(name=path.parent.name, missing=f"{other} does not exist")
        for path in sorted(first.glob("results*/results.json"))
    ]  # fmt: skip
