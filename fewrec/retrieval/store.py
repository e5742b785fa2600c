"""The content index: one Chroma document per catalog item, with its attributes as metadata.

Embedded `chromadb.PersistentClient` under the data directory by default, a Chroma server
through `chromadb.HttpClient` when `chroma_host` is set. Builds are incremental and
idempotent (items are keyed by id and a hash of their text) and committed batch by batch,
so an interrupted build leaves a usable index that the next build completes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock
from tqdm.auto import tqdm

from fewrec.config import Settings
from fewrec.data.errors import FewrecError
from fewrec.data.models import Catalog, Item
from fewrec.data.traits import has_titles
from fewrec.retrieval.embeddings import ChromaEmbeddingFunction, Embedder, make_embedder
from fewrec.retrieval.shipped import shipped_vectors

SCHEMA_VERSION = 1
log = logging.getLogger(__name__)
MAX_QUERY_CHARS = 2000  # longer free-text queries are cut: the embedder sees 256 tokens anyway


class VectorStoreError(FewrecError):
    """The vector store is unreachable, or holds a collection fewrec cannot use."""


@dataclass
class BuildReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    shipped: int = 0  # of those added or updated: vectors shipped with fewrec, not embedded here

    def __str__(self) -> str:
        text = (
            f"{self.added} added, {self.updated} updated, {self.unchanged} unchanged, {self.removed} removed"
        )
        return text + (f" ({self.shipped} from the vectors shipped with fewrec)" if self.shipped else "")


def content_hash(document: str) -> str:
    """What an item's stored vector is keyed by: a hash of the text that was embedded."""
    return hashlib.sha256(document.encode()).hexdigest()[:16]


def item_document(item: Item) -> str:
    year = f" ({item.year})" if item.year and f"({item.year})" not in item.title else ""
    return item.describe() if not year else item.describe().replace(item.title, item.title + year, 1)


def item_metadata(item: Item, content_hash: str) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "item_id": str(item.item_id),
        "title": item.title,
        "genres": "|".join(item.genres),
        "content_hash": content_hash,
    }
    if item.year is not None:
        meta["year"] = int(item.year)
    for genre in item.genres:
        meta[genre_key(genre)] = True
    return meta


def genre_key(genre: str) -> str:
    """Metadata key of a genre flag, usable in a Chroma `where` filter: {"genre_comedy": True}."""
    return "genre_" + "".join(ch if ch.isalnum() else "_" for ch in genre.lower())


def where_filter(
    genres: list[str] | None = None, year_min: int | None = None, year_max: int | None = None
) -> dict | None:
    """A Chroma `where` clause for genre and year-range constraints (None: no filter)."""
    clauses: list[dict] = [{genre_key(g): True} for g in genres or []]
    if year_min is not None:
        clauses.append({"year": {"$gte": int(year_min)}})
    if year_max is not None:
        clauses.append({"year": {"$lte": int(year_max)}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _delete_collection(client: Any, name: str) -> None:
    """Delete a collection whatever it holds (foreign, other model); absent is fine too."""
    with contextlib.suppress(Exception):
        client.delete_collection(name)


def connect(settings: Settings) -> Any:
    """A Chroma client as Settings choose it, with a clear error when a server is down."""
    import chromadb

    if settings.chroma_host:
        try:
            client = chromadb.HttpClient(host=settings.chroma_host, port=settings.chroma_port)
            client.heartbeat()
        except Exception as exc:  # chromadb raises several types for a refused connection
            raise VectorStoreError(
                f"cannot reach the Chroma server at {settings.chroma_host}:{settings.chroma_port} "
                f"({type(exc).__name__}: {exc}). Start it with `chroma run --host "
                f"{settings.chroma_host} --port {settings.chroma_port}`, or unset FEWREC_CHROMA_HOST "
                "to use the embedded store."
            ) from exc
        return client
    settings.chroma_dir.mkdir(parents=True, exist_ok=True)
    try:
        client = chromadb.PersistentClient(path=str(settings.chroma_dir))
        client.list_collections()
    except Exception as exc:  # a damaged sqlite file surfaces as several exception types
        raise VectorStoreError(
            f"the Chroma data directory {settings.chroma_dir} cannot be opened ({type(exc).__name__}: "
            f"{exc}). It may be damaged or from an incompatible Chroma version: move it away and "
            "run `fewrec index` to rebuild it."
        ) from exc
    return client


class ContentIndex:
    """Items in a Chroma collection, searchable by vector or text, filterable by metadata."""

    def __init__(
        self, client: Any, name: str, embedder: Embedder, lock_path: Path | None = None,
        dataset: str | None = None,
    ) -> None:  # fmt: skip
        """`dataset` (a `Settings.dataset_key`) is recorded in a new collection and checked when
        one is reopened, so that one dataset's build never deletes another's items."""
        self.client, self.name, self.embedder, self.dataset = client, name, embedder, dataset
        self._vectors: tuple[list[str], np.ndarray] | None = None
        self._normed: tuple[list[str], np.ndarray, np.ndarray, np.ndarray] | None = None
        # Chroma's embedded store is not safe for two writing processes: they take turns.
        self._lock = FileLock(str(lock_path)) if lock_path is not None else contextlib.nullcontext()
        with self._lock:
            self.collection = self._open()

    @classmethod
    def from_settings(
        cls, settings: Settings, embedder: Embedder | None = None, rebuild: bool = False
    ) -> ContentIndex:
        """Open (or create) the configured collection; `rebuild` first deletes whatever is there,
        including a foreign collection or one written with another embedding model."""
        name = settings.collection_name
        lock = None if settings.chroma_host else settings.chroma_dir / f".{name}.lock"
        if lock is not None:
            settings.chroma_dir.mkdir(parents=True, exist_ok=True)
        # Two processes creating a fresh store at once race in Chroma's own set-up: take turns.
        with FileLock(str(lock)) if lock is not None else contextlib.nullcontext():
            client = connect(settings)
            if rebuild:
                _delete_collection(client, name)
        embedder = embedder or make_embedder(settings.embedding)
        return cls(client, name, embedder, lock, dataset=settings.dataset_key)

    def _open(self) -> Any:
        function = ChromaEmbeddingFunction(self.embedder)
        existing = {c.name if hasattr(c, "name") else str(c) for c in self.client.list_collections()}
        if self.name in existing:
            try:
                collection = self.client.get_collection(self.name, embedding_function=function)
            except ValueError as exc:  # e.g. it was created with another embedding function
                raise VectorStoreError(
                    f"collection {self.name!r} was not written by fewrec ({exc}); rebuild it with "
                    "`fewrec index --rebuild` or choose another chroma_collection"
                ) from exc
            meta = collection.metadata or {}
            if meta.get("fewrec_schema") != SCHEMA_VERSION:
                raise VectorStoreError(
                    f"collection {self.name!r} was not written by this version of fewrec "
                    f"(schema {meta.get('fewrec_schema')!r}, expected {SCHEMA_VERSION}); rebuild it "
                    "with `fewrec index --rebuild` or choose another chroma_collection"
                )
            if meta.get("fewrec_model") != self.embedder.name:
                raise VectorStoreError(
                    f"collection {self.name!r} holds vectors of model {meta.get('fewrec_model')!r}, "
                    f"but the configured model is {self.embedder.name!r}; rebuild it with "
                    "`fewrec index --rebuild`"
                )
            owner = meta.get("fewrec_dataset")
            if self.dataset is not None and owner is not None and owner != self.dataset:
                # A build deletes the ids it does not know: it would wipe the other dataset's items.
                raise VectorStoreError(
                    f"collection {self.name!r} holds the items of dataset {owner!r}, not of "
                    f"{self.dataset!r}; leave chroma_collection unset (one collection per dataset), "
                    "choose another name, or replace it with `fewrec index --rebuild`"
                )
            return collection
        metadata: dict[str, Any] = {"fewrec_schema": SCHEMA_VERSION, "fewrec_model": self.embedder.name}
        if self.dataset is not None:
            metadata["fewrec_dataset"] = self.dataset
        try:
            return self.client.create_collection(
                self.name,
                embedding_function=function,
                metadata=metadata,
                configuration={"hnsw": {"space": "cosine"}},
            )
        except Exception:  # another process (e.g. on the same Chroma server) created it meanwhile
            if self.name not in {getattr(c, "name", str(c)) for c in self.client.list_collections()}:
                raise
            return self._open()

    def drop(self) -> None:
        """Delete the collection and start an empty one (the rebuild path)."""
        _delete_collection(self.client, self.name)
        self._vectors = None
        self.collection = self._open()

    def __len__(self) -> int:
        return int(self.collection.count())

    def build(self, catalog: Catalog, progress: bool = True, batch_size: int = 256) -> BuildReport:
        """Add new and changed items (by content hash), delete removed ones; idempotent. Two
        processes building the same embedded index take turns (the second finds the work done)."""
        with self._lock:
            return self._build(catalog, progress, batch_size)

    def _build(self, catalog: Catalog, progress: bool, batch_size: int) -> BuildReport:
        report = BuildReport()
        if not has_titles(catalog):
            # Ids embedded as text would cost minutes and find nothing: leave the index as it is.
            log.warning(
                "the catalog has no titles (they are the item ids or empty): nothing to embed, "
                "the content index is not built and the content source has nothing to offer"
            )
            return report
        items = [catalog.get(i) for i in catalog.ids]
        docs = {str(it.item_id): item_document(it) for it in items}
        hashes = {k: content_hash(v) for k, v in docs.items()}
        stored = self.collection.get(include=["metadatas"])
        old = {
            i: (m or {}).get("content_hash") for i, m in zip(stored["ids"], stored["metadatas"], strict=True)
        }
        todo = [it for it in items if old.get(str(it.item_id)) != hashes[str(it.item_id)]]
        report.unchanged = len(items) - len(todo)
        stale = [i for i in old if i not in docs]
        if stale:
            self.collection.delete(ids=stale)
            report.removed = len(stale)
        # The vectors fewrec ships for the bundled catalog: a fresh clone embeds nothing it has
        # (40–90 s on 2 cores); fewrec/retrieval/shipped.py.
        shipped = shipped_vectors(self.embedder.name) if todo else {}
        bar = tqdm(total=len(todo), desc="indexing items", unit="item", disable=not progress or not todo)
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            ids = [str(it.item_id) for it in chunk]
            texts = [docs[i] for i in ids]
            vectors = self._vectors_for(ids, texts, [shipped.get(hashes[i]) for i in ids])
            report.shipped += sum(hashes[i] in shipped for i in ids)
            self.collection.upsert(
                ids=ids,
                embeddings=vectors,
                documents=texts,
                metadatas=[item_metadata(it, hashes[str(it.item_id)]) for it in chunk],
            )
            for i in ids:
                if i in old:
                    report.updated += 1
                else:
                    report.added += 1
            bar.update(len(chunk))
        bar.close()
        self._vectors = None
        return report

    def _vectors_for(self, ids: list[str], texts: list[str], known: list[np.ndarray | None]) -> np.ndarray:
        """The vectors of one batch: the shipped ones where there are, the rest embedded here."""
        missing = [n for n, vector in enumerate(known) if vector is None]
        if len(missing) == len(ids):
            return np.asarray(self.embedder.embed(texts), dtype=np.float32)
        fresh = self.embedder.embed([texts[n] for n in missing]) if missing else []
        filled = list(known)
        for n, vector in zip(missing, fresh, strict=True):
            filled[n] = np.asarray(vector, dtype=np.float32)
        return np.stack([np.asarray(v, dtype=np.float32) for v in filled])

    def vectors(self) -> tuple[list[str], np.ndarray]:
        """All stored (id, vector) pairs, for scoring every item at once with numpy."""
        if self._vectors is None:
            got = self.collection.get(include=["embeddings"])
            self._vectors = (list(got["ids"]), np.asarray(got["embeddings"], dtype=np.float32))
        return self._vectors

    def _query(self, vector: np.ndarray, k: int, where: dict | None) -> list[tuple[str, float]]:
        if k <= 0 or len(self) == 0:
            return []
        if where is None:
            return self._exact(vector, k)
        result = self.collection.query(
            query_embeddings=[np.asarray(vector, dtype=np.float32)],
            n_results=min(k, len(self)),
            where=where,
            include=["distances"],
        )
        return [(i, 1.0 - float(d)) for i, d in zip(result["ids"][0], result["distances"][0], strict=True)]

    def _exact(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The k most similar stored items by exact cosine, ties by id. Chroma's HNSW search is
        approximate, and its top 300 for one query differed from one process to the next (four
        runs of "budget", four lists), which moved the chat's figures between runs; the vectors
        are held for the content source anyway (`vectors`)."""
        ids, id_array, vectors, row_norms = self._normed_vectors()
        query = np.asarray(vector, dtype=np.float32).ravel()
        norms = row_norms * max(float(np.linalg.norm(query)), 1e-12)
        similarity = (vectors @ query) / np.maximum(norms, 1e-12)
        if k < len(similarity):  # only the k best and whatever ties the k-th need sorting
            kth = np.partition(similarity, len(similarity) - k)[len(similarity) - k]
            near = np.flatnonzero(similarity >= kth)
        else:
            near = np.arange(len(similarity))
        order = near[np.lexsort((id_array[near], -similarity[near]))][:k]
        return [(ids[i], float(similarity[i])) for i in order]

    def _normed_vectors(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """The stored ids (as a list and an array, for ties), vectors and their norms, made once
        per `vectors()` load: a chat turn's query must not measure the catalog again."""
        ids, vectors = self.vectors()
        if self._normed is None or self._normed[0] is not ids:
            self._normed = (ids, np.array(ids), vectors, np.linalg.norm(vectors, axis=1))
        return self._normed

    def query_vector(self, vector: np.ndarray, k: int, where: dict | None = None) -> list[tuple[str, float]]:
        """(item id as stored, cosine similarity), best first."""
        return self._query(vector, k, where)

    def titles(self, ids: list[str]) -> dict[str, str]:
        """Stored titles of the given ids (as stored: strings)."""
        if not ids:
            return {}
        got = self.collection.get(ids=list(ids), include=["metadatas"])
        return {i: (m or {}).get("title", "") for i, m in zip(got["ids"], got["metadatas"], strict=True)}

    def query_text(self, text: str, k: int, where: dict | None = None) -> list[tuple[str, float]]:
        text = (text or "").strip()[:MAX_QUERY_CHARS]
        if not text:
            return []
        return self._query(self.embedder.embed([text])[0], k, where)
