"""What fewrec ships for the bundled ml-latest-small so that `make run` on a fresh clone shows
the page in a minute or two instead of twelve: the vectors of the content index and of the
few-shot demonstrations' histories, and SASRec's weights for the two fits `make run` makes (on
every interaction for `recommend` and the chat, on what came before the test targets for the
quick evaluation).

Both are the same artefacts a first run would compute, under the same checks as computing them:
a vector stands in for embedding exactly the text it was embedded from, with the same model
(fewrec/retrieval/store.py); SASRec's weights are copied into the model cache, where they are used
only when their record names the key of the current code, settings and data and the hash of
the weights (fewrec/retrieval/sequential.py). Anything else trains or embeds as before.

`python -m fewrec.fit.build_shipped DATA_DIR` writes them (embedding the catalog again, and
copying the weights `make run` trained in DATA_DIR); it lives with the other build commands,
above the prompts it embeds the demonstrations of. Rerun it after a change to sequential.py,
whose code is in SASRec's key, or to an item's text: tests/test_shipped.py says when the shipped
files no longer match.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from fewrec.data.files import write_atomically

log = logging.getLogger(__name__)
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "data" / "bundled" / "shipped"
SASREC_FILES = ("sasrec-*.pt", "sasrec-*.json")
SHIPPED_SOURCE = "sasrec"  # the source whose trained weights are shipped


def shipped_vectors(model: str, folder: Path = SHIPPED_DIR) -> dict[str, np.ndarray]:
    """Vectors shipped for embedding model `model`, by content hash ({} for another model). A
    file that cannot be read is skipped with a warning: it only costs the time of embedding."""
    found: dict[str, np.ndarray] = {}
    for path in sorted(folder.glob("vectors-*.npz")):
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["model"]) != model:
                    continue
                vectors = np.asarray(data["vectors"], dtype=np.float32)
                found.update(zip((str(h) for h in data["hashes"]), vectors, strict=True))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("the shipped vectors %s are not used: %s", path, exc)
    return found


def embed_shipped(embedder: Any, texts: list[str], progress: bool = False) -> np.ndarray:
    """`embedder.embed(texts)`, from the shipped vectors when every text has one (all or none:
    the same call over the same texts is what gives the same bits)."""
    from fewrec.retrieval.store import content_hash

    found = shipped_vectors(embedder.name)
    known = [found.get(content_hash(text)) for text in texts]
    if texts and all(vector is not None for vector in known):
        return np.stack(known)  # type: ignore[arg-type]
    return np.asarray(embedder.embed(texts, progress=progress), dtype=np.float32)


def seed_model_cache(model_dir: Path, folder: Path = SHIPPED_DIR) -> None:
    """Copy the shipped SASRec weights and records into `model_dir` where absent; the cache's
    own checks then decide whether they fit (a stale pair is never used, only retrained)."""
    shipped = [path for pattern in SASREC_FILES for path in folder.glob(pattern)]
    if not shipped:
        return
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        # The weights before their record: a record without its weights is never trusted.
        for path in sorted(shipped, key=lambda p: p.suffix != ".pt"):
            if not (model_dir / path.name).exists():  # whole or absent to another process
                write_atomically(model_dir / path.name, path.read_bytes())
    except OSError as exc:  # a cache we cannot seed only costs the training
        log.warning("could not copy the shipped SASRec weights into %s: %s", model_dir, exc)
