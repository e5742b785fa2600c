"""`fewrec eval`: fewrec's stages against the baselines on held-out targets (results.json,
report.md, plots, optionally the README's Results section). Its old `--chat` and
`--conversations FILE` switches still work and name the commands that replaced them."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fewrec.cli.chat_evaluation import eval_chat, eval_conversations
from fewrec.cli.common import (
    build_pipeline,
    check_ray,
    check_split,
    console,
    default_run_dir,
    exit_if_interrupted,
    int_list,
    load_settings,
    note,
    progress_line,
    publish_block,
    ray_pool,
    with_split_options,
)
from fewrec.cli.options import (
    ConfigOption,
    DatasetOption,
    DuplicatesOption,
    FormatOption,
    NoContentOption,
    ProtocolOption,
    RayOption,
    RayWorkersOption,
    ReadmeOption,
    RunFolderOption,
    SeedOption,
    SplitOption,
    TestCutOption,
    TiesOption,
    ValidCutOption,
)
from fewrec.cli.tune import tune_and_keep, tune_sample
from fewrec.config import Settings

if TYPE_CHECKING:
    from fewrec.agent.pipeline import Pipeline
    from fewrec.eval.runner import EvalReport

StagesOption = Annotated[str, typer.Option(help="Comma-separated: retrieval, rerank, fused.")]
BaselinesOption = Annotated[str, typer.Option(help="Comma-separated baselines, or 'all' or 'none'.")]
HistoryCutOption = Annotated[str | None, typer.Option(help="Few-shot slices, e.g. 1,3,5.")]
UsersOption = Annotated[int | None, typer.Option(help="Evaluate a seeded sample of N users.")]
SampledOption = Annotated[
    int | None, typer.Option(help="Sampled protocol: rank among N items (1 + N-1 negatives).")
]
TuneFirstOption = Annotated[
    bool,
    typer.Option(
        "--tune", help="No tuned weights for this dataset yet: choose them on validation targets first."
    ),
]
ReadmeBlockOption = Annotated[
    str | None,
    typer.Option(help="--readme: the block <!-- NAME:start --> to rewrite (default: by protocol)."),
]
KShotOption = Annotated[str | None, typer.Option(help="LLM stages: demonstrations per prompt, e.g. 0,3.")]
BackendOption = Annotated[str | None, typer.Option(help="LLM stages: llamacpp or openai.")]
ModelOption = Annotated[str | None, typer.Option(help="LLM stages: model name or GGUF path.")]
AlphaOption = Annotated[float | None, typer.Option(help="LLM weight in the fused score (0..1).")]
# The switches that made eval another command; hidden, each says which command replaced it.
ChatSwitch = Annotated[bool, typer.Option("--chat", hidden=True, help="Now `fewrec eval-chat`.")]
ConversationsSwitch = Annotated[
    Path | None, typer.Option("--conversations", hidden=True, help="Now `fewrec eval-conversations FILE`.")
]
HiddenQueryWeights = Annotated[
    str | None, typer.Option(hidden=True, help="Now `fewrec eval-chat --query-weights`.")
]
HiddenFamilies = Annotated[str | None, typer.Option(hidden=True, help="Now `fewrec eval-chat --families`.")]
HiddenPhrasings = Annotated[
    Path | None, typer.Option(hidden=True, help="Now `fewrec eval-chat --phrasings`.")
]
HiddenDialogues = Annotated[
    int | None, typer.Option(hidden=True, help="Now `fewrec eval-conversations FILE --dialogues`.")
]


@dataclass(frozen=True)
class RankingPlan:
    """What one ranking evaluation scores, read from eval's options and checked on the data."""

    split: str
    stages: list[str]
    baselines: list[str]
    history_cuts: list[int]
    users: int | None
    sampled: int | None
    seed: int


def eval_command(
    ctx: typer.Context,
    stages: StagesOption = "retrieval",
    split: SplitOption = "test",
    baselines: BaselinesOption = "all",
    history_cut: HistoryCutOption = "1,3,5",
    users: UsersOption = None,
    sampled: SampledOption = None,
    seed: SeedOption = 0,
    out: RunFolderOption = None,
    no_content: NoContentOption = False,
    tune_first: TuneFirstOption = False,
    readme: ReadmeOption = None,
    readme_block: ReadmeBlockOption = None,
    k_shot: KShotOption = None,
    backend: BackendOption = None,
    model: ModelOption = None,
    alpha: AlphaOption = None,
    chat: ChatSwitch = False,
    query_weights: HiddenQueryWeights = None,
    chat_families: HiddenFamilies = None,
    phrasings: HiddenPhrasings = None,
    conversations: ConversationsSwitch = None,
    dialogues: HiddenDialogues = None,
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
    """Evaluate fewrec's stages and the baselines; writes results.json, report.md and plots.
    The chat: `fewrec eval-chat`; real dialogues: `fewrec eval-conversations FILE`."""

    check_split(split)
    if chat or conversations is not None:
        run_old_switch(ctx.params)
        return
    check_ray(ray, ray_workers)
    check_ranking_options(dialogues, query_weights, chat_families, phrasings, sampled)
    settings = with_split_options(
        load_settings(config, dataset, format, duplicates), protocol, ties, test_cut, valid_cut
    )
    check_block(readme, readme_block, settings)
    pipeline = ranking_pipeline(settings, split, tune_first, no_content)
    plan = plan_ranking(pipeline, stages, baselines, history_cut, split, users, sampled, seed)
    k_shots = apply_llm_options(pipeline.settings, backend, model, alpha, k_shot)
    folder = out or default_run_dir()
    tune_if_asked(pipeline, tune_first, users, seed)
    report = run_ranking(pipeline, plan, k_shots, folder, ray, ray_workers)
    finish_ranking(report, folder, readme, readme_block)


def run_old_switch(params: dict[str, Any]) -> None:
    """`fewrec eval --chat` and `fewrec eval --conversations FILE`: the checks they made, one line
    naming the command that replaced them, then that command with the same options."""
    from fewrec.eval.runner import EvalError

    chat, conversations = params["chat"], params["conversations"]
    if chat and (params["ray"] is not None or params["ray_workers"] is not None):
        raise EvalError("--ray shards the ranking evaluation; --chat runs in one process")
    check_ray(params["ray"], params["ray_workers"])
    if conversations is not None:
        if chat:
            raise EvalError("--chat and --conversations are two evaluations: choose one")
        note("`fewrec eval --conversations FILE` is now `fewrec eval-conversations FILE` (same options)")
        command = eval_conversations
    else:
        if params["dialogues"] is not None:
            raise EvalError("--dialogues goes with --conversations")
        note("`fewrec eval --chat` is now `fewrec eval-chat` (same options)")
        command = eval_chat
    # The options eval does not have (e.g. eval-conversations' --cv-folds) keep their defaults.
    command(**{name: params[name] for name in inspect.signature(command).parameters if name in params})


def check_ranking_options(
    dialogues: int | None, query_weights: str | None, chat_families: str | None, phrasings: Path | None,
    sampled: int | None,
) -> None:  # fmt: skip
    """Refuse, before anything is loaded, the chat evaluations' options (naming where they go)
    and a sampled protocol too small to rank."""
    from fewrec.eval.runner import EvalError

    if dialogues is not None:
        raise EvalError("--dialogues goes with --conversations: `fewrec eval-conversations FILE`")
    if query_weights is not None or chat_families is not None or phrasings is not None:
        raise EvalError("--query-weights, --chat-families and --phrasings go with --chat: `fewrec eval-chat`")
    if sampled is not None and sampled < 2:
        raise EvalError("--sampled needs at least 2 items (1 held-out + negatives)")


def check_block(readme: Path | None, readme_block: str | None, settings: Settings) -> None:
    """--readme: the file has the block this run rewrites, checked before any fitting."""
    from fewrec.eval.report import check_markers, markers_for, readme_markers_named

    if readme is None:
        return
    if readme_block is not None:
        markers = readme_markers_named(readme_block)
    else:
        markers = markers_for(settings.split.protocol, settings.split.ties)
    check_markers(readme, markers)


def ranking_pipeline(settings: Settings, split: str, tune_first: bool, no_content: bool) -> Pipeline:
    """The pipeline fitted on the evaluated split; the LLM parts are built by evaluate(), after
    the command line's overrides."""
    from fewrec.eval.runner import EvalError

    if tune_first and split == "valid":
        raise EvalError(
            "--tune chooses the weights on the validation targets: evaluate them with --split test"
        )
    return build_pipeline(
        settings, suggest_tune=not tune_first, fit_on=split, progress=True, use_content=not no_content
    )


def plan_ranking(
    pipeline: Pipeline, stages: str, baselines: str, history_cut: str | None, split: str, users: int | None,
    sampled: int | None, seed: int,
) -> RankingPlan:  # fmt: skip
    """Parse the stages, baselines and history cuts, and check them against the data."""
    from fewrec.eval.runner import ALL_BASELINES, validate_args

    stage_list = [s.strip() for s in stages.split(",") if s.strip()]
    baseline_list = list(ALL_BASELINES) if baselines == "all" else [] if baselines == "none" else [
        b.strip() for b in baselines.split(",") if b.strip()
    ]  # fmt: skip
    cuts = int_list(history_cut, "--history-cut")
    validate_args(pipeline.split, stage_list, baseline_list, users, cuts, split)  # type: ignore[arg-type]
    return RankingPlan(split, stage_list, baseline_list, cuts, users, sampled, seed)


def apply_llm_options(
    settings: Settings, backend: str | None, model: str | None, alpha: float | None, k_shot: str | None
) -> list[int] | None:
    """Put --backend, --model and --alpha into the settings; the --k-shot values (None: the
    configured one)."""
    from fewrec.eval.runner import EvalError

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
    return int_list(k_shot, "--k-shot") if k_shot else None


def tune_if_asked(pipeline: Pipeline, tune_first: bool, users: int | None, seed: int) -> None:
    """--tune: choose the fusion weights on validation targets first, unless the dataset has some."""
    status = pipeline.tuned_status
    if tune_first and status == "none":
        note("no tuned weights for this dataset: choosing them on its validation targets first (--tune)")
        tuned_users, sample = tune_sample(pipeline, users, seed, pseudo=2)  # --users: that many
        tune_and_keep(pipeline, sample, tuned_users, seed)
    elif tune_first:
        kept = "tuned for this dataset" if status == "tuned" else "named by your settings"
        note(f"--tune: the weights are {kept} already; `fewrec tune` chooses them again")


def run_ranking(
    pipeline: Pipeline, plan: RankingPlan, k_shots: list[int] | None, folder: Path, ray: str | None,
    ray_workers: int | None,
) -> EvalReport:  # fmt: skip
    """Rank and score the plan (sharded over Ray when asked), writing a partial results.json after
    each method; the report's notes start with what its figures rest on."""
    from fewrec.eval.report import write
    from fewrec.eval.runner import evaluate

    weights_from = pipeline.weights_from

    def save(partial: EvalReport) -> None:
        # A snapshot is incomplete until the run ends: a run killed outright (SIGKILL, power)
        # must not leave a results.json that claims to be whole.
        running = "partial: written while the run was going; the final write replaces it"
        write(partial.model_copy(update={"complete": False, "notes": [*partial.notes, running]}),
              folder, with_plots=False)  # fmt: skip

    who = f"{plan.users} sampled users" if plan.users else "every user"
    progress_line(f"fitting the sources on what came before the {plan.split} targets and ranking {who} …")
    with ray_pool(ray, ray_workers) as pool:
        report = evaluate(
            pipeline.split, pipeline.settings, split_name=plan.split, stages=plan.stages,
            baselines=plan.baselines, history_cuts=plan.history_cuts, users=plan.users, sampled=plan.sampled,
            seed=plan.seed, on_result=save, k_shots=k_shots, pipeline=pipeline, progress=progress_line,
            ray=pool, weights_from=weights_from,
        )  # fmt: skip
        ran_on = [f"ranked on Ray: {pool.workers} worker(s)"] if pool is not None else []
    # What the report's figures rest on: the dataset's adjustments and where the weights came from.
    report.notes = [*pipeline.notes, weights_from, *ran_on, *report.notes]
    return report


def finish_ranking(report: EvalReport, folder: Path, readme: Path | None, readme_block: str | None) -> None:
    """Write the run's files, print its report, rewrite the README block after a complete run;
    an interrupted run exits 130."""
    from fewrec.eval.report import markdown, readme_markers, readme_markers_named, readme_section, write

    files = write(report, folder)
    # As written to report.md: a table row stays one line in a log, where rich would cut it at 80
    # columns, and brackets are the report's links, not rich markup.
    console.print(markdown(report), highlight=False, markup=False, soft_wrap=True)
    console.print(f"wrote {', '.join(str(f) for f in files)}")
    markers = readme_markers(report) if readme_block is None else readme_markers_named(readme_block)
    publish_block(readme, report, lambda to: readme_section(report, folder, to), markers, "Results section")
    exit_if_interrupted(report.complete)
