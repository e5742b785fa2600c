"""On-disk cache of loaded and split datasets.

The key is a hash of the source files' bytes, the loader options, the split settings and the
code that reads and splits them, so a changed file, setting or reader misses the cache.
Entries are written to a temporary folder and renamed into place, so an interrupted write
never leaves an entry that looks valid.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from fewrec.data.models import CATALOG_COLUMNS, Catalog
from fewrec.data.split import LeaveOneOutSplit, SplitSettings

CACHE_FORMAT = 1
_ARRAYS = ("user_ids", "valid_item", "test_item", "valid_time", "test_time")


def _code_version() -> bytes:
    """The modules that turn files into a split: a change to any of them is another split."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in ("loaders.py", "readers.py", "split.py", "models.py", "cache.py"):
        digest.update((here / name).read_bytes())
    return digest.digest()


def cache_key(sources: list[Path], options: dict, settings: SplitSettings) -> str:
    digest = hashlib.sha256()
    digest.update(f"fewrec-split-cache-{CACHE_FORMAT}".encode())
    digest.update(_code_version())
    for path in sorted(Path(p) for p in sources):
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    digest.update(json.dumps(options, sort_keys=True, default=str).encode())
    digest.update(settings.model_dump_json().encode())
    return digest.hexdigest()[:24]


def save_split(split: LeaveOneOutSplit, folder: Path) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    try:
        catalog = split.catalog.frame.copy()
        catalog["year"] = catalog["year"].astype("Int64")
        catalog.to_parquet(tmp / "catalog.parquet", index=False)
        split.train.to_parquet(tmp / "train.parquet", index=False)
        np.savez(tmp / "arrays.npz", **{name: getattr(split, name) for name in _ARRAYS})
        (tmp / "meta.json").write_text(json.dumps({"name": split.name, "format": CACHE_FORMAT}))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_split(folder: Path) -> LeaveOneOutSplit | None:
    """The cached split, or None when the entry is missing or unreadable."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != CACHE_FORMAT:
            return None
        split_name = str(meta["name"])
        catalog = pd.read_parquet(folder / "catalog.parquet")
        for column in ("genres", "tags"):
            catalog[column] = [list(v) for v in catalog[column]]
        catalog["year"] = catalog["year"].astype("Int64")
        train = pd.read_parquet(folder / "train.parquet")
        # Open the file here: np.load leaks its own handle when the zip is corrupt.
        with (
            open(folder / "arrays.npz", "rb") as handle,
            np.load(handle, allow_pickle=False) as arrays,
        ):
            loaded = {name: arrays[name] for name in _ARRAYS}
    except (OSError, ValueError, KeyError, AttributeError, zipfile.BadZipFile):
        return None  # JSONDecodeError is a ValueError; a non-dict meta.json an AttributeError
    return LeaveOneOutSplit(name=split_name, catalog=Catalog(catalog[CATALOG_COLUMNS]), train=train, **loaded)
