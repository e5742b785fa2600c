"""The chat's query weights (`chat.query_weight_with_titles`, `chat.query_weight`), chosen on the
*validation* targets for `fewrec eval-chat`: the chat's hits@20 over the phrasing families that
carry content words, for every weight of a grid, and per setting the weight with the best of it.

A fitting step, so it lives here rather than in `fewrec/eval/`: the command line hands
`sweep_query_weights` to `chat_eval.evaluate_chat`, which uses the weights it chose on the test
targets (and reports the sweep beside them). It scores the messages with the chat evaluation's
own harness (`chat_eval.prepare_messages`, its `Scorer`), so the sweep and the test run read and
score a message the same way.
"""

from __future__ import annotations

import numpy as np

from fewrec.agent.chat import ChatAgent, ChatState
from fewrec.agent.recommender import Recommender
from fewrec.config import Settings
from fewrec.data.split import LeaveOneOutSplit
from fewrec.eval.chat_eval import AgentFactory, WeightSweep, prepare_messages, sample_users
from fewrec.eval.chat_phrasings import Family, Phrasings
from fewrec.eval.harness import progress_bar


def choose_weights(
    sweep: dict[float, dict[str, float]], messages: dict[str, int], families: dict[str, str]
) -> dict[str, float]:
    """Per chat setting, the weight with the best hits@20 over the families that exercise it
    (pooled by their message counts). A tie goes to the larger weight: there the person's words
    cost nothing measurable, and a stated wish should steer when it is free."""
    chosen: dict[str, float] = {}
    for setting in sorted(set(families.values())):
        names = [f for f, s in families.items() if s == setting and messages.get(f, 0) > 0]
        if not names:
            continue
        total = sum(messages[f] for f in names)

        def pooled(weight: float, names: list[str] = names, total: int = total) -> float:
            return sum(sweep[weight].get(f, 0.0) * messages[f] for f in names) / total

        best = max(sweep, key=lambda w: (round(pooled(w), 12), w))
        chosen[setting] = float(best)
    return chosen


def sweep_query_weights(
    split: LeaveOneOutSplit, settings: Settings, families: list[Family], weights: list[float], users: int,
    seed: int, phrasings: Phrasings, progress: bool = False, recommender: Recommender | None = None,
    make_agent: AgentFactory = ChatAgent,
) -> WeightSweep:  # fmt: skip
    """The chat's hits@20 on the *validation* targets for every weight, per query family; the
    chosen weight per setting (`query_weight_with_titles` for messages that name titles,
    `query_weight` for a known user's)."""
    sample = sample_users(split, "valid", min(users, len(split.eval_users("valid"))), seed)
    run = prepare_messages(
        split, "valid", settings, {}, families, sample, phrasings, seed, recommender, make_agent
    )
    scorer, messages, times = run.scorer, run.messages, run.times
    out = WeightSweep(
        users=len(sample), families=[f.name for f in families], weights=list(weights),
        messages={f: len(m) for f, m in messages.items()},
    )  # fmt: skip
    chat = scorer.recommender.settings.chat
    table: dict[float, dict[str, float]] = {}
    bar = progress_bar(run.count() * len(weights), "query weights (valid)", "msg", progress)
    try:
        for family in families:
            ceiling = [
                scorer.rank_in(
                    scorer.ceiling(r, u, times[u], scorer.truth(r, ChatState()), [], with_query=False),
                    int(scorer.targets[u]),
                )
                for u, r in messages[family.name]
            ]
            out.ceiling_hits_at_20[family.name] = (
                float(np.mean([c is not None for c in ceiling])) if ceiling else 0.0
            )
        for weight in weights:
            chat.query_weight = chat.query_weight_with_titles = float(weight)
            row: dict[str, float] = {}
            for family in families:
                hits = []
                for u, rendered in messages[family.name]:
                    hits.append(scorer.run(rendered, u, times[u], references=False).ranks["chat"] is not None)
                    bar.update()
                row[family.name] = float(np.mean(hits)) if hits else 0.0
            table[float(weight)] = row
            out.chat_hits_at_20[str(weight)] = row
    except KeyboardInterrupt:
        out.complete = False
    finally:
        bar.close()
    if table:
        out.chosen = choose_weights(table, out.messages, {f.name: f.weight_name for f in families})
    return out
