"""Speed figures on this machine: dataset load + split, embedding and index build, retrieval
latency per user, and peak memory. `fewrec bench` prints them and saves them as JSON."""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from fewrec.config import Settings


class BenchResult(BaseModel):
    figures: dict[str, float | int | str] = Field(default_factory=dict)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_bench(settings: Settings, users: int = 200, seed: int = 0) -> BenchResult:
    from fewrec.data import load_dataset
    from fewrec.retrieval import Retriever
    from fewrec.retrieval.content import aligned_vectors
    from fewrec.retrieval.store import ContentIndex

    out = BenchResult()
    f = out.figures
    started = time.perf_counter()
    split = load_dataset(settings.dataset, settings.dataset_format, split=settings.split, cache_dir=None)
    f["load_split_s"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    load_dataset(
        settings.dataset, settings.dataset_format, split=settings.split, cache_dir=settings.cache_dir
    )
    load_dataset(
        settings.dataset, settings.dataset_format, split=settings.split, cache_dir=settings.cache_dir
    )
    f["load_split_cached_s"] = round((time.perf_counter() - started) / 2, 3)

    vectors = None
    if "content" in settings.retrieval.sources:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = settings.model_copy(update={"data_dir": Path(tmp), "chroma_host": None})
            index = ContentIndex.from_settings(fresh)
            index.embedder.embed(["warm-up"])  # model load is not indexing speed
            started = time.perf_counter()
            index.build(split.catalog, progress=False)
            seconds = time.perf_counter() - started
            f["index_build_s"] = round(seconds, 2)
            f["index_items_per_s"] = round(len(split.catalog) / seconds, 1)
            vectors = aligned_vectors(index, split.item_ids)
            started = time.perf_counter()
            for text in ("dark sci-fi from the 90s", "a funny family film", "war drama"):
                index.query_text(text, 10)
            f["text_query_ms"] = round((time.perf_counter() - started) / 3 * 1000, 1)

    started = time.perf_counter()
    retriever = Retriever(split, settings.retrieval, vectors, model_dir=settings.model_dir).fit("all")
    f["fit_sources_s"] = round(time.perf_counter() - started, 2)
    rng = np.random.default_rng(seed)
    sample = rng.choice(split.n_users, size=min(users, split.n_users), replace=False)
    latencies = []
    for u in sample:
        history = split.history(int(u), "all")
        context = retriever.context_for(np.array([u]), "all")
        started = time.perf_counter()
        retriever.candidates(history, settings.retrieval.candidates, context)
        latencies.append(time.perf_counter() - started)
    ms = np.array(latencies) * 1000
    f["retrieval_users"] = len(sample)
    f["retrieval_p50_ms"] = round(float(np.percentile(ms, 50)), 2)
    f["retrieval_p95_ms"] = round(float(np.percentile(ms, 95)), 2)
    started = time.perf_counter()
    retriever.score_split("test")
    f["batch_scoring_all_users_s"] = round(time.perf_counter() - started, 2)
    f["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    f["rerank"] = "not built yet (LLM stage)"
    return out
