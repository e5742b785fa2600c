"""Grounded explanations for the final top items.

Each explanation cites items that are really in the user's history (the "anchors": those the
candidate's sources tie most strongly to it) and the source that found it. With an
instruction-tuned backend the LLM writes the sentence from those facts; with a base model a
template from fewrec/prompts is filled in. `check_explanation` rejects any text that names a
catalog title which is neither an anchor nor the candidate, so an LLM cannot invent evidence.
"""

from __future__ import annotations

import re

import numpy as np
from pydantic import BaseModel, Field

from fewrec.data.split import LeaveOneOutSplit
from fewrec.llm.base import LLMBackend, LLMError
from fewrec.prompts.templates import display_title, load_template
from fewrec.retrieval.base import Candidate
from fewrec.retrieval.fusion import Retriever


class Explanation(BaseModel):
    text: str
    anchors: list[str] = Field(default_factory=list)  # history titles the text cites
    source: str = ""
    written_by: str = "template"  # "template" or the LLM backend's name


def anchor_items(retriever: Retriever, history: np.ndarray, item: int, n: int = 2) -> list[int]:
    """The history items most tied to `item` by the item-item sources (transition, EASE, kNN),
    or by content similarity; the most recent items when no source ties them."""
    history = np.asarray(history, dtype=np.int64)
    if len(history) == 0:
        return []
    recent = history[-50:]
    strength = np.zeros(len(recent))
    for name in ("transition", "ease", "itemknn"):
        source = retriever.sources.get(name)
        matrix = getattr(source, "matrix", None)
        if matrix is not None:
            column = np.asarray(matrix[recent, item], dtype=np.float64)
            peak = np.abs(column).max()
            if peak > 0:
                strength += column / peak
    content = retriever.sources.get("content")
    if not strength.any() and content is not None:
        strength = content.vectors[recent] @ content.vectors[item]
    if not strength.any():
        return [int(i) for i in recent[-n:][::-1]]
    order = np.argsort(-strength, kind="stable")
    chosen = [int(recent[i]) for i in order if strength[i] > 0][:n]
    return chosen or [int(recent[-1])]


def _title_list(titles: list[str]) -> str:
    quoted = [f"*{t}*" for t in titles]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def check_explanation(text: str, allowed_titles: list[str], catalog_titles: list[str]) -> bool:
    """False when the text names a catalog title that is not allowed, or quotes something
    (between * or quotes) that is neither an allowed title nor a catalog title."""
    lowered = text.lower()
    allowed = {t.lower() for t in allowed_titles}
    for title in catalog_titles:
        bare = re.sub(r"\s*\(\d{4}\)$", "", title).lower()
        if len(bare) >= 6 and bare in lowered and not any(bare in a for a in allowed):
            return False
    for quoted in re.findall(r"[*\"“]([^*\"”]{2,120})[*\"”]", text):
        q = quoted.strip().lower()
        if not any(q in a or a in q for a in allowed):
            return False
    return True


class Explainer:
    def __init__(
        self, split: LeaveOneOutSplit, retriever: Retriever, backend: LLMBackend | None = None,
        instruct: bool = False, version: str = "v1",
    ) -> None:  # fmt: skip
        self.split = split
        self.retriever = retriever
        self.backend = backend
        self.instruct = instruct
        self.template = load_template("explain", version)
        self.titles = [display_title(str(t)) for t in split.catalog.frame["title"]]

    def explain(self, history: np.ndarray, candidate: Candidate) -> Explanation:
        item = self.split.item_index(candidate.item_id)
        title = self.titles[item]
        source = min(candidate.source_ranks, key=candidate.source_ranks.get) if candidate.source_ranks else ""
        if source in ("popularity", "") or len(history) == 0:
            text = self.template["grounded_popular"].format(title=f"*{title}*")
            return Explanation(text=text, source=source or "popularity")
        anchors = [self.titles[i] for i in anchor_items(self.retriever, history, item)]
        key = "grounded_content" if source == "content" else "grounded_collaborative"
        text = self.template[key].format(title=f"*{title}*", anchors=_title_list(anchors))
        explanation = Explanation(text=text[0].upper() + text[1:], anchors=anchors, source=source)
        if self.instruct and self.backend is not None:
            prompt = self.template["instruct"].format(title=title, anchors="; ".join(anchors), sources=source)
            try:
                written = self.backend.generate(prompt, max_tokens=60)
            except LLMError:
                return explanation
            if written and check_explanation(written, [*anchors, title], self.titles):
                return Explanation(text=written, anchors=anchors, source=source, written_by=self.backend.name)
        return explanation
