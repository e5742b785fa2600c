"""Shared fixtures: the bundled dataset (split once per session), a clean settings environment."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from fewrec.data import BUNDLED_DIR, LeaveOneOutSplit, load_dataset


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


@pytest.fixture(scope="session")
def agent_settings(tmp_path_factory):
    """Settings for the agent/chat/UI tests: the real content index (Chroma + MiniLM) in a
    temporary data folder, and the two closed-form CF sources (no SASRec training)."""
    from fewrec.config import Settings

    return Settings(
        data_dir=tmp_path_factory.mktemp("agent-data"),
        retrieval={
            "sources": ["transition", "ease", "content"],
            "weights": {"transition": 1.0, "ease": 0.5, "content": 1.0},
        },
    )


@pytest.fixture(scope="session")
def recommender(agent_settings, bundled_split):
    """One warmed-up Recommender shared by the agent, chat and UI tests (as the page shares it)."""
    from fewrec.agent.recommender import Recommender

    return Recommender(agent_settings, split=bundled_split).warm_up()
