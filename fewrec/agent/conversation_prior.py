"""What human film clerks suggest in real conversations: a prior the chat mixes into its ranking.

Fitted on training dialogues only (ReDial's train split, Li et al., NeurIPS 2018, CC BY 4.0;
see `fewrec/fit/build_prior.py` for the command that writes the bundled file). It holds two
kinds of counts over catalog items:
- `suggested`: how often recommenders proposed each film as something new;
- `after`: for each film mentioned in a dialogue, the films recommenders proposed after it.

The chat scores a conversation's films with it: the average over the films mentioned so far
of "what was suggested after this film" (each film's counts as shares), plus a little of how
often each film is suggested at all. A conversation that names no film still gets the films
people suggest most.

Counts from a few hundred dialogues are thin: most films a new conversation names were never
counted, and a film counted once has one follower. `PriorForm` shrinks each film's followers
toward a back-off (Bayesian pseudo-counts): the films suggested at all, mixed with the catalog's
own recent popularity (`background`: MovieLens ratings in the last years of its data, no
dialogue in it), so a film never counted still scores, by the back-off alone. Its strengths
are chosen by cross-validation over the training dialogues (`build_prior --fit`); the default
form (no shrinkage) is the plain average above.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

BUNDLED_PRIOR = Path(__file__).resolve().parent.parent / "data" / "bundled" / "redial_prior.json"


class PriorForm(BaseModel):
    """How the counts become scores; the defaults give the plain average of shares."""

    # Pseudo-counts of the back-off added to each mentioned film's followers: p(j | m) =
    # (count(m → j) + smoothing · backoff(j)) / (count(m) + smoothing).
    smoothing: float = Field(default=0.0, ge=0.0)
    # The back-off: (1 − background_weight) · share of all suggestions + background_weight ·
    # share of recent catalog ratings.
    background_weight: float = Field(default=0.0, ge=0.0, le=1.0)
    # A mentioned film with no counts adds the back-off to the average (True) or is left out.
    unknown_backoff: bool = False
    chosen_by: str = ""  # how the values were chosen (the fitting's record)


class ConversationPrior(BaseModel):
    """Suggestion counts learnt from training dialogues, keyed by catalog item id (as text)."""

    catalog: str  # the dataset whose item ids these are; another catalog cannot use them
    source: str  # where the counts come from, with its licence
    command: str  # how the file was made
    dialogues: int
    suggested: dict[str, int] = Field(default_factory=dict)
    after: dict[str, dict[str, int]] = Field(default_factory=dict)
    # Recent ratings per catalog item (the catalog's interactions only, never a dialogue).
    background: dict[str, float] = Field(default_factory=dict)
    background_note: str = ""
    form: PriorForm = Field(default_factory=PriorForm)


def _shares(values: dict[str, float] | dict[str, int], index_of: dict[str, int], n_items: int) -> np.ndarray:
    out = np.zeros(n_items)
    for key, value in values.items():
        if key in index_of:
            out[index_of[key]] = value
    total = out.sum()
    return out / total if total > 0 else out


class PriorScorer:
    """A `ConversationPrior` over one split's item indices: a score per item for the films a
    conversation has mentioned."""

    def __init__(self, prior: ConversationPrior, index_of: dict[str, int], n_items: int) -> None:
        self.n_items = n_items
        self.form = prior.form
        self.popular = _shares(prior.suggested, index_of, n_items)
        recent = _shares(prior.background, index_of, n_items)
        weight = self.form.background_weight if recent.any() else 0.0
        self.backoff = (1.0 - weight) * self.popular + weight * recent
        # Each mentioned film's followers as shares of its count plus the pseudo-counts: a film
        # talked about often does not outweigh one talked about once, and one counted once
        # leans on the back-off.
        alpha = self.form.smoothing
        self.after: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
        for key, followers in prior.after.items():
            pairs = [(index_of[k], c) for k, c in followers.items() if k in index_of]
            if key in index_of and pairs:
                items, counts = (np.array(x) for x in zip(*pairs, strict=True))
                total = counts.sum() + alpha
                self.after[index_of[key]] = (items, counts / total, alpha / total)

    def scores(self, mentioned: list[int], popularity_share: float) -> np.ndarray:
        """Per item: the mean over the mentioned films of their followers' shares (shrunk
        toward the back-off by the form), plus `popularity_share` times each film's share of
        all suggestions (scaled to the same top)."""
        known = [self.after[m] for m in mentioned if m in self.after]
        unknown = sum(m not in self.after for m in mentioned) if self.form.unknown_backoff else 0
        counted = len(known) + unknown
        out = np.zeros(self.n_items)
        backoff_share = float(unknown)
        for items, shares, rest in known:
            out[items] += shares
            backoff_share += rest
        if counted:
            out = (out + backoff_share * self.backoff) / counted
        elif self.form.unknown_backoff:
            out = self.backoff.copy()  # no film named yet: what is suggested, and watched, now
        scored = counted > 0 or self.form.unknown_backoff
        top = self.popular.max()
        if top > 0 and popularity_share > 0:
            out += popularity_share * self.popular / top * (out.max() if scored else 1.0)
        out[mentioned] = 0.0  # a film already in the conversation is not a suggestion
        return out

    def ranking(self, mentioned: list[int], popularity_share: float, k: int) -> list[int]:
        """The prior alone: its first `k` item indices, the mentioned ones out, only items it
        scores (the reference the evaluations set beside the chat)."""
        scores = self.scores(mentioned, popularity_share)
        scores[mentioned] = -1.0
        top = np.argpartition(-scores, k)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        return [int(i) for i in top if scores[i] > 0]


@functools.cache
def load_prior(path: Path = BUNDLED_PRIOR) -> ConversationPrior | None:
    """The prior in a file, or None when there is none (the chat then ranks without it)."""
    if not Path(path).is_file():
        return None
    return ConversationPrior.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))


__all__ = ["BUNDLED_PRIOR", "ConversationPrior", "PriorForm", "PriorScorer", "load_prior"]
