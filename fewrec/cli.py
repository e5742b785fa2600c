"""The `fewrec` command line (typer): datasets, index, recommend, eval, bench."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fewrec.config import Settings
from fewrec.data.errors import FewrecError

if TYPE_CHECKING:
    from fewrec.agent.pipeline import Pipeline

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
DuplicatesOption = Annotated[
    str | None,
    typer.Option(
        "--duplicates",
        help="Repeated (user, item, time) rows: error, drop (keep the first) or keep-last "
        "(default from Settings: error).",
    ),
]


RayOption = Annotated[
    str | None,
    typer.Option(
        "--ray",
        help="Shard the users over Ray actors: 'auto' (the running cluster, else a local instance) "
        "or a cluster address HOST:PORT. Same numbers as one process.",
    ),
]
RayWorkersOption = Annotated[
    int | None, typer.Option("--ray-workers", help="--ray: actors to start (default: one per CPU).")
]


def _check_ray(address: str | None, workers: int | None = None) -> None:
    """A --ray address where nothing answers, or a bad --ray-workers, fails before minutes of
    fitting, not after."""
    if address is None and workers is not None:
        raise FewrecError("--ray-workers goes with --ray")
    if workers is not None and workers < 1:
        raise FewrecError("--ray-workers must be 1 or more")
    if address is not None:
        from fewrec.distributed import check_address

        check_address(address)


@contextlib.contextmanager
def _ray_pool(address: str | None, workers: int | None) -> Iterator[Any]:
    """A RayPool on the cluster `--ray` names (None without --ray); left again afterwards.
    The options were checked by `_check_ray` before any data was loaded."""
    if address is None:
        yield None
        return
    from fewrec.distributed import RayPool, connect, shutdown

    try:
        _note(connect(address, say=_note))
        with contextlib.suppress(ValueError):  # ray.init installs its own SIGTERM handler
            signal.signal(signal.SIGTERM, _terminate)
        with RayPool(workers) as pool:
            _note(f"{pool.workers} Ray worker(s) receive each fitted retriever once")
            yield pool
    finally:
        shutdown()


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


def _settings(
    config: Path | None, dataset: str | None = None, fmt: str | None = None, duplicates: str | None = None
) -> Settings:
    overrides: dict = {}
    if dataset is not None:
        overrides["dataset"] = dataset
    if fmt is not None and fmt != "auto":
        overrides["dataset_format"] = fmt
    if duplicates is not None:
        from fewrec.data.loaders import DUPLICATES

        if duplicates not in DUPLICATES:
            raise FewrecError(f"unknown --duplicates {duplicates!r}; choose {', '.join(DUPLICATES)}")
        overrides["duplicates"] = duplicates
    return Settings.load(config, **overrides)


def _note(message: str) -> None:
    """One dim line: what fewrec changed or assumed about this dataset."""
    console.print(message, style="dim", highlight=False, markup=False, soft_wrap=True)


def _pipeline(
    settings: Settings, suggest_tune: bool = False, announce: bool = True, **options: Any
) -> Pipeline:
    """The pipeline over the dataset the settings name (`options`: Pipeline's keywords). It
    fits a copy of the settings to what the dataset carries (titles, real times) and uses its
    tuned weights; each change is one dim line (see fewrec/state.py)."""
    from fewrec.agent.pipeline import Pipeline

    pipeline = Pipeline(settings, _load_split(settings), say=_note, **options)
    settings, status = pipeline.settings, pipeline.tuned_status
    if status == "tuned" and announce:
        _note(pipeline.weights_from)
    elif status == "none" and suggest_tune and settings.dataset_ident != "bundled":
        # The default weights were tuned on the bundled data only.
        _note(
            f"no tuned weights for this dataset ({settings.split.protocol} protocol): the defaults are "
            f"used; `fewrec tune --dataset {settings.dataset}` chooses them on its validation targets"
        )
    return pipeline


@app.callback()
def _root() -> None:
    """fewrec: an LLM-agent recommender with few-shot reasoning, measured honestly."""


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (`kill`, a scheduler's time limit, a stopping container) stops a run the way
    Ctrl-C does: eval keeps the methods it finished and marks results.json incomplete."""
    raise KeyboardInterrupt


def main() -> None:
    """Entry point that prints fewrec's own errors as one line instead of a traceback."""
    previous = None
    with contextlib.suppress(ValueError):  # only the main thread may set a handler
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except FewrecError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    finally:
        if previous is not None:  # e.g. called from a test: leave the process as it was
            signal.signal(signal.SIGTERM, previous)


@app.command()
def datasets(
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
    duplicates: DuplicatesOption = None,
) -> None:
    """List the dataset formats fewrec can load and the statistics of the chosen dataset."""
    from fewrec.data import LOADERS, load_raw
    from fewrec.data.traits import has_titles, time_kind, time_range

    settings = _settings(config, dataset, format, duplicates)
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

    raw = load_raw(settings.dataset, settings.dataset_format, **settings.loader_options)
    split = _load_split(settings)
    table = Table(title=f"Dataset: {raw.name}" + (" (bundled)" if settings.dataset is None else ""))
    table.add_column("statistic")
    table.add_column("value", justify="right")
    stamps = raw.interactions.frame["timestamp"]
    stats = raw.stats()
    # Positions (0..n per user) are an order, not dates: never show them as days in 1970.
    stats["first"], stats["last"] = time_range(stamps) if len(stamps) else ("", "")
    stats["times"] = {"seconds": "dates", "positions": "positions (an order, no dates)",
                      "none": "none (all equal)"}[time_kind(stamps)]  # fmt: skip
    stats["titles"] = "yes" if has_titles(raw.catalog) else "no (the item ids): no content source"
    for key, value in stats.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    for key, value in split.stats().items():
        table.add_row(f"after {settings.split.min_count}-core split: {key}", f"{value:,}")
    console.print(table)


def _load_split(settings: Settings):
    from fewrec.data import load_dataset

    return load_dataset(
        settings.dataset, settings.dataset_format, split=settings.split, cache_dir=settings.cache_dir,
        **settings.loader_options,
    )  # fmt: skip


@app.command()
def index(
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
    rebuild: Annotated[bool, typer.Option(help="Drop the collection and build it anew.")] = False,
    duplicates: DuplicatesOption = None,
) -> None:
    """Build or update the Chroma content index of the dataset (its own collection; incremental:
    only new or changed items)."""
    import time

    from fewrec.data.traits import has_titles
    from fewrec.retrieval.store import ContentIndex

    settings = _settings(config, dataset, format, duplicates)
    split = _load_split(settings)
    if not has_titles(split.catalog):
        _note(f"{split.name}: the items have no titles (they are their ids): nothing to index")
        return
    started = time.perf_counter()
    content = ContentIndex.from_settings(settings, rebuild=rebuild)
    report = content.build(split.catalog)
    seconds = time.perf_counter() - started
    where = (
        f"{settings.chroma_host}:{settings.chroma_port}" if settings.chroma_host else str(settings.chroma_dir)
    )
    console.print(
        f"index {settings.collection_name!r} at {where}: {report}; {len(content)} items, {seconds:.1f} s"
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
    duplicates: DuplicatesOption = None,
) -> None:
    """Print ranked items for a user id or a few liked titles, with the sources behind each."""
    from fewrec.agent.recommender import Filters, Recommender

    if user is None and not like and not query:
        raise FewrecError("give --user ID, at least one --like TITLE, or --query TEXT")
    pipeline = _pipeline(_settings(config, dataset, format, duplicates), suggest_tune=True)
    split, settings = pipeline.split, pipeline.settings
    recommender = Recommender(pipeline=pipeline)
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
    duplicates: DuplicatesOption = None,
) -> None:
    """Start the Gradio chat page on the configured data and model."""
    from fewrec.agent.chat import ChatAgent
    from fewrec.agent.recommender import Recommender
    from fewrec.ui.app import launch

    settings = _settings(config, dataset, format, duplicates)
    if host is not None:
        settings.chat.host = host
    if port is not None:
        settings.chat.port = port
    console.print("[dim]loading the data, the index and the models…[/]")
    pipeline = _pipeline(settings)
    settings = pipeline.settings
    recommender = Recommender(pipeline=pipeline).warm_up()
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
    dataset: DatasetOption = None,
) -> None:
    """Search the content index of a dataset by meaning, with optional genre and year filters."""
    from fewrec.retrieval.store import ContentIndex, where_filter

    settings = _settings(config, dataset)  # each dataset has its own index
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
    tune_first: Annotated[
        bool,
        typer.Option(
            "--tune", help="No tuned weights for this dataset yet: choose them on validation targets first."
        ),
    ] = False,
    readme: Annotated[
        Path | None,
        typer.Option(help="Also rewrite the Results section of this README (complete run, clean tree)."),
    ] = None,
    readme_block: Annotated[
        str | None,
        typer.Option(help="--readme: the block <!-- NAME:start --> to rewrite (default: by protocol)."),
    ] = None,
    k_shot: Annotated[
        str | None, typer.Option(help="LLM stages: demonstrations per prompt, e.g. 0,3.")
    ] = None,
    backend: Annotated[str | None, typer.Option(help="LLM stages: llamacpp or openai.")] = None,
    model: Annotated[str | None, typer.Option(help="LLM stages: model name or GGUF path.")] = None,
    alpha: Annotated[float | None, typer.Option(help="LLM weight in the fused score (0..1).")] = None,
    chat: Annotated[
        bool,
        typer.Option(
            "--chat",
            help="Evaluate the chat instead: held-out users' liked items written in many phrasings, "
            "the chat's cards against the API given those items and popularity (default 200 users).",
        ),
    ] = False,
    query_weights: Annotated[
        str | None,
        typer.Option(
            help="--chat: query weights tried on validation targets for the families that carry a "
            "query (default 0,0.1,0.25,0.5; '' keeps the configured ones)."
        ),
    ] = None,
    chat_families: Annotated[
        str | None, typer.Option(help="--chat: only these phrasing families (comma-separated).")
    ] = None,
    phrasings: Annotated[
        Path | None, typer.Option(help="--chat: another phrasings file (default: the shipped one).")
    ] = None,
    conversations: Annotated[
        Path | None,
        typer.Option(
            "--conversations",
            help="Evaluate the chat on real dialogues instead (ReDial JSONL or the adapter format of "
            "fewrec/eval/conversations.py): Recall@1/5/10/20 at the recommender's new suggestions, and "
            "the seekers' own film labels against the chat's reading.",
        ),
    ] = None,
    dialogues: Annotated[
        int | None, typer.Option(help="--conversations: a seeded sample of N dialogues (default: all).")
    ] = None,
    protocol: ProtocolOption = None,
    ties: TiesOption = None,
    test_cut: TestCutOption = None,
    valid_cut: ValidCutOption = None,
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
    duplicates: DuplicatesOption = None,
    ray: RayOption = None,
    ray_workers: RayWorkersOption = None,
) -> None:
    """Evaluate fewrec's stages and the baselines (or, with --chat, the chat); writes
    results.json, report.md and plots."""
    from fewrec.eval.report import default_run_dir, markdown, write
    from fewrec.eval.runner import ALL_BASELINES, EvalError, evaluate, validate_args

    if split not in ("valid", "test"):
        raise EvalError(f"--split must be 'valid' or 'test', got {split!r}")
    if chat and (ray is not None or ray_workers is not None):
        raise EvalError("--ray shards the ranking evaluation; --chat runs in one process")
    _check_ray(ray, ray_workers)
    if conversations is not None:
        if chat:
            raise EvalError("--chat and --conversations are two evaluations: choose one")
        _conversations_eval(_settings(config, dataset, format, duplicates), conversations, dialogues, seed,
                            out, readme)  # fmt: skip
        return
    if dialogues is not None:
        raise EvalError("--dialogues goes with --conversations")
    if chat:
        settings = _with_split_options(
            _settings(config, dataset, format, duplicates), protocol, ties, test_cut, valid_cut
        )
        _chat_eval(settings, split, users, seed, out, readme, query_weights, chat_families, phrasings)
        return
    if query_weights is not None or chat_families is not None or phrasings is not None:
        raise EvalError("--query-weights, --chat-families and --phrasings go with --chat")
    if sampled is not None and sampled < 2:
        raise EvalError("--sampled needs at least 2 items (1 held-out + negatives)")
    settings = _with_split_options(
        _settings(config, dataset, format, duplicates), protocol, ties, test_cut, valid_cut
    )
    # Fitted on the evaluated split; the LLM parts are built by evaluate(), after the overrides.
    if tune_first and split == "valid":
        raise EvalError(
            "--tune chooses the weights on the validation targets: evaluate them with --split test"
        )
    pipeline = _pipeline(
        settings, suggest_tune=not tune_first, fit_on=split, progress=True, use_content=not no_content
    )
    data, settings = pipeline.split, pipeline.settings
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
    folder = out or default_run_dir()
    status = pipeline.tuned_status
    if tune_first and status == "none":
        _note("no tuned weights for this dataset: choosing them on its validation targets first (--tune)")
        tuned_users, sample = _tune_sample(pipeline, users, seed, pseudo=2)  # --users: that many
        _tune_and_keep(pipeline, sample, tuned_users, seed)
        status = "tuned"
    elif tune_first:
        kept = "tuned for this dataset" if status == "tuned" else "named by your settings"
        _note(f"--tune: the weights are {kept} already; `fewrec tune` chooses them again")
    weights_from = pipeline.weights_from

    def save(partial) -> None:
        # A snapshot is incomplete until the run ends: a run killed outright (SIGKILL, power)
        # must not leave a results.json that claims to be whole.
        running = "partial: written while the run was going; the final write replaces it"
        write(partial.model_copy(update={"complete": False, "notes": [*partial.notes, running]}),
              folder, with_plots=False)  # fmt: skip

    with _ray_pool(ray, ray_workers) as pool:
        report = evaluate(
            data, settings, split_name=split, stages=stage_list, baselines=baseline_list, history_cuts=cuts,
            users=users, sampled=sampled, seed=seed, on_result=save, k_shots=k_shots, pipeline=pipeline,
            progress=lambda msg: console.print(f"[dim]{msg}[/]", highlight=False), ray=pool,
            weights_from=weights_from,
        )  # fmt: skip
        ran_on = [f"ranked on Ray: {pool.workers} worker(s)"] if pool is not None else []
    # What the report's figures rest on: the dataset's adjustments and where the weights came from.
    report.notes = [*pipeline.notes, weights_from, *ran_on, *report.notes]
    files = write(report, folder)
    console.print(markdown(report), highlight=False)
    console.print(f"wrote {', '.join(str(f) for f in files)}")
    if readme is not None and not report.complete:
        _note(f"{readme} is not updated: the run did not finish (its files are written)")
    elif readme is not None:
        from fewrec.eval.report import publish, readme_markers, readme_markers_named, readme_section

        section = readme_section(report, folder, readme)
        markers = readme_markers(report) if readme_block is None else readme_markers_named(readme_block)
        publish(readme, section, markers, report.provenance, report.complete)
        console.print(f"updated the Results section of {readme}")
    if not report.complete:
        raise typer.Exit(130)


def _float_list(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise FewrecError(f"{what} expects comma-separated numbers, got {text!r}") from exc


def _chat_eval(
    settings: Settings, split: str, users: int | None, seed: int, out: Path | None, readme: Path | None,
    query_weights: str | None, families: str | None, phrasings: Path | None,
) -> None:  # fmt: skip
    """`fewrec eval --chat`: see fewrec/eval/chat_eval.py."""
    from fewrec.eval import chat_eval
    from fewrec.eval.chat_phrasings import load_phrasings
    from fewrec.eval.report import default_run_dir, publish

    book = load_phrasings(phrasings)
    names = [f.strip() for f in families.split(",") if f.strip()] if families else None
    book.select(names)  # an unknown family fails now, not after loading the data
    grid = None if query_weights is None else _float_list(query_weights, "--query-weights")
    data = _load_split(settings)
    folder = out or default_run_dir()

    def save(partial) -> None:
        chat_eval.write(partial, folder, with_plots=False)

    report = chat_eval.evaluate_chat(
        data, settings, split_name=split, users=users or chat_eval.DEFAULT_USERS, seed=seed,  # type: ignore[arg-type]
        families=names, phrasings=book, query_weights=grid, progress=True, on_result=save,
        say=lambda msg: console.print(f"[dim]{msg}[/]", highlight=False),
    )  # fmt: skip
    files = chat_eval.write(report, folder)
    console.print(chat_eval.markdown(report), highlight=False, markup=False)
    if report.sweep is not None and report.sweep.chosen:
        chosen = "\n".join(f"{k} = {v}" for k, v in report.sweep.chosen.items())
        console.print("query weights chosen on validation targets; to keep them, put in a config file:")
        print(f"[chat]\n{chosen}")
    console.print(f"wrote {', '.join(str(f) for f in files)}")
    if readme is not None and not report.complete:
        _note(f"{readme} is not updated: the run did not finish (its files are written)")
    elif readme is not None:
        section = chat_eval.readme_section(report, folder, readme)
        publish(readme, section, chat_eval.README_MARKERS, report.provenance, report.complete)
        console.print(f"updated the chat results section of {readme}")
    if not report.complete:
        raise typer.Exit(130)


@app.command("compare-results")
def compare_results(
    first: Annotated[Path, typer.Argument(help="A folder of results*/results.json (e.g. docs).")],
    second: Annotated[Path, typer.Argument(help="Another one (e.g. runs/verify: `make verify-results`).")],
) -> None:
    """Compare every figure of the results.json files two folders share, to the printed digit;
    exit 1 on any difference."""
    from fewrec.eval.verify import compare_folders

    results = compare_folders(first, second)
    compared = [r for r in results if r.missing is None]
    for r in results:
        if r.missing is not None:
            console.print(f"{r.name}: not compared ({r.missing})", highlight=False)
            continue
        verdict = "identical" if not r.differences else f"{len(r.differences)} difference(s)"
        console.print(f"{r.name}: {r.compared} figures, {verdict}; {r.provenance}", highlight=False)
        for line in r.differences[:20]:
            console.print(f"  {line}", highlight=False)
    if not compared:
        raise FewrecError(f"no results*/results.json of {first} has a counterpart in {second}")
    if any(r.differences for r in compared):
        raise typer.Exit(1)


def _conversations_eval(
    settings: Settings, path: Path, dialogues: int | None, seed: int, out: Path | None, readme: Path | None
) -> None:
    """`fewrec eval --conversations`: see fewrec/eval/conversation_eval.py."""
    from fewrec.agent.recommender import Recommender
    from fewrec.eval import conversation_eval

    def show(text: str) -> None:
        console.print(text, highlight=False, markup=False)

    report = conversation_eval.command(
        path, lambda: Recommender(pipeline=_pipeline(settings)).warm_up(), sample=dialogues, seed=seed,
        out=out, readme=readme, say=_note, show=show,
    )  # fmt: skip
    if not report.complete:
        raise typer.Exit(130)


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
    users: Annotated[
        int | None, typer.Option(help="Tune on the targets of a seeded sample of N users (as eval --users).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling users (--users).")] = 0,
    protocol: ProtocolOption = None,
    ties: TiesOption = None,
    test_cut: TestCutOption = None,
    valid_cut: ValidCutOption = None,
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
    duplicates: DuplicatesOption = None,
) -> None:
    """Choose the fusion weights on validation targets; keeps them for this dataset (eval,
    recommend and chat use them) and prints them as TOML for fewrec.toml."""
    from fewrec.eval.tune import sweep_setting

    if pseudo < 0 or folds < 0:
        raise typer.BadParameter("--pseudo and --folds must be 0 or more")
    settings = _with_split_options(
        _settings(config, dataset, format, duplicates), protocol, ties, test_cut, valid_cut
    )
    # The pipeline fits the settings to the data and gives the content vectors; the sources are
    # fitted by eval/tune.py, on the validation split and the pseudo-validation ones.
    pipeline = _pipeline(settings, announce=False, progress=True, use_content=not no_content)
    data, settings = pipeline.split, pipeline.settings
    users, sample = _tune_sample(pipeline, users, seed, pseudo)
    vectors = pipeline.item_vectors
    if sweep:
        key, _, raw = sweep.partition("=")
        values = [v.strip() for v in raw.split(",") if v.strip()]
        if not values:
            raise typer.BadParameter("--sweep takes KEY=V1,V2,...", param_hint="--sweep")
        try:
            results = sweep_setting(
                data, settings.retrieval, key.strip(), values, vectors, settings.model_dir, pseudo, folds,
                sample=sample,
            )  # fmt: skip
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
    result = _tune_and_keep(pipeline, sample, users, seed, pseudo, folds)
    print(f"[retrieval]\nweights = {{ {_weights_toml(result.weights)} }}")


def _tune_sample(pipeline: Pipeline, users: int | None, seed: int, pseudo: int) -> tuple[int | None, Any]:
    """The users whose validation targets tuning reads: `users` of them (seeded), or as many as
    fit retrieval.tune_memory_gb (every user when all fit)."""
    from fewrec.eval.tune import memory_sample_size, sample_users

    data, retrieval = pipeline.split, pipeline.settings.retrieval
    if users is None:
        users = memory_sample_size(data, len(retrieval.sources), pseudo, retrieval.tune_memory_gb)
        if users is not None:
            _note(
                f"tuning on the validation targets of a seeded sample of {users:,} users: their scores "
                f"fit retrieval.tune_memory_gb = {retrieval.tune_memory_gb:g} GB (--users sets the number)"
            )
    try:
        return users, sample_users(data, users, seed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--users") from exc


def _tune_and_keep(pipeline: Pipeline, sample: Any, users: int | None, seed: int, pseudo: int = 2,
                   folds: int = 0) -> Any:  # fmt: skip
    """Choose the fusion weights on validation targets (of `sample` users), keep them for this
    dataset and print what was found; the pipeline's settings use them from then on."""
    from fewrec.eval.tune import tune_weights
    from fewrec.state import load_tuned, save_tuned

    data, settings, status = pipeline.split, pipeline.settings, pipeline.tuned_status
    vectors = pipeline.item_vectors
    result = tune_weights(
        data, settings.retrieval, vectors, settings.model_dir, pseudo=pseudo, folds=folds, sample=sample
    )
    per_split = ", ".join(f"{label} {value:.4f}" for label, value in result.per_split.items())
    console.print(
        f"validation NDCG@10 {result.ndcg:.4f} over {result.targets} targets ({per_split}); "
        "test split not used"
    )
    if result.out_of_sample is not None:
        console.print(f"out of sample ({folds}-fold over users): NDCG@10 {result.out_of_sample:.4f}")
    untuned = ", ".join(f"{label} {value:.4f}" for label, value in result.untuned.items())
    console.print(f"untuned, in sample: {untuned}")
    earlier = load_tuned(settings)
    if earlier is not None:
        ndcg = earlier.get("ndcg")
        shown = f"{ndcg:.4f}" if isinstance(ndcg, int | float) else "?"
        _note(
            f"replacing the weights tuned at {earlier.get('tuned_at', '?')} on {earlier.get('targets', '?')} "
            f"targets (validation NDCG@10 {shown}) with these"
        )
    path = save_tuned(
        settings, result.weights, ndcg=result.ndcg, targets=result.targets, users=users, seed=seed,
        pseudo=pseudo, sources=list(settings.retrieval.sources),
    )  # fmt: skip
    console.print(
        f"kept for this dataset in {path}: eval, recommend and chat use them"
        + (", but the weights your settings name come first" if status == "configured" else ""),
        highlight=False,
    )
    if status != "configured":
        pipeline.apply_tuned()
    return result


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
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where to save the figures as JSON (default runs/bench.json, --scale: bench-scale)."
        ),
    ] = None,
    scale: Annotated[
        str | None,
        typer.Option(
            help="Scale figures on synthetic data instead: a (30k users × 20k items × 300k interactions, "
            "with the retrieval evaluation over all users), b (200k × 50k × 5M, 10,000 users scored), or a,b."
        ),
    ] = None,
    scale_size: Annotated[
        str | None,
        typer.Option(
            help="--scale: other sizes, USERSxITEMSxINTERACTIONS (one scale), e.g. 5000x3000x60000."
        ),
    ] = None,
    scale_score_users: Annotated[
        int | None, typer.Option(help="--scale: users scored per source (default: all for a, 10,000 for b).")
    ] = None,
    scale_sources: Annotated[
        str | None,
        typer.Option(
            help="--scale: only these sources (comma-separated; default all; 'none': the whole retriever)."
        ),
    ] = None,
    scale_evaluate: Annotated[
        bool | None,
        typer.Option(help="--scale: run the retrieval evaluation over all users (default: for a only)."),
    ] = None,
    scale_timeout: Annotated[
        float | None, typer.Option(help="--scale: seconds allowed per step (default: no limit).")
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Time `fewrec eval` in one process and sharded over Ray (auto or ADDRESS); same metrics?",
        ),
    ] = None,
    ray_workers: RayWorkersOption = None,
    readme: Annotated[
        Path | None, typer.Option(help="Also rewrite the speed section of this README (from a clean tree).")
    ] = None,
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
) -> None:
    """Speed figures on this machine: load, index build, retrieval latency, peak memory (or, with
    --scale, per-source fit/scoring time and peak memory on synthetic data at real sizes)."""
    from fewrec.data.files import write_atomically

    settings = _settings(config, dataset, format)
    if ray is not None:
        from fewrec.eval.bench_ray import run_ray_bench

        _check_ray(ray, ray_workers)
        figures = run_ray_bench(settings, ray, ray_workers, say=_note)
        table = Table(title="fewrec eval: one process vs sharded over Ray (this machine)")
        table.add_column("figure")
        table.add_column("value", justify="right")
        for key in ("dataset", "users", "cluster", "workers", "one_process_s", "ray_s", "ray_connect_s",
                    "overhead_check", "identical_metrics"):  # fmt: skip
            table.add_row(key, str(figures[key]))
        console.print(table)
        for difference in figures["differences"]:
            console.print(f"  differs: {difference}", highlight=False)
        target = out or Path("runs/bench-ray.json")
        write_atomically(target, json.dumps(figures, indent=2).encode())
        console.print(f"wrote {target}")
        return
    if scale is not None:
        result = _bench_scale(
            settings, scale, scale_size, scale_score_users, scale_sources, scale_timeout, scale_evaluate
        )
        target = out or Path("runs/bench-scale.json")
        write_atomically(target, result.model_dump_json(indent=2).encode())
        console.print(f"wrote {target}")
        return
    from fewrec.eval.bench import run_bench

    launcher = None
    if load_threads > 0:
        from fewrec.ui.app import launch as launcher
    result = run_bench(
        settings, users=users, llm_users=llm_users, chat_sessions=chat_sessions, load_threads=load_threads,
        page_launcher=launcher,
    )  # fmt: skip
    table = Table(title="fewrec bench (this machine)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in result.figures.items():
        table.add_row(key, str(value))
    console.print(table)
    target = out or Path("runs/bench.json")
    write_atomically(target, result.model_dump_json(indent=2).encode())
    console.print(f"wrote {target}")
    if readme is not None:
        from fewrec.eval import bench as bench_module
        from fewrec.eval.report import publish

        section = bench_module.readme_section(result, target, readme)
        publish(readme, section, bench_module.README_MARKERS, result.provenance, complete=True)
        console.print(f"updated the speed section of {readme}")


def _bench_scale(
    settings: Settings, names: str, size: str | None, score_users: int | None, sources: str | None,
    timeout_s: float | None, evaluate: bool | None = None,
):  # fmt: skip
    """`fewrec bench --scale`: run the scales asked for and print a table per scale."""
    from fewrec.eval.bench_scale import SCALES, run_scale_bench
    from fewrec.retrieval.fusion import SOURCE_NAMES

    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in SCALES]
    if unknown or not chosen:
        raise FewrecError(f"unknown --scale {names!r}; choose a, b or a,b")
    scales = [SCALES[n].model_copy() for n in chosen]
    if size is not None:
        if len(scales) != 1:
            raise FewrecError("--scale-size applies to one scale at a time")
        try:
            u, i, n = (int(x.replace("_", "")) for x in size.lower().split("x"))
        except ValueError as exc:
            raise FewrecError(f"--scale-size expects USERSxITEMSxINTERACTIONS, got {size!r}") from exc
        scales[0] = scales[0].model_copy(update={"users": u, "items": i, "interactions": n})
    if score_users is not None:
        scales = [s.model_copy(update={"score_users": score_users}) for s in scales]
    if evaluate is not None:
        scales = [s.model_copy(update={"evaluate": evaluate}) for s in scales]
    source_list = [x.strip() for x in sources.split(",") if x.strip()] if sources else None
    if sources is not None and sources.strip() == "none":  # only the whole retriever (and evaluation)
        source_list = []
    bad = [x for x in source_list or [] if x not in SOURCE_NAMES]
    if bad:
        raise FewrecError(f"unknown source(s) {', '.join(bad)}; known: {', '.join(SOURCE_NAMES)}")
    result = run_scale_bench(
        scales, settings.retrieval, source_list, seed=settings.seed, timeout_s=timeout_s,
        say=lambda msg: console.print(f"[dim]{msg}[/]", highlight=False),
    )  # fmt: skip
    for name, figures in result.scales.items():
        size_info = figures["size"]
        table = Table(
            title=f"scale {name}: {size_info['users']:,} users × {size_info['items']:,} items × "
            f"{size_info['interactions']:,} interactions (cpus {result.machine['cpus']}, "
            f"load {result.machine['load_at_start']} → {result.machine.get('load_at_end')})"
        )
        for column in ("source", "fit s", "fit peak MB", "users", "score s", "score peak MB"):
            table.add_column(column, justify="left" if column == "source" else "right", no_wrap=True)
        rows = list(figures["sources"].items())
        if "retriever" in figures:
            rows.append(("all (one retriever)", figures["retriever"]))
        if "evaluate" in figures:
            evaluated = figures["evaluate"]
            rows.append(("evaluation", {**evaluated, "score_users": evaluated.get("users")}))
        notes: list[str] = []
        for source, r in rows:
            keys = ("fit_s", "fit_peak_mb", "score_users", "score_s", "score_peak_mb")
            cells = [r.get(k, "–") for k in keys]
            if source == "evaluation":  # one figure for the whole run: its seconds and peak
                cells = ["", "", r.get("score_users", "–"), r.get("seconds", "–"), r.get("peak_mb", "–")]
            table.add_row(source, *(str(c) for c in cells))
            why = r.get("error") or r.get("skipped")
            notes += [f"{source}: {why}"] if why else [f"{source}: {n}" for n in r.get("notes", [])]
        console.print(table)
        for note in notes:
            console.print(f"  {note}", highlight=False)
        if "evaluate" in figures and "ndcg@10" in figures["evaluate"]:
            ndcg = figures["evaluate"]["ndcg@10"]
            shown = ", ".join(f"{k.removeprefix('source: ')} {v}" for k, v in ndcg.items())
            console.print(f"  evaluation NDCG@10 (synthetic data): {shown}", highlight=False)
        for check, verdict in figures.get("checks", {}).items():
            console.print(f"  {check}: {verdict}", highlight=False)
    return result


@app.command(name="recommend-batch")
def recommend_batch(
    out: Annotated[Path, typer.Option(help="Where to write the recommendations (.csv or .parquet).")],
    users: Annotated[
        Path | None, typer.Option(help="A file with one user id per line (default: every user).")
    ] = None,
    k: Annotated[int, typer.Option(help="Items per user.")] = 10,
    no_content: Annotated[bool, typer.Option(help="Leave the Chroma content source out.")] = False,
    ray: RayOption = None,
    ray_workers: RayWorkersOption = None,
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
    duplicates: DuplicatesOption = None,
) -> None:
    """Top-k retrieval recommendations for many known users (fused sources, no LLM), one row
    per user and rank: user_id, rank, item_id, title, score."""
    from tqdm.auto import tqdm

    from fewrec.agent.batch import as_frame, recommend_users, user_rows

    if not 1 <= k <= 1000:
        raise typer.BadParameter("--k must be between 1 and 1000", param_hint="--k")
    if out.suffix not in (".csv", ".parquet"):
        raise typer.BadParameter("--out must end in .csv or .parquet", param_hint="--out")
    _check_ray(ray, ray_workers)
    wanted = None
    if users is not None:
        try:
            wanted = [line.strip() for line in users.read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError as exc:
            raise FewrecError(f"cannot read --users {users}: {exc}") from exc
        if not wanted:
            raise FewrecError(f"--users {users} holds no user id")
    pipeline = _pipeline(
        _settings(config, dataset, format, duplicates), suggest_tune=True, progress=True,
        use_content=not no_content,
    )  # fmt: skip
    rows = user_rows(pipeline.split, wanted)  # an unknown id stops the run before any fitting
    retriever = pipeline.retriever
    with _ray_pool(ray, ray_workers) as pool, tqdm(total=len(rows), desc="recommending", unit="user") as bar:
        top = recommend_users(retriever, rows, k, ray=pool, progress=bar.update)
    frame = as_frame(retriever, rows, top)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")  # a reader never sees a half-written file
    try:
        if out.suffix == ".parquet":
            frame.to_parquet(partial, index=False)
        else:
            frame.to_csv(partial, index=False)
    except ImportError as exc:  # parquet needs pyarrow (or fastparquet)
        raise FewrecError(f"cannot write {out.name}: {exc}; use a .csv file") from exc
    partial.replace(out)
    console.print(f"wrote {len(frame)} recommendations for {len(rows)} users to {out}")


if __name__ == "__main__":
    main()
