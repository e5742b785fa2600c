"""Cross-validated conversation evaluation (`fewrec eval-conversations FILE --cv-folds 5
--cv-data train_data.jsonl`): the figure of the chat on dialogues its prior never counted.

The given dialogues (the FILE and `--cv-data` together: ReDial's 500 train and 100 valid) are
dealt into k folds by dialogue (`dialogues.dialogue_folds`, seeded). For each fold, the
conversation prior is counted on the other folds only, and its form (`PriorForm`) chosen by an
inner cross-validation over those folds alone (`prior_for`, which the caller gives:
`fewrec.fit.build_prior.fold_prior_scorer`); the fold's dialogues are then replayed through the
chat with that prior (`conversation_eval.evaluate_conversations`, seeker_only: the chat hears
the seeker alone). No fold chooses on, or counts, what it reports.
The figure is the mean over folds of each fold's Recall@k, with a 95% t interval over the k
fold figures; the recall of all folds' targets pooled is kept beside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fewrec.agent.chat import ChatAgent
from fewrec.agent.conversation_prior import PriorScorer
from fewrec.agent.recommender import Recommender
from fewrec.data.dialogues import Dialogue, TitleMatcher, dialogue_folds
from fewrec.eval.conversation_eval import (
    METHODS,
    ConversationsReport,
    CrossValidation,
    FoldResult,
    _watched,
    choose_dialogues,
    evaluate_conversations,
)
from fewrec.eval.harness import with_chat
from fewrec.eval.intervals import t_interval

# How a fold's prior is fitted: on the training folds' dialogues alone (fitting its form or not,
# seeded), over the recommender's catalog; the scorer and a label of the form chosen.
PriorFitter = Callable[[list[Dialogue], TitleMatcher, Recommender, bool, int], tuple[PriorScorer, str]]
WITHOUT_PRIOR = {"chat": "chat_no_prior", "chat_whole": "chat_whole_no_prior"}
CV_METHOD_NAMES = {
    "chat_no_prior": "the chat, turn by turn, without the prior (chat.prior_weight = 0)",
    "chat_whole_no_prior": "the chat, messages so far as one message, without the prior",
}


def without_the_prior(recommender: Recommender) -> Recommender:
    """`recommender` whose chat has no conversation prior (`chat.prior_weight` 0); the caller's
    keeps its settings."""
    return with_chat(recommender, prior_weight=0.0)


def cross_validate(
    files: list[Path],
    dialogues: list[Dialogue],
    recommender: Recommender,
    *,
    prior_for: PriorFitter,
    folds: int = 5,
    seed: int = 0,
    sample: int | None = None,
    fit: bool = True,
    without_prior: bool = False,
    progress: bool = False,
    say: Callable[[str], None] = lambda _line: None,
) -> CrossValidation:
    """k-fold cross-validation of the chat over `dialogues` (module docstring). `sample`
    replays a seeded sample of each fold (the prior still counts all the other folds);
    `without_prior` replays each fold again with `chat.prior_weight` 0."""
    started = time.perf_counter()
    fold_of = dialogue_folds(dialogues, folds, seed)
    matcher = TitleMatcher(recommender.split.catalog, _watched(recommender))
    out = CrossValidation(
        files=[str(f) for f in files], dialogues=len(dialogues), folds=folds, seed=seed, sample=sample,
        fitted_form=fit,
    )  # fmt: skip
    for fold in range(folds):
        fold_started = time.perf_counter()
        held = [d for d, f in zip(dialogues, fold_of, strict=True) if f == fold]
        train = [d for d, f in zip(dialogues, fold_of, strict=True) if f != fold]
        scorer, form = prior_for(train, matcher, recommender, fit, seed)
        replayed = choose_dialogues(held, sample, seed)
        say(f"fold {fold + 1}/{folds}: {len(replayed)} dialogues, prior of {len(train)}; {form}")

        agents = [(recommender, lambda r, s=scorer: ChatAgent(r, prior=s))]
        agents += [(without_the_prior(recommender), ChatAgent)] if without_prior else []
        runs: list[ConversationsReport] = []
        for chat, make_agent in agents:  # the second (chat.prior_weight 0) only after a complete first
            if all(run.complete for run in runs):
                runs.append(evaluate_conversations(files[0], chat, dialogues=replayed, seed=seed,
                            progress=progress, make_agent=make_agent, modes=("seeker_only",)))  # fmt: skip
        if not all(run.complete for run in runs):
            out.complete = False
            break
        result = runs[0].mode("seeker_only")
        recall = dict(result.recall)
        for method, renamed in WITHOUT_PRIOR.items() if without_prior else ():
            recall[renamed] = runs[1].mode("seeker_only").recall[method]
        out.per_fold.append(FoldResult(
            fold=fold, dialogues=len(replayed), prior_dialogues=len(train), form=form,
            turns_scored=result.turns_scored, targets_in_catalog=result.targets_in_catalog, recall=recall,
            seconds=round(time.perf_counter() - fold_started, 1),
        ))  # fmt: skip
    summarise(out)
    out.seconds = round(time.perf_counter() - started, 1)
    return out


def summarise(out: CrossValidation) -> None:
    """Mean over folds, its t interval, and the pooled recall (the folds' recall weighted by
    their targets), per method and k."""
    targets = sum(f.targets_in_catalog for f in out.per_fold)
    for method in cv_methods(out):
        out.mean[method], out.intervals[method], out.pooled[method] = {}, {}, {}
        for key in out.per_fold[0].recall[method]:  # recall@k, k in KS
            values = [f.recall[method][key] for f in out.per_fold]
            out.mean[method][key], out.intervals[method][key] = float(np.mean(values)), t_interval(values)
            pooled = sum(v * f.targets_in_catalog for v, f in zip(values, out.per_fold, strict=True))
            out.pooled[method][key] = pooled / targets if targets else 0.0


def cv_methods(out: CrossValidation) -> list[str]:
    """The methods every fold reports, in table order."""
    order = [*METHODS, *CV_METHOD_NAMES]
    return [m for m in order if out.per_fold and all(m in f.recall for f in out.per_fold)]


__all__ = ["CV_METHOD_NAMES", "cross_validate", "cv_methods"]
