"""Builds the chat's polarity classifier (`fewrec/agent/polarity.py`) from labelled judgements,
and measures it against the hand-written rules by cross-validation grouped by dialogue.

    python -m fewrec.fit.build_polarity ../shared/datasets/redial/train_data.jsonl \
        fewrec/data/bundled/redial_polarity.json \
        --sentences ../shared/datasets/sentiment-sentences \
        --also ../shared/datasets/redial/valid_data.jsonl \
        --written fewrec/fit/annotations/redial_written_dislikes.csv

Two kinds of labelled data:
- review sentences (`--sentences`: every `*_labelled.txt` file there, `sentence<TAB>label`, 1
  positive, 0 negative; Kotzias et al., KDD 2015, CC BY 4.0);
- every film a seeker names in a ReDial dialogue, once per message naming it: the words around
  it (`judgement_window`) against the seeker's own answer afterwards (liked / disliked; "did not
  say" is left out).
Every choice (the regularisation, how much a mention weighs against a sentence, the three
thresholds) is made by `--folds`-fold cross-validation over the train file's and `--also`
files' dialogues, grouped by dialogue, and the sentences. The figures printed for the choice
are nested: each fold is read with the choice made on the other folds' held-out
probabilities. The shipped weights are then fitted on the sentences and the *train file's*
dialogues only (the `--also` dialogues help choose, they are never fitted on).
`--written` (a CSV with file, conversation_id, movie_id, written) marks the dislikes that the
seeker put in words; the disliked-films figure over those is the one the chat is held to.
`--cross-validate-only` prints the table and writes nothing.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fewrec.agent.polarity import (
    LIKED,
    NAMED,
    PolarityWeights,
    decide,
    evaluative,
    features,
    judgement_window,
)
from fewrec.agent.understand import APOSTROPHES, MessageReader, clean_message, resolve_same, taken_as_liked
from fewrec.data.dialogues import MENTION, Dialogue, read_dialogues
from fewrec.data.errors import FewrecError
from fewrec.data.models import Catalog
from fewrec.eval.intervals import grouped_interval

SENTENCE_SOURCE = (
    "Sentiment Labelled Sentences (Kotzias, Denil, de Freitas, Smyth, 'From Group to Individual "
    "Labels using Deep Features', KDD 2015; UCI Machine Learning Repository), CC BY 4.0"
)
DIALOGUE_SOURCE = (
    "ReDial (Li et al., 'Towards Deep Conversational Recommendations', NeurIPS 2018), "
    "CC BY 4.0: the seekers' own labels"
)
REGULARISATION = (0.001, 0.002, 0.005, 0.01)  # scikit-learn's C, on standardised features
MENTION_WEIGHT = (0.1, 0.3, 1.0, 3.0)  # a film mention against a review sentence, in the fit
DISLIKE_ABOVE = (0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0)  # 1.0: never turn a liked reading into disliked
MENTION_ABOVE = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)  # 1.0: no mentions
LIKE_BELOW = (0.0, 0.05, 0.1)  # 0.0: never turn a disliked reading into liked
NAMED_MENTION_ABOVE = (0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 1.0)  # 1.0: such a title is liked unless panned
LIKED_KEPT_FLOOR = 0.975  # the choice keeps at least this share of liked films as liked
# A sentence embedding is unit length over 384 dimensions: a live dimension varies by about
# 0.05, a dead one by rounding noise.
FLAT_FEATURE_STD = 1e-6
MOVIE_FILE = "imdb_labelled.txt"  # the in-domain sentences: their held-out accuracy is reported


class SentenceFileError(FewrecError):
    """A labelled-sentence file with a line that is not `sentence<TAB>0|1`."""


@dataclass
class Mention:
    """One film named in one seeker message, as the reader linked it."""

    dialogue: str  # "file:conversation id": the unit folds and intervals group by
    key: str  # the film's key in the dialogue
    window: str  # `judgement_window`: what the classifier reads
    rule: str  # the rules' sentiment
    liked: int  # the seeker's label: 0 disliked, 1 liked
    written: bool = False  # the seeker's dislike is in words (from `--written`)


@dataclass
class Sentence:
    text: str
    positive: int
    file: str


def read_sentences(folder: Path) -> list[Sentence]:
    """Every labelled sentence in the folder's `*_labelled.txt` files; a line without a 0/1 label
    after its last tab stops with the file and line number."""
    files = sorted(Path(folder).glob("*_labelled.txt"))
    if not files:
        raise SentenceFileError(f"{folder}: no *_labelled.txt file (sentence<TAB>label per line)")
    out: list[Sentence] = []
    for path in files:
        # Lines end at "\n" only: a sentence may hold U+0085, which `splitlines` would cut at.
        for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
            line = line.rstrip("\r")
            if not line.strip():
                continue
            text, tab, label = line.rpartition("\t")
            if not tab or label.strip() not in ("0", "1") or not text.strip():
                raise SentenceFileError(
                    f"{path} line {number}: no label (expected 'sentence<TAB>0' or 'sentence<TAB>1'), "
                    f"got {line[:60]!r}"
                )
            out.append(Sentence(text.strip(), int(label), path.name))
    return out


def read_written(path: Path | None) -> set[tuple[str, str, str]]:
    """(file, conversation id, movie id) of the dislikes the seeker put in words."""
    if path is None:
        return set()
    with Path(path).open(encoding="utf-8", newline="") as handle:
        return {
            (row["file"], row["conversation_id"], row["movie_id"])
            for row in csv.DictReader(handle)
            if row["written"].strip() == "1"
        }


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


def labelled_mentions(
    dialogues: list[Dialogue],
    reader: MessageReader,
    limit: int,
    file: str = "",
    written: frozenset = frozenset(),
) -> list[Mention]:
    """Every labelled (liked or disliked) film the seekers named, once per message naming it,
    where the reader found a title at its place."""
    out: list[Mention] = []
    for position, dialogue in enumerate(dialogues):
        unit = f"{file}:{dialogue.dialogue_id or position}"
        previous: str | None = None  # the last feeling read, as the chat keeps it
        for turn in dialogue.turns:
            if turn.role != "seeker" or not turn.films:
                continue
            text, spans = shown_with_spans(dialogue, turn.text)
            text = text.translate(APOSTROPHES)  # as `MessageReader.read` reads it: offsets stay
            if clean_message(text, limit)[0] != text:
                continue  # cleaned differently or cut: the offsets would not hold
            read = [(s, rows, resolve_same(r, previous)) for s, rows, r in reader.rule_feelings(text)]
            previous = taken_as_liked([read[-1][2]])[0] if read else previous
            links = [span for span, _rows, _rule in read]
            for key, start, end in spans:
                label = dialogue.labels.get(key)
                if label is None or label.liked not in (0, 1):
                    continue
                hit = next(((s, r) for s, rows, r in read if rows and s[0] < end and start < s[1]), None)
                if hit is not None:
                    window = judgement_window(text, hit[0], links)
                    is_written = (file, dialogue.dialogue_id, key) in written
                    out.append(Mention(unit, key, window, hit[1], int(label.liked), is_written))
    return out


def film_places(mentions: list[Mention], readings: list[str]) -> dict[tuple[str, str], tuple[Mention, str]]:
    """Each labelled film's place in the chat: its last mention's reading, as liked,
    disliked (or kept away) or mentioned."""
    last: dict[tuple[str, str], tuple[Mention, str]] = {}
    for mention, reading in zip(mentions, readings, strict=True):
        place = "liked" if reading in LIKED else "mentioned" if reading == "mention" else "not liked"
        last[(mention.dialogue, mention.key)] = (mention, place)
    return last


def reading_figures(mentions: list[Mention], readings: list[str]) -> dict[str, float | int]:
    """The share of liked films kept as liked, and of disliked (and of written disliked) films
    not taken as liked."""
    places = list(film_places(mentions, readings).values())
    liked = [p for m, p in places if m.liked == 1]
    disliked = [p for m, p in places if m.liked == 0]
    written = [p for m, p in places if m.liked == 0 and m.written]
    return {
        "liked": len(liked),
        "liked_kept": sum(p == "liked" for p in liked) / max(len(liked), 1),
        "liked_mentioned": sum(p == "mentioned" for p in liked) / max(len(liked), 1),
        "disliked": len(disliked),
        "disliked_not_liked": sum(p != "liked" for p in disliked) / max(len(disliked), 1),
        "written": len(written),
        "written_not_liked": sum(p != "liked" for p in written) / max(len(written), 1),
    }


def fit(
    x: np.ndarray, y: np.ndarray, regularisation: float, weight: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Logistic regression weights (1: panned), classes balanced (dislikes are one mention in
    twenty), on standardised features (the embedding's and VADER's scales differ); the
    standardisation is folded into the weights, so they read raw features. A feature that
    varies less than FLAT_FEATURE_STD gets no weight: MiniLM has dimensions that hold only
    rounding noise (about 1e-8), and standardised they would read that noise, which differs
    from one processor's kernels to another's, as if it were a signal."""
    from sklearn.linear_model import LogisticRegression

    mean, spread = x.mean(axis=0), x.std(axis=0)
    live = spread > FLAT_FEATURE_STD
    model = LogisticRegression(C=regularisation, class_weight="balanced", max_iter=3000)
    model.fit((x[:, live] - mean[live]) / spread[live], y, sample_weight=weight)
    coef = np.zeros(x.shape[1])
    coef[live] = model.coef_[0].astype(np.float64) / spread[live]
    return coef, float(model.intercept_[0] - coef @ mean)


@dataclass
class Data:
    """Sentences then mentions, as one design matrix, with the folds they fall in."""

    x: np.ndarray
    y: np.ndarray  # 1: panned (a negative sentence, a disliked film)
    is_mention: np.ndarray
    fitted: np.ndarray  # rows the shipped weights may be fitted on (sentences, train dialogues)
    fold: np.ndarray
    sentences: list[Sentence]
    mentions: list[Mention]
    lexicon: np.ndarray  # `evaluative`, per row


def embedded(embedder, texts: list[str], cache: Path | None) -> np.ndarray:
    """The texts' vectors, through an optional .npz cache keyed by text (a rebuild that only
    changes a choice need not embed 4,000 texts again)."""
    known: dict[str, np.ndarray] = {}
    if cache is not None and Path(cache).is_file():
        with np.load(cache, allow_pickle=False) as stored:
            if str(stored["model"]) == embedder.name:
                known = dict(zip(stored["texts"].tolist(), stored["vectors"], strict=True))
    missing = sorted({t for t in texts if t not in known})
    if missing:
        known.update(zip(missing, embedder.embed(missing, progress=True), strict=True))
        if cache is not None:
            keys = sorted(known)
            np.savez(
                cache, model=embedder.name, texts=np.array(keys), vectors=np.stack([known[k] for k in keys])
            )
    return np.stack([known[t] for t in texts])


def assemble(
    sentences: list[Sentence],
    mentions: list[Mention],
    embedder,
    train_units: set[str],
    folds: int,
    seed: int,
    cache: Path | None = None,
) -> Data:
    texts = [s.text for s in sentences] + [m.window for m in mentions]
    x = features(embedded(embedder, texts, cache), texts)
    y = np.array([1 - s.positive for s in sentences] + [int(m.liked == 0) for m in mentions], dtype=np.int64)
    is_mention = np.array([False] * len(sentences) + [True] * len(mentions))
    fitted = np.array([True] * len(sentences) + [m.dialogue in train_units for m in mentions])
    # Folds: a sentence is a group of one; a dialogue's mentions stay together.
    rng = np.random.default_rng(seed)
    units = sorted({m.dialogue for m in mentions})
    unit_fold = dict(zip(units, rng.permutation(len(units)) % folds, strict=True))
    fold = np.concatenate(
        [
            rng.permutation(len(sentences)) % folds,
            np.array([unit_fold[m.dialogue] for m in mentions], dtype=np.int64),
        ]
    )
    lexicon = np.array([evaluative(t) for t in texts])
    return Data(x, y, is_mention, fitted, fold, sentences, mentions, lexicon)


def held_out(data: Data, regularisation: float, mention_weight: float, folds: int) -> np.ndarray:
    """P(panned) of every row, from a model fitted on the other folds."""
    panned = np.zeros(len(data.y))
    weight = np.where(data.is_mention, mention_weight, 1.0)
    for f in range(folds):
        train, test = data.fold != f, data.fold == f
        coef, intercept = fit(data.x[train], data.y[train], regularisation, weight[train])
        panned[test] = _sigmoid(data.x[test] @ coef + intercept)
    return panned


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


Thresholds = tuple[
    float, float, float, float
]  # dislike above, mention above, like below, named mention above
THRESHOLDS: list[Thresholds] = [
    (a, m, b, n)
    for a in DISLIKE_ABOVE
    for m in MENTION_ABOVE
    for b in LIKE_BELOW
    for n in NAMED_MENTION_ABOVE
    if (m <= a or m == 1.0) and (n <= a or n == 1.0)
]


def readings(rules: list[str], p: np.ndarray, judged: np.ndarray, thresholds: Thresholds) -> list[str]:
    return [decide(r, float(q), bool(j), *thresholds) for r, q, j in zip(rules, p, judged, strict=True)]


def sentence_score(panned: np.ndarray, p: np.ndarray, judged: np.ndarray, thresholds: Thresholds) -> float:
    """How the three readings fare on labelled sentences, read as titles named with no feeling
    word: a panned sentence read as disliked and a praising one read as liked count 1, either
    read as a mention counts one half."""
    reading = np.array(readings([NAMED] * len(p), p, judged, thresholds))
    right = np.where(panned == 1, reading == "dislike", reading == "like").astype(float)
    return float(np.mean(right + 0.5 * (reading == "mention")))


@dataclass
class Scored:
    """What the threshold choice reads of some rows: held-out probabilities and labels."""

    mentions: list[Mention]
    panned: np.ndarray
    lexicon: np.ndarray  # `evaluative`
    sentence_panned: np.ndarray  # labels of the sentences
    sentence_p: np.ndarray
    sentence_lexicon: np.ndarray


def choose_thresholds(scored: Scored) -> tuple[Thresholds, dict]:
    """The thresholds that keep the most (written) dislikes from liked while keeping at least
    LIKED_KEPT_FLOOR of liked films; ties go to the reading of the labelled sentences (a pan
    read as a pan rather than a mention), then to the most cautious."""
    best, best_key, best_figures = THRESHOLDS[-1], None, {}
    rules = [m.rule for m in scored.mentions]
    for thresholds in THRESHOLDS:
        figures = reading_figures(scored.mentions, readings(rules, scored.panned, scored.lexicon, thresholds))
        floor_met = figures["liked_kept"] >= LIKED_KEPT_FLOOR
        key = (
            floor_met,
            figures["written_not_liked"] if floor_met else figures["liked_kept"],
            figures["disliked_not_liked"],
            sentence_score(scored.sentence_panned, scored.sentence_p, scored.sentence_lexicon, thresholds),
            figures["liked_kept"],
            thresholds[0],
            thresholds[1],
            -thresholds[2],
            thresholds[3],
        )
        if best_key is None or key > best_key:
            best, best_key, best_figures = thresholds, key, figures
    return best, best_figures


@dataclass
class Choice:
    regularisation: float
    mention_weight: float
    thresholds: Thresholds


def choose(data: Data, probabilities: dict[tuple[float, float], np.ndarray], rows: np.ndarray) -> Choice:
    """(C, mention weight) by held-out log loss over `rows`, then the thresholds on them."""

    def balanced_loss(q: np.ndarray, y: np.ndarray) -> float:
        q = np.clip(q, 1e-9, 1 - 1e-9)
        return float(
            sum(-np.mean(np.log(np.where(y == c, q, 1 - q)[y == c])) for c in (0, 1) if (y == c).any())
        )

    def loss(p: np.ndarray) -> float:
        # sentences and mentions count alike, each with its classes balanced, as the fit is
        return sum(
            balanced_loss(p[rows & kind], data.y[rows & kind])
            for kind in (data.is_mention, ~data.is_mention)
            if (rows & kind).any()
        )

    regularisation, weight = min(probabilities, key=lambda k: loss(probabilities[k]))
    panned = probabilities[(regularisation, weight)]
    mention_rows = np.flatnonzero(rows & data.is_mention)
    sentence_rows = np.flatnonzero(rows & ~data.is_mention)
    offset = len(data.sentences)
    scored = Scored(
        [data.mentions[i - offset] for i in mention_rows], panned[mention_rows], data.lexicon[mention_rows],
        data.y[sentence_rows], panned[sentence_rows], data.lexicon[sentence_rows],
    )  # fmt: skip
    thresholds, _ = choose_thresholds(scored)
    return Choice(regularisation, weight, thresholds)


def cross_validated(data: Data, folds: int, seed: int) -> tuple[dict[str, tuple[float, ...]], Choice]:
    """Nested figures: each fold read with the choice made on the other folds. Returns each
    figure's value with its 95% interval (a bootstrap over dialogues, or sentences) and the
    choice made on all folds."""
    probabilities = {(c, w): held_out(data, c, w, folds) for c in REGULARISATION for w in MENTION_WEIGHT}
    offset = len(data.sentences)
    rule_read = taken_as_liked([m.rule for m in data.mentions])
    model_read = list(rule_read)
    sentence_correct = np.zeros(offset)
    for f in range(folds):
        choice = choose(data, probabilities, data.fold != f)
        panned = probabilities[(choice.regularisation, choice.mention_weight)]
        for i in np.flatnonzero(data.fold == f):
            if i < offset:
                sentence_correct[i] = float((panned[i] > 0.5) == bool(data.y[i]))
            else:
                m = data.mentions[i - offset]
                model_read[i - offset] = decide(
                    m.rule, float(panned[i]), bool(data.lexicon[i]), *choice.thresholds
                )
    movie = np.array([s.file == MOVIE_FILE for s in data.sentences])
    figures: dict[str, tuple[float, ...]] = {
        "movie_sentence_accuracy": _with_interval(sentence_correct[movie], np.flatnonzero(movie)),
        "sentence_accuracy": _with_interval(sentence_correct, np.arange(offset)),
    }
    for name, read in (("rules", rule_read), ("model", model_read)):
        for figure, (values, groups) in _film_values(data.mentions, read).items():
            figures[f"{name}_{figure}"] = _with_interval(values, groups)
    return figures, choose(data, probabilities, np.ones(len(data.y), dtype=bool))


def _film_values(mentions: list[Mention], read: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per labelled film, 1/0 for each figure, with its dialogue as group."""
    places = film_places(mentions, read)
    out: dict[str, tuple[list[float], list[str]]] = {
        "liked_kept": ([], []), "disliked_not_liked": ([], []), "written_not_liked": ([], [])
    }  # fmt: skip
    for (unit, _key), (m, place) in places.items():
        if m.liked == 1:
            out["liked_kept"][0].append(float(place == "liked"))
            out["liked_kept"][1].append(unit)
        else:
            out["disliked_not_liked"][0].append(float(place != "liked"))
            out["disliked_not_liked"][1].append(unit)
            if m.written:
                out["written_not_liked"][0].append(float(place != "liked"))
                out["written_not_liked"][1].append(unit)
    return {k: (np.array(v), np.array(g)) for k, (v, g) in out.items()}


def _with_interval(values: np.ndarray, groups: np.ndarray) -> tuple[float, ...]:
    if len(values) == 0:
        return (float("nan"), float("nan"), float("nan"), 0)
    interval = grouped_interval(np.asarray(values, dtype=np.float64), np.asarray(groups), seed=0)
    low, high = interval if interval is not None else (float("nan"), float("nan"))
    return (float(np.mean(values)), low, high, len(values))


def table(figures: dict[str, tuple[float, ...]], choice: Choice) -> str:
    def cell(name: str) -> str:
        mean, low, high, n = figures[name]
        return f"{mean:.1%} ({low:.1%}–{high:.1%}, n={int(n)})"

    lines = [
        "| figure (cross-validated, nested) | rules alone | rules + model |",
        "|---|---|---|",
        f"| movie-review sentences, accuracy | – | {cell('movie_sentence_accuracy')} |",
        f"| all review sentences, accuracy | – | {cell('sentence_accuracy')} |",
    ]
    for figure, label in (
        ("liked_kept", "seekers' liked films kept as liked"),
        ("disliked_not_liked", "seekers' disliked films not taken as liked"),
        ("written_not_liked", "… whose dislike is written"),
    ):
        lines.append(f"| {label} | {cell('rules_' + figure)} | {cell('model_' + figure)} |")
    a, m, b, n = choice.thresholds
    lines.append(
        f"\nChosen on all folds: C={choice.regularisation}, mention weight {choice.mention_weight}, "
        f"disliked above {a}; a mention above {n} for a title with no feeling word, above {m} for "
        f"one read as liked with a judgement word; a rule's dislike read as liked below {b}."
    )
    return "\n".join(lines)


def build(
    train_file: Path,
    also: list[Path],
    sentence_folder: Path,
    written_file: Path | None,
    catalog: Catalog,
    genres: list[str],
    embedder,
    command: str,
    folds: int,
    seed: int,
    limit: int = 2000,
    cache: Path | None = None,
) -> tuple[PolarityWeights, dict[str, tuple[float, ...]], Choice]:
    sentences = read_sentences(sentence_folder)
    written = frozenset(read_written(written_file))
    reader = MessageReader(catalog, genres)
    mentions: list[Mention] = []
    train_units: set[str] = set()
    dialogues = 0
    for path in [train_file, *also]:
        found = read_dialogues(path)
        batch = labelled_mentions(found, reader, limit, Path(path).name, written)
        if path == train_file:
            dialogues = len(found)
            train_units = {m.dialogue for m in batch}
        mentions += batch
    data = assemble(sentences, mentions, embedder, train_units, folds, seed, cache)
    figures, choice = cross_validated(data, folds, seed)
    weight = np.where(data.is_mention, choice.mention_weight, 1.0)
    rows = data.fitted
    coef, intercept = fit(data.x[rows], data.y[rows], choice.regularisation, weight[rows])
    a, m, b, n = choice.thresholds
    weights = PolarityWeights(
        model=embedder.name,
        source=f"{SENTENCE_SOURCE}; {DIALOGUE_SOURCE}, file {Path(train_file).name}",
        command=command, sentences=len(sentences), dialogues=dialogues,
        mentions=int((data.is_mention & rows).sum()), regularisation=choice.regularisation,
        coef=[round(float(c), 6) for c in coef], intercept=round(intercept, 6),
        dislike_above=a, mention_above=m, like_below=b,
        named_mention_above=n,
    )  # fmt: skip
    return weights, figures, choice


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_file", type=Path, help="training dialogues (ReDial or adapter JSONL)")
    parser.add_argument("out", type=Path, help="the JSON file to write")
    parser.add_argument("--sentences", type=Path, required=True, help="folder of *_labelled.txt files")
    parser.add_argument("--also", type=Path, nargs="*", default=[], help="dialogues for choosing only")
    parser.add_argument("--written", type=Path, default=None, help="CSV of written dislikes")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cross-validate-only", action="store_true", help="print the table, write nothing")
    parser.add_argument("--embeddings-cache", type=Path, default=None, help=".npz file of the texts' vectors")
    args = parser.parse_args(argv)
    from fewrec.data import load_dataset
    from fewrec.retrieval.embeddings import DefaultEmbedder

    split = load_dataset(cache_dir=None)  # the bundled catalog links the titles; nothing cached
    catalog = split.catalog
    genres = catalog.genre_names
    command = (
        f"python -m fewrec.fit.build_polarity {args.train_file.name} {args.out.name} "
        f"--sentences {args.sentences.name}"
        + (f" --also {' '.join(p.name for p in args.also)}" if args.also else "")
        + (f" --written {args.written.name}" if args.written else "")
        + f" --folds {args.folds} --seed {args.seed}"
    )
    try:
        weights, figures, choice = build(
            args.train_file, args.also, args.sentences, args.written, catalog, genres,
            DefaultEmbedder(), command, args.folds, args.seed, cache=args.embeddings_cache,
        )  # fmt: skip
    except FewrecError as exc:
        sys.exit(f"build_polarity: {exc}")
    print(table(figures, choice))
    if not args.cross_validate_only:
        args.out.write_text(weights.model_dump_json(indent=None) + "\n", encoding="utf-8")
        print(
            f"{args.out}: {weights.sentences} sentences, "
            f"{weights.mentions} mentions of {weights.dialogues} dialogues"
        )


if __name__ == "__main__":
    main()
