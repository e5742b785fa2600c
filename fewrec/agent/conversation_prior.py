"""What human film clerks suggest in real conversations: a prior the chat mixes into its ranking.

Fitted on training dialogues only (ReDial's train split, Li et al., NeurIPS 2018, CC BY 4.0;
see `fewrec/eval/build_prior.py` for the command that writes the bundled file). It holds two
kinds of counts over catalog items:
- `suggested`: how often recommenders proposed each film as something new;
- `after`: for each film mentioned in a dialogue, the films recommenders proposed after it.

The chat scores a conversation's films with it: the average over the films mentioned so far
of "what was suggested after this film" (each film's counts as shares), plus a little of how
often each film is suggested at all. A conversation that names no film still gets the films
people suggest most.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

BUNDLED_PRIOR = Path(__file__).resolve().parent.parent / "data" / "bundled" / "redial_prior.json"


class ConversationPrior(BaseModel):
    """Suggestion counts learnt from training dialogues, keyed by catalog item id (as text)."""

    catalog: str  # the dataset whose item ids these are; another catalog cannot use them
    source: str  # where the counts come from, with its licence
    command: str  # how the file was made
    dialogues: int
    suggested: dict[str, int] = Field(default_factory=dict)
    after: dict[str, dict[str, int]] = Field(default_factory=dict)


class PriorScorer:
    """A `ConversationPrior` over one split's item indices: a score per item for the films a
    conversation has mentioned."""

    def __init__(self, prior: ConversationPrior, index_of: dict[str, int], n_items: int) -> None:
        self.n_items = n_items
        self.popular = np.zeros(n_items)
        for key, count in prior.suggested.items():
            if key in index_of:
                self.popular[index_of[key]] = count
        total = self.popular.sum()
        self.popular = self.popular / total if total > 0 else self.popular
        # Each mentioned film's followers as shares: a film talked about often does not
        # outweigh one talked about once.
        self.after: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for key, followers in prior.after.items():
            pairs = [(index_of[k], c) for k, c in followers.items() if k in index_of]
            if key in index_of and pairs:
                items, counts = (np.array(x) for x in zip(*pairs, strict=True))
                self.after[index_of[key]] = (items, counts / counts.sum())

    def scores(self, mentioned: list[int], popularity_share: float) -> np.ndarray:
        """Per item: the mean share of the mentioned films' followers, plus `popularity_share`
        times each film's share of all suggestions (scaled to the same top)."""
        known = [self.after[m] for m in mentioned if m in self.after]
        out = np.zeros(self.n_items)
        for items, shares in known:
            out[items] += shares / len(known)
        top = self.popular.max()
        if top > 0 and popularity_share > 0:
            out += popularity_share * self.popular / top * (out.max() if known else 1.0)
        out[mentioned] = 0.0  # a film already in the conversation is not a suggestion
        return out


@functools.cache
def load_prior(path: Path = BUNDLED_PRIOR) -> ConversationPrior | None:
    """The prior in a file, or None when there is none (the chat then ranks without it)."""
    if not Path(path).is_file():
        return None
    return ConversationPrior.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))


__all__ = ["BUNDLED_PRIOR", "ConversationPrior", "PriorScorer", "load_prior"]
