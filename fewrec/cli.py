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


ProtocolOption = Annotated[
    str | None,
    typer.Option(
        "--protocol",
        help="loo: the paper's leave-one-out (default); temporal: a global time cut, nothing after it seen.",
    ),
]
TiesOption = Annotated[
    str | None,
    typer.Option(
        "--ties", help="Same-second interactions ordered by item id (default) or at random (seeded)."
    ),
]
TestCutOption = Annotated[
    str | None,
    typer.Option(
        "--test-cut", help="Temporal protocol: test cut as a date, Unix seconds or a quantile (0.9)."
    ),
]
ValidCutOption = Annotated[
    str | None,
    typer.Option(
        "--valid-cut", help="Temporal protocol: validation cut (date, Unix seconds or quantile 0.8)."
    ),
]


def _with_split_options(
    settings: Settings, protocol: str | None, ties: str | None, test_cut: str | None, valid_cut: str | None
) -> Settings:
    """Apply --protocol/--ties/--test-cut/--valid-cut, naming the allowed values on a bad one."""
    from fewrec.data.split import PROTOCOLS, TIE_ORDERS

    update: dict = {}
    if protocol is not None:
        if protocol not in PROTOCOLS:
            raise FewrecError(f"unknown --protocol {protocol!r}; choose {' or '.join(PROTOCOLS)}")
        update["protocol"] = protocol
    if ties is not None:
        if ties not in TIE_ORDERS:
            raise FewrecError(f"unknown --ties {ties!r}; choose {' or '.join(TIE_ORDERS)}")
        update["ties"] = ties
    for key, value in (("test_cut", test_cut), ("valid_cut", valid_cut)):
        if value is not None:
            update[key] = value
    if (test_cut or valid_cut) and (protocol or settings.split.protocol) != "temporal":
        raise FewrecError("--test-cut and --valid-cut apply to --protocol temporal only")
    if update:
        settings.split = settings.split.model_copy(update=update)
    return settings


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
    query: Annotated[str | None, typer.Option(help="A wish in words, e.g. 'something funny'.")] = None,
    genre: Annotated[list[str] | None, typer.Option(help="Only items of this genre (repeatable).")] = None,
    year_min: Annotated[int | None, typer.Option(help="Earliest release year.")] = None,
    year_max: Annotated[int | None, typer.Option(help="Latest release year.")] = None,
    rerank: Annotated[
        bool | None,
        typer.Option(
            "--rerank/--no-rerank", help="Rerank with the LLM (default: when Settings give it weight)."
        ),
    ] = None,
    explain: Annotated[bool, typer.Option(help="Explain the items (grounded in the history).")] = True,
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
) -> None:
    """Print ranked items for a user id or a few liked titles, with the sources behind each."""
    from fewrec.agent.recommender import Filters, Recommender

    if user is None and not like and not query:
        raise FewrecError("give --user ID, at least one --like TITLE, or --query TEXT")
    settings = _settings(config, dataset, format)
    recommender = Recommender(settings)
    split = recommender.split
    for title in like or []:
        item = recommender.item(title)
        if item.title.lower() != title.strip().lower():
            console.print(f"[dim]took {title!r} as {item.title!r}[/]", highlight=False)
    if user is not None and split.has_user(user):
        count = len(split.history(split.user_index(user), "all"))
        console.print(f"[dim]user {user}: {count} items in the history[/]", highlight=False)
    filters = Filters(genres=genre or [], year_min=year_min, year_max=year_max)
    recs = recommender.recommend(
        user_id=user, history=list(like or []), k=k, query=query, filters=filters, explain=explain,
        rerank=rerank,
    )  # fmt: skip
    if recs and recs[0].fallback:
        console.print(f"[dim]{recs[0].fallback}[/]", highlight=False)
    table = Table(title="Recommendations")
    for col in ("rank", "item", "title", "score", "found by (rank in source)"):
        table.add_column(col)
    for r in recs:
        found = ", ".join(
            f"{name} (#{rank})" for name, rank in sorted(r.sources.items(), key=lambda kv: kv[1])
        )
        table.add_row(str(r.rank), str(r.item_id), r.title, f"{r.score:.3f}", found)
    console.print(table)
    for r in recs[: settings.rerank.explain_top] if explain else []:
        console.print(f"{r.rank}. {r.explanation}", highlight=False)


@app.command()
def chat(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default from Settings: 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from Settings: 7860).")] = None,
    share: Annotated[
        bool, typer.Option(help="Also open a public gradio.live link (off by default).")
    ] = False,
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
) -> None:
    """Start the Gradio chat page on the configured data and model."""
    from fewrec.agent.chat import ChatAgent
    from fewrec.agent.recommender import Recommender
    from fewrec.ui.app import launch

    settings = _settings(config, dataset, format)
    if host is not None:
        settings.chat.host = host
    if port is not None:
        settings.chat.port = port
    console.print("[dim]loading the data, the index and the models…[/]")
    recommender = Recommender(settings).warm_up()
    agent = ChatAgent(recommender)
    users = [str(u) for u in recommender.split.user_ids[:200].tolist()]
    console.print(f"fewrec chat on http://{settings.chat.host}:{settings.chat.port} (Ctrl-C stops it)")
    launch(agent, settings.chat.host, settings.chat.port, share=share, users=users)


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
    protocol: ProtocolOption = None,
    ties: TiesOption = None,
    test_cut: TestCutOption = None,
    valid_cut: ValidCutOption = None,
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
    settings = _with_split_options(_settings(config, dataset, format), protocol, ties, test_cut, valid_cut)
    data = _load_split(settings)
    stage_list = [s.strip() for s in stages.split(",") if s.strip()]
    baseline_list = list(ALL_BASELINES) if baselines == "all" else [] if baselines == "none" else [
        b.strip() for b in baselines.split(",") if b.strip()
    ]  # fmt: skip
    cuts = _int_list(history_cut, "--history-cut")
    validate_args(data, stage_list, baseline_list, users, cuts, split)  # type: ignore[arg-type]
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
        from fewrec.eval.report import readme_markers, readme_section, update_readme

        try:
            update_readme(readme, readme_section(report, folder, readme), readme_markers(report))
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
    pseudo: Annotated[
        int, typer.Option(help="Earlier targets per user pooled with the validation one (0: only it).")
    ] = 2,
    folds: Annotated[
        int, typer.Option(help="Also estimate out-of-sample NDCG@10 by cross-validating over users.")
    ] = 0,
    sweep: Annotated[
        str | None,
        typer.Option(help="Try values of one retrieval setting, e.g. timed_transition_tau_days=30,100,365."),
    ] = None,
    protocol: ProtocolOption = None,
    ties: TiesOption = None,
    test_cut: TestCutOption = None,
    valid_cut: ValidCutOption = None,
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
) -> None:
    """Choose the fusion weights on validation targets; prints them as TOML for fewrec.toml."""
    from fewrec.eval.tune import sweep_setting, tune_weights
    from fewrec.retrieval import load_item_vectors

    if pseudo < 0 or folds < 0:
        raise typer.BadParameter("--pseudo and --folds must be 0 or more")
    settings = _with_split_options(_settings(config, dataset, format), protocol, ties, test_cut, valid_cut)
    data = _load_split(settings)
    vectors = None
    if "content" in settings.retrieval.sources and not no_content:
        vectors = load_item_vectors(settings, data)
    if sweep:
        key, _, raw = sweep.partition("=")
        values = [v.strip() for v in raw.split(",") if v.strip()]
        if not values:
            raise typer.BadParameter("--sweep takes KEY=V1,V2,...", param_hint="--sweep")
        try:
            results = sweep_setting(
                data, settings.retrieval, key.strip(), values, vectors, settings.model_dir, pseudo, folds
            )
        except ValueError as exc:  # pydantic ValidationError is a ValueError
            raise typer.BadParameter(str(exc), param_hint="--sweep") from exc
        table = Table(title=f"{key} on validation targets (test split not used)")
        for column in ("value", "NDCG@10 in sample", "out of sample", "weights"):
            table.add_column(column)
        for value, result in results:
            oos = "–" if result.out_of_sample is None else f"{result.out_of_sample:.4f}"
            table.add_row(str(value), f"{result.ndcg:.4f}", oos, _weights_toml(result.weights))
        console.print(table)
        return
    result = tune_weights(data, settings.retrieval, vectors, settings.model_dir, pseudo=pseudo, folds=folds)
    per_split = ", ".join(f"{label} {value:.4f}" for label, value in result.per_split.items())
    console.print(
        f"validation NDCG@10 {result.ndcg:.4f} over {result.targets} targets ({per_split}); "
        "test split not used"
    )
    if result.out_of_sample is not None:
        console.print(f"out of sample ({folds}-fold over users): NDCG@10 {result.out_of_sample:.4f}")
    untuned = ", ".join(f"{label} {value:.4f}" for label, value in result.untuned.items())
    console.print(f"untuned, in sample: {untuned}")
    print(f"[retrieval]\nweights = {{ {_weights_toml(result.weights)} }}")


def _weights_toml(weights: dict[str, float]) -> str:
    return ", ".join(f"{name} = {value}" for name, value in weights.items())


@app.command()
def bench(
    users: Annotated[int, typer.Option(help="Users sampled for latency figures.")] = 200,
    llm_users: Annotated[int, typer.Option(help="Users sampled for LLM rerank latency (0: skip).")] = 30,
    chat_sessions: Annotated[int, typer.Option(help="Scripted chat sessions timed (0: skip).")] = 10,
    load_threads: Annotated[
        int, typer.Option(help="Load test: recommend from N threads and N chat sessions (0: skip).")
    ] = 20,
    out: Annotated[Path, typer.Option(help="Where to save the figures as JSON.")] = Path("runs/bench.json"),
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
) -> None:
    """Speed figures on this machine: load, index build, retrieval latency, peak memory."""
    from fewrec.eval.bench import run_bench
    from fewrec.eval.report import write_atomically

    settings = _settings(config, dataset, format)
    result = run_bench(
        settings, users=users, llm_users=llm_users, chat_sessions=chat_sessions, load_threads=load_threads
    )
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
