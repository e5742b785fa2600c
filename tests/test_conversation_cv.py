"""The cross-validated conversation evaluation and the prior that generalises: folds grouped by
dialogue and seeded, each fold's prior counting only the other folds, the prior's shrinkage
toward its back-off (a film never counted still scores), the form chosen on training folds,
and a small cross-validated run through the real chat (tests/data/redial_sample.jsonl: 7
ReDial dialogues, CC BY 4.0, see tests/data/README.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import only_sources

from fewrec.agent.chat import ChatAgent
from fewrec.agent.conversation_prior import ConversationPrior, PriorForm, PriorScorer
from fewrec.agent.pipeline import Pipeline
from fewrec.agent.recommender import Recommender
from fewrec.config import RetrievalSettings, Settings
from fewrec.data.dialogues import Dialogue, TitleMatcher, dialogue_folds, read_dialogues
from fewrec.data.errors import FewrecError
from fewrec.eval import conversation_cv as cvm
from fewrec.eval import conversation_eval as ce
from fewrec.eval import intervals as iv
from fewrec.fit import build_prior as bp

SAMPLE = Path(__file__).resolve().parent / "data" / "redial_sample.jsonl"


@pytest.fixture(scope="module")
def sample() -> list[Dialogue]:
    return read_dialogues(SAMPLE)


@pytest.fixture(scope="module")
def cheap_recommender(bundled_split, fewrec_data_dir) -> Recommender:
    retrieval = RetrievalSettings(
        sources=only_sources("transition", "ease", transition={"weight": 1.0}, ease={"weight": 1.0})
    )
    settings = Settings(data_dir=fewrec_data_dir, retrieval=retrieval)
    settings.rerank.enabled = False
    return Recommender(pipeline=Pipeline(settings, bundled_split, use_content=False))


def many(sample: list[Dialogue], copies: int) -> list[Dialogue]:
    """The sample's dialogues under `copies` × 7 distinct ids (a fold needs several)."""
    return [
        d.model_copy(update={"dialogue_id": f"{d.dialogue_id}-{n}"}) for n in range(copies) for d in sample
    ]


def index_of(split) -> dict[str, int]:
    return {str(i): n for n, i in enumerate(split.item_ids.tolist())}


# --------------------------------------------------------------------------- folds
def test_folds_group_by_dialogue_are_balanced_and_seeded(sample):
    dialogues = many(sample, 3)
    twice = [*dialogues, dialogues[4].model_copy()]  # the same dialogue id twice
    folds = dialogue_folds(twice, 5, seed=1)
    assert folds == dialogue_folds(twice, 5, seed=1)  # deterministic
    assert folds != dialogue_folds(twice, 5, seed=2)
    assert folds[4] == folds[-1]  # one dialogue, one fold
    by_id: dict[str, set[int]] = {}
    for dialogue, fold in zip(twice, folds, strict=True):
        by_id.setdefault(dialogue.dialogue_id, set()).add(fold)
    assert all(len(f) == 1 for f in by_id.values())  # no dialogue in two folds
    sizes = np.bincount([next(iter(f)) for f in by_id.values()], minlength=5)
    assert sizes.max() - sizes.min() <= 1 and set(folds) == set(range(5))
    with pytest.raises(FewrecError):
        dialogue_folds(sample, 1, 0)
    with pytest.raises(FewrecError):
        dialogue_folds(sample[:3], 5, 0)


def test_a_folds_prior_never_counts_its_own_dialogues(sample, bundled_split):
    dialogues = many(sample, 2)
    matcher = TitleMatcher(bundled_split.catalog)
    folds = dialogue_folds(dialogues, 3, seed=0)
    everything, _ = bp.count_suggestions(dialogues, matcher)
    for fold in range(3):
        held = [d for d, f in zip(dialogues, folds, strict=True) if f == fold]
        train = [d for d, f in zip(dialogues, folds, strict=True) if f != fold]
        prior = bp.make_prior(train, matcher, bundled_split.name, "test")
        own, _ = bp.count_suggestions(held, matcher)
        assert prior.dialogues == len(train) and not {d.dialogue_id for d in held} & {
            d.dialogue_id for d in train
        }
        # The fold's counts plus the other folds' are the whole: nothing of its own is in the prior.
        for film, count in everything.items():
            assert prior.suggested.get(film, 0) == count - own.get(film, 0)


# --------------------------------------------------------------------------- the prior's form
def hand_prior(split, form: PriorForm) -> tuple[ConversationPrior, list[str]]:
    ids = [str(i) for i in split.item_ids.tolist()[:6]]
    prior = ConversationPrior(
        catalog=split.name, source="test", command="test", dialogues=2,
        suggested={ids[1]: 3, ids[2]: 1}, after={ids[0]: {ids[1]: 1}},
        background={ids[3]: 10.0, ids[1]: 10.0}, form=form,
    )  # fmt: skip
    return prior, ids


def test_shrinkage_backs_off_for_a_film_never_counted(bundled_split):
    where = index_of(bundled_split)
    plain, ids = hand_prior(bundled_split, PriorForm())
    scorer = PriorScorer(plain, where, bundled_split.n_items)
    never = where[ids[5]]  # named in the conversation, never counted
    assert not scorer.scores([never], 0.0).any()  # the plain form has nothing to say
    form = PriorForm(smoothing=2.0, background_weight=0.5, unknown_backoff=True)
    shrunk = PriorScorer(plain.model_copy(update={"form": form}), where, bundled_split.n_items)
    scores = shrunk.scores([never], 0.0)
    # The back-off alone: suggested shares (3/4, 1/4) and recent shares (1/2, 1/2) half and half.
    assert scores[where[ids[1]]] == pytest.approx(0.5 * 0.75 + 0.5 * 0.5)
    assert scores[where[ids[3]]] == pytest.approx(0.5 * 0.5) and scores[where[ids[2]]] == pytest.approx(0.125)
    assert scores[never] == 0.0
    # A film counted once is pulled toward the back-off by the pseudo-counts: (1 + 2·b) / (1 + 2).
    counted = shrunk.scores([where[ids[0]]], 0.0)
    assert counted[where[ids[1]]] == pytest.approx((1 + 2 * 0.625) / 3)
    assert counted[where[ids[3]]] == pytest.approx(2 * 0.25 / 3)  # never suggested after it
    assert counted.sum() == pytest.approx(1.0)  # still a distribution over films
    assert shrunk.ranking([where[ids[0]]], 0.0, 2) == [where[ids[1]], where[ids[3]]]


def test_the_default_form_is_the_plain_average(bundled_split):
    where = index_of(bundled_split)
    plain, ids = hand_prior(bundled_split, PriorForm())
    scores = PriorScorer(plain, where, bundled_split.n_items).scores([where[ids[0]], where[ids[5]]], 0.0)
    assert scores[where[ids[1]]] == 1.0 and np.count_nonzero(scores) == 1  # the uncounted film left out


def test_the_form_is_chosen_on_the_dialogues_given(sample, bundled_split):
    dialogues = many(sample, 2)
    matcher = TitleMatcher(bundled_split.catalog)
    background = bp.recent_popularity(bundled_split)
    assert background[0] and "ratings" in background[1]
    form, means = bp.fit_form(dialogues, matcher, bundled_split, background, 0.5, folds=3)
    assert len(means) == len(bp.candidate_forms()) and "3-fold" in form.chosen_by
    assert means[bp.form_label(form)] == max(means.values())


# --------------------------------------------------------------------------- the run
def test_cross_validation_replays_each_fold_with_the_other_folds_prior(sample, cheap_recommender):
    dialogues = many(sample, 2)
    seen: list[int] = []

    def spy(train, matcher, recommender, fit, seed):
        seen.append(len(train))
        return bp.fold_prior_scorer(train, matcher, recommender, fit, seed)

    cv = cvm.cross_validate(
        [SAMPLE], dialogues, cheap_recommender, prior_for=spy, folds=3, seed=0, fit=False, without_prior=True
    )
    folds = dialogue_folds(dialogues, 3, 0)
    assert seen == [len(dialogues) - folds.count(n) for n in range(3)]
    assert [f.dialogues for f in cv.per_fold] == [folds.count(n) for n in range(3)]
    assert all(f.prior_dialogues + f.dialogues == len(dialogues) for f in cv.per_fold)
    methods = cvm.cv_methods(cv)
    assert {"chat", "chat_whole", "prior", "chat_no_prior"} <= set(methods)
    for method in methods:
        values = [f.recall[method]["recall@10"] for f in cv.per_fold]
        low, high = cv.intervals[method]["recall@10"]
        assert cv.mean[method]["recall@10"] == pytest.approx(np.mean(values))
        assert low <= cv.mean[method]["recall@10"] <= high
    assert cv.complete
    report = ce.ConversationsReport.model_construct(cross_validation=cv)
    text = "\n".join(ce.cv_lines(report))
    assert "3 folds" in text and "t interval" in text


def test_t_interval():
    low, high = iv.t_interval([0.1, 0.2, 0.3])
    # mean 0.2, sd 0.1, t(0.975, 2) = 4.303: 0.2 ± 4.303 · 0.1 / √3
    assert (low, high) == pytest.approx((0.2 - 0.24843, 0.2 + 0.24843), abs=1e-4)
    assert iv.t_interval([0.5]) == (0.5, 0.5)


def test_the_chat_takes_a_given_prior(cheap_recommender, bundled_split):
    plain, _ = hand_prior(bundled_split, PriorForm())
    scorer = PriorScorer(plain, index_of(bundled_split), bundled_split.n_items)
    assert ChatAgent(cheap_recommender, prior=scorer).prior is scorer


def test_the_priors_ranking_breaks_ties_by_item_on_any_machine(bundled_split):
    """Films with the same score are ranked by item index (a stable sort), so which of them
    make the first k never depends on the CPU's partitioning code."""
    where = index_of(bundled_split)
    ids = [str(i) for i in bundled_split.item_ids.tolist()[:40]]
    tied = {ids[n]: 1 for n in range(30, 0, -1)}  # 30 films suggested once each, listed backwards
    prior = ConversationPrior(
        catalog=bundled_split.name, source="test", command="test", dialogues=1, suggested=tied, after={}
    )
    scorer = PriorScorer(prior, where, bundled_split.n_items)
    first = scorer.ranking([], 1.0, 5)
    assert first == sorted(where[ids[n]] for n in range(1, 31))[:5]
