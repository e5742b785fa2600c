"""Writing files so that a reader never sees half of one: the one atomic-write helper.

A file is written to a temporary sibling named `.<name>.<pid>.<random>` and renamed over the
target. A process killed outright (SIGKILL, power) cannot remove its temporary file, so the
next writer in the same folder removes the temporaries whose process is gone
(`remove_stale_temporaries`); a live writer's temporary file is never touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

# `.results.json.1234.x8k2_q9z` (this module) or `.results.json.x8k2_q9z` (before the pid was
# in the name: no live writer uses that form any more).
_TEMPORARY = re.compile(r"^\.(?P<name>.+?)\.(?:(?P<pid>\d+)\.)?(?P<random>[a-z0-9_]{8})$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files a killed writer left in `folder`; returns what was removed."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = _TEMPORARY.match(path.name)
        if match is None or not path.is_file():
            continue
        pid = match.group("pid")
        if pid is not None and _alive(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):  # another cleaner got there first
            path.unlink()
            removed.append(path)
    return removed


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary sibling and a rename: a crash at any point
    keeps the previous file whole (or no file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
