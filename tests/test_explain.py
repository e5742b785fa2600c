"""Grounded explanations: anchors come from the user's real history, an LLM-written sentence
that names anything else is rejected, and every cited item exists."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from conftest import only_sources

from fewrec.agent.explain import Explainer, anchor_items, check_explanation
from fewrec.config import RetrievalSettings
from fewrec.retrieval.base import Candidate
from fewrec.retrieval.fusion import Retriever


@pytest.fixture(scope="module")
def retriever(bundled_split) -> Retriever:
    settings = RetrievalSettings(
        sources=only_sources("transition", "ease", transition={"weight": 1.0}, ease={"weight": 0.5})
    )
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
        anchors = [a.item for a in anchor_items(retriever, history, item)]
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
    assert "most watched" in explainer.explain(np.array([], dtype=np.int64), cold).text


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


# ------------------------------------------------------------------ which sources an explanation names


class PromptRecorder(WritingBackend):
    """Writes nothing usable, but keeps the prompts it was given."""

    def __init__(self) -> None:
        super().__init__("")
        self.prompts: list[str] = []

    def generate(self, prompt: str, max_tokens: int = 64, stop: Sequence[str] = ("\n",)) -> str:
        self.prompts.append(prompt)
        return ""


@pytest.fixture(scope="module")
def with_silent_sources(bundled_split) -> Retriever:
    """Transition and EASE count; item-kNN and time-popularity are fitted but weigh 0."""
    settings = RetrievalSettings(
        sources=only_sources(
            "transition",
            "ease",
            "itemknn",
            "timepop",
            transition={"weight": 1.0},
            ease={"weight": 0.5},
            itemknn={"weight": 0.0},
            timepop={"weight": 0.0},
        ),
    )
    return Retriever(bundled_split, settings).fit("all")


def test_a_weight_zero_source_is_never_named(bundled_split, with_silent_sources):
    retriever = with_silent_sources
    history = bundled_split.history(7, "all")
    # An item found only by item-kNN (weight 0), the one it ties most strongly to the history.
    knn = retriever.sources["itemknn"].matrix
    ties = np.asarray(knn[history[-50:]].sum(axis=0)).ravel()
    ties[history] = -np.inf
    item = int(np.argmax(ties))
    candidate = Candidate(
        item_id=bundled_split.item_ids[item].item(), title="", score=0.1, rank=1,
        sources={"itemknn": 0.9}, source_ranks={"itemknn": 1},
    )  # fmt: skip
    recorder = PromptRecorder()
    explanation = Explainer(bundled_split, retriever, recorder, instruct=True).explain(history, candidate)
    assert explanation.source == "" and "itemknn" not in explanation.anchor_sources
    assert set(explanation.anchor_sources) == {"recent"} and "went on to watch" not in explanation.text
    assert recorder.prompts and "itemknn" not in recorder.prompts[0]
    # Real candidates: sources of weight 0 are kept as evidence, never named.
    explainer = Explainer(bundled_split, retriever, PromptRecorder(), instruct=True)
    silent_best = 0
    for user in range(0, 60, 3):
        history = bundled_split.history(user, "all")
        for candidate in retriever.candidates(history, 10):
            best = min(candidate.source_ranks, key=candidate.source_ranks.get)
            silent_best += best in ("itemknn", "timepop")
            explanation = explainer.explain(history, candidate)
            assert explanation.source in ("transition", "ease")
            assert set(explanation.anchor_sources) <= {"transition", "ease", "recent"}
            found_by = explainer.backend.prompts[-1].split("found by:")[1]
            assert "itemknn" not in found_by and "timepop" not in found_by
    assert silent_best > 0  # the case under test happened: a weight-0 source ranked it best


def test_transition_wording_only_for_transition_anchors(bundled_split, retriever):
    explainer = Explainer(bundled_split, retriever)
    kinds = set()
    for user in range(0, 40, 2):
        history = bundled_split.history(user, "all")
        for candidate in retriever.candidates(history, 5):
            explanation = explainer.explain(history, candidate)
            kinds |= set(explanation.anchor_sources)
            by_transition = [
                a for a, s in zip(explanation.anchors, explanation.anchor_sources, strict=True)
                if s == "transition"
            ]  # fmt: skip
            assert ("went on to watch" in explanation.text) == bool(by_transition)
            if by_transition:  # that sentence cites exactly the transition anchors
                sentence = explanation.text.split(" went on to watch ")[0]
                assert [a for a in explanation.anchors if f"*{a}*" in sentence] == by_transition
    assert {"transition", "ease"} <= kinds  # both wordings, and mixed explanations, were checked


def test_ease_anchors_get_neutral_wording(bundled_split):
    settings = RetrievalSettings(
        sources=only_sources("transition", "ease", transition={"weight": 0.0}, ease={"weight": 1.0})
    )
    retriever = Retriever(bundled_split, settings).fit("all")
    explainer = Explainer(bundled_split, retriever)
    for user in (3, 7, 11):
        history = bundled_split.history(user, "all")
        for candidate in retriever.candidates(history, 5):
            explanation = explainer.explain(history, candidate)
            assert explanation.source == "ease" and set(explanation.anchor_sources) == {"ease"}
            assert "went on to watch" not in explanation.text and " is similar to " in explanation.text


def test_timed_transition_anchors_are_real_transitions(bundled_split):
    settings = RetrievalSettings(
        sources=only_sources(
            "timed_transition", "transition", timed_transition={"weight": 1.0}, transition={"weight": 0.0}
        )
    )
    retriever = Retriever(bundled_split, settings).fit("all")
    pairs = retriever.sources["transition"].matrix  # the same pairs, here as a matrix (weight 0)
    explainer = Explainer(bundled_split, retriever)
    history = bundled_split.history(5, "all")
    for candidate in retriever.candidates(history, 5):
        item = bundled_split.item_index(candidate.item_id)
        anchors = anchor_items(retriever, history, item)
        assert anchors and all(a.source == "timed_transition" for a in anchors)
        assert all(pairs[a.item, item] > 0 for a in anchors)
        explanation = explainer.explain(history, candidate)
        assert explanation.source == "timed_transition" and "went on to watch" in explanation.text
