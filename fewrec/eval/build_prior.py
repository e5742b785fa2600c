"""Builds the chat's conversation prior (`fewrec/agent/conversation_prior.py`) from training
dialogues: which films human recommenders suggested, and after which mentioned films.

    python -m fewrec.eval.build_prior ../shared/datasets/redial/train_data.jsonl \
        fewrec/data/bundled/redial_prior.json

Only ever from training dialogues: the validation file is what the conversation evaluation
reports on. `--leave-out N --seed S` leaves out the seeded sample of N dialogues that
`fewrec eval-conversations FILE --dialogues N --seed S` replays, so that weights can be
chosen on that sample without its own suggestions in the counts.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

from fewrec.agent.conversation_prior import ConversationPrior
from fewrec.agent.recommender import Recommender
from fewrec.eval.conversation_eval import _watched, choose_dialogues
from fewrec.eval.conversations import Dialogue, TitleMatcher, new_item_turns, read_dialogues

SOURCE = (
    "ReDial (Li et al., 'Towards Deep Conversational Recommendations', NeurIPS 2018), "
    "CC BY 4.0: counts derived from its dialogues"
)


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


def build_prior(
    path: Path, recommender: Recommender, command: str, leave_out: int | None = None, seed: int = 0
) -> ConversationPrior:
    every = read_dialogues(path)
    left_out = {id(d) for d in choose_dialogues(every, leave_out, seed)} if leave_out else set()
    used = [d for d in every if id(d) not in left_out]
    matcher = TitleMatcher(recommender.split.catalog, _watched(recommender))
    suggested, after = count_suggestions(used, matcher)
    return ConversationPrior(
        catalog=recommender.split.name, source=f"{SOURCE}; file {Path(path).name}", command=command,
        dialogues=len(used), suggested=dict(sorted(suggested.items())),
        after={k: dict(sorted(v.items())) for k, v in sorted(after.items())},
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_file", type=Path, help="training dialogues (ReDial or adapter JSONL)")
    parser.add_argument("out", type=Path, help="the JSON file to write")
    parser.add_argument("--leave-out", type=int, default=None, help="leave out this seeded sample")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    command = f"python -m fewrec.eval.build_prior {args.train_file.name} {args.out.name}" + (
        f" --leave-out {args.leave_out} --seed {args.seed}" if args.leave_out else ""
    )
    prior = build_prior(args.train_file, Recommender.from_settings(), command, args.leave_out, args.seed)
    args.out.write_text(prior.model_dump_json(indent=None) + "\n", encoding="utf-8")
    print(f"{args.out}: {prior.dialogues} dialogues, {len(prior.suggested)} films suggested")


if __name__ == "__main__":
    main()
