"""The package's arrows point down (docs/DESIGN.md): every import inside fewrec/, read from the
source, goes to a layer at or below its own. A new upward import fails here, with its place."""

from __future__ import annotations

import ast
from pathlib import Path

import fewrec

ROOT = Path(fewrec.__file__).parent
# What each part may import (besides itself). config.py is shared by all of them; numerics.py
# (the BLAS kernel pin, which fewrec/__init__.py runs before numpy loads) sits below everything.
BELOW_ALL = {"numerics"}
LAYERS = {
    "numerics": set(),
    "data": {"data"},
    "config": {"config", "data"},
    "state": {"state", "config", "data"},
    "distributed": {"distributed", "data"},
    "retrieval": {"retrieval", "data", "config"},
    "prompts": {"prompts", "data", "config", "retrieval"},
    "llm": {"llm", "data", "config", "prompts"},
    "agent": {"agent", "data", "config", "state", "distributed", "retrieval", "prompts", "llm"},
    "eval": {"eval", "data", "config", "state", "distributed", "retrieval", "prompts", "llm", "agent"},
    # Speed, memory and load benchmarks time what eval/ and agent/ run: clients of both.
    "bench": {
        "bench",
        "eval",
        "data",
        "config",
        "state",
        "distributed",
        "retrieval",
        "prompts",
        "llm",
        "agent",
    },
    "fit": {"fit", "eval", "data", "config", "state", "distributed", "retrieval", "prompts", "llm", "agent"},
    "ui": {"ui", "data", "config", "prompts", "agent"},
}
ALLOWED = {part: imports | BELOW_ALL for part, imports in LAYERS.items()}


# Modules beside a part's main module that belong to its layer.
LAYER_OF = {"config_legacy": "config"}


def _part(path: Path) -> str:
    relative = path.relative_to(ROOT)
    part = relative.parts[0] if len(relative.parts) > 1 else relative.stem
    return LAYER_OF.get(part, part)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        out += [(node.lineno, name) for name in names if name == "fewrec" or name.startswith("fewrec.")]
    return out


def test_no_import_points_upward():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        part = _part(path)
        if part not in ALLOWED:  # cli/, __init__.py, __main__.py sit on top of everything
            continue
        for line, name in _imports(path):
            target = name.split(".")[1] if "." in name else "fewrec"
            target = LAYER_OF.get(target, target)
            if target not in ALLOWED[part]:
                upward.append(f"{path.relative_to(ROOT.parent)}:{line} imports {name}")
    assert upward == []
