"""How often a message leaves a meaning query that holds no word describing films, before and
after the describer of `fewrec/agent/query_words.py`, cross-validated over 300 labelled ReDial
seeker messages (`fewrec/fit/annotations/redial_descriptive_words.jsonl`).

    python -m fewrec.fit.query_words ../shared/datasets/redial/train_data.jsonl [--json out.json]

- **Before**: every word the structure rules leave (the chat before the describer).
- **After**: the words the describer keeps. Its thresholds are chosen on the training folds
  only (k folds, grouped by dialogue): the most labelled descriptive words kept, with at most
  `--budget` of the training folds' messages leaving a query with no descriptive word; ties go
  to the middle of the best run of `describe` values. Each held-out message is read with its
  own dialogue taken out of the talk's counts, as a new person's message would be.
- Figures: the share of messages whose query is not empty and holds no labelled descriptive
  word, pooled over the held-out folds, with a 95% bootstrap interval over dialogues, and the
  mean over folds with a t interval; recall of the labelled descriptive words (in the query,
  and among the words the describer was asked about).

The talk's counts come from `train_data.jsonl` only (the file given); the labels say which
words describe films (see the annotations' README).
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fewrec.agent.query_words import DEFAULT_THRESHOLDS, Describer, TalkCounts, Thresholds, count_talk, stem
from fewrec.eval.intervals import grouped_interval

ANNOTATIONS = Path(__file__).resolve().parent / "annotations" / "redial_descriptive_words.jsonl"
TRAIN_FILE = "train_data.jsonl"
DESCRIBE_GRID = tuple(round(x, 2) for x in np.arange(-4.0, 2.01, 0.1))
EVIDENCE_GRID = (0.0, 1.0, 2.0, 3.0, 5.0, 10.0)  # catalog items per 10,000
EVALUATIVE_GRID = (0.0, 5.0, 10.0, 20.0, 30.0, 50.0, math.inf)  # the same for VADER's words
UNKNOWN_GRID = (False, True)
SMOOTHING_GRID = (0.5, 1.0)
NOTHING = re.compile(r"(?!)")  # a pattern that never matches
BUDGET = 0.04  # the training folds' share of queries with no descriptive word (target: 5%)
TOLERANCE = 1  # descriptive words a stricter setting may lose and still be chosen


class Recorder:
    """A describer that keeps every word and notes which it was asked about: the chat as it
    was before the describer, and the candidates the describer decides on."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.pairs: list[tuple[str, str]] = []  # words in a row the describer was asked about

    def describes(self, word: str) -> bool:
        self.asked.append(word)
        return True

    def phrase(self, first: str, second: str) -> bool:
        self.pairs.append((first, second))
        return False


@dataclass
class Message:
    conversation: str
    file: str
    text: str
    descriptive: set[str]
    before: str = ""  # the query before the describer
    candidates: list[str] = field(default_factory=list)  # the words the describer decides on
    in_a_row: list[int] = field(default_factory=list)  # n: candidates n and n + 1 stand in a row


def load_annotations(path: Path = ANNOTATIONS) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def read_messages(reader: Any, rows: Sequence[dict[str, Any]]) -> list[Message]:
    """Each labelled message read by the chat's reader: the query as the chat made it before
    the describer (every word kept, no possessive rule), and the words the describer is asked
    about now."""
    from fewrec.agent import understand

    out = []
    possessed = understand.POSSESSED
    for row in rows:
        recorder = Recorder()
        reader.describer = recorder
        try:
            understand.POSSESSED = NOTHING
            before = reader.read(row["text"]).query
        finally:
            understand.POSSESSED = possessed
        recorder.asked.clear()
        recorder.pairs.clear()
        reader.read(row["text"])
        in_a_row, start = [], 0
        for first, second in recorder.pairs:
            n = next(
                i for i in range(start, len(recorder.asked) - 1)
                if (recorder.asked[i], recorder.asked[i + 1]) == (first, second)
            )  # fmt: skip
            in_a_row.append(n)
            start = n + 1
        out.append(
            Message(str(row["conversation_id"]), row["file"], row["text"],
                    {w.lower() for w in row["descriptive"]}, before, list(recorder.asked), in_a_row)
        )  # fmt: skip
    return out


def dialogue_texts(train_file: Path) -> dict[str, list[str]]:
    """conversationId -> the texts of its messages, in the training file."""
    out: dict[str, list[str]] = {}
    for line in Path(train_file).read_text(encoding="utf-8").splitlines():
        if line.strip():
            dialogue = json.loads(line)
            out[str(dialogue["conversationId"])] = [str(m.get("text", "")) for m in dialogue["messages"]]
    return out


def kept_words(candidates: Sequence[str], describes: Any) -> list[str]:
    """What `content_words` keeps of the candidates, given the describer's answers."""
    kept = [w for w in candidates if describes(w)]
    return kept if any(len(w) >= 3 for w in kept) else []


@dataclass
class Table:
    """Every candidate word of every message, flat: its score (per smoothing), whether it is
    evaluative, unknown (nothing used it), long enough to make a query, labelled descriptive,
    and the first of its kind in its message. Filled once; thresholds then cost little to try."""

    messages: list[Message]
    items: int  # the catalog's
    owner: np.ndarray  # the message each word belongs to
    scores: dict[float, np.ndarray]  # NaN where unknown
    catalog: np.ndarray  # c: catalog items per 10,000 whose text holds the word
    phrase: np.ndarray  # items per 10,000 holding this word and the next as a phrase (0: none)
    evaluative: np.ndarray
    long: np.ndarray
    descriptive: np.ndarray
    first: np.ndarray

    @classmethod
    def build(cls, messages: list[Message], held_out: list[Describer]) -> Table:
        owner, catalog, phrase, evaluative, long, descriptive, first = [], [], [], [], [], [], []
        scores: dict[float, list[float]] = {a: [] for a in SMOOTHING_GRID}
        for n, (m, d) in enumerate(zip(messages, held_out, strict=True)):
            seen: set[str] = set()
            for word in m.candidates:
                owner.append(n)
                catalog.append(d.counts(word)[0] * 10_000 / d.items)
                phrase.append(0.0)
                evaluative.append(d.evaluative(word))
                long.append(len(word) >= 3)
                descriptive.append(word.lower() in m.descriptive)
                first.append(word.lower() not in seen)
                seen.add(word.lower())
                for a in SMOOTHING_GRID:
                    score = d.with_thresholds(Thresholds(smoothing=a)).score(word)
                    scores[a].append(math.nan if score is None else score)
            base = len(owner) - len(m.candidates)
            for i in m.in_a_row:
                first_word, second_word = m.candidates[i], m.candidates[i + 1]
                if not (d.evaluative(first_word) or d.evaluative(second_word)):
                    pair = (stem(first_word), stem(second_word))
                    phrase[base + i] = d.phrases.get(pair, 0) * 10_000 / d.items
        return cls(
            messages, held_out[0].items if held_out else 1, np.array(owner, dtype=int),
            {a: np.array(v) for a, v in scores.items()}, np.array(catalog), np.array(phrase),
            np.array(evaluative, dtype=bool), np.array(long, dtype=bool), np.array(descriptive, dtype=bool),
            np.array(first, dtype=bool),
        )  # fmt: skip

    def keep(self, t: Thresholds) -> np.ndarray:
        """Per word: does the describer keep it? (before the rule that a query needs a word of
        three letters or more)"""
        score = self.scores[t.smoothing]
        evidence = np.where(self.evaluative, t.evaluative, t.evidence)
        with np.errstate(invalid="ignore"):
            known = (score >= t.describe) & (self.catalog >= evidence - 1e-9)
        keep = np.where(np.isnan(score), t.unknown, known)
        item = 10_000 / self.items
        pair = self.phrase >= max(item, t.evidence) - 1e-9
        if pair.any():
            keep = keep | pair | np.concatenate([[False], pair[:-1]])
        return keep

    def result(self, t: Thresholds, rows: np.ndarray | None = None) -> Outcome:
        keep = self.keep(t)
        n = len(self.messages)
        nonempty = np.bincount(self.owner, weights=keep & self.long, minlength=n) > 0
        kept_desc = np.bincount(self.owner, weights=keep & self.descriptive & self.first, minlength=n)
        kept_desc = np.where(nonempty, kept_desc, 0)
        cand_desc = np.bincount(self.owner, weights=self.descriptive & self.first, minlength=n)
        labelled = np.array([len(m.descriptive) for m in self.messages])
        bad = nonempty & (kept_desc == 0)
        out = Outcome(bad, kept_desc.astype(int), cand_desc.astype(int), labelled)
        return out if rows is None else out.take(rows)

    def kept(self, n: int, t: Thresholds) -> list[str]:
        keep = self.keep(t)
        words = [w for w, k in zip(self.messages[n].candidates, keep[self.owner == n], strict=True) if k]
        return words if any(len(w) >= 3 for w in words) else []


@dataclass
class Outcome:
    bad: np.ndarray  # per message: a query with no descriptive word
    kept_descriptive: np.ndarray  # per message: labelled descriptive words in the query
    candidate_descriptive: np.ndarray  # per message: labelled descriptive words among the candidates
    labelled: np.ndarray  # per message: labelled descriptive words

    def take(self, rows: np.ndarray) -> Outcome:
        return Outcome(
            self.bad[rows], self.kept_descriptive[rows], self.candidate_descriptive[rows], self.labelled[rows]
        )


def outcome(messages: Sequence[Message], queries: Sequence[Sequence[str]], before: bool = False) -> Outcome:
    """Per message: is its query without a descriptive word, and how many labelled descriptive
    words it holds, of those asked about (the describer's candidates, or the words the chat
    kept before the describer) and of all."""
    bad, kept, cand, labelled = [], [], [], []
    for m, query in zip(messages, queries, strict=True):
        words = {w.lower() for w in query}
        bad.append(bool(words) and not words & m.descriptive)
        kept.append(len(words & m.descriptive))
        asked = m.before.split() if before else m.candidates
        cand.append(len({w.lower() for w in asked} & m.descriptive))
        labelled.append(len(m.descriptive))
    return Outcome(np.array(bad), np.array(kept), np.array(cand), np.array(labelled))


def grid() -> list[Thresholds]:
    return [
        Thresholds(describe=d, evidence=c, evaluative=e, unknown=u, smoothing=a)
        for a in SMOOTHING_GRID for u in UNKNOWN_GRID for e in EVALUATIVE_GRID for c in EVIDENCE_GRID
        for d in DESCRIBE_GRID
    ]  # fmt: skip


def choose(
    table: Table, rows: Sequence[int], budget: float = BUDGET, tolerance: int = TOLERANCE
) -> Thresholds:
    """The thresholds to ship, from the messages `rows` only.

    Settings that leave more than `budget` of the messages with a query holding no descriptive
    word are out. Of the rest, the strictest (more evidence asked of evaluative words, then of
    every word, unknown words out) among those that keep at least the most labelled descriptive
    words less `tolerance`: what the labels cannot tell apart by more than a word or so, the
    judgement words' side decides, not one message. Within it, `describe` is the middle of
    the longest run of neighbouring values that keep the most descriptive words."""
    index = np.asarray(rows, dtype=int)
    scored: dict[tuple[float, float, bool, float], list[tuple[float, float]]] = {}
    for t in grid():
        result = table.result(t, index)
        rate = float(result.bad.mean())
        if rate > budget:
            continue
        key = (t.evaluative, t.evidence, not t.unknown, t.smoothing)
        scored.setdefault(key, []).append((t.describe, int(result.kept_descriptive.sum()) - rate))
    best_value = max((v for runs in scored.values() for _, v in runs), default=None)
    if best_value is None:  # nothing meets the budget: keep no word at all
        return Thresholds(describe=math.inf, unknown=False)
    key = max(k for k, runs in scored.items() if any(v >= best_value - tolerance - 1e-9 for _, v in runs))
    top = max(v for _, v in scored[key])
    values = sorted(d for d, v in scored[key] if v == top)
    longest: list[float] = []
    run: list[float] = []
    for d in [*values, math.inf]:
        if run and not math.isclose(d, run[-1] + 0.1, abs_tol=1e-6):
            longest = run if len(run) > len(longest) else longest
            run = []
        run.append(d)
    evaluative, evidence, known_only, smoothing = key
    return Thresholds(float(longest[len(longest) // 2]), evidence, evaluative, not known_only, smoothing)


def folds(messages: Sequence[Message], k: int, seed: int) -> list[list[int]]:
    """k folds of message indices, grouped by dialogue (a dialogue's messages stay together)."""
    dialogues = sorted({(m.file, m.conversation) for m in messages})
    order = np.random.default_rng(seed).permutation(len(dialogues))
    fold_of = {dialogues[i]: n % k for n, i in enumerate(order)}
    out: list[list[int]] = [[] for _ in range(k)]
    for n, m in enumerate(messages):
        out[fold_of[(m.file, m.conversation)]].append(n)
    return out


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95% t interval of per-fold values."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def evaluate(
    train_file: Path,
    annotations: Path = ANNOTATIONS,
    k: int = 10,
    seed: int = 0,
    budget: float = BUDGET,
    reader: Any = None,
) -> dict[str, Any]:
    rows = load_annotations(annotations)
    if reader is None:
        from fewrec.agent.understand import MessageReader
        from fewrec.data import load_dataset

        catalog = load_dataset(cache_dir=None).catalog
        genres = catalog.genre_names
        reader = MessageReader(catalog, genres)
    counts, n_messages, n_dialogues = count_talk(Path(train_file).read_text(encoding="utf-8").splitlines())
    talk = TalkCounts(counts, n_messages, {"file": Path(train_file).name})
    base = Describer.from_catalog(reader.catalog, talk)
    messages = read_messages(reader, rows)
    reader.describer = base
    texts = dialogue_texts(train_file)
    held_out = [
        base.without(texts.get(m.conversation, []) if m.file == TRAIN_FILE else []) for m in messages
    ]  # fmt: skip
    table = Table.build(messages, held_out)
    groups = np.array([f"{m.file}:{m.conversation}" for m in messages])
    before = outcome(messages, [m.before.split() for m in messages], before=True)

    after_queries: list[list[str]] = [[] for _ in messages]
    per_fold: list[dict[str, Any]] = []
    for n, test in enumerate(folds(messages, k, seed)):
        held = set(test)
        chosen = choose(table, [i for i in range(len(messages)) if i not in held], budget)
        for i in test:
            after_queries[i] = table.kept(i, chosen)
        fold_result = outcome([messages[i] for i in test], [after_queries[i] for i in test])
        fold_before = outcome(
            [messages[i] for i in test], [messages[i].before.split() for i in test], before=True
        )
        per_fold.append({
            "fold": n, "messages": len(test), "thresholds": asdict(chosen),
            "bad_after": float(fold_result.bad.mean()), "bad_before": float(fold_before.bad.mean()),
        })  # fmt: skip
    after = outcome(messages, after_queries)
    everything = choose(table, list(range(len(messages))), budget)
    in_sample = table.result(everything)
    shipped = table.result(DEFAULT_THRESHOLDS)

    def rates(result: Outcome, name: str, seed_: int) -> dict[str, Any]:
        low_high = grouped_interval(result.bad.astype(float), groups, seed_)
        return {
            "name": name,
            "bad": int(result.bad.sum()),
            "messages": len(result.bad),
            "bad_rate": float(result.bad.mean()),
            "bad_rate_ci95": list(low_high) if low_high else None,
            "recall_in_query": float(result.kept_descriptive.sum() / max(result.labelled.sum(), 1)),
            "recall_of_candidates": float(
                result.kept_descriptive.sum() / max(result.candidate_descriptive.sum(), 1)
            ),
            "descriptive_in_query": int(result.kept_descriptive.sum()),
            "descriptive_candidates": int(result.candidate_descriptive.sum()),
            "descriptive_labelled": int(result.labelled.sum()),
        }  # fmt: skip

    fold_after = t_interval([f["bad_after"] for f in per_fold])
    fold_before = t_interval([f["bad_before"] for f in per_fold])
    return {
        "annotations": Path(annotations).name,
        "talk_counts": {"file": Path(train_file).name, "dialogues": n_dialogues, "messages": n_messages},
        "k": k, "seed": seed, "budget": budget,
        "before": rates(before, "before (every word the structure rules leave)", seed),
        "after_cv": rates(after, "after, thresholds chosen on the other folds", seed),
        "after_cv_fold_mean": {"bad_rate": fold_after[0], "ci95": [fold_after[1], fold_after[2]]},
        "before_fold_mean": {"bad_rate": fold_before[0], "ci95": [fold_before[1], fold_before[2]]},
        "folds": per_fold,
        "chosen_on_all": asdict(everything),
        "in_sample_with_chosen_on_all": rates(in_sample, "thresholds chosen on all 300 (in sample)", seed),
        "shipped": {
            "thresholds": asdict(DEFAULT_THRESHOLDS), **rates(shipped, "shipped thresholds (in sample)", seed)
        },
        "examples_after": [
            {"text": m.text[:160], "query": " ".join(q), "descriptive": sorted(m.descriptive)}
            for m, q, bad in zip(messages, after_queries, after.bad, strict=True) if bad
        ],
    }  # fmt: skip


def report(result: dict[str, Any]) -> str:
    def line(r: dict[str, Any]) -> str:
        low, high = r["bad_rate_ci95"] or (float("nan"), float("nan"))
        return (
            f"{r['name']}: {r['bad']}/{r['messages']} = {r['bad_rate']:.1%} "
            f"(95% CI {low:.1%}–{high:.1%}); descriptive words in the query "
            f"{r['descriptive_in_query']}/{r['descriptive_labelled']} = {r['recall_in_query']:.1%}, "
            f"of those the describer was asked about {r['descriptive_in_query']}/"
            f"{r['descriptive_candidates']} = {r['recall_of_candidates']:.1%}"
        )

    fm, fb = result["after_cv_fold_mean"], result["before_fold_mean"]
    out = [
        f"Messages that leave a query with no descriptive word ({result['annotations']}, "
        f"{result['k']}-fold CV grouped by dialogue, seed {result['seed']}; talk counts from "
        f"{result['talk_counts']['file']}, each message's own dialogue left out):",
        "  " + line(result["before"]),
        "  " + line(result["after_cv"]),
        f"  mean over folds: before {fb['bad_rate']:.1%} "
        f"(95% t interval {fb['ci95'][0]:.1%}–{fb['ci95'][1]:.1%}),"
        f" after {fm['bad_rate']:.1%} ({fm['ci95'][0]:.1%}–{fm['ci95'][1]:.1%})",
        "  thresholds per fold: "
        + "; ".join(
            f"{f['thresholds']['describe']:+.1f}/{f['thresholds']['evidence']:g}/{f['thresholds']['evaluative']:g}/"
            f"{'u' if f['thresholds']['unknown'] else '-'}/{f['thresholds']['smoothing']:g}"
            for f in result["folds"]
        ),
        f"  chosen on all messages: {result['chosen_on_all']}",
        "  " + line(result["in_sample_with_chosen_on_all"]),
        f"  shipped {result['shipped']['thresholds']}: " + line(result["shipped"]),
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_file", type=Path, help="ReDial's train_data.jsonl (the talk's counts)")
    parser.add_argument("--annotations", type=Path, default=ANNOTATIONS)
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=BUDGET)
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--examples", action="store_true", help="print the held-out failures")
    args = parser.parse_args(argv)
    if "valid" in args.train_file.name:
        parser.error("the talk's counts come from the training dialogues only")
    result = evaluate(args.train_file, args.annotations, args.folds, args.seed, args.budget)
    print(report(result))
    if args.examples:
        for e in result["examples_after"]:
            print(f"  - {e['query']!r} <- {e['text']!r} (labelled: {e['descriptive']})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
