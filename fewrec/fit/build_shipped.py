"""Writes what fewrec ships for the bundled ml-latest-small (read by `fewrec/retrieval/shipped.py`):
the vectors of the catalog and of the few-shot demonstrations' histories, and the SASRec weights
`make run` trained in a data folder.

    python -m fewrec.fit.build_shipped DATA_DIR

Here rather than beside the reader: it embeds the demonstrations (`fewrec.prompts`), a layer
above retrieval.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from fewrec.retrieval.shipped import SHIPPED_DIR, SHIPPED_SOURCE


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
    config = settings.retrieval.source(SHIPPED_SOURCE)
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
        raise SystemExit("usage: python -m fewrec.fit.build_shipped DATA_DIR (where `make run` ran)")
    for path in write_shipped(Path(sys.argv[1])):
        print(f"{path} ({path.stat().st_size:,} bytes)")
