"""The built-in candidate sources, registered by name: `[retrieval.sources.NAME]` in fewrec.toml
is the config class named here (fewrec/retrieval/components.py). The registry itself, and how a
`sources` table is read (defaults merged in), is in fewrec/config.py, below the sources; the
old flat keys are carried over with a note by fewrec/config_legacy.py.

What a source is (run by default, time-aware, needing the content index, how it explains
itself) its config class declares; the default sources fuse in this table's order.

Adding a source is one new file with its source and config classes and one line in `BUILT_IN`
below (docs/DESIGN.md, "Add a source"); `register_source` does the same at run time.
"""

from __future__ import annotations

from importlib import import_module

from fewrec.config import (
    SourceConfig,
    config_class,
    default_source_names,
    register_source,
    source_names,
    unregister_source,
)

__all__ = [
    "BUILT_IN", "SOURCE_NAMES", "config_class", "default_source_names", "register_source", "source_names",
    "unregister_source",
]  # fmt: skip

# name -> "module:ConfigClass", imported here: a new source is one line in this table. The
# order is the order a default retriever sums the default ones in (the published figures are
# that float sum), popularity, the cold-start fallback, last.
BUILT_IN: dict[str, str] = {
    "timed_transition": "fewrec.retrieval.components:TimedTransitionConfig",
    "transition": "fewrec.retrieval.components:TransitionConfig",
    "ease": "fewrec.retrieval.components:EASEConfig",
    "timepop": "fewrec.retrieval.components:TimePopularityConfig",
    "itemknn": "fewrec.retrieval.components:ItemKNNConfig",
    "content": "fewrec.retrieval.components:ContentConfig",
    "als": "fewrec.retrieval.components:ALSConfig",
    "bpr": "fewrec.retrieval.components:BPRConfig",
    "sasrec": "fewrec.retrieval.components:SASRecConfig",
    "popularity": "fewrec.retrieval.components:PopularityConfig",
}
SOURCE_NAMES: tuple[str, ...] = tuple(BUILT_IN)


def load_config_class(path: str) -> type[SourceConfig]:
    """The config class a "module:Class" path names; it must subclass SourceConfig."""
    module, _, name = path.partition(":")
    found = getattr(import_module(module), name, None)
    if not (isinstance(found, type) and issubclass(found, SourceConfig)):
        raise TypeError(f"{path!r} names no SourceConfig subclass")
    return found


for _name, _path in BUILT_IN.items():
    register_source(_name, load_config_class(_path))
