"""Where a figure came from: the code, the settings, the weights and the machine of a run.

Every results.json carries a `Provenance`: the commit and whether the code was changed since
(`dirty`, with the changed paths), a hash of the settings, where the fusion weights came from,
the command line, and the machine's cores and load at the start and the end. A README block is
rewritten only from a complete run of committed code (`check_publishable`), so a published
figure always names the commit that gives it. `RunRecord` is what every report model (the
evaluation, the chat's, the conversations', the speed figures) says about its run besides its
figures: it holds the provenance, and the reports extend it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from fewrec.data.errors import FewrecError
from fewrec.numerics import blas_in_use, processor_name

REPO = Path(__file__).resolve().parents[2]
# What decides a figure: a change anywhere else (docs, results, tests) leaves the tree clean.
CODE_PATHS = ("fewrec", "configs", "pyproject.toml", "Makefile")
PACKAGES = ("fewrec", "numpy", "pandas", "scipy", "implicit", "chromadb", "sentence-transformers", "torch")


class Provenance(BaseModel):
    """What a run's figures rest on. Two runs with the same commit (clean), settings hash and
    weights give the same figures on any machine; the load is recorded to show that."""

    commit: str | None = None
    dirty: bool | None = None  # None: not a git checkout (an installed package)
    dirty_paths: list[str] = Field(default_factory=list)
    settings_sha256: str = ""
    weights_from: str = ""
    command: list[str] = Field(default_factory=list)
    cores: int | None = None
    load_average_start: list[float] = Field(default_factory=list)  # 1, 5 and 15 minutes
    load_average_end: list[float] = Field(default_factory=list)
    machine: str = ""
    processor: str = ""  # the CPU's model name
    blas: str = ""  # the BLAS library and kernel that ran (`fewrec.numerics`)
    versions: dict[str, str] = Field(default_factory=dict)

    def finish(self) -> None:
        self.load_average_end = load_average()

    @model_serializer(mode="wrap")
    def _recorded_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Files written before the processor and the kernel were recorded write back as read."""
        return {k: v for k, v in handler(self).items() if v != "" or k not in ("processor", "blas")}


class RunRecord(BaseModel):
    """A run's account of itself: whether it finished, when, the code and settings behind it,
    and its notes. The report models extend it, so these keys sit flat at the top level of
    results.json, where the files written before this model kept them: they load unchanged.
    Every field has a default, so a file that lacks some (docs/bench.json) loads too."""

    complete: bool = True  # False: interrupted, the figures cover what ran
    started: str = ""
    finished: str | None = None
    # Copies of provenance.commit and .versions, kept at the top level for older readers.
    git_commit: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    provenance: Provenance | None = None
    settings: dict = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _figures_first(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The report's own fields first, the run's account of itself after them (notes last),
        as results.json read before this model existed."""
        data = handler(self)
        own = {key: value for key, value in data.items() if key not in RunRecord.model_fields}
        return own | {key: data[key] for key in RunRecord.model_fields if key in data}

    def start_run(self, settings: dict, weights_from: str = "") -> None:
        """Stamp the start: the time, the settings and this run's provenance."""
        self.started = _now()
        self.settings = settings
        self.provenance = capture(settings, weights_from)
        self.git_commit, self.versions = self.provenance.commit, self.provenance.versions

    def interrupted(self, covered: str) -> None:
        """Ctrl-C: the run is incomplete, and a note says what its figures cover."""
        self.complete = False
        self.notes.append(f"interrupted: {covered}")

    def finish_run(self) -> None:
        """Stamp the end: the time and the machine's load."""
        self.finished = _now()
        if self.provenance is not None:
            self.provenance.finish()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=30, cwd=REPO)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_commit() -> str | None:
    out = _git("rev-parse", "HEAD")
    return out.strip() or None if out else None


def changed_code_paths() -> list[str] | None:
    """Tracked or untracked (not ignored) changes under `CODE_PATHS`; None outside a checkout."""
    out = _git("status", "--porcelain", "--untracked-files=all", "--", *CODE_PATHS)
    if out is None:
        return None
    return sorted(line[3:] for line in out.splitlines() if line.strip())


def load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def command_line(argv: list[str]) -> list[str]:
    """The command as typed: `python -m fewrec …` rather than `__main__.py …`."""
    program = Path(argv[0]).name if argv else ""
    return ["python", "-m", "fewrec", *argv[1:]] if program == "__main__.py" else [program, *argv[1:]]


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return out


def settings_hash(settings: dict) -> str:
    """A hash of the settings as they decide figures (the machine-local data folder left out)."""
    relevant = {k: v for k, v in settings.items() if k != "data_dir"}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


def capture(settings: dict, weights_from: str = "") -> Provenance:
    """This run's provenance, taken at its start (`Provenance.finish` adds the end's load)."""
    changed = changed_code_paths()
    return Provenance(
        commit=git_commit(),
        dirty=None if changed is None else bool(changed),
        dirty_paths=changed or [],
        settings_sha256=settings_hash(settings),
        weights_from=weights_from,
        command=command_line(sys.argv),
        cores=os.cpu_count(),
        load_average_start=load_average(),
        machine=f"{platform.system()} {platform.machine()}",
        processor=processor_name(),
        blas=blas_in_use(),
        versions=versions(),
    )


def check_publishable(provenance: Provenance | None, complete: bool, readme: Path) -> None:
    """Refuse, in one line, to put figures in `readme` that no commit regenerates."""
    if not complete:
        raise FewrecError(f"{readme} is not updated: the run did not finish (its files are written)")
    if provenance is None or provenance.commit is None or provenance.dirty is None:
        raise FewrecError(f"{readme} is not updated: the code is not a git checkout, so no commit names it")
    if provenance.dirty:
        shown = ", ".join(provenance.dirty_paths[:5]) + (" …" if len(provenance.dirty_paths) > 5 else "")
        raise FewrecError(
            f"{readme} is not updated: the code differs from commit {provenance.commit[:10]} ({shown}); "
            "commit it and run again, so the README's figures name the commit that gives them"
        )
