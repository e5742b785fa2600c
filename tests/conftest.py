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
