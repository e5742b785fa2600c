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

`PriorMix` is the pipeline stage built on it: with its config (`PriorConfig`: the weight, how
it fades with named titles, how deep it reaches) it scores a request's conversation and mixes
that into the ranking (`RecRequest.conversation` switches it on).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from fewrec.config import ChatSettings
from fewrec.data.split import LeaveOneOutSplit
from fewrec.retrieval.base import Candidate

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
        # A stable sort, not argpartition: which of several tied films make the cut must not
        # depend on the machine (numpy partitions with SIMD code that differs between CPUs).
        top = np.argsort(-scores, kind="stable")[:k]
        return [int(i) for i in top if scores[i] > 0]


@functools.cache
def load_prior(path: Path = BUNDLED_PRIOR) -> ConversationPrior | None:
    """The prior in a file, or None when there is none (the chat then ranks without it)."""
    if not Path(path).is_file():
        return None
    return ConversationPrior.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))


PRIOR_SOURCE = "conversations"  # the evidence name of the prior's score on a candidate


class PriorConfig(BaseModel):
    """The prior stage's knobs. Weight, fade and popularity are `chat.prior_*` in the settings
    (chosen there, see `ChatSettings`); the depths are the stage's own."""

    weight: float = Field(default=0.5, ge=0.0, le=1.0)
    fade: float = Field(default=2.0, ge=0.0)
    fade_after: int = Field(default=2, ge=0)
    popularity: float = Field(default=0.5, ge=0.0)
    pool: int = Field(default=200, ge=1)  # items the prior may bring in, and the ranking depth it reorders
    said: int = Field(default=50, ge=1)  # an explanation cites the prior for items among its first this many

    @classmethod
    def from_chat(cls, chat: ChatSettings) -> PriorConfig:
        return cls(
            weight=chat.prior_weight, fade=chat.prior_fade, fade_after=chat.prior_fade_after,
            popularity=chat.prior_popularity,
        )  # fmt: skip


class PriorMix:
    """The conversation prior as a stage of the pipeline: scores for the films a conversation
    named, mixed with the ranking so far. Its config is read from `chat` at each request, so a
    changed `chat.prior_weight` (an evaluation without the prior) takes effect at once."""

    def __init__(self, split: LeaveOneOutSplit, scorer: PriorScorer, chat: ChatSettings) -> None:
        self.split = split
        self.scorer = scorer
        self.chat = chat

    @property
    def config(self) -> PriorConfig:
        return PriorConfig.from_chat(self.chat)

    def weight(self, known: int) -> float:
        """The prior's weight for a person of whom `known` films are known (a known user's
        rated films before the fitted targets, plus the liked titles named), falling with those
        beyond the first `fade_after`: the prior stands in for a taste the chat does not know."""
        config = self.config
        beyond = max(0, known - config.fade_after)
        return config.weight / (1.0 + config.fade * beyond)

    def scores(self, mentioned: list[int]) -> np.ndarray:
        """What clerks suggested after the films named (item indices, in the order named)."""
        return self.scorer.scores(mentioned, self.config.popularity)

    def mix(
        self, candidates: list[Candidate], history: np.ndarray, depth: int, allowed: np.ndarray | None,
        prior: np.ndarray, weight: float,
    ) -> list[Candidate]:  # fmt: skip
        """The ranking so far and a prior, mixed by `weight` on scores scaled to 0–1. Items
        only the prior scores join below the ranking's last on its side, and only where
        allowed (filters, exclusions) and not in the history."""
        split = self.split
        found = list(candidates)
        listed = {split.item_index(c.item_id) for c in found} | set(history.tolist())
        scored = np.flatnonzero(prior > 0)
        if allowed is not None:
            scored = scored[allowed[scored]]
        for item in scored[np.argsort(-prior[scored], kind="stable")][: self.config.pool]:
            if int(item) not in listed:
                item_id = split.item_ids[item].item()
                title = split.catalog.title(item_id)
                found.append(Candidate(item_id=item_id, title=title, score=0.0, rank=len(found) + 1))
        if not found:  # filters and exclusions leave nothing on either side
            return []
        # The ranking's order, not its raw scores: fused scores of different requests (with or
        # without a query) are on different scales. Items only the prior found get 0 here.
        taste_unit = np.zeros(len(found))
        taste_unit[: len(candidates)] = 1.0 - np.arange(len(candidates)) / max(len(candidates), 1)
        values = np.array([prior[split.item_index(c.item_id)] for c in found])
        top = values.max()
        final = (1.0 - weight) * taste_unit + weight * (values / top if top > 0 else values)
        order = np.argsort(-final, kind="stable")[:depth]
        out = []
        for rank, i in enumerate(order, start=1):
            sources, ranks = dict(found[i].sources), dict(found[i].source_ranks)
            if values[i] > 0:
                sources[PRIOR_SOURCE] = float(values[i])
                ranks[PRIOR_SOURCE] = int(np.sum(values > values[i])) + 1
            update = {"rank": rank, "score": float(final[i]), "sources": sources, "source_ranks": ranks}
            out.append(found[i].model_copy(update=update))
        return out


def prior_mix(
    split: LeaveOneOutSplit, chat: ChatSettings, scorer: PriorScorer | None = None
) -> PriorMix | None:
    """The prior stage over `split`: with `scorer`, or the one `chat.prior_file` (default: the
    bundled file) holds; None when there is no file or it counts another catalog's items."""
    if scorer is None:
        prior = load_prior(chat.prior_file or BUNDLED_PRIOR)
        if prior is None or prior.catalog != split.name:
            return None
        index_of = {str(item): i for i, item in enumerate(split.item_ids.tolist())}
        scorer = PriorScorer(prior, index_of, split.n_items)
    return PriorMix(split, scorer, chat)


__all__ = [
    "BUNDLED_PRIOR", "PRIOR_SOURCE", "ConversationPrior", "PriorConfig", "PriorForm", "PriorMix",
    "PriorScorer", "load_prior", "prior_mix",
]  # fmt: skip
