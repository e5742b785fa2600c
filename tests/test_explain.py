"""Grounded explanations: anchors come from the user's real history, an LLM-written sentence
that names anything else is rejected, and every cited item exists."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from fewrec.agent.explain import Explainer, anchor_items, check_explanation
from fewrec.config import RetrievalSettings
from fewrec.retrieval.fusion import Retriever


@pytest.fixture(scope="module")
def retriever(bundled_split) -> Retriever:
    settings = RetrievalSettings(sources=["transition", "ease"], weights={"transition": 1.0, "ease": 0.5})
    return Retriever(bundled_split, settings).fit("all")


class WritingBackend:
    name = "writer"

    def __init__(self, text: str) -> None:
        self.text = text

    def count_tokens(self, text: str) -> int:
        return 1

    def score_choices(self, prompt: str, labels: Sequence[str]) -> dict[str, float]:
        return {}

    def score_continuations(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        return []

    def generate(self, prompt: str, max_tokens: int = 64, stop: Sequence[str] = ("\n",)) -> str:
        return self.text


def test_anchors_are_history_items_tied_to_the_candidate(bundled_split, retriever):
    user = 5
    history = bundled_split.history(user, "all")
    for candidate in retriever.candidates(history, 5):
        item = bundled_split.item_index(candidate.item_id)
        anchors = anchor_items(retriever, history, item)
        assert 1 <= len(anchors) <= 2 and set(anchors) <= set(history.tolist())
        assert item not in anchors
    assert anchor_items(retriever, np.array([], dtype=np.int64), 0) == []


def test_template_explanations_cite_real_history(bundled_split, retriever):
    history = bundled_split.history(7, "all")
    explainer = Explainer(bundled_split, retriever)
    titles = set(explainer.titles[i] for i in history)
    for candidate in retriever.candidates(history, 3):
        explanation = explainer.explain(history, candidate)
        assert explanation.written_by == "template" and explanation.source in ("transition", "ease")
        assert explanation.anchors and set(explanation.anchors) <= titles
        assert all(anchor in explanation.text for anchor in explanation.anchors)
        assert check_explanation(explanation.text, [*explanation.anchors, explanation.text], explainer.titles)
    cold = retriever.candidates(np.array([], dtype=np.int64), 1)[0]
    assert "popular" in explainer.explain(np.array([], dtype=np.int64), cold).text


def test_check_rejects_invented_items(bundled_split, retriever):
    explainer = Explainer(bundled_split, retriever)
    allowed = ["Toy Story (1995)", "Alien (1979)"]
    assert check_explanation("Because you watched *Toy Story*, try *Alien*.", allowed, explainer.titles)
    assert not check_explanation("Because you watched *Jumanji*, try *Alien*.", allowed, explainer.titles)
    assert not check_explanation('Fans of "The Godfather Part IX" love it.', allowed, explainer.titles)
    assert not check_explanation("You liked Pulp Fiction, so try Alien.", allowed, explainer.titles)


def test_llm_sentence_used_only_when_grounded(bundled_split, retriever):
    history = bundled_split.history(11, "all")
    candidate = retriever.candidates(history, 1)[0]
    title = Explainer(bundled_split, retriever).titles[bundled_split.item_index(candidate.item_id)]
    honest = WritingBackend(f"You may enjoy *{title}* after what you watched recently.")
    used = Explainer(bundled_split, retriever, honest, instruct=True).explain(history, candidate)
    assert used.written_by == "writer" and title in used.text
    liar = WritingBackend("You loved *Pulp Fiction (1994)* and *Titanic (1997)*, so watch this.")
    history_titles = {Explainer(bundled_split, retriever).titles[i] for i in history}
    if not {"Pulp Fiction (1994)", "Titanic (1997)"} & history_titles:
        rejected = Explainer(bundled_split, retriever, liar, instruct=True).explain(history, candidate)
        assert rejected.written_by == "template"
