"""Candidate sources as components (fewrec/retrieval/registry.py, components.py): the registry
builds every source exactly as the old hand-written factory did, fusion sums in the same order
to the last bit, old flat keys still load (with one note each), and a new source is one config
class plus one registration."""

from __future__ import annotations

import inspect
import logging
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import only_sources

import fewrec.config_legacy as config_legacy
import fewrec.retrieval.cf as cf
import fewrec.retrieval.components as components
import fewrec.retrieval.registry as registry
import fewrec.retrieval.sequential as sequential
from fewrec.config import RetrievalSettings, Settings, SourceConfig
from fewrec.data.split import LeaveOneOutSplit, leave_one_out
from fewrec.data.synthetic import generate, to_dataset
from fewrec.eval.baselines import BASELINES, baseline_grids, run_baseline
from fewrec.fit.tune import weights_tables, with_setting
from fewrec.retrieval.base import BuildContext, FitData, ScoringContext
from fewrec.retrieval.content import ContentSimilarity
from fewrec.retrieval.fusion import Retriever, make_source, max_normalise
from fewrec.retrieval.sequential import SASRec
from fewrec.state import tuned_key

# What `make_source` in fewrec/retrieval/fusion.py passed to each constructor under the default
# settings before the components (commit 100a1b5), every argument bound by name, defaults applied.
OLD_DEFAULT_ARGUMENTS: dict[str, dict[str, Any]] = {
    "ease": {"l2": 300.0, "half_life": 1.0, "limit": 50, "max_items": 20_000},
    "transition": {
        "window": 5, "decay": 1.0, "half_life": 2.0, "limit": 20, "normalise": 0.75, "backward": 0.25,
    },
    "timed_transition": {
        "tau_days": 100.0, "window": 5, "decay": 1.0, "half_life": 2.0, "limit": 20, "normalise": 0.75,
        "backward": 0.25,
    },
    "itemknn": {"k": 100, "half_life": 10.0, "limit": 50},
    "als": {"factors": 64, "iterations": 15, "regularization": 0.05, "alpha": 1.0, "seed": 0},
    "bpr": {"factors": 64, "iterations": 100, "learning_rate": 0.01, "seed": 0},
    "timepop": {"tau_days": 100.0},
    "popularity": {},
    "content": {"item_vectors": "VECTORS", "half_life": 10.0, "limit": 50},
    "sasrec": {
        "dim": 64, "max_len": 50, "layers": 2, "heads": 1, "dropout": 0.2, "epochs": 32, "batch_size": 128,
        "learning_rate": 2e-3, "negatives": 1000, "seeds": (0,), "threads": 1, "cache_dir": "MODEL_DIR",
        "progress": False, "budget_s": None, "patience": 3, "min_delta": 1e-3, "max_interactions": 1_000_000,
        # The old factory's 0 let the data decide; that is spelled None now (0: the loss, always).
        "notify": "NOTIFY", "validation_users": None,
    },
}  # fmt: skip
OLD_SOURCES = [
    "timed_transition",
    "transition",
    "ease",
    "timepop",
    "itemknn",
    "content",
    "als",
    "bpr",
    "sasrec",
]
OLD_WEIGHTS = {"timed_transition": 1.0, "transition": 0.5, "ease": 0.75, "timepop": 0.0, "itemknn": 0.0,
               "content": 0.75, "als": 0.2, "bpr": 0.2, "sasrec": 0.5}  # fmt: skip
CHEAP = ["timed_transition", "transition", "ease", "timepop", "itemknn", "content", "als", "bpr"]


@pytest.fixture(scope="module")
def split() -> LeaveOneOutSplit:
    return leave_one_out(to_dataset(generate(300, 200, 5000, seed=3)))


@pytest.fixture(scope="module")
def vectors(split) -> np.ndarray:
    return np.random.default_rng(0).random((split.n_items, 16)).astype(np.float32)


@pytest.fixture
def fresh_notes(monkeypatch):
    """Every old key's note may be said again (they are said once per process)."""
    monkeypatch.setattr(config_legacy, "_noted", set())


def _recorded_arguments(monkeypatch, name: str, settings: RetrievalSettings) -> dict[str, Any]:
    """The arguments the registry's build passes to source `name`'s class, bound by name."""
    calls: list[dict[str, Any]] = []

    def recorder(cls: type) -> Any:
        def record(*args: Any, **kwargs: Any) -> Any:
            bound = inspect.signature(cls).bind(*args, **kwargs)
            bound.apply_defaults()
            calls.append(dict(bound.arguments))
            return cls(*args, **kwargs)

        return record

    for cls in (cf.EASE, cf.Transition, cf.TimedTransition, cf.ItemKNN, cf.ALS, cf.BPR, cf.TimePopularity,
                cf.Popularity, ContentSimilarity):  # fmt: skip
        monkeypatch.setattr(components, cls.__name__, recorder(cls))
    monkeypatch.setattr(sequential, "SASRec", recorder(SASRec))
    make_source(name, settings, item_vectors=VECTORS, model_dir=MODEL_DIR, progress=False, notify=NOTIFY)
    assert len(calls) == 1
    return calls[0]


VECTORS = np.eye(3, dtype=np.float32)
MODEL_DIR = Path("/models")


def NOTIFY(line: str) -> None:  # a constant's name: the one sink every build is given
    pass


def _as_old(expected: dict[str, Any]) -> dict[str, Any]:
    stand_ins = {"VECTORS": VECTORS, "MODEL_DIR": MODEL_DIR, "NOTIFY": NOTIFY}
    return {k: stand_ins.get(v, v) if isinstance(v, str) else v for k, v in expected.items()}


@pytest.mark.parametrize("name", list(OLD_DEFAULT_ARGUMENTS))
def test_the_registry_builds_every_source_with_the_old_factorys_arguments(monkeypatch, name):
    got = _recorded_arguments(monkeypatch, name, RetrievalSettings())
    expected = _as_old(OLD_DEFAULT_ARGUMENTS[name])
    assert list(got) == list(expected)
    for key, value in expected.items():
        # The same value and the same type (an int where an int was: 50, not 50.0).
        assert got[key] is value or (type(got[key]) is type(value) and got[key] == value), (name, key)


def test_old_flat_keys_build_what_the_old_factory_built(monkeypatch, fresh_notes):
    old = RetrievalSettings(
        ease_lambda=123.0, profile_items=7, recency_half_life=2.5, transition_window=3, transition_limit=9,
        timed_transition_tau_days=30.0, itemknn_k=11, als_factors=8, sasrec_epochs=4, sasrec_seeds=[1, 2],
        seed=5,
    )  # fmt: skip
    ease = _recorded_arguments(monkeypatch, "ease", old)
    assert (ease["l2"], ease["limit"]) == (123.0, 7)
    assert _recorded_arguments(monkeypatch, "itemknn", old) == {"k": 11, "half_life": 2.5, "limit": 7}
    content = _recorded_arguments(monkeypatch, "content", old)
    assert (content["half_life"], content["limit"]) == (2.5, 7)
    for name in ("transition", "timed_transition"):  # the flat transition keys set both
        assert (_recorded_arguments(monkeypatch, name, old)["window"], old.source(name).limit) == (3, 9)
    assert _recorded_arguments(monkeypatch, "timed_transition", old)["tau_days"] == 30.0
    assert _recorded_arguments(monkeypatch, "als", old) == {
        **OLD_DEFAULT_ARGUMENTS["als"],
        "factors": 8,
        "seed": 5,
    }
    sasrec = _recorded_arguments(monkeypatch, "sasrec", old)
    assert (sasrec["epochs"], sasrec["seeds"]) == (4, (1, 2))


def test_default_sources_weights_and_order_are_the_old_ones():
    settings = RetrievalSettings()
    assert settings.active == OLD_SOURCES
    assert list(settings.weights.items()) == list(OLD_WEIGHTS.items())
    assert not settings.weights_configured
    assert Settings.load(Path(__file__).parent.parent / "configs" / "loo.toml").retrieval == settings


def test_fused_scores_are_bitwise_the_old_weighted_sum(split, vectors):
    """The old fusion, written out: a float32 zero array plus weight × max-normalised scores of
    every source with a non-zero weight, in the old source order."""
    retriever = Retriever(split, RetrievalSettings(), vectors, sources=CHEAP, progress=False).fit("test")
    users = np.arange(split.n_users)
    histories = [split.history(int(u), "test") for u in users]
    batch = retriever.score(histories, retriever.context_for(users, "test"), evidence=True)
    expected = np.zeros((len(users), split.n_items), dtype=np.float32)
    for name in [n for n in OLD_SOURCES if n in CHEAP]:
        if OLD_WEIGHTS[name] != 0.0:
            expected += OLD_WEIGHTS[name] * max_normalise(batch.by_source[name])
    assert batch.fused.dtype == np.float32
    assert np.array_equal(batch.fused.view(np.int32), expected.view(np.int32))


def test_old_flat_keys_load_from_toml_env_and_keywords_with_one_note_each(
    clean_env, monkeypatch, caplog, fresh_notes
):
    path = clean_env / "old.toml"
    path.write_text(
        "[retrieval]\nease_lambda = 100.0\nsources = ['ease', 'transition']\nweights = { ease = 2.0 }\n"
    )
    monkeypatch.setenv("FEWREC_RETRIEVAL__SASREC_VALIDATION_USERS", "10")
    with caplog.at_level(logging.WARNING, logger="fewrec.config"):
        settings = Settings.load(path, retrieval={"transition_window": 2})
        again = Settings.load(path)
    retrieval = settings.retrieval
    assert retrieval.active == ["ease", "transition"]  # in the listed order, the others off
    assert retrieval.weights == {"ease": 2.0, "transition": 0.0}  # unnamed: 0, as the old key meant
    assert retrieval.source("ease").lambda_ == 100.0
    assert retrieval.source("sasrec").validation_users == 10
    assert retrieval.source("transition").window == retrieval.source("timed_transition").window == 2
    assert again.retrieval.source("transition").window == 5
    notes = [r.getMessage() for r in caplog.records]
    assert "retrieval.ease_lambda is now retrieval.sources.ease.lambda (the old key still loads)" in notes
    assert any(
        n.startswith("retrieval.sasrec_validation_users is now retrieval.sources.sasrec.") for n in notes
    )
    assert any("retrieval.weights is now retrieval.sources.NAME.weight" in n for n in notes)
    assert any("retrieval.sources = [...] is now a table per source" in n for n in notes)
    assert len(notes) == len(set(notes)) == 5  # once per key, though loaded twice


def test_env_list_of_sources_still_loads(clean_env, monkeypatch, fresh_notes):
    monkeypatch.setenv("FEWREC_RETRIEVAL__SOURCES", '["transition", "timepop"]')
    monkeypatch.setenv("FEWREC_RETRIEVAL__WEIGHTS", '{"transition": 1.0, "timepop": 0.5}')
    assert Settings.load().retrieval.weights == {"transition": 1.0, "timepop": 0.5}


def test_a_source_is_switched_off_and_a_new_key_wins_over_an_old_one(clean_env, fresh_notes):
    path = clean_env / "fewrec.toml"
    path.write_text("[retrieval]\nease_lambda = 1.0\n[retrieval.sources.ease]\nlambda = 2.0\n"
                    "[retrieval.sources.sasrec]\nenabled = false\n")  # fmt: skip
    retrieval = Settings.load(path).retrieval
    assert retrieval.source("ease").lambda_ == 2.0
    assert retrieval.active == [n for n in OLD_SOURCES if n != "sasrec"]
    assert "sasrec" not in retrieval.weights and retrieval.source("sasrec").weight == 0.5


def test_settings_survive_a_dump_and_reload_in_their_order():
    tables = only_sources("bpr", "ease", "popularity")
    settings = RetrievalSettings(sources=tables).with_source("ease", **{"lambda": 9.0})
    again = RetrievalSettings.model_validate(settings.model_dump(mode="json"))
    assert again == settings and again.active == ["bpr", "ease", "popularity"]
    assert (
        Settings(retrieval=settings).model_dump(mode="json")["retrieval"]["sources"]["ease"]["lambda_"] == 9.0
    )


def test_baseline_grids_come_from_the_components_unchanged():
    assert list(BASELINES) == ["popularity", "item-knn", "ease", "als", "bpr", "markov", "sasrec"]
    ease_grid = [
        {"lambda": lam, "half_life": h} for lam in (100.0, 300.0, 1000.0) for h in (1.0, 3.0, 1000.0)
    ]
    assert BASELINES["ease"] == ("ease", ease_grid)
    assert BASELINES["markov"][0] == "transition" and len(BASELINES["markov"][1]) == 4
    assert BASELINES["sasrec"] == ("sasrec", [{"epochs": 16}, {"epochs": 32}])
    narrower = RetrievalSettings(sources={"ease": {"grid": [{"lambda": 50.0}]}})
    assert baseline_grids(narrower)["ease"] == ("ease", [{"lambda": 50.0}])
    with pytest.raises(ValueError, match="not hyper-parameters"):
        RetrievalSettings(sources={"ease": {"grid": [{"weight": 2.0}]}})


def test_a_baseline_reports_its_point_under_the_published_labels(split):
    narrow = RetrievalSettings(sources={"itemknn": {"grid": [{"k": 5, "half_life": 3.0}]}})
    result = run_baseline("item-knn", split, narrow, "test", split.eval_users("test")[:5])
    assert result.params == {"itemknn_k": 5, "recency_half_life": 3.0}


def test_sweep_keys_and_weights_tables(fresh_notes):
    base = RetrievalSettings()
    assert with_setting(base, "timed_transition.tau_days", "30").source("timed_transition").tau_days == 30.0
    assert with_setting(base, "sources.ease.lambda", 5).source("ease").lambda_ == 5.0
    assert with_setting(base, "transition_window", 2).source("timed_transition").window == 2
    assert with_setting(base, "rrf_k", 10).rrf_k == 10
    with pytest.raises(ValueError, match="unknown"):
        with_setting(base, "ease.lamda", 1)
    text = weights_tables({"ease": 0.5, "als": 0.25})
    assert RetrievalSettings(**tomllib.loads(text)["retrieval"]).weights["als"] == 0.25


def test_the_tuned_key_follows_the_component_configs(clean_env):
    base = Settings(data_dir=clean_env)
    changed = base.model_copy(update={"retrieval": base.retrieval.with_source("ease", **{"lambda": 1.0})})
    reweighted = base.model_copy(update={"retrieval": base.retrieval.with_weights({"ease": 0.1})})
    assert tuned_key(changed) != tuned_key(base)
    assert tuned_key(reweighted) == tuned_key(base)  # weights are what tuning chooses


def test_every_sasrec_setting_that_changes_the_weights_is_in_its_cache_key():
    """A field added to SASRec's config must reach its cache key (or be named here as one that
    does not change the trained weights)."""
    not_in_key = {"max_interactions"}  # decides whether it trains at all, not what it learns
    data = FitData(n_users=1, n_items=3, users=np.zeros(2, int), items=np.arange(2), timestamps=np.arange(2))
    context = BuildContext(progress=False)
    base = components.SASRecConfig()
    for field in set(base.params()) - not_in_key - {"seeds"}:
        value = base.params()[field]
        changed = (value or 0) + 1 if not isinstance(value, bool) else not value
        built = base.with_params(**{field: changed}).build(context)
        assert built._key(data, 0) != base.build(context)._key(data, 0), field


# ------------------------------------------------------------------- a source added in a test
class ItemIndexSource:
    """Scores every item by its index times `boost`: a toy, but a whole candidate source."""

    name = "toy"
    time_aware = False

    def __init__(self, boost: float) -> None:
        self.boost = boost

    def fit(self, data: FitData) -> ItemIndexSource:
        self.n_items = data.n_items
        return self

    def score(self, histories: list[np.ndarray], context: ScoringContext | None = None) -> np.ndarray:
        row = np.arange(self.n_items, dtype=np.float32) * np.float32(self.boost)
        return np.tile(row, (len(histories), 1))


class ItemIndexConfig(SourceConfig):
    weight: float = 0.5
    boost: float = 1.0

    def build(self, context: BuildContext) -> ItemIndexSource:
        return ItemIndexSource(self.boost)


@pytest.fixture
def toy_registered():
    registry.register_source("toy", ItemIndexConfig)
    yield
    registry.unregister_source("toy")


def test_a_source_added_through_the_registry_is_configured_and_fused(clean_env, split, toy_registered):
    path = clean_env / "fewrec.toml"
    path.write_text("[retrieval.sources.toy]\nboost = 2.0\n")
    settings = Settings.load(path).retrieval
    assert settings.active == [*OLD_SOURCES, "toy"]  # present: on, after the defaults
    assert settings.source("toy").boost == 2.0 and settings.weights["toy"] == 0.5  # its default weight
    assert "toy" in registry.source_names()
    by_kwargs = RetrievalSettings(sources={"toy": {"weight": 3.0}})
    assert by_kwargs.weights["toy"] == 3.0

    retriever = Retriever(split, settings, sources=["transition", "toy"], progress=False).fit("test")
    users = np.arange(20)
    histories = [split.history(int(u), "test") for u in users]
    batch = retriever.score(histories, retriever.context_for(users, "test"), evidence=True)
    toy = batch.by_source["toy"]
    assert toy[0, -1] == 2.0 * (split.n_items - 1)
    expected = np.zeros_like(batch.fused)
    expected += 0.5 * max_normalise(batch.by_source["transition"])
    expected += 0.5 * max_normalise(toy)
    np.testing.assert_array_equal(batch.fused, expected)
    assert registry.config_class("toy") is ItemIndexConfig


def test_a_registration_line_names_a_config_class_by_path():
    """`BUILT_IN` holds "module:Class" paths: each resolves to the class registered under its
    name, and a path to anything but a SourceConfig is refused with the path in the message."""
    for name, path in registry.BUILT_IN.items():
        assert registry.config_class(name) is registry.load_config_class(path)
    with pytest.raises(TypeError, match=r"fewrec\.config:Settings"):
        registry.load_config_class("fewrec.config:Settings")
    with pytest.raises(TypeError, match="no SourceConfig"):
        registry.load_config_class("fewrec.retrieval.components:NoSuchConfig")
