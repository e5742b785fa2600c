"""Builds the chat's polarity classifier (`fewrec/agent/polarity.py`) from training dialogues,
and measures it against the hand-written rules by cross-validation over those dialogues.

    python -m fewrec.eval.build_polarity ../shared/datasets/redial/train_data.jsonl \
        fewrec/data/bundled/redial_polarity.json

Every film a seeker names in a ReDial dialogue is one labelled example per message that names
it: the clause around it (`mention_clause`) and the rules' reading of it, against the seeker's
own answer afterwards (liked / disliked; "did not say" is left out). The dislike threshold and
the like threshold are chosen by `--folds`-fold cross-validation over dialogues (grouped, so no
dialogue is on both sides), the way the conversation evaluation scores the chat: the place of
each film after its last mention by the seeker. The final weights are then fitted on every
training dialogue. Only ever from training dialogues: `valid_data.jsonl` is what the
conversation evaluation reports on. `--cross-validate-only` prints the table and writes nothing.
"""

from __future__ import annotations

import argparse
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fewrec.agent.polarity import PolarityWeights, decide, features, mention_clause
from fewrec.agent.understand import APOSTROPHES, MessageReader, clean_message, resolve_same
from fewrec.data.models import Catalog
from fewrec.eval.conversations import MENTION, Dialogue, read_dialogues

SOURCE = (
    "ReDial (Li et al., 'Towards Deep Conversational Recommendations', NeurIPS 2018), "
    "CC BY 4.0: weights fitted on the seekers' own labels"
)
REGULARISATION = (0.1, 0.3, 1.0, 3.0)  # scikit-learn's C, chosen by cross-validation
DISLIKE_ABOVE = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)  # 1.0: never turn a liked reading into disliked
LIKE_BELOW = (0.0, 0.05, 0.1, 0.2, 0.3)  # 0.0: never turn a disliked reading into liked
PLACES = {"dislike": "disliked", "avoid": "nothing like", "seen": "seen / not again"}  # else liked


@dataclass
class Mention:
    """One film named in one seeker message, as the reader linked it."""

    dialogue: int  # position in the file
    key: str  # the film's key in the dialogue
    clause: str  # `mention_clause`: what the classifier reads
    rule: str  # the rules' sentiment
    liked: int  # the seeker's label: 0 disliked, 1 liked


def shown_with_spans(dialogue: Dialogue, text: str) -> tuple[str, list[tuple[str, int, int]]]:
    """The message as the chat receives it (`@<key>` written as its title and year, cleaned as
    `clean_message` does), and where each film key sits in it."""
    out, spans, at = "", [], 0
    for found in MENTION.finditer(text):
        out += _cleaned(text[at : found.start()])
        title = dialogue.films.get(found.group(1))
        if title is None:
            out += found.group(0)
        else:
            spans.append((found.group(1), len(out), len(out) + len(title)))
            out += title
        at = found.end()
    out += _cleaned(text[at:])
    lead = len(out) - len(out.lstrip())
    return out.strip(), [(k, s - lead, e - lead) for k, s, e in spans]


def _cleaned(piece: str) -> str:
    piece = unicodedata.normalize("NFKC", piece)
    piece = "".join(ch if ch.isprintable() or ch in "\n\t" else " " for ch in piece)
    return re.sub(r"[ \t]+", " ", piece)


def labelled_mentions(dialogues: list[Dialogue], reader: MessageReader, limit: int) -> list[Mention]:
    """Every labelled (liked or disliked) film the seekers named, once per message naming it,
    where the reader found a title at its place."""
    out: list[Mention] = []
    for position, dialogue in enumerate(dialogues):
        previous: str | None = None  # the last feeling read, as the chat keeps it
        for turn in dialogue.turns:
            if turn.role != "seeker" or not turn.films:
                continue
            text, spans = shown_with_spans(dialogue, turn.text)
            text = text.translate(APOSTROPHES)  # as `MessageReader.read` reads it: offsets stay
            if clean_message(text, limit)[0] != text:
                continue  # cleaned differently or cut: the offsets would not hold
            read = [(s, rows, resolve_same(r, previous)) for s, rows, r in reader.rule_feelings(text)]
            previous = read[-1][2] if read else previous
            links = [span for span, _rows, _rule in read]
            for key, start, end in spans:
                label = dialogue.labels.get(key)
                if label is None or label.liked not in (0, 1):
                    continue
                hit = next(((s, r) for s, rows, r in read if rows and s[0] < end and start < s[1]), None)
                if hit is not None:
                    clause = mention_clause(text, hit[0], links)
                    out.append(Mention(position, key, clause, hit[1], int(label.liked)))
    return out


def reading_figures(mentions: list[Mention], sentiments: list[str]) -> dict[str, float | int]:
    """The conversation evaluation's two reading figures over these mentions: each film's place
    is its last mention's sentiment."""
    last: dict[tuple[int, str], tuple[int, str]] = {}
    for mention, sentiment in zip(mentions, sentiments, strict=True):
        last[(mention.dialogue, mention.key)] = (mention.liked, PLACES.get(sentiment, "liked"))
    liked = [place for label, place in last.values() if label == 1]
    disliked = [place for label, place in last.values() if label == 0]
    return {
        "liked": len(liked),
        "liked_kept": sum(p == "liked" for p in liked) / max(len(liked), 1),
        "disliked": len(disliked),
        "disliked_not_liked": sum(p != "liked" for p in disliked) / max(len(disliked), 1),
    }


def fit(x: np.ndarray, y: np.ndarray, regularisation: float) -> tuple[np.ndarray, float]:
    """Logistic regression weights (balanced classes: dislikes are one mention in twenty)."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=regularisation, class_weight="balanced", max_iter=2000)
    model.fit(x, y)
    return model.coef_[0].astype(np.float64), float(model.intercept_[0])


def held_out_probabilities(
    mentions: list[Mention], x: np.ndarray, regularisation: float, folds: int, seed: int
) -> np.ndarray:
    """P(disliked) of every mention from a model fitted on the other folds' dialogues."""
    from sklearn.model_selection import GroupKFold

    y = np.array([m.liked == 0 for m in mentions], dtype=np.int64)
    groups = np.array([m.dialogue for m in mentions])
    out = np.zeros(len(mentions), dtype=np.float64)
    splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(x, y, groups):
        if len(set(y[train].tolist())) < 2:  # a small file: no dislike left to learn from
            out[test] = float(y[train].mean()) if len(train) else 0.0
            continue
        coef, intercept = fit(x[train], y[train], regularisation)
        out[test] = 1.0 / (1.0 + np.exp(-(x[test] @ coef + intercept)))
    return out


def choose(
    mentions: list[Mention], x: np.ndarray, folds: int, seed: int
) -> tuple[list[dict[str, float | int]], dict[str, float | int]]:
    """Every (C, thresholds) by cross-validation, and the chosen one: the most disliked films
    kept from liked while losing no liked film against the rules."""
    rules = [m.rule for m in mentions]
    base = reading_figures(mentions, rules)
    rows: list[dict[str, float | int]] = [{"method": "rules", **base}]
    for regularisation in REGULARISATION:
        p = held_out_probabilities(mentions, x, regularisation, folds, seed)
        for above in DISLIKE_ABOVE:
            for below in LIKE_BELOW:
                read = [decide(r, float(q), above, below) for r, q in zip(rules, p, strict=True)]
                figures = reading_figures(mentions, read)
                changed = sum(a != b for a, b in zip(read, rules, strict=True))
                rows.append({"C": regularisation, "dislike_above": above, "like_below": below,
                             "changed": changed, **figures})  # fmt: skip
    fair = [r for r in rows[1:] if r["liked_kept"] >= base["liked_kept"]] or rows[1:]
    # Ties go to the fewest overrides, then to the most cautious thresholds: where the
    # classifier helps no film, the chat keeps the rules' reading and embeds nothing.
    best = max(
        fair,
        key=lambda r: (
            r["disliked_not_liked"],
            r["liked_kept"],
            -r["changed"],
            r["dislike_above"],
            -r["like_below"],
        ),
    )
    return rows, best


def build(
    path: Path, catalog: Catalog, genres: list[str], embedder, command: str, folds: int, seed: int, limit: int
) -> tuple[PolarityWeights, list[dict[str, float | int]], dict[str, float | int]]:
    dialogues = read_dialogues(path)
    mentions = labelled_mentions(dialogues, MessageReader(catalog, genres), limit)
    x = features(embedder.embed([m.clause for m in mentions]), [m.rule for m in mentions]).astype(np.float64)
    rows, best = choose(mentions, x, folds, seed)
    y = np.array([m.liked == 0 for m in mentions], dtype=np.int64)
    coef, intercept = fit(x, y, float(best["C"]))
    weights = PolarityWeights(
        model=embedder.name, source=f"{SOURCE}; file {Path(path).name}", command=command,
        dialogues=len(dialogues), mentions=len(mentions), regularisation=float(best["C"]),
        coef=[round(float(c), 6) for c in coef], intercept=round(intercept, 6),
        dislike_above=float(best["dislike_above"]), like_below=float(best["like_below"]),
    )  # fmt: skip
    return weights, rows, best


def table(rows: list[dict[str, float | int]], best: dict[str, float | int]) -> str:
    """The rules, the best classifier at each dislike threshold (what it trades), the choice."""
    lines = [
        "| method | liked kept as liked | disliked not taken as liked | mentions changed |",
        "|---|---|---|---|",
    ]
    by_threshold = {
        above: max(
            (r for r in rows[1:] if r["dislike_above"] == above),
            key=lambda r: (r["disliked_not_liked"], r["liked_kept"]),
        )
        for above in DISLIKE_ABOVE
    }
    for row in [rows[0], *by_threshold.values(), {**best, "method": "**chosen**"}]:
        name = str(row.get("method", "")).strip()
        if "C" in row:
            name += f" classifier C={row['C']}, dislike > {row['dislike_above']}, like < {row['like_below']}"
        lines.append(
            f"| {name} | {row['liked_kept']:.1%} of {row['liked']} | "
            f"{row['disliked_not_liked']:.1%} of {row['disliked']} | {row.get('changed', 0)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_file", type=Path, help="training dialogues (ReDial or adapter JSONL)")
    parser.add_argument("out", type=Path, help="the JSON file to write")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cross-validate-only", action="store_true", help="print the table, write nothing")
    args = parser.parse_args(argv)
    from fewrec.data import load_dataset
    from fewrec.retrieval.embeddings import DefaultEmbedder

    split = load_dataset(cache_dir=None)  # the bundled catalog links the titles; nothing cached
    catalog = split.catalog
    genres = sorted({g for gs in catalog.frame["genres"] for g in gs})
    command = f"python -m fewrec.eval.build_polarity {args.train_file.name} {args.out.name}"
    weights, rows, best = build(
        args.train_file, catalog, genres, DefaultEmbedder(), command, args.folds, args.seed, 2000
    )
    print(table(rows, best))
    if not args.cross_validate_only:
        args.out.write_text(weights.model_dump_json(indent=None) + "\n", encoding="utf-8")
        print(f"{args.out}: {weights.mentions} mentions of {weights.dialogues} dialogues")


if __name__ == "__main__":
    main()
