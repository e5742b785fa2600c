"""Tests of the Chroma content index: incremental builds, filters, model checks, interrupted
builds, a real Chroma server, and the errors for an unreachable server or a foreign collection."""

from __future__ import annotations

from collections.abc import Iterator

import chromadb
import numpy as np
import pytest
from conftest import require_chroma_cli, require_embedding_model
from servers import free_port, start_chroma_server, stop_process

from fewrec.config import Settings
from fewrec.data import Catalog
from fewrec.retrieval import store as store_module
from fewrec.retrieval.content import aligned_vectors
from fewrec.retrieval.embeddings import DefaultEmbedder
from fewrec.retrieval.store import (
    ContentIndex,
    VectorStoreError,
    genre_key,
    item_document,
    where_filter,
)

N = 200


class FakeEmbedder:
    """A deterministic stand-in for tests that never embed anything meaningful."""

    def __init__(self, name: str = "fake") -> None:
        self.name = name

    def embed(self, texts, progress: bool = False) -> np.ndarray:
        vectors = np.ones((len(texts), 8), dtype=np.float32)
        return vectors / np.sqrt(8)


class Renamed:
    """The real embedder under another model name (as after changing embedding.model)."""

    def __init__(self, inner, name: str) -> None:
        self.inner, self.name = inner, name

    def embed(self, texts, progress: bool = False) -> np.ndarray:
        return self.inner.embed(texts, progress)


@pytest.fixture(scope="module")
def embedder() -> DefaultEmbedder:
    require_embedding_model()
    return DefaultEmbedder()


@pytest.fixture(scope="module")
def catalog(bundled_split) -> Catalog:
    return bundled_split.catalog.subset(bundled_split.catalog.ids[:N])


@pytest.fixture(scope="module")
def built(catalog, embedder, tmp_path_factory) -> tuple[Settings, ContentIndex]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("store"))
    index = ContentIndex.from_settings(settings, embedder)
    report = index.build(catalog, progress=False)
    assert report.added == N
    return settings, index


# --------------------------------------------------------------------------- pure helpers


def test_where_filter_clauses():
    assert where_filter() is None
    assert where_filter(genres=["Sci-Fi"]) == {"genre_sci_fi": True}
    clause = where_filter(genres=["Comedy"], year_min=1995, year_max=1999)
    assert clause == {"$and": [{"genre_comedy": True}, {"year": {"$gte": 1995}}, {"year": {"$lte": 1999}}]}
    assert genre_key("(no genres listed)") == "genre__no_genres_listed_"


def test_item_document_adds_year_once(catalog):
    toy = catalog.get(1)
    doc = item_document(toy)
    assert doc.startswith("Toy Story (1995)") and doc.count("1995") == 1
    assert "Animation" in doc
    no_year = toy.model_copy(update={"title": "Toy Story"})
    assert item_document(no_year).startswith("Toy Story (1995)")


# --------------------------------------------------------------------------- errors without a model


def test_foreign_collection_is_refused(tmp_path):
    settings = Settings(data_dir=tmp_path)
    client = chromadb.PersistentClient(path=str(settings.chroma_dir))
    client.create_collection(settings.collection_name)  # chromadb's own defaults
    with pytest.raises(VectorStoreError, match=settings.collection_name) as info:
        ContentIndex.from_settings(settings, FakeEmbedder())
    assert "rebuild" in str(info.value)


def test_foreign_collection_without_embedding_function_is_refused(tmp_path):
    settings = Settings(data_dir=tmp_path)
    client = chromadb.PersistentClient(path=str(settings.chroma_dir))
    client.create_collection(settings.collection_name, embedding_function=None, metadata={"owner": "x"})
    with pytest.raises(VectorStoreError, match="rebuild"):
        ContentIndex.from_settings(settings, FakeEmbedder())


def test_closed_port_names_host_and_port_and_writes_nothing(tmp_path):
    port = free_port()  # nothing listens there once the probe socket is closed
    data = tmp_path / "data"
    settings = Settings(data_dir=data, chroma_host="127.0.0.1", chroma_port=port)
    with pytest.raises(VectorStoreError) as info:
        ContentIndex.from_settings(settings, FakeEmbedder())
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message
    assert "chroma run" in message
    assert not data.exists()


def test_reopening_with_another_model_asks_for_rebuild(tmp_path):
    settings = Settings(data_dir=tmp_path)
    ContentIndex.from_settings(settings, FakeEmbedder("model-a"))
    with pytest.raises(VectorStoreError, match="rebuild") as info:
        ContentIndex.from_settings(settings, FakeEmbedder("model-b"))
    assert "model-a" in str(info.value) and "model-b" in str(info.value)
    index = ContentIndex.from_settings(settings, FakeEmbedder("model-a"))  # same model: fine
    index.embedder = FakeEmbedder("model-b")
    index.drop()  # the rebuild path: an empty collection for the new model
    assert len(index) == 0
    ContentIndex.from_settings(settings, FakeEmbedder("model-b"))


def test_collection_from_an_older_schema_is_refused_then_rebuilt(tmp_path, monkeypatch):
    from fewrec.retrieval import store

    settings = Settings(data_dir=tmp_path)
    monkeypatch.setattr(store, "SCHEMA_VERSION", 0)  # written by an older fewrec
    ContentIndex.from_settings(settings, FakeEmbedder())
    monkeypatch.undo()
    with pytest.raises(VectorStoreError, match="schema 0") as info:
        ContentIndex.from_settings(settings, FakeEmbedder())
    assert "fewrec index --rebuild" in str(info.value)
    rebuilt = ContentIndex.from_settings(settings, FakeEmbedder(), rebuild=True)
    assert len(rebuilt) == 0 and rebuilt.collection.metadata["fewrec_schema"] == 1


def test_damaged_data_directory_names_itself_and_the_fix(tmp_path, catalog):
    settings = Settings(data_dir=tmp_path)
    ContentIndex.from_settings(settings, FakeEmbedder()).build(
        catalog.subset(catalog.ids[:5]), progress=False
    )
    database = settings.chroma_dir / "chroma.sqlite3"
    assert database.exists()
    database.write_bytes(b"this is not a database" * 100)
    with pytest.raises(VectorStoreError) as info:
        ContentIndex.from_settings(settings, FakeEmbedder())
    message = str(info.value)
    assert str(settings.chroma_dir) in message and "fewrec index" in message


# --------------------------------------------------------------------------- the real model


@pytest.mark.slow
def test_build_is_incremental_and_idempotent(catalog, embedder, tmp_path):
    settings = Settings(data_dir=tmp_path)
    index = ContentIndex.from_settings(settings, embedder)
    first = index.build(catalog, progress=False)
    assert (first.added, first.updated, first.unchanged, first.removed) == (N, 0, 0, 0)
    assert len(index) == N

    again = ContentIndex.from_settings(settings, embedder).build(catalog, progress=False)
    assert (again.added, again.updated, again.unchanged, again.removed) == (0, 0, N, 0)
    assert len(index) == N
    assert len(set(index.collection.get()["ids"])) == N

    frame = catalog.frame.copy()
    frame.loc[frame["item_id"] == 1, "title"] = "Toy Story Reloaded (1995)"
    changed = index.build(Catalog(frame), progress=False)
    assert (changed.added, changed.updated, changed.unchanged, changed.removed) == (0, 1, N - 1, 0)
    got = index.collection.get(ids=["1"], include=["metadatas", "documents"])
    assert got["metadatas"][0]["title"] == "Toy Story Reloaded (1995)"
    assert got["documents"][0].startswith("Toy Story Reloaded")

    keep = catalog.ids[: N - 30]
    shrunk = index.build(catalog.subset(keep), progress=False)
    assert shrunk.removed == 30 and shrunk.updated == 1 and shrunk.added == 0
    assert len(index) == N - 30
    assert set(index.collection.get()["ids"]) == {str(i) for i in keep}


@pytest.mark.slow
def test_vectors_are_normalised_and_aligned(built, bundled_split, embedder):
    _, index = built
    ids, vectors = index.vectors()
    assert len(ids) == N and vectors.shape == (N, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    aligned = aligned_vectors(index, bundled_split.item_ids)
    assert aligned.shape == (bundled_split.n_items, 384)
    position = ids.index("1")
    np.testing.assert_allclose(aligned[bundled_split.item_index(1)], vectors[position])
    outside = bundled_split.item_index(bundled_split.item_ids[-1])  # not among the first N
    assert not aligned[outside].any()


@pytest.mark.slow
def test_text_query_finds_the_title(built):
    _, index = built
    hits = index.query_text("Toy Story, Pixar animated toys", 5)
    assert len(hits) == 5
    assert hits[0][0] == "1"
    sims = [s for _, s in hits]
    assert sims == sorted(sims, reverse=True) and -1.0 <= sims[-1] <= sims[0] <= 1.0


@pytest.mark.slow
def test_a_text_query_ranks_every_stored_item_by_exact_cosine_ties_by_id(built, embedder):
    """Chroma's HNSW top k is approximate and differed between processes; the query reads the
    stored vectors exactly, so a fresh handle on the same store gives the same list."""
    settings, index = built
    text = "a low budget comedy"
    hits = index.query_text(text, 150)
    ids, vectors = index.vectors()
    query = embedder.embed([text])[0]
    cosine = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    row = {item: n for n, item in enumerate(ids)}
    found = [row[i] for i, _ in hits]
    sims = [s for _, s in hits]
    assert len(hits) == 150 and sims == sorted(sims, reverse=True)
    assert np.allclose(sims, cosine[found], atol=1e-5)
    left_out = np.setdiff1d(np.arange(len(ids)), found)
    assert cosine[left_out].max() <= min(sims) + 1e-6  # no item left out is more similar
    again = ContentIndex.from_settings(settings, embedder).query_text(text, 150)
    assert again == hits


@pytest.mark.slow
def test_the_whole_catalogs_top_300_for_a_query_is_exact(bundled_split, embedder, tmp_path):
    """On the whole bundled catalog (its shipped vectors), where Chroma's HNSW top 300 left out
    items more similar than ones it returned, and differently in each process."""
    index = ContentIndex.from_settings(Settings(data_dir=tmp_path), embedder)
    index.build(bundled_split.catalog, progress=False)
    hits = index.query_text("budget", 300)
    ids, vectors = index.vectors()
    query = embedder.embed(["budget"])[0]
    cosine = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    returned = {item for item, _ in hits}
    left_out = [n for n, item in enumerate(ids) if item not in returned]
    assert cosine[left_out].max() <= min(s for _, s in hits) + 1e-6


@pytest.mark.slow
def test_filtered_query_returns_only_matching_items(built, catalog):
    _, index = built
    where = where_filter(genres=["Comedy"], year_min=1995, year_max=1999)
    hits = index.query_text("a funny movie", 50, where)
    frame = catalog.frame
    expected = {
        str(i) for i, g, y in zip(frame["item_id"], frame["genres"], frame["year"], strict=True)
        if "Comedy" in g and y == y and 1995 <= y <= 1999
    }  # fmt: skip
    assert 0 < len(hits) <= 50
    assert {i for i, _ in hits} <= expected
    metas = index.collection.get(ids=[i for i, _ in hits], include=["metadatas"])["metadatas"]
    for meta in metas:
        assert "Comedy" in meta["genres"].split("|")
        assert 1995 <= meta["year"] <= 1999
        assert meta["genre_comedy"] is True
    assert len(index.query_text("x", 500, where)) == len(expected)  # k beyond the matches: all of them


@pytest.mark.slow
def test_long_and_empty_queries(built):
    _, index = built
    long_text = ("space adventure with robots and a rebellion " * 300)[:10_000]
    assert len(long_text) == 10_000
    hits = index.query_text(long_text, 3)
    assert len(hits) == 3
    assert index.query_text("", 5) == []
    assert index.query_text("   ", 5) == []
    assert index.query_text("toys", 0) == []


@pytest.mark.slow
def test_reopening_real_index_with_another_model_name_raises(built, embedder):
    settings, _ = built
    with pytest.raises(VectorStoreError, match="rebuild"):
        ContentIndex.from_settings(settings, Renamed(embedder, "all-mpnet-base-v2"))
    assert len(ContentIndex.from_settings(settings, embedder)) == N  # the data is untouched


@pytest.mark.slow
def test_interrupted_build_is_usable_and_completed_later(catalog, embedder, tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path)
    index = ContentIndex.from_settings(settings, embedder)
    real_embed = embedder.embed
    calls = []

    def flaky(texts, progress=False):
        calls.append(len(texts))
        if len(calls) > 1:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C during the second batch
        return real_embed(texts, progress)

    monkeypatch.setattr(embedder, "embed", flaky)
    # The bundled catalog's vectors ship with fewrec: without them the build must embed.
    monkeypatch.setattr(store_module, "shipped_vectors", lambda model: {})
    with pytest.raises(KeyboardInterrupt):
        index.build(catalog, progress=False, batch_size=50)
    monkeypatch.undo()

    reopened = ContentIndex.from_settings(settings, embedder)
    assert len(reopened) == 50
    assert len(reopened.query_text("a comedy", 5)) == 5
    report = reopened.build(catalog, progress=False, batch_size=50)
    assert (report.added, report.unchanged, report.updated) == (N - 50, 50, 0)
    assert len(reopened) == N
    assert len(set(reopened.collection.get()["ids"])) == N


# --------------------------------------------------------------------------- a real Chroma server


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory) -> Iterator[int]:
    require_chroma_cli()
    path = tmp_path_factory.mktemp("chroma-server")
    process, port = start_chroma_server(path, path.parent / "chroma-server.log")
    try:
        yield port
    finally:
        stop_process(process)


@pytest.mark.slow
def test_index_on_a_chroma_server(chroma_server, catalog, embedder, tmp_path):
    data = tmp_path / "data"
    settings = Settings(data_dir=data, chroma_host="127.0.0.1", chroma_port=chroma_server)
    small = catalog.subset(catalog.ids[:60])
    index = ContentIndex.from_settings(settings, embedder)
    report = index.build(small, progress=False)
    assert report.added == 60 and len(index) == 60
    hits = index.query_text("Toy Story", 3)
    assert hits[0][0] == "1"
    comedies = index.query_text("funny", 10, where_filter(genres=["Comedy"]))
    metas = index.collection.get(ids=[i for i, _ in comedies], include=["metadatas"])["metadatas"]
    assert comedies and all("Comedy" in meta["genres"] for meta in metas)

    again = ContentIndex.from_settings(settings, embedder).build(small, progress=False)
    assert (again.added, again.unchanged) == (0, 60)
    assert not data.exists()  # a server keeps the data; nothing is written locally
    with pytest.raises(VectorStoreError, match="rebuild"):
        ContentIndex.from_settings(settings, Renamed(embedder, "another-model"))


def test_the_embedding_model_loads_without_a_progress_bar(capfd):
    require_embedding_model()
    from transformers.utils import logging as transformers_logging

    DefaultEmbedder().embed(["a quiet load"])
    assert "Loading weights" not in capfd.readouterr().err
    assert transformers_logging.is_progress_bar_enabled()  # left as it was found
