"""`fewrec eval-chat` (the chat against the API it wraps, over phrasing families) and
`fewrec eval-conversations FILE` (the chat replaying real dialogues); the old `fewrec eval --chat`
and `fewrec eval --conversations FILE` call these two commands with their own options."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel, Field

from fewrec.cli.common import (
    build_pipeline,
    check_split,
    console,
    default_run_dir,
    exit_if_interrupted,
    float_list,
    load_settings,
    load_split,
    note,
    progress_line,
    publish_block,
    with_split_options,
)
from fewrec.cli.options import (
    ConfigOption,
    DatasetOption,
    DialoguesOption,
    DuplicatesOption,
    FormatOption,
    PhrasingsOption,
    ProtocolOption,
    QueryWeightsOption,
    ReadmeOption,
    RunFolderOption,
    SeedOption,
    SplitOption,
    TestCutOption,
    TiesOption,
    ValidCutOption,
)
from fewrec.config import Settings

ChatUsersOption = Annotated[
    int | None, typer.Option(help="Evaluate a seeded sample of N held-out users (default 200).")
]
FamiliesOption = Annotated[
    str | None,
    typer.Option("--families", "--chat-families", help="Only these phrasing families (comma-separated)."),
]
ConversationsFileOption = Annotated[
    Path,
    typer.Argument(
        metavar="FILE",
        help="Dialogues as ReDial JSONL or the adapter format of fewrec/data/dialogues.py.",
        show_default=False,
    ),
]


class CVOptions(BaseModel):
    """`--cv-folds K --cv-data FILE… --cv-dialogues N --cv-without-prior`."""

    folds: int = 5
    data: list[Path] = Field(default_factory=list)  # pooled with the evaluated file
    sample: int | None = None
    without_prior: bool = False
    fit: bool = True  # the prior's form chosen on each fold's training folds (else the plain form)


CVFoldsOption = Annotated[
    int | None,
    typer.Option(
        "--cv-folds",
        help="Also cross-validate over FILE and --cv-data together: K folds by dialogue, each "
        "fold's prior counted (and its form chosen) on the other folds only.",
    ),
]
CVDataOption = Annotated[
    list[Path] | None,
    typer.Option("--cv-data", help="More dialogues for the cross-validation (e.g. train_data.jsonl)."),
]
CVDialoguesOption = Annotated[
    int | None, typer.Option("--cv-dialogues", help="Replay a seeded sample of N dialogues per fold.")
]
CVWithoutPriorOption = Annotated[
    bool, typer.Option("--cv-without-prior", help="Replay each fold again without the prior.")
]


# `fewrec eval --chat` and `--conversations` pass their options on by name: the parameters below
# carry the names eval gives the same options.
def eval_chat(
    split: SplitOption = "test",
    protocol: ProtocolOption = None,
    ties: TiesOption = None,
    test_cut: TestCutOption = None,
    valid_cut: ValidCutOption = None,
    users: ChatUsersOption = None,
    seed: SeedOption = 0,
    out: RunFolderOption = None,
    readme: ReadmeOption = None,
    query_weights: QueryWeightsOption = None,
    chat_families: FamiliesOption = None,
    phrasings: PhrasingsOption = None,
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
    duplicates: DuplicatesOption = None,
) -> None:
    """Evaluate the chat: held-out users' liked items written in many phrasings, the chat's cards
    against the API given those items and popularity; writes results.json, report.md and plots."""
    check_split(split)
    settings = with_split_options(
        load_settings(config, dataset, format, duplicates), protocol, ties, test_cut, valid_cut
    )
    run_chat_eval(settings, split, users, seed, out, readme, query_weights, chat_families, phrasings)


def eval_conversations(
    conversations: ConversationsFileOption,
    dialogues: DialoguesOption = None,
    seed: SeedOption = 0,
    out: RunFolderOption = None,
    readme: ReadmeOption = None,
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
    duplicates: DuplicatesOption = None,
    cv_folds: CVFoldsOption = None,
    cv_data: CVDataOption = None,
    cv_dialogues: CVDialoguesOption = None,
    cv_without_prior: CVWithoutPriorOption = False,
) -> None:
    """Evaluate the chat on real dialogues: Recall@1/5/10/20 at the recommender's new suggestions,
    and the seekers' own film labels against the chat's reading; with --cv-folds, also the
    cross-validated figure over FILE and --cv-data."""
    settings = load_settings(config, dataset, format, duplicates)
    cv = None
    if cv_folds is not None:
        cv = CVOptions(
            folds=cv_folds, data=list(cv_data or []), sample=cv_dialogues, without_prior=cv_without_prior
        )
    run_conversations_eval(settings, conversations, dialogues, seed, out, readme, cv)


def run_chat_eval(
    settings: Settings, split: str, users: int | None, seed: int, out: Path | None, readme: Path | None,
    query_weights: str | None, families: str | None, phrasings: Path | None,
) -> None:  # fmt: skip
    """The chat evaluation (fewrec/eval/chat_eval.py): run, print, write, publish."""
    from fewrec.eval import chat_eval
    from fewrec.eval.chat_phrasings import load_phrasings
    from fewrec.eval.report import check_markers
    from fewrec.fit.chat_weights import sweep_query_weights

    if readme is not None:
        check_markers(readme, chat_eval.README_MARKERS)  # before minutes of work, not after
    book = load_phrasings(phrasings)
    names = [f.strip() for f in families.split(",") if f.strip()] if families else None
    book.select(names)  # an unknown family fails now, not after loading the data
    grid = None if query_weights is None else float_list(query_weights, "--query-weights")
    data = load_split(settings)
    folder = out or default_run_dir()

    def save(partial: chat_eval.ChatEvalReport) -> None:
        chat_eval.write(partial, folder, with_plots=False)

    report = chat_eval.evaluate_chat(
        data, settings, split_name=split, users=users or chat_eval.DEFAULT_USERS, seed=seed,  # type: ignore[arg-type]
        families=names, phrasings=book, query_weights=grid, progress=True, on_result=save, say=progress_line,
        sweep=sweep_query_weights,
    )  # fmt: skip
    files = chat_eval.write(report, folder)
    console.print(chat_eval.markdown(report), highlight=False, markup=False)
    if report.sweep is not None and report.sweep.chosen:
        chosen = "\n".join(f"{k} = {v}" for k, v in report.sweep.chosen.items())
        console.print("query weights chosen on validation targets; to keep them, put in a config file:")
        print(f"[chat]\n{chosen}")
    console.print(f"wrote {', '.join(str(f) for f in files)}")
    section = partial(chat_eval.readme_section, report, folder)
    publish_block(readme, report, section, chat_eval.README_MARKERS, "chat results section")
    exit_if_interrupted(report.complete)


def run_conversations_eval(
    settings: Settings,
    path: Path,
    sample: int | None,
    seed: int,
    out: Path | None,
    readme: Path | None,
    cv: CVOptions | None = None,
) -> None:
    """The conversation evaluation (fewrec/eval/conversation_eval.py): the file is read (and its
    format checked) before the data and models load; then the run, the cross-validation when
    asked, the files and the README block."""
    from fewrec.agent.recommender import Recommender
    from fewrec.data.dialogues import read_dialogues
    from fewrec.eval import conversation_eval
    from fewrec.eval.report import check_markers
    from fewrec.eval.runner import EvalError

    if readme is not None:
        check_markers(readme, conversation_eval.README_MARKERS)  # before minutes of work, not after
    if sample is not None and sample < 1:
        raise EvalError(f"--dialogues must be at least 1, got {sample}")
    dialogues = read_dialogues(path)
    if not dialogues:
        raise EvalError(f"{path} holds no dialogue")
    pooled = [*dialogues, *(d for extra in (cv.data if cv else []) for d in read_dialogues(extra))]
    note(f"{len(dialogues)} dialogues in {path}; loading the data, the index and the models…")
    loading = time.perf_counter()
    recommender = Recommender(pipeline=build_pipeline(settings)).warm_up()
    setup_seconds = round(time.perf_counter() - loading, 1)
    report = conversation_eval.evaluate_conversations(
        path, recommender, dialogues=dialogues, sample=sample, seed=seed, progress=True
    )
    report.setup_seconds = setup_seconds
    if cv is not None and report.complete:
        from fewrec.eval.conversation_cv import cross_validate
        from fewrec.fit.build_prior import fold_prior_scorer

        note(f"cross-validating over {len(pooled)} dialogues, {cv.folds} folds…")
        report.cross_validation = cross_validate(
            [Path(path), *cv.data], pooled, recommender, prior_for=fold_prior_scorer, folds=cv.folds,
            seed=seed, sample=cv.sample, fit=cv.fit, without_prior=cv.without_prior, progress=True, say=note,
        )  # fmt: skip
    folder = out or default_run_dir()
    files = conversation_eval.write(report, folder)
    console.print(conversation_eval.markdown(report), highlight=False, markup=False)
    note(f"wrote {', '.join(str(f) for f in files)}")
    section = partial(conversation_eval.readme_section, report, folder)
    publish_block(readme, report, section, conversation_eval.README_MARKERS, "conversations section", note)
    exit_if_interrupted(report.complete)
