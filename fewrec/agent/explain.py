"""Grounded explanations for the final top items.

Each explanation cites items that are really in the user's history (the "anchors": those the
candidate's sources tie most strongly to it) and names only sources that contributed to the
candidate's fused score (nonzero fusion weight, and the source found the item). Each anchor
carries the source that tied it, and the wording follows that source: "people who watched X
went on to watch Y" only for transition sources, which count what people watched next.
With an instruction-tuned backend the LLM writes the sentence from those facts; with a base
model a template from fewrec/prompts is filled in. `check_explanation` rejects any text that
names a catalog title which is neither an anchor nor the candidate, so an LLM cannot invent
evidence.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from fewrec.data.split import LeaveOneOutSplit
from fewrec.llm.base import LLMBackend, LLMError
from fewrec.prompts.templates import display_title, load_template
from fewrec.retrieval.base import Candidate
from fewrec.retrieval.fusion import COLD_START_SOURCE, Retriever

RECENT = "recent"  # an anchor no source ties to the candidate: just a recent history item
# Which template sentence an anchor gets, by how its source explains itself
# (`SourceConfig.explains`; anything else: the neutral "similar" one).
_TEMPLATE_KEYS = {
    "sequence": "grounded_collaborative",  # "people who watched X went on to watch Y"
    "description": "grounded_content",
    RECENT: "grounded_recent",
}
TIES = ("sequence", "item-item")  # the kinds whose evidence is a tie to history items


class Explanation(BaseModel):
    text: str
    anchors: list[str] = Field(default_factory=list)  # history titles the text cites
    anchor_sources: list[str] = Field(default_factory=list)  # the source behind each anchor
    source: str = ""  # the best-ranked contributing source ("" when none found the item)
    written_by: str = "template"  # "template" or the LLM backend's name


@dataclass(frozen=True)
class Anchor:
    """A history item cited as evidence and the source that ties it most strongly to the
    candidate: an item-item or content source, or RECENT when nothing ties it."""

    item: int
    source: str


def _ties(source: Any, recent: np.ndarray, item: int) -> np.ndarray | None:
    """How strongly each of `recent` leads to `item` in an item-item source (None: not one)."""
    matrix = getattr(source, "matrix", None)
    if matrix is not None:  # dense, or sparse item neighbours (a column of them)
        column = matrix[recent, item]
        column = column.toarray() if hasattr(column, "toarray") else column
        return np.asarray(column, dtype=np.float64).ravel()
    item_start = getattr(source, "item_start", None)
    if item_start is None:
        return None
    # TimedTransition keeps its (first item, next item) groups sorted by first item instead of a
    # matrix. An explanation has no reference time, so the pairs count undecayed: they still
    # show that the step exists.
    out = np.zeros(len(recent))
    for row, first in enumerate(recent):
        span = slice(int(item_start[first]), int(item_start[first + 1]))
        hit = source.group_target[span] == item
        out[row] = float(source.group_weight[span][hit].sum()) * float(source.row_scale[first])
    return out


def anchor_items(
    retriever: Retriever,
    history: np.ndarray,
    item: int,
    n: int = 2,
    sources: Collection[str] | None = None,
) -> list[Anchor]:
    """The history items most tied to `item` by the item-item sources with a nonzero fusion
    weight (restricted to `sources` when given), each with the source that ties it most; else
    by content similarity; else the most recent items."""
    history = np.asarray(history, dtype=np.int64)
    if len(history) == 0:
        return []
    recent = history[-50:]

    def allowed(name: str) -> bool:
        wanted = sources is None or name in sources
        return wanted and name in retriever.sources and retriever.weight(name) != 0

    strength = np.zeros(len(recent))
    best = np.zeros(len(recent))  # the largest single-source share of each history item's tie
    best_source = np.full(len(recent), RECENT, dtype=object)
    # Sequence sources first, each kind in fusion order: of equal ties, the first one's source
    # is cited.
    kinds = {name: retriever.explains(name) for name in retriever.sources}
    tying = sorted((n for n in kinds if kinds[n] in TIES), key=lambda n: TIES.index(kinds[n]))
    for name in filter(allowed, tying):
        column = _ties(retriever.sources[name], recent, item)
        peak = 0.0 if column is None else float(np.abs(column).max())
        if column is None or peak <= 0:
            continue
        share = retriever.weight(name) * column / peak  # weighted as in the fusion
        strength += share
        better = share > best
        best[better], best_source[better] = share[better], name
    if strength.any():
        order = np.argsort(-strength, kind="stable")
        chosen = [Anchor(int(recent[i]), str(best_source[i])) for i in order if strength[i] > 0][:n]
        return chosen or [Anchor(int(recent[-1]), RECENT)]
    for name in (n for n in retriever.sources if retriever.explains(n) == "description"):
        if not allowed(name):
            continue
        vectors = retriever.sources[name].vectors  # type: ignore[attr-defined]
        similarity = vectors[recent] @ vectors[item]
        order = np.argsort(-similarity, kind="stable")
        chosen = [Anchor(int(recent[i]), name) for i in order if similarity[i] > 0][:n]
        return chosen or [Anchor(int(recent[-1]), RECENT)]
    return [Anchor(int(i), RECENT) for i in recent[-n:][::-1]]


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

    def contributing(self, candidate: Candidate) -> list[str]:
        """The sources that found the candidate and count in its fused score, best rank first
        (a source with fusion weight 0 is only evidence kept for inspection)."""
        found = candidate.source_ranks
        return sorted(
            (n for n in found if n in self.retriever.sources and self.retriever.weight(n) != 0),
            key=lambda n: found[n],
        )

    def explain(self, history: np.ndarray, candidate: Candidate) -> Explanation:
        item = self.split.item_index(candidate.item_id)
        title = self.titles[item]
        contributing = self.contributing(candidate)
        source = contributing[0] if contributing else ""
        # A cold history is served by popularity (the retriever's fallback).
        if (source and self.retriever.explains(source) == "most-watched") or len(history) == 0:
            text = self.template["grounded_popular"].format(title=f"*{title}*")
            return Explanation(text=text, source=COLD_START_SOURCE)
        anchors = anchor_items(self.retriever, history, item, sources=contributing)
        titles = [self.titles[a.item] for a in anchors]
        groups: dict[str, list[str]] = {}  # template key -> its anchors' titles, strongest first
        for anchor, anchor_title in zip(anchors, titles, strict=True):
            kind = RECENT if anchor.source == RECENT else self.retriever.explains(anchor.source)
            groups.setdefault(_TEMPLATE_KEYS.get(kind, "grounded_similar"), []).append(anchor_title)
        # One sentence per kind of evidence; after the first, "it" instead of the title again.
        sentences = [
            self.template[key].format(title=f"*{title}*" if n == 0 else "it", anchors=_title_list(group))
            for n, (key, group) in enumerate(groups.items())
        ]
        explanation = Explanation(
            text=" ".join(s[0].upper() + s[1:] for s in sentences),
            anchors=titles,
            anchor_sources=[a.source for a in anchors],
            source=source,
        )
        if self.instruct and self.backend is not None:
            prompt = self.template["instruct"].format(
                title=title,
                anchors="; ".join(titles),
                sources=", ".join(contributing) or "the combined scores, no single source",
            )
            try:
                written = self.backend.generate(prompt, max_tokens=60)
            except LLMError:
                return explanation
            if written and check_explanation(written, [*titles, title], self.titles):
                return explanation.model_copy(update={"text": written, "written_by": self.backend.name})
        return explanation
