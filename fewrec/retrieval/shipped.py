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

`python -m fewrec.retrieval.shipped DATA_DIR` writes them (embedding the catalog again, and
copying the weights `make run` trained in DATA_DIR). Rerun it after a change to sequential.py,
whose code is in SASRec's key, or to an item's text: tests/test_shipped.py says when the shipped
files no longer match.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from fewrec.data.files import write_atomically

log = logging.getLogger(__name__)
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "data" / "bundled" / "shipped"
SASREC_FILES = ("sasrec-*.pt", "sasrec-*.json")


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


def write_shipped(data_dir: Path, folder: Path = SHIPPED_DIR, batch_size: int = 256) -> list[Path]:
    """Write the shipped files: the bundled catalog's vectors as the embedder returns them in a
    fresh build (the same batches, before the store normalises them, so that storing them gives
    the bits a fresh build stores), and the SASRec weights and records that `make run` trained
    in `data_dir` under the default settings, for the keys the current code gives the two fits."""
    from fewrec.config import Settings
    from fewrec.data import load_dataset
    from fewrec.prompts.demos import build_demonstrations, history_text
    from fewrec.retrieval.components import BuildContext
    from fewrec.retrieval.embeddings import make_embedder
    from fewrec.retrieval.fusion import fit_data
    from fewrec.retrieval.store import content_hash, item_document

    settings = Settings(data_dir=data_dir)
    split = load_dataset(split=settings.split, cache_dir=settings.cache_dir)
    embedder = make_embedder(settings.embedding)
    documents = [item_document(split.catalog.get(i)) for i in split.catalog.ids]
    vectors = np.concatenate(
        [
            embedder.embed(documents[start : start + batch_size])
            for start in range(0, len(documents), batch_size)
        ]
    ).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    vectors_path = folder / f"vectors-{embedder.name}.npz"
    # The few-shot demonstrations' history texts, embedded in one call as the pool embeds them.
    demos = build_demonstrations(split, settings.rerank.demo_history_items)
    histories = [history_text(split, d.history) for d in demos]
    demo_vectors = np.asarray(embedder.embed(histories, progress=True), dtype=np.float32)
    vectors = np.concatenate([vectors, demo_vectors])
    hashes = np.array([content_hash(d) for d in [*documents, *histories]])
    np.savez(vectors_path, model=np.array(embedder.name), hashes=hashes, vectors=vectors)
    written = [vectors_path]
    config = settings.retrieval.source("sasrec")
    sasrec = config.build(BuildContext(None, None, False, None, settings.retrieval.seed))
    for split_name in ("all", "test"):
        data = fit_data(split, split_name)
        for seed in config.seeds:
            key = sasrec._key(data, seed)  # the cache's own key, by design
            for suffix in (".pt", ".json"):
                source = settings.model_dir / f"sasrec-{key}{suffix}"
                if not source.exists():
                    raise SystemExit(f"{source} is absent: run `make run` with FEWREC_DATA_DIR={data_dir}")
                shutil.copyfile(source, folder / source.name)
                written.append(folder / source.name)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m fewrec.retrieval.shipped DATA_DIR (where `make run` ran)")
    for path in write_shipped(Path(sys.argv[1])):
        print(f"{path} ({path.stat().st_size:,} bytes)")
