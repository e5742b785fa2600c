"""Builds the chat's conversation prior (`fewrec/agent/conversation_prior.py`) from training
dialogues: which films human recommenders suggested, and after which mentioned films; and
fits how far those counts are shrunk toward a back-off.

    python -m fewrec.fit.build_prior ../shared/datasets/redial/train_data.jsonl \
        fewrec/data/bundled/redial_prior.json --fit

Only ever from training dialogues: the validation file is what the conversation evaluation
reports on. `--fit` chooses the prior's form (`PriorForm`: smoothing, the back-off's share of
recent catalog popularity, whether an uncounted film adds the back-off) by k-fold
cross-validation over the given dialogues alone, grouped by dialogue: each candidate's counts
from the other folds rank the films suggested at each fold's new-item turns, given the films
mentioned before (the prior alone, Recall@20); the best mean wins. The back-off's popularity
is the catalog's own ratings in its last RECENT_YEARS (interactions only, no dialogue).
`--leave-out N --seed S` leaves out the seeded sample of N dialogues that
`fewrec eval-conversations FILE --dialogues N --seed S` replays.
"""

from __future__ import annotations

import argparse
import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fewrec.agent.conversation_prior import ConversationPrior, PriorForm, PriorScorer
from fewrec.agent.recommender import Recommender
from fewrec.data.dialogues import (
    Dialogue,
    TitleMatcher,
    dialogue_folds,
    new_item_turns,
    read_dialogues,
)
from fewrec.data.split import LeaveOneOutSplit
from fewrec.eval.conversation_eval import _watched, choose_dialogues

SOURCE = (
    "ReDial (Li et al., 'Towards Deep Conversational Recommendations', NeurIPS 2018), "
    "CC BY 4.0: counts derived from its dialogues"
)
SECONDS_PER_YEAR = 365.25 * 24 * 3600
RECENT_YEARS = 3.0  # ReDial was collected in 2017–18; ml-latest-small's ratings run to 2018
FIT_FOLDS = 5
FIT_AT = 20  # the chat scores 20 cards; the prior's Recall@20 chooses its form
# The candidates `--fit` tries (every combination).
GRID: dict[str, Sequence[object]] = {
    "smoothing": (0.0, 1.0, 3.0, 10.0, 30.0),
    "background_weight": (0.0, 0.25, 0.5, 0.75),
    "unknown_backoff": (False, True),
}


def count_suggestions(dialogues: list[Dialogue], matcher: TitleMatcher) -> tuple[Counter, dict]:
    """Films suggested as new at recommender turns, and which films had been mentioned before."""
    suggested: Counter[str] = Counter()
    after: dict[str, Counter[str]] = defaultdict(Counter)
    for dialogue in dialogues:
        ids = {key: matcher.match(title).item_id for key, title in dialogue.films.items()}
        for point in new_item_turns(dialogue):
            targets = [str(ids[k]) for k in point.targets if ids.get(k) is not None]
            before = [str(ids[k]) for k in point.mentioned_before if ids.get(k) is not None]
            suggested.update(targets)
            for mentioned in before:
                after[mentioned].update(targets)
    return suggested, after


def recent_popularity(split: LeaveOneOutSplit, years: float = RECENT_YEARS) -> tuple[dict[str, float], str]:
    """Ratings per catalog item in the split's last `years` of training interactions (all of
    them when the split has no dates); and a note saying which."""
    train = split.train
    times = train["timestamp"].to_numpy()
    dated = split.time_kind == "seconds" and len(times) > 0
    kept = times >= times.max() - years * SECONDS_PER_YEAR if dated else np.ones(len(times), bool)
    counts = np.bincount(train["item"].to_numpy()[kept], minlength=split.n_items)
    ids = split.item_ids.tolist()
    background = {str(ids[i]): float(c) for i, c in enumerate(counts) if c > 0}
    note = (
        f"{int(kept.sum()):,} ratings of {split.name} in the {years:g} years before its last one"
        if dated
        else f"all {len(times):,} ratings of {split.name} (no dates)"
    )
    return background, note


def make_prior(
    dialogues: list[Dialogue],
    matcher: TitleMatcher,
    catalog: str,
    command: str,
    source: str = SOURCE,
    background: tuple[dict[str, float], str] = ({}, ""),
    form: PriorForm | None = None,
) -> ConversationPrior:
    """The counts of these dialogues (and only these) as a prior."""
    suggested, after = count_suggestions(dialogues, matcher)
    return ConversationPrior(
        catalog=catalog, source=source, command=command, dialogues=len(dialogues),
        suggested=dict(sorted(suggested.items())),
        after={k: dict(sorted(v.items())) for k, v in sorted(after.items())},
        background=background[0], background_note=background[1], form=form or PriorForm(),
    )  # fmt: skip


# --------------------------------------------------------------------------- the fitting
@dataclass
class PriorPoint:
    """One new-item turn as the prior sees it: the catalog indices mentioned before, and the
    targets (already-mentioned films removed)."""

    mentioned: list[int]
    targets: list[int]


def prior_points(
    dialogues: Iterable[Dialogue], matcher: TitleMatcher, index_of: dict[str, int]
) -> list[PriorPoint]:
    out: list[PriorPoint] = []
    for dialogue in dialogues:
        ids = {key: matcher.match(title).item_id for key, title in dialogue.films.items()}
        where = {k: index_of.get(str(v)) for k, v in ids.items() if v is not None}
        for point in new_item_turns(dialogue):
            mentioned = [where[k] for k in point.mentioned_before if where.get(k) is not None]
            targets = [where[k] for k in point.targets if where.get(k) is not None]
            if targets:
                out.append(PriorPoint(list(dict.fromkeys(mentioned)), list(dict.fromkeys(targets))))
    return out


def prior_hits(
    scorer: PriorScorer, points: list[PriorPoint], popularity_share: float, k: int = FIT_AT
) -> tuple[int, int]:
    """(targets among the prior's first k, targets) over the points."""
    hits = 0
    for point in points:
        ranked = set(scorer.ranking(point.mentioned, popularity_share, k))
        hits += sum(t in ranked for t in point.targets)
    return hits, sum(len(p.targets) for p in points)


def candidate_forms() -> list[PriorForm]:
    names = list(GRID)
    combinations = itertools.product(*GRID.values())
    return [PriorForm(**dict(zip(names, values, strict=True))) for values in combinations]


def fit_form(
    dialogues: list[Dialogue],
    matcher: TitleMatcher,
    split: LeaveOneOutSplit,
    background: tuple[dict[str, float], str],
    popularity_share: float,
    folds: int = FIT_FOLDS,
    seed: int = 0,
) -> tuple[PriorForm, dict[str, float]]:
    """The form with the best mean Recall@FIT_AT of the prior alone over `folds` folds of these
    dialogues (each fold's counts from the others); and every candidate's mean, by its label."""
    index_of = {str(item): i for i, item in enumerate(split.item_ids.tolist())}
    fold_of = dialogue_folds(dialogues, folds, seed)
    parts = [[d for d, f in zip(dialogues, fold_of, strict=True) if f == n] for n in range(folds)]
    points = [prior_points(part, matcher, index_of) for part in parts]
    counted = [
        make_prior(
            [d for m, part in enumerate(parts) if m != n for d in part],
            matcher,
            split.name,
            "fit",
            background=background,
        )
        for n in range(folds)
    ]
    means: dict[str, float] = {}
    best: tuple[float, PriorForm] | None = None
    for form in candidate_forms():
        recalls = []
        for n in range(folds):
            scorer = PriorScorer(counted[n].model_copy(update={"form": form}), index_of, split.n_items)
            hits, targets = prior_hits(scorer, points[n], popularity_share)
            recalls.append(hits / targets if targets else 0.0)
        label = form_label(form)
        means[label] = float(np.mean(recalls))
        if best is None or means[label] > best[0] + 1e-12:  # a tie keeps the earlier, simpler form
            best = (means[label], form)
    assert best is not None
    chosen = best[1].model_copy(
        update={
            "chosen_by": f"{folds}-fold cross-validation over {len(dialogues)} training dialogues (seed "
            f"{seed}): the prior alone, Recall@{FIT_AT} {best[0]:.3f}"
        }
    )
    return chosen, means


def form_label(form: PriorForm) -> str:
    return (
        f"smoothing {form.smoothing:g}, background {form.background_weight:g}, "
        f"unknown {'back-off' if form.unknown_backoff else 'left out'}"
    )


def fit_prior(
    dialogues: list[Dialogue],
    matcher: TitleMatcher,
    split: LeaveOneOutSplit,
    command: str,
    popularity_share: float,
    *,
    fit: bool = True,
    source: str = SOURCE,
    seed: int = 0,
) -> ConversationPrior:
    """The prior counted on these dialogues, its form fitted on them alone (or the plain one)."""
    background = recent_popularity(split)
    form = fit_form(dialogues, matcher, split, background, popularity_share, seed=seed)[0] if fit else None
    return make_prior(dialogues, matcher, split.name, command, source, background, form)


def fold_prior_scorer(
    train: list[Dialogue], matcher: TitleMatcher, recommender: Recommender, fit: bool, seed: int
) -> tuple[PriorScorer, str]:
    """The prior counted on `train` alone (its form chosen on it alone), over the catalog."""
    split = recommender.split
    prior = fit_prior(
        train, matcher, split, "cross-validation fold", recommender.settings.chat.prior_popularity, fit=fit,
        source=SOURCE, seed=seed,
    )  # fmt: skip
    index_of = {str(item): i for i, item in enumerate(split.item_ids.tolist())}
    return PriorScorer(prior, index_of, split.n_items), form_label(prior.form)


def build_prior(
    path: Path,
    recommender: Recommender,
    command: str,
    leave_out: int | None = None,
    seed: int = 0,
    fit: bool = False,
) -> ConversationPrior:
    every = read_dialogues(path)
    left_out = {id(d) for d in choose_dialogues(every, leave_out, seed)} if leave_out else set()
    used = [d for d in every if id(d) not in left_out]
    matcher = TitleMatcher(recommender.split.catalog, _watched(recommender))
    share = recommender.settings.chat.prior_popularity
    return fit_prior(
        used, matcher, recommender.split, command, share, fit=fit, source=f"{SOURCE}; file {Path(path).name}",
        seed=seed,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_file", type=Path, help="training dialogues (ReDial or adapter JSONL)")
    parser.add_argument("out", type=Path, help="the JSON file to write")
    parser.add_argument("--leave-out", type=int, default=None, help="leave out this seeded sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fit", action="store_true", help="choose the form by cross-validation")
    args = parser.parse_args(argv)
    command = (
        f"python -m fewrec.fit.build_prior {args.train_file.name} {args.out.name}"
        + (f" --leave-out {args.leave_out} --seed {args.seed}" if args.leave_out else "")
        + (" --fit" if args.fit else "")
    )
    prior = build_prior(
        args.train_file, Recommender.from_settings(), command, args.leave_out, args.seed, args.fit
    )
    args.out.write_text(prior.model_dump_json(indent=None) + "\n", encoding="utf-8")
    print(f"{args.out}: {prior.dialogues} dialogues, {len(prior.suggested)} films suggested")
    print(f"form: {form_label(prior.form)}; {prior.form.chosen_by or 'not fitted'}")


if __name__ == "__main__":
    main()
