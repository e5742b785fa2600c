"""What fewrec ships for the bundled data (fewrec/retrieval/shipped.py) stands in for computing it
only where it is the same thing: a vector for the same text and model, SASRec weights under the
cache's own key and hash. And the shipped files still match the current code and data, so that
`make run` on a fresh clone does not quietly go back to minutes of embedding and training."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from fewrec.config import Settings
from fewrec.prompts.demos import build_demonstrations, history_text
from fewrec.retrieval import shipped, store
from fewrec.retrieval.components import BuildContext
from fewrec.retrieval.fusion import fit_data
from fewrec.retrieval.store import ContentIndex, content_hash, item_document

REGENERATE = (
    "regenerate them: `FEWREC_DATA_DIR=/tmp/ship make run` (stop it at the page), then "
    "`python -m fewrec.fit.build_shipped /tmp/ship`"
)


class CountingEmbedder:
    """Records every text it embeds; each vector is a function of its text."""

    def __init__(self, name: str) -> None:
        self.name, self.texts = name, []

    def embed(self, texts, progress: bool = False) -> np.ndarray:
        self.texts += list(texts)
        seeds = [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) for t in texts]
        vectors = np.stack([np.random.default_rng(s).random(8) for s in seeds]).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def use_shipped_from(monkeypatch, folder) -> None:
    monkeypatch.setattr(store, "shipped_vectors", lambda name: shipped.shipped_vectors(name, folder))


def ship(folder, model: str, documents: list[str], vectors: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    hashes = np.array([content_hash(d) for d in documents])
    np.savez(folder / f"vectors-{model}.npz", model=np.array(model), hashes=hashes, vectors=vectors)


@pytest.mark.parametrize("model, shipped_count", [("fake", 10), ("another-model", 0)])
def test_shipped_vectors_stand_in_only_for_the_same_text_and_model(
    bundled_split, tmp_path, monkeypatch, model, shipped_count
):
    catalog = bundled_split.catalog.subset(bundled_split.catalog.ids[:20])
    documents = [item_document(catalog.get(i)) for i in catalog.ids]
    ship(tmp_path / "shipped", "fake", documents[:10], CountingEmbedder("fake").embed(documents[:10]))
    fresh = ContentIndex.from_settings(Settings(data_dir=tmp_path / "fresh"), CountingEmbedder(model))
    fresh.build(catalog, progress=False)  # nothing shipped: every text embedded here
    use_shipped_from(monkeypatch, tmp_path / "shipped")
    embedder = CountingEmbedder(model)
    index = ContentIndex.from_settings(Settings(data_dir=tmp_path / "data"), embedder)
    report = index.build(catalog, progress=False)
    assert (report.added, report.shipped) == (20, shipped_count)
    assert embedder.texts == documents[shipped_count:]  # only what was not shipped is embedded
    # The index holds the same bits as one that embedded everything itself.
    ids, vectors = index.vectors()
    fresh_ids, fresh_vectors = fresh.vectors()
    stored, expected = dict(zip(ids, vectors, strict=True)), dict(zip(fresh_ids, fresh_vectors, strict=True))
    for item in catalog.ids:
        np.testing.assert_array_equal(stored[str(item)], expected[str(item)])


def test_a_changed_text_is_embedded_not_taken_from_the_shipped_file(bundled_split, tmp_path, monkeypatch):
    catalog = bundled_split.catalog.subset(bundled_split.catalog.ids[:3])
    documents = [item_document(catalog.get(i)) for i in catalog.ids]
    ship(tmp_path / "shipped", "fake", [documents[0] + " (an older text)", *documents[1:]], np.ones((3, 8)))
    monkeypatch.setattr(
        store, "shipped_vectors", lambda name: shipped.shipped_vectors(name, tmp_path / "shipped")
    )
    embedder = CountingEmbedder("fake")
    report = ContentIndex.from_settings(Settings(data_dir=tmp_path / "data"), embedder).build(catalog)
    assert report.shipped == 2 and embedder.texts == documents[:1]
    assert "(2 from the vectors shipped with fewrec)" in str(report)


def test_an_unreadable_shipped_file_only_costs_the_embedding(tmp_path, caplog):
    (tmp_path / "vectors-fake.npz").write_bytes(b"not a numpy file")
    assert shipped.shipped_vectors("fake", tmp_path) == {}
    assert "not used" in caplog.text


def test_the_model_cache_is_seeded_where_absent_and_never_overwritten(tmp_path):
    folder, cache = tmp_path / "shipped", tmp_path / "models"
    folder.mkdir()
    (folder / "sasrec-abc.pt").write_bytes(b"shipped weights")
    (folder / "sasrec-abc.json").write_text("{}")
    (folder / "sasrec-def.pt").write_bytes(b"shipped weights")
    cache.mkdir()
    (cache / "sasrec-def.pt").write_bytes(b"trained here")
    shipped.seed_model_cache(cache, folder)
    assert (cache / "sasrec-abc.pt").read_bytes() == b"shipped weights"
    assert (cache / "sasrec-abc.json").read_text() == "{}"
    assert (cache / "sasrec-def.pt").read_bytes() == b"trained here"
    shipped.seed_model_cache(tmp_path / "elsewhere", tmp_path / "nothing-shipped")
    assert not (tmp_path / "elsewhere").exists()


def test_the_shipped_vectors_cover_the_bundled_catalog_and_demonstrations(bundled_split):
    found = shipped.shipped_vectors("all-MiniLM-L6-v2")
    catalog = bundled_split.catalog
    texts = [item_document(catalog.get(i)) for i in catalog.ids]
    demos = build_demonstrations(bundled_split, Settings().rerank.demo_history_items)
    texts += [history_text(bundled_split, d.history) for d in demos]
    missing = [text for text in texts if content_hash(text) not in found]
    assert not missing, f"{len(missing)} bundled texts have no shipped vector; {REGENERATE}"
    assert all(v.shape == (384,) and v.dtype == np.float32 for v in list(found.values())[:5])


@pytest.mark.parametrize("split_name", ["all", "test"])
def test_the_shipped_sasrec_weights_match_the_current_code_settings_and_data(bundled_split, split_name):
    settings = Settings()
    config = settings.retrieval.source("sasrec")
    sasrec = config.build(BuildContext(None, None, False, None, settings.retrieval.seed))
    for seed in config.seeds:
        key = sasrec._key(fit_data(bundled_split, split_name), seed)
        weights = shipped.SHIPPED_DIR / f"sasrec-{key}.pt"
        assert weights.exists(), (
            f"no shipped SASRec weights for the {split_name!r} fit (key {key}); {REGENERATE}"
        )
        record = json.loads(weights.with_suffix(".json").read_text())
        assert record["key"] == key and record["stopped"] is None  # trained to its rules, no budget cut
        assert record["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
