"""Careful file readers: turn pandas' parsing failures into DatasetError with file and line.

Loaders call these instead of `pd.read_csv` directly, so every format gets the same checks
(missing file, empty file, wrong encoding, missing column, non-numeric values).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fewrec.data.errors import DatasetError


def require_file(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DatasetError("file not found", path=path)
    if not path.is_file():
        raise DatasetError("expected a file, found a directory", path=path)
    if path.stat().st_size == 0:
        raise DatasetError("file is empty", path=path)
    return path


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """Read a (possibly gzipped) text file, naming the line of the first undecodable byte."""
    path = require_file(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:  # EOFError: a truncated file
            raise DatasetError(f"not a valid gzip file ({exc})", path=path) from exc
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DatasetError(
            f"cannot decode byte 0x{raw[exc.start]:02x} at offset {exc.start} as {encoding}; "
            f"expected a {encoding}-encoded text file (pass encoding=... for another encoding)",
            path=path,
            line=line,
        ) from exc
    if not text.strip():
        raise DatasetError("file is empty", path=path)
    return text


def read_table(
    path: Path,
    *,
    columns: Sequence[str],
    sep: str = ",",
    header: bool = True,
    names: Sequence[str] | None = None,
    encoding: str = "utf-8",
    optional: Sequence[str] = (),
) -> pd.DataFrame:
    """Read a delimited file as strings and check that `columns` are present.

    Without a header, `names` gives the column names in file order. Values stay strings:
    callers convert with `to_int` / `to_float`, which report the line of a bad value.
    """
    text = read_text(path, encoding)
    # Blank lines are read as rows and dropped below, so that line numbers stay true.
    head = re.match(r"(?:[ \t\r]*\n)*", text)
    leading = head.group().count("\n") if head else 0
    text = text[head.end() :] if head else text
    frame = _parse(path, text, sep, None if header else list(names or columns))
    # Line numbers as a user sees them in an editor (1-based, header counted).
    first_line = leading + (2 if header else 1)
    _check_columns(frame, path, columns, header, first_line)
    blank = _blank_rows(frame)
    keep = list(columns) + [c for c in optional if c in frame.columns]
    positions = np.flatnonzero(~blank)
    if len(positions) == 0:
        raise DatasetError("file has a header but no rows", path=path)
    if blank.any():
        frame = frame.iloc[positions][keep].reset_index(drop=True)
        frame.attrs["lines"] = (positions + first_line).tolist()  # only when lines were skipped
    else:
        frame = frame[keep].copy()
    frame.attrs["path"] = str(path)
    frame.attrs["first_line"] = first_line
    return frame


def _parse(path: Path, text: str, sep: str, names: list[str] | None) -> pd.DataFrame:
    """Every field as a string, blank lines kept as rows; `names` when the file has no header."""
    multi_char = len(sep) > 1
    try:
        return pd.read_csv(
            io.StringIO(text),
            sep=sep,
            header=0 if names is None else None,
            names=names,
            dtype=str,
            keep_default_na=False,
            engine="python" if multi_char else "c",
            quoting=csv.QUOTE_NONE if multi_char else csv.QUOTE_MINIMAL,
            skip_blank_lines=False,
        )
    except pd.errors.ParserError as exc:
        raise DatasetError(f"malformed row ({exc})", path=path) from exc
    except pd.errors.EmptyDataError as exc:
        raise DatasetError("file is empty", path=path) from exc


NO_TIMES_HINT = (
    "; with no times, write each user's position (0, 1, 2, …) as its timestamp "
    '(docs/SCALE.md, "No real times")'
)


def _check_columns(
    frame: pd.DataFrame, path: Path, columns: Sequence[str], header: bool, first_line: int
) -> None:
    """Strips the column names and checks that the rows fit them and that `columns` are there."""
    if not isinstance(frame.index, pd.RangeIndex):
        # pandas silently takes the first field(s) as an index when the first row is too long.
        raise DatasetError(
            f"malformed row: more fields than the {len(frame.columns)} column(s) "
            + ("named in the header" if header else "of this format"),
            path=path,
            line=first_line,
        )
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"found {', '.join(repr(c) for c in frame.columns)}"
            + (NO_TIMES_HINT if "timestamp" in missing else ""),
            path=path,
        )


def _blank_rows(frame: pd.DataFrame) -> np.ndarray:
    """Which rows are blank lines: every field empty (only rows with an empty first field can be)."""
    blank = (frame.iloc[:, 0].fillna("").astype(str).str.strip() == "").to_numpy().copy()
    if blank.any():
        candidates = frame[blank].fillna("").astype(str)
        blank[blank] = candidates.apply(lambda col: col.str.strip() == "").all(axis=1).to_numpy()
    return blank


def _line_of(frame: pd.DataFrame, position: int) -> int:
    lines = frame.attrs.get("lines")
    if lines is not None:
        return int(lines[position])
    return int(frame.attrs.get("first_line", 1)) + position


def _raise_at_first(frame: pd.DataFrame, column: str, bad: np.ndarray, message: Callable[[int], str]) -> None:
    """A DatasetError at the first bad row (file, line, column), if there is one."""
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        raise DatasetError(
            message(position), path=frame.attrs.get("path"), line=_line_of(frame, position), column=column
        )


def to_numeric(frame: pd.DataFrame, column: str, kind: str) -> pd.Series:
    """Convert a string column to numbers; the first bad value is reported with its line."""
    raw = frame[column].astype(str).str.strip()
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna().to_numpy() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
    if kind == "int" and not bad.all():
        fractional = values.notna().to_numpy() & (values.fillna(0) % 1 != 0).to_numpy()
        # Beyond int64 the conversion below would wrap around silently.
        too_big = np.abs(values.to_numpy(dtype=float, na_value=0.0)) >= 2.0**63
        bad |= fractional | too_big
    expected = "an integer" if kind == "int" else "a number"
    _raise_at_first(
        frame, column, bad,
        lambda at: f"expected {expected}, got {raw.iloc[at]!r} ({int(bad.sum())} bad value(s) in this "
        "column)",
    )  # fmt: skip
    return values.astype("int64") if kind == "int" else values.astype("float64")


def to_int(frame: pd.DataFrame, column: str) -> pd.Series:
    return to_numeric(frame, column, "int")


def to_float(frame: pd.DataFrame, column: str) -> pd.Series:
    return to_numeric(frame, column, "float")


def ids(frame: pd.DataFrame, column: str, text: bool = False) -> pd.Series:
    """Ids as int64 when every id is an integer, else (or with `text`) as stripped strings
    (e.g. Amazon ASINs)."""
    raw = frame[column].astype(str).fillna("").str.strip()  # a JSON null is an empty id
    _raise_at_first(frame, column, (raw == "").to_numpy(), lambda at: "expected an id, got an empty value")
    # ASCII digits that fit int64 and have no leading zero ('0001713353' is an ASIN, not 1713353)
    if not text and raw.str.fullmatch(r"-?(?:0|[1-9][0-9]{0,17})").all():
        return raw.astype("int64")
    return raw


def matching_ids(*columns: tuple[pd.DataFrame, str]) -> list[pd.Series]:
    """`ids` of several files typed alike, so that an id in one is found in the other: int64
    only when the ids of every file are integers, else all as strings."""
    out = [ids(frame, column) for frame, column in columns]
    if len({s.dtype.kind == "i" for s in out}) > 1:
        out = [ids(frame, column, text=True) for frame, column in columns]
    return out


def check_known(
    frame: pd.DataFrame, column: str, values: pd.Series, known: pd.Series, where: Path, what: str
) -> None:
    """Every id in `values` (read from `frame[column]`) must be one of `known`, read from `where`."""
    unknown = ~values.isin(known).to_numpy()
    _raise_at_first(
        frame, column, unknown,
        lambda at: f"{what} {str(frame[column].iloc[at]).strip()!r} is not in {Path(where).name} "
        f"({int(unknown.sum())} row(s) with an unknown {what} in all)",
    )  # fmt: skip


def check_duplicates(frame: pd.DataFrame, key: Sequence[str], what: str, hint: str = "Remove them.") -> None:
    """A DatasetError at the first repeated `key`; `hint` says what the user can do about it."""
    dup = frame.duplicated(subset=list(key), keep="first").to_numpy()
    if dup.any():
        position = int(np.flatnonzero(dup)[0])
        first = frame.index[frame.duplicated(subset=list(key), keep="last")][0]
        raise DatasetError(
            f"duplicate {what} ({', '.join(key)} repeated; first seen at line "
            f"{_line_of(frame, int(frame.index.get_loc(first)))}); {int(dup.sum())} duplicate row(s) "
            f"in all. {hint}",
            path=frame.attrs.get("path"),
            line=_line_of(frame, position),
        )


def read_json_lines(path: Path, fields: Sequence[str], optional: Sequence[str] = ()) -> pd.DataFrame:
    """Read JSON lines (plain or .gz); each record must hold `fields`.

    Amazon's older dumps are Python dict literals rather than JSON; those are accepted too.
    """
    import ast

    text = read_text(path)
    rows: list[dict] = []
    lines: list[int] = []
    # Split at '\n' only: str.splitlines() also breaks at U+2028, U+0085 and the like, which
    # JSON allows unescaped inside strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # ValueError: also an integer of > 4300 digits
            try:
                record = ast.literal_eval(line)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
                raise DatasetError(
                    "expected one JSON object per line, could not parse this line", path=path, line=number
                ) from exc
        if not isinstance(record, dict):
            raise DatasetError("expected a JSON object on this line", path=path, line=number)
        missing = [f for f in fields if f not in record]
        if missing:
            raise DatasetError(
                f"record lacks field(s) {', '.join(repr(f) for f in missing)}", path=path, line=number
            )
        rows.append({f: record.get(f) for f in (*fields, *optional)})
        lines.append(number)
    frame = pd.DataFrame(rows, columns=[*fields, *optional]).astype({f: str for f in fields})
    frame.attrs["path"] = str(path)
    frame.attrs["first_line"] = 1
    frame.attrs["lines"] = lines
    return frame
