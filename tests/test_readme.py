"""The README's Python examples run as written (on a light retrieval configuration, set by the
environment so that the code itself is exactly the README's)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parent.parent / "README.md"


def python_block(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split(f"### {heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.parametrize("heading", ["Python", "LangChain tools"])
def test_readme_example_runs(heading, tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FEWREC_")},
        "FEWREC_DATA_DIR": str(tmp_path),
        "FEWREC_RETRIEVAL__SOURCES": json.dumps(["transition", "ease", "content"]),
        "FEWREC_RETRIEVAL__WEIGHTS": json.dumps({"transition": 1.0, "ease": 0.5, "content": 1.0}),
    }
    done = subprocess.run(
        [sys.executable, "-c", python_block(heading)], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) >= 2
    if heading == "Python":
        assert lines[0].startswith("1 ") and "People who watched" in lines[0]
    else:
        assert json.loads(lines[0])[0]["title"] and len(json.loads(lines[1])) == 3
