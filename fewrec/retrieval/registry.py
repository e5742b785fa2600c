"""The built-in candidate sources, registered by name: `[retrieval.sources.NAME]` in fewrec.toml
is the config class named here (fewrec/retrieval/components.py). The registry itself, and how a
`sources` table is read (defaults merged in, old flat keys carried over with a note), is in
fewrec/config.py, below the sources.

Adding a source is one new file with its source and config classes and one line in `BUILT_IN`
below (docs/DESIGN.md, "Add a source"); `register_source` does the same at run time.
"""

from __future__ import annotations

from importlib import import_module

from fewrec.config import (
    DEFAULT_SOURCES,
    SourceConfig,
    config_class,
    register_source,
    source_names,
    unregister_source,
)

__all__ = [
    "BUILT_IN", "DEFAULT_SOURCES", "SOURCE_NAMES", "config_class", "register_source", "source_names",
    "unregister_source",
]  # fmt: skip

# name -> "module:ConfigClass", imported here: a new source is one line in this table.
BUILT_IN: dict[str, str] = {
    "ease": "fewrec.retrieval.components:EASEConfig",
    "transition": "fewrec.retrieval.components:TransitionConfig",
    "timed_transition": "fewrec.retrieval.components:TimedTransitionConfig",
    "itemknn": "fewrec.retrieval.components:ItemKNNConfig",
    "als": "fewrec.retrieval.components:ALSConfig",
    "bpr": "fewrec.retrieval.components:BPRConfig",
    "timepop": "fewrec.retrieval.components:TimePopularityConfig",
    "content": "fewrec.retrieval.components:ContentConfig",
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
