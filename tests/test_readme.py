"""The README's Python examples run as written, on the defaults a reader gets (all nine
retrieval sources, SASRec included): only the data folder is moved, to the session's shared one
(so SASRec's cached weights serve every test), and no other FEWREC_* variable is passed on. And
the README's "`make test` ends with `N passed`": under CI a missing component fails, never skips."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require, require_embedding_model, require_module

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parent.parent / "README.md"


def python_block(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split(f"### {heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.parametrize("heading", ["Python", "LangChain tools"])
def test_readme_example_runs(heading, fewrec_data_dir, tmp_path):
    require_embedding_model()
    require_module("torch", "torch (the 'embed' extra; the default 'sasrec' source needs it)")
    code = python_block(heading)
    assert "Settings(" not in code and "FEWREC_" not in code  # the example itself sets nothing
    env = {
        **{k: v for k, v in os.environ.items() if not k.upper().startswith("FEWREC_")},
        "FEWREC_DATA_DIR": str(fewrec_data_dir),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) >= 2
    if heading == "Python":
        assert lines[0].startswith("1 ") and "People who watched" in lines[0]
        # the sources printed with each pick are the default ones, not a reduced set
        assert any("'timed_transition'" in line or "'sasrec'" in line for line in lines[:3]), lines[:3]
    else:
        assert json.loads(lines[0])[0]["title"] and len(json.loads(lines[1])) == 3
        found_by = {name for record in json.loads(lines[0]) for name in record["found_by"]}
        assert found_by & {"timed_transition", "sasrec", "als", "bpr"}, found_by


def test_a_missing_component_skips_locally_and_fails_under_ci(monkeypatch):
    require(True, "something present")  # no effect
    for value in ("", "0", "false"):
        monkeypatch.setenv("CI", value)
        with pytest.raises(pytest.skip.Exception, match="Chromium is missing"):
            require(False, "Chromium")
    for value in ("true", "1", "yes"):
        monkeypatch.setenv("CI", value)
        with pytest.raises(pytest.fail.Exception, match=r"Chromium is missing .*never skipped"):
            require(False, "Chromium")
        with pytest.raises(pytest.fail.Exception, match="no_such_module"):
            require_module("no_such_module", "a module")
