"""The built-in candidate sources, registered by name: `[retrieval.sources.NAME]` in fewrec.toml
is the config class named here (fewrec/retrieval/components.py). The registry itself, and how a
`sources` table is read (defaults merged in, old flat keys carried over with a note), is in
fewrec/config.py, below the sources.

Adding a source is one new file with its source and config classes and one line in `BUILT_IN`
below (docs/DESIGN.md, "Add a source"); `register_source` does the same at run time.
"""

from __future__ import annotations

from fewrec.config import (
    DEFAULT_SOURCES,
    SourceConfig,
    config_class,
    register_source,
    source_names,
    unregister_source,
)
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

__all__ = [
    "BUILT_IN", "DEFAULT_SOURCES", "SOURCE_NAMES", "config_class", "register_source", "source_names",
    "unregister_source",
]  # fmt: skip

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

for _name, _config in BUILT_IN.items():
    register_source(_name, _config)
