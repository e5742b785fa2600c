"""The old flat keys of `[retrieval]` (`ease_lambda`, `weights = {...}`, `sources = [...]`):
each still loads as the component fields it now is (`[retrieval.sources.NAME]`), with a
one-line note, once per process, naming the new key; none is ever silently ignored.

Kept apart from fewrec/config.py so that the settings read as they are now; `legacy_label`
still gives the old names the published reports' baseline labels use.
"""

from __future__ import annotations

import logging
from typing import Any

from fewrec.config import SourceConfig, config_class, default_source_names, env_value

log = logging.getLogger("fewrec.config")

# Each old key of the flat `[retrieval]` section -> the component fields it now sets.
LEGACY_KEYS: dict[str, tuple[str, ...]] = {
    "ease_lambda": ("ease.lambda",), "ease_half_life": ("ease.half_life",),
    "ease_max_items": ("ease.max_items",), "profile_items": ("ease.limit", "itemknn.limit", "content.limit"),
    "recency_half_life": ("itemknn.half_life", "content.half_life"),
    **{
        f"transition_{field}": (f"transition.{field}", f"timed_transition.{field}")
        for field in ("window", "decay", "half_life", "normalise", "backward", "limit")
    },
    "timed_transition_tau_days": ("timed_transition.tau_days",), "timepop_tau_days": ("timepop.tau_days",),
    "itemknn_k": ("itemknn.k",),
    **{f"als_{f}": (f"als.{f}",) for f in ("factors", "iterations", "regularization")},
    **{f"bpr_{f}": (f"bpr.{f}",) for f in ("factors", "iterations", "learning_rate")},
    **{
        f"sasrec_{f}": (f"sasrec.{f}",)
        for f in ("dim", "max_len", "layers", "heads", "dropout", "epochs", "batch_size", "learning_rate",
                  "negatives", "seeds", "threads", "budget_s", "patience", "min_delta", "validation_users",
                  "max_interactions")
    },
}  # fmt: skip
_noted: set[str] = set()


def _note_once(key: str, message: str) -> None:
    """One line per old key and process: it still loads, and here is its new name."""
    if key not in _noted:
        _noted.add(key)
        log.warning("%s", message)


def legacy_label(source: str, key: str) -> str:
    """The old flat name of a source's hyper-parameter (the published reports' labels), or
    `key` itself when it never had one."""
    cls = config_class(source)
    field = cls.field_names().get(key, key)
    alias = cls.model_fields[field].alias if field in cls.model_fields else None
    for old, targets in LEGACY_KEYS.items():
        if f"{source}.{alias or field}" in targets:
            return old
    return key


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Old flat keys (`ease_lambda`, `weights = {...}`, `sources = [...]`) as the tables they
    now are; a table given in the new form wins over an old key for the same field."""
    tables: dict[str, dict[str, Any]] = {}
    defaults = default_source_names()
    for old in [key for key in data if key in LEGACY_KEYS]:
        value = data.pop(old)
        for target in LEGACY_KEYS[old]:
            source, field = target.split(".")
            tables.setdefault(source, {})[field] = env_value(value)
        new = " and ".join(f"retrieval.sources.{t}" for t in LEGACY_KEYS[old])
        _note_once(old, f"retrieval.{old} is now {new} (the old key still loads)")
    listed = env_value(data.get("sources"))
    if isinstance(listed, list):
        names = [str(name) for name in listed]
        for name in [*names, *(n for n in defaults if n not in names)]:
            tables.setdefault(name, {})["enabled"] = name in names
        _note_once("sources", "retrieval.sources = [...] is now a table per source, retrieval.sources.NAME "
                   "(`enabled = false` leaves a default source out; the old list still loads)")  # fmt: skip
        data["sources"] = {}
    if "weights" in data:
        weights = {str(k): float(v) for k, v in (env_value(data.pop("weights")) or {}).items()}
        enabled = [n for n in tables if tables[n].get("enabled", True)] if listed else list(defaults)
        for name in enabled:
            # As the flat key always did: a listed source it does not name gets 0, unless alone.
            tables.setdefault(name, {})["weight"] = weights.get(name, 1.0 if len(enabled) == 1 else 0.0)
        for name, weight in weights.items():
            if name in tables:
                tables[name]["weight"] = weight
        _note_once("weights", "retrieval.weights is now retrieval.sources.NAME.weight (the old key still "
                   "loads; a source it does not name gets weight 0, as before)")  # fmt: skip
    if tables:
        given = {} if isinstance(listed, list) else dict(listed or {})
        data["sources"] = _merge_tables(tables, given, listed)
    return data


def _merge_tables(tables: dict[str, dict[str, Any]], given: dict[str, Any], listed: Any) -> dict[str, Any]:
    """The old keys' tables under the new-form ones (which win, field by field), in the order
    that decides fusion: an old list's order, a complete new table's, or the defaults'."""
    defaults = default_source_names()
    if isinstance(listed, list):
        order = list(tables)
    elif set(defaults) <= set(given):
        order = list(given)
    else:
        order = [name for name in defaults if name in tables or name in given]
    merged: dict[str, Any] = {}
    for name in dict.fromkeys([*order, *given, *tables]):
        value = given.get(name)
        if isinstance(value, SourceConfig):
            value = value.model_dump(exclude_unset=True)
        merged[name] = {**tables.get(name, {}), **(env_value(value) or {})}
    return merged


__all__ = ["LEGACY_KEYS", "legacy_label", "migrate"]
