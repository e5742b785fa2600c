"""The `fewrec` command line (typer): datasets, index, recommend, eval, bench."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fewrec.config import Settings
from fewrec.data.errors import FewrecError

app = typer.Typer(
    help="fewrec: an LLM-agent recommender with few-shot reasoning, measured honestly.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML settings file (default: ./fewrec.toml if present).")
]
DatasetOption = Annotated[
    str | None,
    typer.Option("--dataset", help="Dataset folder or file (default: bundled ml-latest-small)."),
]
FormatOption = Annotated[
    str,
    typer.Option("--format", help="movielens | ml-100k | ml-1m | amazon | csv | auto."),
]


def _settings(config: Path | None, dataset: str | None = None, fmt: str | None = None) -> Settings:
    overrides: dict = {}
    if dataset is not None:
        overrides["dataset"] = dataset
    if fmt is not None and fmt != "auto":
        overrides["dataset_format"] = fmt
    return Settings.load(config, **overrides)


@app.callback()
def _root() -> None:
    """fewrec: an LLM-agent recommender with few-shot reasoning, measured honestly."""


def main() -> None:
    """Entry point that prints fewrec's own errors as one line instead of a traceback."""
    try:
        app()
    except FewrecError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)


@app.command()
def datasets(
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
) -> None:
    """List the dataset formats fewrec can load and the statistics of the chosen dataset."""
    from fewrec.data import LOADERS, load_dataset, load_raw

    settings = _settings(config, dataset, format)
    formats = Table(title="Loadable formats")
    formats.add_column("format")
    formats.add_column("files")
    for name, files in {
        "movielens": "ratings.csv, movies.csv, tags.csv (ml-latest-small, ml-25m)",
        "ml-100k": "u.data, u.item",
        "ml-1m": "ratings.dat, movies.dat",
        "amazon": "reviews *.json[.gz] (+ meta_*.json[.gz])",
        "csv": "interactions csv (+ items csv), columns named by you",
    }.items():
        if name in LOADERS:
            formats.add_row(name, files)
    console.print(formats)

    raw = load_raw(settings.dataset, settings.dataset_format)
    split = load_dataset(
        settings.dataset, settings.dataset_format, split=settings.split, cache_dir=settings.cache_dir
    )
    table = Table(title=f"Dataset: {raw.name}" + (" (bundled)" if settings.dataset is None else ""))
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key, value in raw.stats().items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    for key, value in split.stats().items():
        table.add_row(f"after {settings.split.min_count}-core split: {key}", f"{value:,}")
    console.print(table)


def _load_split(settings: Settings):
    from fewrec.data import load_dataset

    return load_dataset(
        settings.dataset, settings.dataset_format, split=settings.split, cache_dir=settings.cache_dir
    )


@app.command()
def index(
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
    rebuild: Annotated[bool, typer.Option(help="Drop the collection and build it anew.")] = False,
) -> None:
    """Build or update the Chroma content index (incremental: only new or changed items)."""
    import time

    from fewrec.retrieval.store import ContentIndex

    settings = _settings(config, dataset, format)
    split = _load_split(settings)
    started = time.perf_counter()
    content = ContentIndex.from_settings(settings, rebuild=rebuild)
    report = content.build(split.catalog)
    seconds = time.perf_counter() - started
    where = (
        f"{settings.chroma_host}:{settings.chroma_port}" if settings.chroma_host else str(settings.chroma_dir)
    )
    console.print(
        f"index {settings.chroma_collection!r} at {where}: {report}; {len(content)} items, {seconds:.1f} s"
    )


@app.command()
def recommend(
    user: Annotated[str | None, typer.Option(help="A user id of the dataset.")] = None,
    like: Annotated[list[str] | None, typer.Option(help="A liked title (repeatable).")] = None,
    k: Annotated[int, typer.Option(help="How many items.")] = 10,
    rerank: Annotated[
        bool, typer.Option(help="Rerank the candidates with the LLM (few-shot prompt).")
    ] = False,
    explain: Annotated[bool, typer.Option(help="Explain the top items (grounded in the history).")] = True,
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
) -> None:
    """Print ranked items for a user id or a few liked titles, with the sources behind each."""
    import numpy as np

    from fewrec.retrieval import open_retriever
    from fewrec.retrieval.base import ScoringContext

    if k < 1:
        raise FewrecError("--k must be at least 1")
    settings = _settings(config, dataset, format)
    retriever = open_retriever(settings)
    split = retriever.split
    notes: list[str] = []
    context = None
    if like:
        history = []
        for title in like:
            matches, close = split.catalog.match_title(title)
            if not matches:
                hint = f" Close matches: {'; '.join(close)}." if close else " No close match either."
                raise FewrecError(f"no catalog title matches {title!r}.{hint}")
            history.append(split.item_index(matches[0]))
            notes.append(f"took {title!r} as {split.catalog.title(matches[0])!r}")
        history_arr = np.array(history, dtype=np.int64)
    elif user is not None:
        if split.has_user(user):
            u = split.user_index(user)
            history_arr = split.history(u, "all")
            context = retriever.context_for(np.array([u]), "all")
            notes.append(f"user {user}: {len(history_arr)} items in the history")
        else:
            history_arr = np.array([], dtype=np.int64)
            notes.append(f"user {user!r} is not in the dataset: treated as a new user (popularity)")
    else:
        raise FewrecError("give --user ID or at least one --like TITLE")
    depth = max(k, settings.rerank.candidates) if rerank else k
    candidates = retriever.candidates(history_arr, depth, context or ScoringContext())
    if rerank and len(history_arr) and candidates:
        candidates = _rerank_candidates(settings, retriever, history_arr, candidates, context, notes)
    candidates = candidates[:k]
    for note in notes:
        console.print(f"[dim]{note}[/]", highlight=False)
    table = Table(title="Recommendations")
    for col in ("rank", "item", "title", "score", "found by (rank in source)"):
        table.add_column(col)
    for c in candidates:
        found = ", ".join(
            f"{name} (#{rank})" for name, rank in sorted(c.source_ranks.items(), key=lambda kv: kv[1])
        )
        table.add_row(str(c.rank), str(c.item_id), c.title, f"{c.score:.3f}", found)
    console.print(table)
    if explain and candidates:
        from fewrec.agent.explain import Explainer

        explainer = Explainer(split, retriever)
        for c in candidates[: settings.rerank.explain_top]:
            console.print(f"{c.rank}. {explainer.explain(history_arr, c).text}", highlight=False)


def _rerank_candidates(settings, retriever, history, candidates, context, notes: list[str]):
    """LLM scores for the candidates, fused with retrieval (alpha from Settings)."""
    import numpy as np

    from fewrec.agent.rerank import fuse

    split = retriever.split
    try:
        reranker, pool = _llm_parts(settings, split)
    except FewrecError as exc:  # no model or no demonstration store: keep the retrieval order
        notes.append(f"LLM unavailable, retrieval order kept: {exc}")
        return candidates
    user = int(context.users[0]) if context is not None and context.users is not None else -1
    cutoff = int(context.times[0]) if context is not None and context.times is not None else 2**62
    demos = pool.select_many([history], [user], [cutoff], settings.rerank.k_shot)[0]
    indices = [split.item_index(c.item_id) for c in candidates]
    result = reranker.score(history, indices, demos)
    if result.fallback:
        notes.append(result.fallback)
        return candidates
    alpha = settings.rerank.alpha
    final = fuse(np.array(result.scores), np.array([c.score for c in candidates]), alpha)
    order = np.argsort(-final, kind="stable")
    notes.append(
        f"reranked {len(candidates)} candidates with {reranker.backend.name} ({settings.rerank.mode}, "
        f"{len(demos)} demonstrations, alpha={alpha}, {result.prompt_tokens} prompt tokens, "
        f"{result.seconds:.2f} s)"
    )
    return [
        candidates[i].model_copy(update={"rank": rank, "score": float(final[i])})
        for rank, i in enumerate(order, start=1)
    ]


@app.command()
def search(
    text: Annotated[str, typer.Argument(help="Free text, e.g. 'dark sci-fi from the 90s'.")],
    k: Annotated[int, typer.Option(help="How many items.")] = 10,
    genre: Annotated[list[str] | None, typer.Option(help="Only items of this genre (repeatable).")] = None,
    year_min: Annotated[int | None, typer.Option(help="Earliest release year.")] = None,
    year_max: Annotated[int | None, typer.Option(help="Latest release year.")] = None,
    config: ConfigOption = None,
) -> None:
    """Search the content index by meaning, with optional genre and year filters."""
    from fewrec.retrieval.store import ContentIndex, where_filter

    settings = _settings(config)
    content = ContentIndex.from_settings(settings)
    if len(content) == 0:
        raise FewrecError("the content index is empty: run `fewrec index` first")
    hits = content.query_text(text, k, where_filter(genre, year_min, year_max))
    table = Table(title=f"Search: {text[:60]}")
    for col in ("rank", "item", "title", "similarity"):
        table.add_column(col)
    titles = content.titles([item_id for item_id, _ in hits])
    for rank, (item_id, similarity) in enumerate(hits, start=1):
        table.add_row(str(rank), item_id, titles.get(item_id, ""), f"{similarity:.3f}")
    console.print(table)


def _int_list(text: str | None, what: str) -> list[int]:
    if not text:
        return []
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise FewrecError(f"{what} expects comma-separated integers, got {text!r}") from exc


@app.command(name="eval")
def eval_command(
    stages: Annotated[str, typer.Option(help="Comma-separated: retrieval, rerank, fused.")] = "retrieval",
    split: Annotated[str, typer.Option(help="valid or test.")] = "test",
    baselines: Annotated[str, typer.Option(help="Comma-separated baselines, or 'all' or 'none'.")] = "all",
    history_cut: Annotated[str | None, typer.Option(help="Few-shot slices, e.g. 1,3,5.")] = "1,3,5",
    users: Annotated[int | None, typer.Option(help="Evaluate a seeded sample of N users.")] = None,
    sampled: Annotated[
        int | None, typer.Option(help="Sampled protocol: rank among N items (1 + N-1 negatives).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling users, negatives and bootstrap.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Run folder (default: runs/<timestamp>).")] = None,
    no_content: Annotated[bool, typer.Option(help="Skip the Chroma content source.")] = False,
    readme: Annotated[
        Path | None, typer.Option(help="Also rewrite the Results section of this README.")
    ] = None,
    k_shot: Annotated[
        str | None, typer.Option(help="LLM stages: demonstrations per prompt, e.g. 0,3.")
    ] = None,
    backend: Annotated[str | None, typer.Option(help="LLM stages: llamacpp or openai.")] = None,
    model: Annotated[str | None, typer.Option(help="LLM stages: model name or GGUF path.")] = None,
    alpha: Annotated[float | None, typer.Option(help="LLM weight in the fused score (0..1).")] = None,
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
) -> None:
    """Evaluate fewrec's stages and the baselines; writes results.json, report.md and plots."""
    from fewrec.eval.report import default_run_dir, markdown, write
    from fewrec.eval.runner import ALL_BASELINES, EvalError, evaluate, validate_args
    from fewrec.retrieval import load_item_vectors

    if split not in ("valid", "test"):
        raise EvalError(f"--split must be 'valid' or 'test', got {split!r}")
    if sampled is not None and sampled < 2:
        raise EvalError("--sampled needs at least 2 items (1 held-out + negatives)")
    settings = _settings(config, dataset, format)
    data = _load_split(settings)
    stage_list = [s.strip() for s in stages.split(",") if s.strip()]
    baseline_list = list(ALL_BASELINES) if baselines == "all" else [] if baselines == "none" else [
        b.strip() for b in baselines.split(",") if b.strip()
    ]  # fmt: skip
    cuts = _int_list(history_cut, "--history-cut")
    validate_args(data, stage_list, baseline_list, users, cuts)
    if backend is not None:
        if backend not in ("llamacpp", "openai"):
            raise EvalError(f"unknown backend {backend!r}; choose llamacpp or openai")
        settings.llm.backend = backend  # type: ignore[assignment]
    if model is not None:
        settings.llm.model = model
    if alpha is not None:
        if not 0.0 <= alpha <= 1.0:
            raise EvalError("--alpha must be between 0 and 1")
        settings.rerank.alpha = alpha
    k_shots = _int_list(k_shot, "--k-shot") if k_shot else None
    reranker, pool = None, None
    if any(stage in ("rerank", "fused") for stage in stage_list):
        reranker, pool = _llm_parts(settings, data)
    folder = out or default_run_dir()
    vectors = None
    if "content" in settings.retrieval.sources and not no_content:
        vectors = load_item_vectors(settings, data)

    def save(partial) -> None:
        write(partial, folder, with_plots=False)

    report = evaluate(
        data, settings, split_name=split, stages=stage_list, baselines=baseline_list, history_cuts=cuts,
        users=users, sampled=sampled, seed=seed, item_vectors=vectors, on_result=save,
        reranker=reranker, demo_pool=pool, k_shots=k_shots,
        progress=lambda msg: console.print(f"[dim]{msg}[/]", highlight=False),
    )  # fmt: skip
    files = write(report, folder)
    console.print(markdown(report), highlight=False)
    console.print(f"wrote {', '.join(str(f) for f in files)}")
    if readme is not None:
        from fewrec.eval.report import readme_section, update_readme

        try:
            update_readme(readme, readme_section(report, folder, readme))
        except (OSError, ValueError) as exc:
            raise FewrecError(f"cannot update {readme}: {exc}") from exc
        console.print(f"updated the Results section of {readme}")
    if not report.complete:
        raise typer.Exit(130)


def _llm_parts(settings: Settings, data):
    """The reranker over the configured backend, and the demonstration pool (Chroma)."""
    from fewrec.agent.rerank import LLMReranker
    from fewrec.llm import make_backend
    from fewrec.prompts.demos import DemonstrationPool
    from fewrec.retrieval.embeddings import make_embedder
    from fewrec.retrieval.store import connect

    backend = make_backend(settings)
    pool = DemonstrationPool(
        data, connect(settings), make_embedder(settings.embedding), settings.rerank.demo_history_items
    )
    return LLMReranker(data, backend, settings.rerank), pool


@app.command()
def tune(
    no_content: Annotated[bool, typer.Option(help="Leave the Chroma content source out.")] = False,
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
) -> None:
    """Choose the fusion weights on the validation split; prints them as TOML for fewrec.toml."""
    from fewrec.eval.tune import tune_weights
    from fewrec.retrieval import load_item_vectors

    settings = _settings(config, dataset, format)
    data = _load_split(settings)
    vectors = None
    if "content" in settings.retrieval.sources and not no_content:
        vectors = load_item_vectors(settings, data)
    weights, ndcg = tune_weights(data, settings.retrieval, vectors, settings.model_dir)
    console.print(f"validation NDCG@10 {ndcg:.4f} with these weights (test split not used):")
    body = ", ".join(f"{name} = {value}" for name, value in weights.items())
    print(f"[retrieval]\nweights = {{ {body} }}")


@app.command()
def bench(
    users: Annotated[int, typer.Option(help="Users sampled for latency figures.")] = 200,
    llm_users: Annotated[int, typer.Option(help="Users sampled for LLM rerank latency (0: skip).")] = 30,
    out: Annotated[Path, typer.Option(help="Where to save the figures as JSON.")] = Path("runs/bench.json"),
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
) -> None:
    """Speed figures on this machine: load, index build, retrieval latency, peak memory."""
    from fewrec.eval.bench import run_bench
    from fewrec.eval.report import write_atomically

    settings = _settings(config, dataset, format)
    result = run_bench(settings, users=users, llm_users=llm_users)
    table = Table(title="fewrec bench (this machine)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in result.figures.items():
        table.add_row(key, str(value))
    console.print(table)
    write_atomically(out, result.model_dump_json(indent=2).encode())
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
