"""Errors raised while reading or splitting a dataset.

Every message names the file, the line or column, and what was expected, so that a user
never has to read a pandas traceback to find a bad row.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class FewrecError(Exception):
    """Base class of every error fewrec raises on purpose (the CLI prints these plainly)."""


class DatasetError(FewrecError):
    """A dataset file is missing, malformed or inconsistent."""

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.line = line
        self.column = column
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column '{column}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class UnknownIdError(FewrecError, KeyError):
    """A user or item id that is not in the dataset."""

    def __init__(self, kind: str, value: object, known: Iterable[object] = ()) -> None:
        self.kind = kind
        self.value = value
        close = difflib.get_close_matches(str(value), [str(k) for k in known], n=5, cutoff=0.6)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        self.message = f"unknown {kind} id {value!r}: it is not in the dataset.{hint}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class UnknownTitleError(FewrecError, KeyError):
    """A title that matches no catalog item; `suggestions` holds the closest titles."""

    def __init__(self, title: str, suggestions: list[str]) -> None:
        self.title = title
        self.suggestions = suggestions
        hint = f" Close matches: {'; '.join(suggestions)}." if suggestions else " No close match either."
        self.message = f"no catalog title matches {title[:200]!r}.{hint}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message
