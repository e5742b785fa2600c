"""`fewrec recommend` (ranked items for one user or a few liked titles, with their sources and
explanations) and `fewrec recommend-batch` (top-k retrieval for many users into a file)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from fewrec.cli.common import build_pipeline, check_ray, console, load_settings, progress_line, ray_pool
from fewrec.cli.options import (
    ConfigOption,
    CountOption,
    DatasetOption,
    DuplicatesOption,
    FormatOption,
    GenreOption,
    NoContentOption,
    RayOption,
    RayWorkersOption,
    YearMaxOption,
    YearMinOption,
    check_count_and_years,
)
from fewrec.data.errors import FewrecError

if TYPE_CHECKING:
    import pandas as pd

    from fewrec.agent.recommender import Recommendation, Recommender
    from fewrec.config import Settings


def recommend(
    user: Annotated[str | None, typer.Option(help="A user id of the dataset.")] = None,
    like: Annotated[list[str] | None, typer.Option(help="A liked title (repeatable).")] = None,
    k: CountOption = 10,
    query: Annotated[str | None, typer.Option(help="A wish in words, e.g. 'something funny'.")] = None,
    genre: GenreOption = None,
    year_min: YearMinOption = None,
    year_max: YearMaxOption = None,
    rerank: Annotated[
        bool | None,
        typer.Option(
            "--rerank/--no-rerank", help="Rerank with the LLM (default: when Settings give it weight)."
        ),
    ] = None,
    alpha: Annotated[
        float | None,
        typer.Option(help="The LLM's weight in the rerank, 0–1 (default: rerank.alpha, from validation)."),
    ] = None,
    explain: Annotated[bool, typer.Option(help="Explain the items (grounded in the history).")] = True,
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
    duplicates: DuplicatesOption = None,
) -> None:
    """Print ranked items for a user id or a few liked titles, with the sources behind each."""
    from fewrec.agent.recommender import Filters, Recommender, RecRequest

    if user is None and not like and not query:
        raise FewrecError("give --user ID, at least one --like TITLE, or --query TEXT")
    check_count_and_years(k, year_min, year_max)
    # progress: the first run on a dataset trains SASRec (minutes); a bar says how far it is.
    settings = with_alpha(load_settings(config, dataset, format, duplicates), alpha)
    pipeline = build_pipeline(settings, suggest_tune=True, progress=True)
    split, settings = pipeline.split, pipeline.settings
    recommender = Recommender(pipeline=pipeline)
    say_who(recommender, user, like or [])
    filters = Filters(genres=genre or [], year_min=year_min, year_max=year_max)
    recommender.check_genres(filters)  # before minutes of fitting, not after
    # Each stage of a first call takes seconds to tens of seconds on two cores: say which runs.
    if like or (user is not None and split.has_user(user)):  # a history: the sources rank it
        progress_line(f"fitting the {len(settings.retrieval.active)} retrieval sources on all interactions …")
        _ = pipeline.retriever
    stages = [", reranking with the LLM"] * bool(rerank) + [" and explaining"] * explain
    progress_line("ranking" + "".join(stages) + " …")
    request = RecRequest(
        user_id=user, liked=list(like or []), query=query, filters=filters, explain=explain, rerank=rerank
    )
    recs = recommender.recommend(request, k=k)
    if recs and recs[0].fallback:
        console.print(f"[dim]{recs[0].fallback}[/]", highlight=False)
    console.print(recommendations_table(recs))
    for r in recs[: settings.rerank.explain_top] if explain else []:
        console.print(f"{r.rank}. {r.explanation}", highlight=False)


def with_alpha(settings: Settings, alpha: float | None) -> Settings:
    """--alpha, the LLM's weight in the rerank, over the configured one."""
    if alpha is not None:
        if not 0.0 <= alpha <= 1.0:
            raise FewrecError(f"--alpha must be between 0 and 1, got {alpha}")
        settings.rerank = settings.rerank.model_copy(update={"alpha": alpha})
    return settings


def say_who(recommender: Recommender, user: str | None, liked: list[str]) -> None:
    """How the request's people and titles were read: each title as the catalog's, the user's history."""
    split = recommender.split
    for title in liked:  # an ambiguous title is noted with the results (their fallback line)
        ambiguous: list[str] = []
        found = split.catalog.title(split.item_ids[recommender.resolve(title, ambiguous)].item())
        if not ambiguous and found.lower() != title.strip().lower():
            console.print(f"[dim]took {title!r} as {found!r}[/]", highlight=False)
    if user is not None and split.has_user(user):
        count = len(split.history(split.user_index(user), "all"))
        console.print(f"[dim]user {user}: {count} items in the history[/]", highlight=False)


def recommendations_table(recs: list[Recommendation]) -> Table:
    """The ranked items with the sources that found each (and the rank each source gave)."""
    table = Table(title="Recommendations")
    for col in ("rank", "item", "title", "score", "found by (rank in source)"):
        table.add_column(col)
    for r in recs:
        found = ", ".join(
            f"{name} (#{rank})" for name, rank in sorted(r.sources.items(), key=lambda kv: kv[1])
        )
        table.add_row(str(r.rank), str(r.item_id), r.title, f"{r.score:.3f}", found)
    return table


def recommend_batch(
    out: Annotated[Path, typer.Option(help="Where to write the recommendations (.csv or .parquet).")],
    users: Annotated[
        Path | None, typer.Option(help="A file with one user id per line (default: every user).")
    ] = None,
    k: Annotated[int, typer.Option(help="Items per user.")] = 10,
    no_content: NoContentOption = False,
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
    check_ray(ray, ray_workers)
    wanted = None if users is None else read_user_ids(users)
    pipeline = build_pipeline(
        load_settings(config, dataset, format, duplicates), suggest_tune=True, progress=True,
        use_content=not no_content,
    )  # fmt: skip
    rows = user_rows(pipeline.split, wanted)  # an unknown id stops the run before any fitting
    retriever = pipeline.retriever
    with ray_pool(ray, ray_workers) as pool, tqdm(total=len(rows), desc="recommending", unit="user") as bar:
        top = recommend_users(retriever, rows, k, ray=pool, progress=bar.update)
    frame = as_frame(retriever, rows, top)
    write_frame(frame, out)
    console.print(f"wrote {len(frame)} recommendations for {len(rows)} users to {out}")


def read_user_ids(path: Path) -> list[str]:
    """The user ids of a `--users` file, one a line (blank lines skipped)."""
    try:
        wanted = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise FewrecError(f"cannot read --users {path}: {exc}") from exc
    if not wanted:
        raise FewrecError(f"--users {path} holds no user id")
    return wanted


def write_frame(frame: pd.DataFrame, out: Path) -> None:
    """Write the recommendations as .csv or .parquet; a reader never sees a half-written file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    try:
        if out.suffix == ".parquet":
            frame.to_parquet(partial, index=False)
        else:
            frame.to_csv(partial, index=False)
    except ImportError as exc:  # parquet needs pyarrow (or fastparquet)
        raise FewrecError(f"cannot write {out.name}: {exc}; use a .csv file") from exc
    partial.replace(out)
