"""The registry of candidate sources: name -> component config class, and how the `retrieval`
settings' `sources` table is read (defaults merged in, old flat keys carried over with a note).

Adding a source is one new file with its config class (see docs/DESIGN.md, "Add a source") and
one line in `BUILT_IN` below; `register_source` does the same at run time (tests, plug-ins).

How a source is switched on or off: every name in `DEFAULT_SOURCES` is configured unless the
settings say `enabled = false` in its table; any other registered name runs once its table is
present (`[retrieval.sources.popularity]`). Sources fuse in `DEFAULT_SOURCES` order, then the
others in the order they are configured (a float sum depends on its order, and the published
figures on that sum); a table that names every default source keeps its own order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fewrec.retrieval.base import SourceConfig
from fewrec.retrieval.components import (
    ALSConfig,
    BPRConfig,
    ContentConfig,
    EASEConfig,
    ItemKNNConfig,
    PopularityConfig,
    SASRecConfig,
    TimedTransitionConfig,
    TimePopularityConfig,
    TransitionConfig,
)

log = logging.getLogger("fewrec.config")

BUILT_IN: dict[str, type[SourceConfig]] = {
    "ease": EASEConfig,
    "transition": TransitionConfig,
    "timed_transition": TimedTransitionConfig,
    "itemknn": ItemKNNConfig,
    "als": ALSConfig,
    "bpr": BPRConfig,
    "timepop": TimePopularityConfig,
    "content": ContentConfig,
    "sasrec": SASRecConfig,
    "popularity": PopularityConfig,
}
SOURCE_NAMES: tuple[str, ...] = tuple(BUILT_IN)
# The sources a default retriever fuses, in the order it sums them.
DEFAULT_SOURCES: tuple[str, ...] = (
    "timed_transition", "transition", "ease", "timepop", "itemknn", "content", "als", "bpr", "sasrec",
)  # fmt: skip

_registry: dict[str, type[SourceConfig]] = dict(BUILT_IN)


def register_source(name: str, config: type[SourceConfig]) -> type[SourceConfig]:
    """Make `config` the component named `name` (`[retrieval.sources.NAME]`)."""
    _registry[name] = config
    return config


def unregister_source(name: str) -> None:
    """Forget a source registered at run time (the built-ins stay)."""
    if name not in BUILT_IN:
        _registry.pop(name, None)


def source_names() -> tuple[str, ...]:
    """Every registered source, built-ins first."""
    return tuple(_registry)


def config_class(name: str) -> type[SourceConfig]:
    try:
        return _registry[name]
    except KeyError:
        raise ValueError(f"unknown candidate source {name!r}; known: {', '.join(_registry)}") from None


def default_config(name: str) -> SourceConfig:
    return config_class(name)()


def default_sources() -> dict[str, SourceConfig]:
    return {name: default_config(name) for name in DEFAULT_SOURCES}


def sources_table(given: Mapping[str, Any]) -> dict[str, SourceConfig]:
    """The `sources` table: the defaults with `given`'s tables merged in, field by field."""
    if set(DEFAULT_SOURCES) <= set(given):
        order = list(given)
    else:
        order = [*DEFAULT_SOURCES, *(name for name in given if name not in DEFAULT_SOURCES)]
    table: dict[str, SourceConfig] = {}
    for name in order:
        cls, value = config_class(name), given.get(name)
        if isinstance(value, SourceConfig):
            if not isinstance(value, cls):
                got = type(value).__name__
                raise ValueError(f"retrieval.sources.{name} must be a {cls.__name__}, got {got}")
            table[name] = value
        else:
            table[name] = cls.model_validate(_json(value) if value is not None else {})
    return table


# ------------------------------------------------------------------------- the old flat keys
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


def _json(value: Any) -> Any:
    """Environment variables arrive as text; a list or table in them is JSON."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        return json.loads(value)
    return value


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


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Old flat keys (`ease_lambda`, `weights = {...}`, `sources = [...]`) as the tables they
    now are; a table given in the new form wins over an old key for the same field."""
    tables: dict[str, dict[str, Any]] = {}
    for old in [key for key in data if key in LEGACY_KEYS]:
        value = data.pop(old)
        for target in LEGACY_KEYS[old]:
            source, field = target.split(".")
            tables.setdefault(source, {})[field] = _json(value)
        new = " and ".join(f"retrieval.sources.{t}" for t in LEGACY_KEYS[old])
        _note_once(old, f"retrieval.{old} is now {new} (the old key still loads)")
    listed = _json(data.get("sources"))
    if isinstance(listed, list):
        names = [str(name) for name in listed]
        for name in [*names, *(n for n in DEFAULT_SOURCES if n not in names)]:
            tables.setdefault(name, {})["enabled"] = name in names
        _note_once("sources", "retrieval.sources = [...] is now a table per source, retrieval.sources.NAME "
                   "(`enabled = false` leaves a default source out; the old list still loads)")  # fmt: skip
        data["sources"] = {}
    if "weights" in data:
        weights = {str(k): float(v) for k, v in (_json(data.pop("weights")) or {}).items()}
        enabled = [n for n in tables if tables[n].get("enabled", True)] if listed else list(DEFAULT_SOURCES)
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
    if isinstance(listed, list):
        order = list(tables)
    elif set(DEFAULT_SOURCES) <= set(given):
        order = list(given)
    else:
        order = [name for name in DEFAULT_SOURCES if name in tables or name in given]
    merged: dict[str, Any] = {}
    for name in dict.fromkeys([*order, *given, *tables]):
        value = given.get(name)
        if isinstance(value, SourceConfig):
            value = value.model_dump(exclude_unset=True)
        merged[name] = {**tables.get(name, {}), **(_json(value) or {})}
    return merged


def normalise_retrieval(data: dict[str, Any]) -> dict[str, Any]:
    """The `retrieval` section's input with old keys carried over and `sources` made a full
    table of component configs (`RetrievalSettings` validates it before its fields)."""
    data = _migrate(dict(data))
    data["sources"] = sources_table(_json(data.get("sources")) or {})
    return data
