"""Datasets: loaders into one model (Catalog + Interactions), the paper's split, few-shot views.

`load_dataset()` with no argument gives the bundled MovieLens ml-latest-small, split and
cached; see `fewrec.data.loaders` for the formats.
"""

from __future__ import annotations

from pathlib import Path

from fewrec.data import cache
from fewrec.data.errors import DatasetError, FewrecError, UnknownIdError
from fewrec.data.loaders import BUNDLED_DIR, LOADERS, check_format, detect_format, load_raw
from fewrec.data.models import Catalog, Dataset, Interactions, Item
from fewrec.data.split import LeaveOneOutSplit, SplitSettings, TemporalSplit, leave_one_out, temporal_split

__all__ = [
    "BUNDLED_DIR",
    "LOADERS",
    "Catalog",
    "Dataset",
    "DatasetError",
    "FewrecError",
    "Interactions",
    "Item",
    "LeaveOneOutSplit",
    "SplitSettings",
    "TemporalSplit",
    "UnknownIdError",
    "detect_format",
    "leave_one_out",
    "load_dataset",
    "load_raw",
]


def _source_files(path: Path | str | None, format: str, options: dict) -> list[Path]:
    if path is None or str(path) in ("", "bundled", "ml-latest-small"):
        root = BUNDLED_DIR
    else:
        root = Path(path)
        if not root.exists():
            raise DatasetError("dataset path not found", path=root)
    files = [root] if root.is_file() else sorted(p for p in root.iterdir() if p.is_file())
    files += [Path(v) for v in options.values() if isinstance(v, (str, Path)) and Path(v).is_file()]
    return files


def load_dataset(
    path: Path | str | None = None,
    format: str = "auto",
    *,
    split: SplitSettings | None = None,
    cache_dir: Path | str | None = None,
    **options: object,
) -> LeaveOneOutSplit:
    """Load, filter and split a dataset, using the on-disk cache when it is still valid.

    No `path`: the bundled ml-latest-small. `cache_dir=None` disables caching. The split is the
    one `split.protocol` names. Only the leave-one-out split is cached: a temporal split is built
    from the raw interactions each time, since its vocabulary depends on its cut.
    """
    check_format(format)  # before the cache can answer without a loader
    split = split or SplitSettings()
    if split.protocol == "temporal":
        return temporal_split(load_raw(path, format, **options), split)
    base = split.model_copy(update={"test_cut": None, "valid_cut": None})  # cuts: temporal only
    if cache_dir is None:
        return leave_one_out(load_raw(path, format, **options), base)
    key_options = {"format": format, **options}
    key = cache.cache_key(_source_files(path, format, options), key_options, base)
    folder = Path(cache_dir) / "splits" / key
    result = cache.load_split(folder)
    if result is None:
        result = leave_one_out(load_raw(path, format, **options), base)
        cache.save_split(result, folder)
    return result
