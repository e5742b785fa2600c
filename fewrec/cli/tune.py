"""`fewrec tune`: choose the fusion weights on validation targets and keep them for the dataset
(or, with --sweep, compare values of one retrieval setting); `fewrec eval --tune` uses it too."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from fewrec.cli.common import build_pipeline, console, load_settings, note, with_split_options
from fewrec.cli.options import (
    ConfigOption,
    DatasetOption,
    DuplicatesOption,
    FormatOption,
    NoContentOption,
    ProtocolOption,
    SeedOption,
    TestCutOption,
    TiesOption,
    ValidCutOption,
)

if TYPE_CHECKING:
    from fewrec.agent.pipeline import Pipeline


def tune(
    no_content: NoContentOption = False,
    pseudo: Annotated[
        int, typer.Option(help="Earlier targets per user pooled with the validation one (0: only it).")
    ] = 2,
    folds: Annotated[
        int, typer.Option(help="Also estimate out-of-sample NDCG@10 by cross-validating over users.")
    ] = 0,
    sweep: Annotated[
        str | None,
        typer.Option(help="Try values of one retrieval setting, e.g. timed_transition.tau_days=30,100,365."),
    ] = None,
    users: Annotated[
        int | None, typer.Option(help="Tune on the targets of a seeded sample of N users (as eval --users).")
    ] = None,
    seed: SeedOption = 0,
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
    if pseudo < 0 or folds < 0:
        raise typer.BadParameter("--pseudo and --folds must be 0 or more")
    settings = with_split_options(
        load_settings(config, dataset, format, duplicates), protocol, ties, test_cut, valid_cut
    )
    # The pipeline fits the settings to the data and gives the content vectors; the sources are
    # fitted by fit/tune.py, on the validation split and the pseudo-validation ones.
    pipeline = build_pipeline(settings, announce=False, progress=True, use_content=not no_content)
    users, sample = tune_sample(pipeline, users, seed, pseudo)
    if sweep:
        sweep_one_setting(pipeline, sweep, sample, pseudo, folds)
        return
    from fewrec.fit.tune import weights_tables

    result = tune_and_keep(pipeline, sample, users, seed, pseudo, folds)
    print(weights_tables(result.weights))


def sweep_one_setting(pipeline: Pipeline, sweep: str, sample: Any, pseudo: int, folds: int) -> None:
    """`fewrec tune --sweep KEY=V1,V2,…`: tune the weights at each value and print a table."""
    from fewrec.fit.tune import sweep_setting

    data, settings = pipeline.split, pipeline.settings
    key, _, raw = sweep.partition("=")
    values = [v.strip() for v in raw.split(",") if v.strip()]
    if not values:
        raise typer.BadParameter("--sweep takes KEY=V1,V2,...", param_hint="--sweep")
    try:
        results = sweep_setting(
            data, settings.retrieval, key.strip(), values, pipeline.item_vectors, settings.model_dir,
            pseudo, folds, sample=sample,
        )  # fmt: skip
    except ValueError as exc:  # pydantic ValidationError is a ValueError
        raise typer.BadParameter(str(exc), param_hint="--sweep") from exc
    table = Table(title=f"{key} on validation targets (test split not used)")
    for column in ("value", "NDCG@10 in sample", "out of sample", "weights"):
        table.add_column(column)
    for value, result in results:
        oos = "–" if result.out_of_sample is None else f"{result.out_of_sample:.4f}"
        table.add_row(str(value), f"{result.ndcg:.4f}", oos, weights_toml(result.weights))
    console.print(table)


def tune_sample(pipeline: Pipeline, users: int | None, seed: int, pseudo: int) -> tuple[int | None, Any]:
    """The users whose validation targets tuning reads: `users` of them (seeded), or as many as
    fit retrieval.tune_memory_gb (every user when all fit)."""
    from fewrec.fit.tune import memory_sample_size, sample_users

    data, retrieval = pipeline.split, pipeline.settings.retrieval
    if users is None:
        users = memory_sample_size(data, len(retrieval.active), pseudo, retrieval.tune_memory_gb)
        if users is not None:
            note(
                f"tuning on the validation targets of a seeded sample of {users:,} users: their scores "
                f"fit retrieval.tune_memory_gb = {retrieval.tune_memory_gb:g} GB (--users sets the number)"
            )
    try:
        return users, sample_users(data, users, seed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--users") from exc


def tune_and_keep(pipeline: Pipeline, sample: Any, users: int | None, seed: int, pseudo: int = 2,
                  folds: int = 0) -> Any:  # fmt: skip
    """Choose the fusion weights on validation targets (of `sample` users), keep them for this
    dataset and print what was found; the pipeline's settings use them from then on."""
    from fewrec.fit.tune import tune_weights
    from fewrec.state import save_tuned

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
    say_what_is_replaced(pipeline)
    path = save_tuned(
        settings, result.weights, ndcg=result.ndcg, targets=result.targets, users=users, seed=seed,
        pseudo=pseudo, sources=settings.retrieval.active,
    )  # fmt: skip
    console.print(
        f"kept for this dataset in {path}: eval, recommend and chat use them"
        + (", but the weights your settings name come first" if status == "configured" else ""),
        highlight=False,
    )
    if status != "configured":
        pipeline.apply_tuned()
    return result


def say_what_is_replaced(pipeline: Pipeline) -> None:
    """A dim line naming the weights tuned earlier for this dataset, which new ones replace."""
    from fewrec.state import load_tuned

    earlier = load_tuned(pipeline.settings)
    if earlier is not None:
        ndcg = earlier.get("ndcg")
        shown = f"{ndcg:.4f}" if isinstance(ndcg, int | float) else "?"
        note(
            f"replacing the weights tuned at {earlier.get('tuned_at', '?')} on {earlier.get('targets', '?')} "
            f"targets (validation NDCG@10 {shown}) with these"
        )


def weights_toml(weights: dict[str, float]) -> str:
    """Fusion weights as the inside of a TOML inline table."""
    return ", ".join(f"{name} = {value}" for name, value in weights.items())
