"""LLM reranking of retrieval candidates with few-shot prompts, then fusion with retrieval.

Two scoring modes (RerankSettings.mode):
- likelihood (base models): log P(title | few-shot prompt) − log P(title | content-free prompt);
  the prompt is evaluated once and each candidate costs only its own tokens; the calibration
  term depends on the item alone and is cached. The scored text of each item is the shortest
  form of its title that no other catalog item shares (`scored_titles`), built once.
- choice (instruction-tuned models): candidates labelled A, B, …; log-probabilities of the
  letters as the next token, optionally averaged over several candidate orders.

Any backend failure falls back to the retrieval order and says so; it never raises.
"""

from __future__ import annotations

import re
import string
import threading
import time
from collections import Counter
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from fewrec.config import RerankSettings
from fewrec.data.split import LeaveOneOutSplit
from fewrec.llm.base import LLMBackend, LLMError
from fewrec.prompts.demos import Demonstration
from fewrec.prompts.templates import display_title, load_template

LABELS = string.ascii_uppercase
CONTINUATIONS_PER_CALL = 32
DEMO_OPTIONS = 4  # choice-mode demonstrations: the true next item among this many options


class LLMScores(BaseModel):
    """The LLM's opinion of each candidate (same order as given), or why there is none."""

    scores: list[float] = Field(default_factory=list)
    prompt_tokens: int = 0
    seconds: float = 0.0
    fallback: str | None = None


_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")


def short_title(title: str, words: int) -> str:
    """'The Matrix (1999)' -> 'The Matrix'; at most `words` words."""
    bare = _YEAR.sub("", title).strip() or title
    return " ".join(bare.split()[: max(words, 1)])


def _title_forms(title: str, words: int) -> list[str]:
    """The forms of one (display) title, shortest first: its first `words` words, one more word
    at a time up to the whole title without the year, then the whole title with its year."""
    match = _YEAR.search(title)
    bare = title[: match.start()].strip() if match else title
    tokens = bare.split() or title.split()
    forms = [" ".join(tokens[:n]) for n in range(min(words, len(tokens)), len(tokens) + 1)]
    if match:
        forms.append(f"{' '.join(tokens)} ({match.group(1)})")
    return forms


def scored_titles(titles: Sequence[str], item_ids: Sequence[object], words: int) -> list[str]:
    """The text scored for each item in likelihood mode: the shortest form of its title (see
    `_title_forms`; 'Matrix, The' read as 'The Matrix') that no other item's forms contain, so
    that distinct items never get the same likelihood. Exact duplicates (same title and year)
    get their item id appended.

    Counting every form of every title in one dict makes a chosen form unique by construction:
    had another item chosen the same text, that text would be one of both items' forms.
    """
    forms = [_title_forms(display_title(str(t)), max(words, 1)) for t in titles]
    counts = Counter(form for item_forms in forms for form in dict.fromkeys(item_forms))
    chosen: list[str | None] = [next((f for f in fs if counts[f] == 1), None) for fs in forms]
    # Items with no unique form: their longest form, unless another item has that text too.
    fallback = Counter(fs[-1] for fs, c in zip(forms, chosen, strict=True) if c is None)
    taken = {c for c in chosen if c is not None}
    out = []
    for item_forms, text, item_id in zip(forms, chosen, item_ids, strict=True):
        if text is None:
            last = item_forms[-1]
            text = last if fallback[last] == 1 and last not in taken else f"{last} #{item_id}"
        out.append(text)
    # A title that itself reads like "X #12" could still meet an appended id; ids settle it.
    seen = Counter(out)
    return [f"{t} #{i}" if seen[t] > 1 else t for t, i in zip(out, item_ids, strict=True)]


def zscore(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if finite.sum() < 2:
        return np.zeros_like(values)
    filled = np.where(finite, values, values[finite].min() - 1.0)  # missing ranks below present
    spread = filled.std()
    return (filled - filled.mean()) / spread if spread > 0 else np.zeros_like(values)


def fuse(llm: np.ndarray, retrieval: np.ndarray, alpha: float) -> np.ndarray:
    """final = alpha · z(LLM) + (1 − alpha) · z(retrieval), over one user's candidates."""
    return alpha * zscore(llm) + (1.0 - alpha) * zscore(retrieval)


class LLMReranker:
    def __init__(self, split: LeaveOneOutSplit, backend: LLMBackend, settings: RerankSettings) -> None:
        self.split = split
        self.backend = backend
        self.settings = settings
        self.template = load_template(settings.mode, settings.prompt_version)
        self._titles = [display_title(str(t)) for t in split.catalog.frame["title"]]
        # Scored texts for the whole catalog at once: uniqueness is a property of the catalog.
        self._scored = scored_titles(self._titles, split.item_ids.tolist(), settings.title_words)
        self._calibration: dict[int, float] = {}
        self._calibration_lock = threading.Lock()

    # ------------------------------------------------------------------ prompts
    def _history(self, items: np.ndarray | tuple[int, ...], limit: int) -> str:
        items = list(items)[-limit:] if limit > 0 else []
        return self.template["separator"].join(self._titles[i] for i in items) or "N/A"

    def likelihood_prompt(self, history: np.ndarray, demos: list[Demonstration]) -> str:
        t = self.template
        blocks = [
            t["demonstration"].format(
                history=self._history(d.history, self.settings.demo_history_items),
                next=self._titles[d.next_item],
            )
            for d in demos
        ]
        return (
            t["header"]
            + "".join(blocks)
            + t["query"].format(history=self._history(history, self.settings.history_items))
        )

    def choice_prompt(self, history: np.ndarray, candidates: list[int], demos: list[Demonstration]) -> str:
        t = self.template
        blocks = []
        rng = np.random.default_rng(len(history))
        for d in demos:
            # The true next item among a few random catalog items, at a random letter, so that
            # the examples teach choosing rather than "always A".
            pool = np.setdiff1d(np.arange(len(self._titles)), [d.next_item, *d.history])
            size = min(DEMO_OPTIONS - 1, len(pool))
            options = [d.next_item, *(int(x) for x in rng.choice(pool, size=size, replace=False))]
            rng.shuffle(options)
            listing = "\n".join(
                t["candidate"].format(label=LABELS[i], title=self._titles[c]) for i, c in enumerate(options)
            )
            blocks.append(
                t["demonstration"].format(
                    history=self._history(d.history, self.settings.demo_history_items),
                    candidates=listing,
                    answer=LABELS[options.index(d.next_item)],
                )
            )
        listing = "\n".join(
            t["candidate"].format(label=LABELS[i], title=self._titles[c]) for i, c in enumerate(candidates)
        )
        query = t["query"].format(
            history=self._history(history, self.settings.history_items), candidates=listing
        )
        return t["header"] + "".join(blocks) + query

    def continuation(self, item: int) -> str:
        """The text scored for `item`, the same in the user's prompt and in calibration."""
        return self.template["continuation"].format(title=self._titles[item], short_title=self._scored[item])

    # ------------------------------------------------------------------ scoring
    def calibration(self, items: list[int]) -> np.ndarray:
        """log P(title | content-free prompt), computed once per item."""
        with self._calibration_lock:
            missing = [i for i in dict.fromkeys(items) if i not in self._calibration]
            step = 32
            for start in range(0, len(missing), step):
                part = missing[start : start + step]
                values = self.backend.score_continuations(
                    self.template["content_free"], [self.continuation(i) for i in part]
                )
                self._calibration.update(zip(part, values, strict=True))
            return np.array([self._calibration[i] for i in items])

    def score(
        self,
        history: np.ndarray,
        candidates: list[int],
        demos: list[Demonstration] | None = None,
        seed: int = 0,
    ) -> LLMScores:
        """The LLM's scores for `candidates` (item indices); never raises on backend failure."""
        started = time.perf_counter()
        demos = demos or []
        try:
            if self.settings.mode == "likelihood":
                prompt = self.likelihood_prompt(history, demos)
                continuations = [self.continuation(c) for c in candidates]
                step = CONTINUATIONS_PER_CALL  # a backend may cap them per call; the prompt stays cached
                raw = np.array(
                    [
                        value
                        for start in range(0, len(continuations), step)
                        for value in self.backend.score_continuations(
                            prompt, continuations[start : start + step]
                        )
                    ]
                )
                if self.settings.calibrate:
                    raw = raw - self.calibration(candidates)
                tokens = self.backend.count_tokens(prompt)
            else:
                raw, tokens = self._score_choices(history, candidates, demos, seed)
        except LLMError as exc:
            return LLMScores(
                fallback=f"LLM unavailable, retrieval order kept: {exc}",
                seconds=time.perf_counter() - started,
            )
        if not np.isfinite(raw).any():
            return LLMScores(
                fallback="the LLM named no candidate, retrieval order kept",
                seconds=time.perf_counter() - started,
            )
        return LLMScores(
            scores=[float(x) for x in raw], prompt_tokens=tokens, seconds=time.perf_counter() - started
        )

    def _score_choices(
        self, history: np.ndarray, candidates: list[int], demos: list[Demonstration], seed: int
    ) -> tuple[np.ndarray, int]:
        if len(candidates) > len(LABELS):
            raise LLMError(f"choice mode labels at most {len(LABELS)} candidates")
        rng = np.random.default_rng(seed)
        total = np.zeros(len(candidates))
        tokens = 0
        permutations = max(1, self.settings.permutations)
        for p in range(permutations):
            order = np.arange(len(candidates)) if p == 0 else rng.permutation(len(candidates))
            shown = [candidates[i] for i in order]
            prompt = self.choice_prompt(history, shown, demos)
            labels = [f" {LABELS[i]}" for i in range(len(shown))]
            logprobs = self.backend.score_choices(prompt, labels)
            values = np.array([logprobs.get(label, float("-inf")) for label in labels])
            # A letter outside a server's top-k ranks below every letter that is present.
            floor = values[np.isfinite(values)].min() - 1.0 if np.isfinite(values).any() else -1e9
            total[order] += np.where(np.isfinite(values), values, floor)
            tokens += self.backend.count_tokens(prompt)
        return total / permutations, tokens // permutations
