"""The texts the likelihood reranker scores: distinct catalog items never share one (items
that shared a text would get the same LLM score), and calibration scores the same texts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from fewrec.agent.rerank import LLMReranker, scored_titles, short_title
from fewrec.config import RerankSettings
from fewrec.prompts import display_title, load_template

HAND_MADE = [
    "Harry Potter and the Sorcerer's Stone (2001)",  # the first 4 words collide
    "Harry Potter and the Chamber of Secrets (2002)",
    "Hamlet (1990)",  # the whole title collides; the year tells them apart
    "Hamlet (1996)",
    "Emma (1996)",  # exact duplicates (MovieLens has a few)
    "Emma (1996)",
    "Matrix, The (1999)",  # no collision: stays short, article moved to the front
    "Alien (1979)",
    "Alien Nation (1988)",
]
HAND_MADE_IDS = [11, 12, 21, 22, 31, 32, 41, 51, 52]


class ConstantBackend:
    """Records the continuations it scores; every text gets the same log-likelihood."""

    name = "constant"

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def score_continuations(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        self.calls.append((prompt, list(continuations)))
        return [-1.0] * len(continuations)

    def score_choices(self, prompt: str, labels: Sequence[str]) -> dict[str, float]:
        return {}

    def generate(self, prompt: str, max_tokens: int = 64, stop: Sequence[str] = ("\n",)) -> str:
        return ""


def _shared(texts: list[str]) -> int:
    """How many items have a text that another item has too."""
    counts = Counter(texts)
    return sum(1 for t in texts if counts[t] > 1)


def test_hand_made_catalog_lengthens_then_adds_year_then_id():
    texts = scored_titles(HAND_MADE, HAND_MADE_IDS, 4)
    assert texts == [
        "Harry Potter and the Sorcerer's",
        "Harry Potter and the Chamber",
        "Hamlet (1990)",
        "Hamlet (1996)",
        "Emma (1996) #31",
        "Emma (1996) #32",
        "The Matrix",
        "Alien",
        "Alien Nation",
    ]
    # Fewer words asked for: "Alien" is now a prefix of "Alien Nation", so it takes its year.
    one = scored_titles(HAND_MADE, HAND_MADE_IDS, 1)
    assert one[6:] == ["The", "Alien (1979)", "Alien Nation"]
    assert _shared(one) == 0 and one[:2] == texts[:2]


def test_texts_are_built_once_and_follow_title_words():
    frame = pd.DataFrame({"title": HAND_MADE})
    split = SimpleNamespace(catalog=SimpleNamespace(frame=frame), item_ids=np.array(HAND_MADE_IDS))
    reranker = LLMReranker(split, ConstantBackend(), RerankSettings(title_words=2))  # type: ignore[arg-type]
    texts = [reranker.continuation(i) for i in range(len(HAND_MADE))]
    assert texts[6] == " The Matrix" and texts[2] == " Hamlet (1990)" and _shared(texts) == 0
    assert texts[0] == " Harry Potter and the Sorcerer's"


def test_no_two_bundled_items_share_a_scored_text(bundled_split):
    titles = [display_title(str(t)) for t in bundled_split.catalog.frame["title"]]
    settings = RerankSettings()
    before = _shared([short_title(t, settings.title_words) for t in titles])
    assert before > 200  # what the first-words-only texts did (221 with title_words = 4)
    reranker = LLMReranker(bundled_split, ConstantBackend(), settings)
    texts = [reranker.continuation(i) for i in range(bundled_split.n_items)]
    assert _shared(texts) == 0
    potter = {t: texts[i] for i, t in enumerate(titles) if t.startswith("Harry Potter and the")}
    assert len(potter) >= 2 and len(set(potter.values())) == len(potter)
    assert all(len(text.split()) >= settings.title_words for text in potter.values())
    rings = [texts[i] for i, t in enumerate(titles) if t.startswith("The Lord of the Rings")]
    assert len(rings) >= 2 and len(set(rings)) == len(rings)
    # An item whose first words are already unique keeps them, without the year.
    assert texts[titles.index("The Matrix (1999)")] == " The Matrix"


def test_calibration_scores_the_same_texts_as_the_prompt(bundled_split):
    backend = ConstantBackend()
    reranker = LLMReranker(bundled_split, backend, RerankSettings(k_shot=0))
    titles = [display_title(str(t)) for t in bundled_split.catalog.frame["title"]]
    potter = [i for i, t in enumerate(titles) if t.startswith("Harry Potter and the")][:3]
    result = reranker.score(bundled_split.history(0, "valid"), potter)
    assert result.fallback is None
    content_free = load_template("likelihood")["content_free"]
    prompt_texts = [texts for prompt, texts in backend.calls if prompt != content_free]
    calibration_texts = [texts for prompt, texts in backend.calls if prompt == content_free]
    assert prompt_texts == calibration_texts == [[reranker.continuation(i) for i in potter]]
    assert len(set(prompt_texts[0])) == len(potter)


@pytest.mark.parametrize("words", [1, 2, 4, 8])
def test_any_title_words_gives_unique_texts(bundled_split, words):
    titles = list(bundled_split.catalog.frame["title"])
    texts = scored_titles(titles, bundled_split.item_ids.tolist(), words)
    assert _shared(texts) == 0
    whole = [short_title(display_title(str(t)), 1000) for t in titles]  # every word but the year
    assert all(len(t.split()) >= min(words, len(w.split())) for t, w in zip(texts, whole, strict=True))
