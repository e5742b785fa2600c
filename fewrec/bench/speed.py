"""Speed figures on this machine: dataset load + split, embedding and index build, retrieval
latency per user, LLM rerank latency and prompt tokens per user, end-to-end recommend, and
peak memory. `fewrec bench` prints them and saves them as JSON. (`fewrec bench --scale`, the
figures at real sizes on synthetic data, lives in `fewrec.bench.scale`.)"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from fewrec.config import Settings
from fewrec.eval import metrics as m
from fewrec.eval.harness import seeded_sample
from fewrec.eval.provenance import Provenance, RunRecord
from fewrec.eval.report import table, texts

if TYPE_CHECKING:
    from fewrec.agent.pipeline import Pipeline


class BenchResult(RunRecord):
    figures: dict[str, float | int | str] = Field(default_factory=dict)


README_MARKERS = ("<!-- bench:start -->", "<!-- bench:end -->")


def readme_section(result: BenchResult, source: Path, readme: Path) -> str:
    """The README's speed table from one `fewrec bench` run, with the machine it ran on."""
    import os

    p = result.provenance or Provenance()
    load = "–".join(f"{v:g}" for v in (p.load_average_start[:1] + p.load_average_end[:1]))
    rel = os.path.relpath(source, readme.parent)
    # The rows of report_texts.toml [bench]: a figure missing from a run (a part skipped) is left out.
    rows = [row for spec in texts("bench")["rows"] if (row := _figure_row(spec, result.figures))]
    lines = [
        f"`fewrec bench` on {p.cores} cores, load average {load or 'unknown'} (start–end), "
        f"commit `{(p.commit or 'unknown')[:10]}`; every figure is in [{rel}]({rel}).",
        "",
        *table("figure | value", rows),
    ]
    return "\n".join(lines)


def _figure_row(row: list[str], figures: dict[str, Any]) -> list[str]:
    """A row of the speed table; none where the run lacks one of its figures."""
    try:
        return [part.format(**figures) for part in row]
    except (KeyError, ValueError):
        return []


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_bench(
    settings: Settings,
    users: int = 200,
    seed: int = 0,
    llm_users: int = 30,
    chat_sessions: int = 10,
    load_threads: int = 0,
    page_launcher: Any = None,
) -> BenchResult:
    """`page_launcher` (the chat page's `launch`, given by the CLI: the page sits above the
    evaluation) is needed for the page's load test when `load_threads` > 0."""
    from fewrec.agent.pipeline import Pipeline
    from fewrec.data import load_dataset
    from fewrec.retrieval.store import ContentIndex

    out = BenchResult()
    out.start_run(settings.model_dump(mode="json"))
    f = out.figures
    started = time.perf_counter()
    split = load_dataset(settings.dataset, settings.dataset_format, split=settings.split, cache_dir=None)
    f["load_split_s"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    for _ in range(2):
        load_dataset(
            settings.dataset, settings.dataset_format, split=settings.split, cache_dir=settings.cache_dir
        )
    f["load_split_cached_s"] = round((time.perf_counter() - started) / 2, 3)

    # What `fewrec recommend` serves: the settings fitted to the data, its tuned weights.
    pipeline = Pipeline(settings, split, progress=True)
    settings = pipeline.settings
    if settings.retrieval.needs_content():
        with tempfile.TemporaryDirectory() as tmp:
            fresh = settings.model_copy(update={"data_dir": Path(tmp), "chroma_host": None})
            index = ContentIndex.from_settings(fresh, embedder=pipeline.embedder)
            index.embedder.embed(["warm-up"])  # model load is not indexing speed
            started = time.perf_counter()
            index.build(split.catalog, progress=False)
            seconds = time.perf_counter() - started
            f["index_build_s"] = round(seconds, 2)
            f["index_items_per_s"] = round(len(split.catalog) / seconds, 1)
            started = time.perf_counter()
            for text in ("dark sci-fi from the 90s", "a funny family film", "war drama"):
                index.query_text(text, 10)
            f["text_query_ms"] = round((time.perf_counter() - started) / 3 * 1000, 1)
        _ = pipeline.item_vectors  # the dataset's own index (built once and kept): not timed

    started = time.perf_counter()
    retriever = pipeline.retriever
    f["fit_sources_s"] = round(time.perf_counter() - started, 2)
    sample = seeded_sample(np.arange(split.n_users), min(users, split.n_users), seed)
    latencies = []
    for u in sample:
        history = split.history(int(u), "all")
        context = retriever.context_for(np.array([u]), "all")
        started = time.perf_counter()
        retriever.candidates(history, settings.retrieval.candidates, context)
        latencies.append(time.perf_counter() - started)
    ms = np.array(latencies) * 1000
    f["retrieval_users"] = len(sample)
    f["retrieval_p50_ms"], f["retrieval_p95_ms"] = (round(v, 2) for v in m.p50_p95(ms))
    started = time.perf_counter()
    users = np.arange(split.n_users)
    histories = [split.history(int(u), "test") for u in users]
    retriever.recommend(histories, 100, retriever.context_for(users, "test"))  # in user batches
    f["batch_scoring_all_users_s"] = round(time.perf_counter() - started, 2)
    if settings.rerank.enabled and llm_users > 0:
        _bench_rerank(pipeline, seeded_sample(sample, min(llm_users, len(sample)), seed), f)
    recommender = None
    if chat_sessions > 0:
        recommender = _bench_chat(settings, split, chat_sessions, seed, f)
    if load_threads > 0:
        _bench_load(settings, split, recommender, load_threads, f, page_launcher)
    f["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    out.finish_run()
    return out


def _bench_rerank(pipeline: Pipeline, users: np.ndarray, f: dict) -> None:
    """Per-user LLM rerank latency (20 candidates, k demonstrations) and end-to-end recommend."""
    from fewrec.agent.rerank import fuse

    settings, split, retriever = pipeline.settings, pipeline.split, pipeline.retriever
    started = time.perf_counter()
    reranker = pipeline.reranker
    if reranker is None:  # the other figures still stand
        f["rerank_skipped"] = pipeline.llm_error or "LLM unavailable"
        return
    backend = reranker.backend
    f["llm_load_s"] = round(time.perf_counter() - started, 2)
    pool = pipeline.demo_pool
    explainer = pipeline.explainer
    started = time.perf_counter()
    reranker.calibration(list(range(split.n_items)))
    f["llm_calibration_all_items_s"] = round(time.perf_counter() - started, 2)
    rerank_s, end_to_end_s, tokens = [], [], []
    for u in users:
        begin = time.perf_counter()
        history = split.history(int(u), "all")
        context = retriever.context_for(np.array([u]), "all")
        candidates = retriever.candidates(history, settings.rerank.candidates, context)
        demos = pool.select_many([history], [int(u)], [int(context.times[0])], settings.rerank.k_shot)[0]
        indices = [split.item_index(c.item_id) for c in candidates]
        mid = time.perf_counter()
        result = reranker.score(history, indices, demos)
        rerank_s.append(time.perf_counter() - mid)
        tokens.append(result.prompt_tokens)
        if result.fallback is None:
            order = np.argsort(
                -fuse(np.array(result.scores), np.array([c.score for c in candidates]), settings.rerank.alpha)
            )
            top = [candidates[i] for i in order[: settings.rerank.explain_top]]
            for candidate in top:
                explainer.explain(history, candidate)
        end_to_end_s.append(time.perf_counter() - begin)
    f["rerank_backend"] = (
        f"{backend.name} ({settings.rerank.mode}, k={settings.rerank.k_shot}, "
        f"{settings.rerank.candidates} candidates)"
    )
    f["rerank_users"] = len(users)
    f["rerank_p50_s"], f["rerank_p95_s"] = (round(v, 3) for v in m.p50_p95(rerank_s))
    f["prompt_tokens_per_user_p50"] = int(np.median(tokens))
    f["recommend_end_to_end_p50_s"] = round(float(np.percentile(end_to_end_s, 50)), 3)


CHAT_SCRIPTS = [
    ["I loved Alien and Heat", "something from the 90s, no horror", "more like the first one"],
    ["a funny animated film for kids", "I liked Toy Story", "nothing like Shrek"],
    ["dark gritty crime drama", "I didn't like Titanic", "after 2000 please"],
    [  # the shapes `fewrec eval-chat` renders: lists in other phrasings, lower case, boilerplate
        "Toy Story 2, Being John Malkovich, L.A. Confidential and Magnolia are movies I liked. "
        "Can you suggest something I might like?",
        "hi! I loved Alien and Blade Runner, what should I watch next?",
        "i watched heat, fargo and up and loved them",
    ],
]


def _bench_chat(settings: Settings, split, sessions: int, seed: int, f: dict) -> Any:
    """Seconds until the reply of a chat turn (fixed plan; the page shows it whole), for fresh
    profiles and for dataset users, with the default settings and with the LLM rerank forced on."""
    from fewrec.agent.chat import ChatAgent
    from fewrec.agent.recommender import Recommender

    started = time.perf_counter()
    recommender = Recommender(settings, split=split).warm_up()
    f["chat_load_s"] = round(time.perf_counter() - started, 2)
    users = seeded_sample(np.asarray(split.user_ids), sessions, seed)
    variants = [("default", settings)]
    if settings.rerank.enabled:
        forced = settings.model_copy(deep=True)
        forced.rerank.alpha = max(settings.rerank.alpha, 0.5)
        variants.append(("llm_rerank", forced))
    for name, variant in variants:
        agent = ChatAgent(
            recommender if variant is settings else Recommender(variant, split=split).warm_up(True)
        )
        seconds = []
        for n in range(sessions):
            state, _ = agent.start(str(users[n].item()) if n % 2 else None)
            for message in CHAT_SCRIPTS[n % len(CHAT_SCRIPTS)]:
                turn, state = agent.respond(state, message)
                seconds.append(turn.seconds)
        f[f"chat_turn_{name}_turns"] = len(seconds)
        f[f"chat_turn_{name}_p50_s"], f[f"chat_turn_{name}_p95_s"] = (round(v, 3) for v in m.p50_p95(seconds))
    return recommender


def _bench_load(
    settings: Settings, split, recommender: Any, threads: int, f: dict, page_launcher: Any
) -> None:
    """Bounded load on loopback: recommend from `threads` threads, and as many chat sessions."""
    from fewrec.agent.recommender import Recommender
    from fewrec.bench.load import load_chat_page, load_recommend

    recommender = recommender or Recommender(settings, split=split).warm_up()
    for result in (
        load_recommend(recommender, threads, threads * 10),
        *([load_chat_page(recommender, page_launcher, threads, 2)] if page_launcher is not None else []),
    ):
        key = "load_" + result.what.replace(" ", "_")
        f[f"{key}_threads"] = result.threads
        f[f"{key}_completed"] = f"{result.completed}/{result.requests} in {result.seconds} s"
        f[f"{key}_per_s"] = result.throughput_per_s
        f[f"{key}_p50_s"] = result.p50_s
        f[f"{key}_p95_s"] = result.p95_s
        f[f"{key}_leaks"] = len(result.leaks)
