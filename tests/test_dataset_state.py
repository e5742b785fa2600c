"""Per-dataset state (issue 14): each dataset its own Chroma collection and tuned weights, data
without titles or real times recognised as such, duplicates chosen on the command line, and
SIGTERM stopping a run the way Ctrl-C does. Small generated datasets only: fast, no model."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import only_sources
from typer.testing import CliRunner

from fewrec.cli import app
from fewrec.config import RetrievalSettings, Settings
from fewrec.data import DatasetError, load_dataset, load_raw
from fewrec.data.loaders import load_generic_csv
from fewrec.data.split import SplitSettings
from fewrec.data.traits import has_titles, time_kind
from fewrec.prompts.demos import DemonstrationPool
from fewrec.retrieval.fusion import Retriever
from fewrec.retrieval.store import ContentIndex, VectorStoreError
from fewrec.state import ORDER_ONLY_TAU_DAYS, apply_tuned, fit_to_data, load_tuned, save_tuned

ROOT = Path(__file__).resolve().parent.parent


class FakeEmbedder:
    """Deterministic vectors from the text's hash: no model, nothing meaningful."""

    name = "fake"

    def embed(self, texts, progress: bool = False) -> np.ndarray:
        rows = [np.random.default_rng(abs(hash(t)) % 2**32).random(8) for t in texts]
        vectors = np.array(rows, dtype=np.float32).reshape(len(texts), 8)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-9)


def write_interactions(
    path: Path, users: int = 40, items: int = 25, per_user: int = 10, positions: bool = True, seed: int = 0
) -> Path:
    """`user_id,item_id,timestamp`: each user walks a ring of items from a random start, so
    that transitions carry signal; timestamps 0..n per user, or real Unix seconds."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, users + 1):
        start = int(rng.integers(items))
        for step in range(per_user):
            when = step if positions else 1_500_000_000 + user * 3600 + step * 86_400
            rows.append((user, (start + step) % items + 1, when))
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(path, index=False)
    return path


@pytest.fixture
def positions_csv(tmp_path) -> Path:
    return write_interactions(tmp_path / "positions" / "ratings.csv")


@pytest.fixture
def cli_sources():
    """conftest's `cli_env` with two cheap sources, one of them time-aware."""
    return ("transition", "timed_transition")


# --------------------------------------------------------------------------- one collection each


def test_collection_names_are_per_dataset_and_model(clean_env, positions_csv):
    bundled = Settings(data_dir=clean_env)
    other = Settings(data_dir=clean_env, dataset=str(positions_csv))
    names = {bundled.collection_name, other.collection_name}
    assert len(names) == 2
    for name in names:  # Chroma: 3-63 characters, [a-zA-Z0-9._-], alphanumeric at both ends
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", name), name
    assert "ml-latest-small" in bundled.collection_name and "ratings" in other.collection_name
    # A relative path names the same dataset as its absolute one; another model, another index.
    os.chdir(positions_csv.parent)
    assert Settings(data_dir=clean_env, dataset="ratings.csv").collection_name == other.collection_name
    mpnet = Settings(
        data_dir=clean_env, dataset=str(positions_csv),
        embedding={"backend": "sentence-transformers", "model": "all-mpnet-base-v2"},
    )  # fmt: skip
    assert mpnet.collection_name != other.collection_name
    assert mpnet.dataset_key == other.dataset_key  # the tuned weights' file is the dataset's
    assert Settings(data_dir=clean_env, chroma_collection="mine").collection_name == "mine"


def titled_dataset(folder: Path, count: int, seed: int):
    """A generic CSV dataset with an items file of real titles, loaded as a Dataset."""
    interactions = write_interactions(folder / "events.csv", items=count, positions=False, seed=seed)
    items = pd.DataFrame(
        {"item_id": range(1, count + 1), "title": [f"Film {seed}-{i}" for i in range(count)]}
    )
    items.to_csv(folder / "items.csv", index=False)
    return load_generic_csv(interactions, folder / "items.csv")


def test_indexing_another_dataset_leaves_the_first_intact(clean_env):
    a, b = titled_dataset(clean_env / "a", 20, seed=1), titled_dataset(clean_env / "b", 12, seed=2)
    settings_a = Settings(data_dir=clean_env / "data", dataset=str(clean_env / "a" / "events.csv"))
    settings_b = Settings(data_dir=clean_env / "data", dataset=str(clean_env / "b" / "events.csv"))
    assert ContentIndex.from_settings(settings_a, FakeEmbedder()).build(a.catalog, progress=False).added == 20
    before = ContentIndex.from_settings(settings_a, FakeEmbedder()).collection.get(include=["embeddings"])

    report = ContentIndex.from_settings(settings_b, FakeEmbedder()).build(b.catalog, progress=False)
    assert (report.added, report.removed) == (12, 0)  # B's own collection: nothing of A's to delete
    after = ContentIndex.from_settings(settings_a, FakeEmbedder()).collection.get(include=["embeddings"])
    assert sorted(after["ids"]) == sorted(before["ids"]) and len(after["ids"]) == 20
    np.testing.assert_array_equal(np.asarray(after["embeddings"]), np.asarray(before["embeddings"]))

    # Both told to use one named collection: B is refused, never allowed to wipe A's items.
    shared_a = settings_a.model_copy(update={"chroma_collection": "shared"})
    shared_b = settings_b.model_copy(update={"chroma_collection": "shared"})
    ContentIndex.from_settings(shared_a, FakeEmbedder()).build(a.catalog, progress=False)
    with pytest.raises(VectorStoreError, match="holds the items of dataset"):
        ContentIndex.from_settings(shared_b, FakeEmbedder())
    assert len(ContentIndex.from_settings(shared_a, FakeEmbedder())) == 20


def test_split_caches_of_two_datasets_live_side_by_side(tmp_path):
    a = write_interactions(tmp_path / "a" / "r.csv", seed=1)
    b = write_interactions(tmp_path / "b" / "r.csv", seed=2)
    cache = tmp_path / "cache"
    first = load_dataset(a, cache_dir=cache)
    load_dataset(b, cache_dir=cache)
    assert len(list((cache / "splits").iterdir())) == 2  # keyed by each dataset's bytes
    assert load_dataset(a, cache_dir=cache).stats() == first.stats()


# --------------------------------------------------------------------------- titles and times


def test_the_title_and_time_rules(positions_csv, bundled_split):
    raw = load_raw(positions_csv, "csv")
    assert not has_titles(raw.catalog)  # the loader titled every item with its id
    assert has_titles(bundled_split.catalog)
    frame = bundled_split.catalog.frame.copy()
    frame.loc[: len(frame) // 2 + 1, "title"] = ""  # more than half without a title
    assert not has_titles(type(bundled_split.catalog)(frame))

    assert time_kind(np.array([0, 1, 2, 9])) == "positions"
    assert time_kind(np.array([5, 5, 5])) == "none"
    assert time_kind(np.array([99_999_999, 100_000_000])) == "seconds"
    assert bundled_split.time_kind == "seconds"


def test_positions_score_by_order_only_and_the_temporal_protocol_refuses_them(positions_csv):
    split = load_dataset(positions_csv, cache_dir=None)
    assert split.time_kind == "positions" and not split.has_times
    users = np.arange(split.n_users)
    last = int(split.test_time.max())
    for name in ("valid", "test", "all"):  # every user as of the end: one user's "time" means nothing
        np.testing.assert_array_equal(split.reference_times(users, name), np.full(split.n_users, last))

    sources = ["timed_transition", "transition", "timepop"]
    tables = only_sources(*sources, **{name: {"weight": 1.0} for name in sources})
    settings = Settings(retrieval=RetrievalSettings(sources=tables))
    notes = fit_to_data(settings, split, say=lambda _: None)
    assert len(notes) == 1 and "positions" in notes[0] and "order of interactions only" in notes[0]
    assert settings.retrieval.source("timed_transition").tau_days == ORDER_ONLY_TAU_DAYS
    # Order-only: the time-aware transition source scores as the plain one does.
    scored = Retriever(split, settings.retrieval, progress=False).fit("valid").score_split("valid")
    np.testing.assert_allclose(
        scored.by_source["timed_transition"], scored.by_source["transition"], rtol=1e-5, atol=1e-6
    )
    # ... and timepop as the plain popularity among the other users of everything known.
    counts = np.bincount(split.interactions_before("valid")["item"], minlength=split.n_items)
    for user in (0, 7):
        others = counts - np.bincount(split.train_sequence(user), minlength=split.n_items)
        np.testing.assert_allclose(scored.by_source["timepop"][user], others, rtol=1e-5)

    with pytest.raises(DatasetError, match=r"positions, not times.*--protocol loo"):
        load_dataset(positions_csv, cache_dir=None, split=SplitSettings(protocol="temporal"))


def test_fit_to_data_leaves_the_bundled_data_alone_and_drops_content_without_titles(
    bundled_split, positions_csv
):
    settings = Settings()
    assert fit_to_data(settings, bundled_split, say=lambda _: None) == []
    assert settings.retrieval == RetrievalSettings()
    split = load_dataset(positions_csv, cache_dir=None)
    said: list[str] = []
    fit_to_data(settings, split, say=said.append)
    assert "content" not in settings.retrieval.active
    assert sum("content source is skipped" in s for s in said) == 1 and len(said) == 2


def test_demonstrations_without_titles_need_no_chroma(positions_csv):
    split = load_dataset(positions_csv, cache_dir=None)
    pool = DemonstrationPool(split, None, None, history_items=3)  # no client, no embedder
    assert pool.collection is None and pool.demos
    user = 0
    history = split.history(user, "test")
    (chosen,) = pool.select_many([history], [user], list(split.reference_times(np.array([user]), "test")), 3)
    assert len(chosen) == 3 and all(d.user != user for d in chosen)
    # The most similar comes last and shares items with the user's recent history.
    assert set(chosen[-1].history) & set(history[-10:].tolist())


def test_index_command_skips_a_catalog_without_titles(cli_env, positions_csv):
    result = CliRunner().invoke(app, ["index", "--dataset", str(positions_csv)])
    assert result.exit_code == 0, result.output
    assert "no titles" in result.output and "nothing to index" in result.output
    assert not (cli_env / "data" / "chroma").exists()


def test_datasets_command_shows_positions_not_1970(cli_env, positions_csv):
    result = CliRunner().invoke(app, ["datasets", "--dataset", str(positions_csv)])
    assert result.exit_code == 0, result.output
    assert "position 0" in result.output and "position 9" in result.output
    assert "1970" not in result.output


# --------------------------------------------------------------------------- duplicates


def test_duplicates_from_the_command_line_and_the_settings(cli_env, positions_csv, monkeypatch):
    frame = pd.read_csv(positions_csv)
    doubled = pd.concat([frame, frame.head(7)]).sort_values(["user_id", "timestamp"], kind="stable")
    path = positions_csv.with_name("doubled.csv")
    doubled.to_csv(path, index=False)

    failed = CliRunner().invoke(app, ["datasets", "--dataset", str(path)])
    assert failed.exit_code != 0
    message = str(failed.exception)
    assert "7 duplicate row(s)" in message
    assert (
        "--duplicates drop" in message and "FEWREC_DUPLICATES" in message and 'duplicates = "drop"' in message
    )

    dropped = CliRunner().invoke(app, ["datasets", "--dataset", str(path), "--duplicates", "drop"])
    assert dropped.exit_code == 0, dropped.output
    assert re.search(rf"interactions\s*│\s*{len(frame)}\b", dropped.output)
    bad = CliRunner().invoke(app, ["datasets", "--dataset", str(path), "--duplicates", "nope"])
    assert bad.exit_code != 0 and "keep-last" in str(bad.exception)

    monkeypatch.setenv("FEWREC_DUPLICATES", "keep-last")
    settings = Settings()
    assert settings.duplicates == "keep-last" and settings.loader_options == {"duplicates": "keep-last"}
    assert len(load_dataset(path, cache_dir=None, **settings.loader_options).train) > 0


def test_keep_last_keeps_the_later_row(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user_id,item_id,rating,timestamp\n1,1,2.0,10\n1,1,5.0,10\n1,2,3.0,11\n")
    for option, rating in (("drop", 2.0), ("keep-last", 5.0)):
        inter = load_generic_csv(path, rating_col="rating", duplicates=option).interactions.frame
        assert len(inter) == 2 and inter.loc[inter["item_id"] == 1, "rating"].item() == rating


# --------------------------------------------------------------------------- tuned weights


def test_tuned_weights_are_kept_per_dataset(clean_env, positions_csv):
    a = Settings(data_dir=clean_env, dataset=str(positions_csv))
    b = Settings(data_dir=clean_env)
    assert apply_tuned(a) == "none"
    path = save_tuned(a, {"transition": 1.0, "ease": 0.1}, ndcg=0.5)
    assert path.parent == clean_env / "tuned" and a.dataset_key in path.name
    assert load_tuned(b) is None  # another dataset: none
    assert load_tuned(a.model_copy(update={"split": SplitSettings(protocol="temporal")})) is None
    assert apply_tuned(a) == "tuned"
    assert a.retrieval.weights["ease"] == 0.1 and a.retrieval.weights["sasrec"] == 0.5  # others kept
    named = {"sources": {"ease": {"weight": 1.0}}}
    explicit = Settings(data_dir=clean_env, dataset=str(positions_csv), retrieval=named)
    assert apply_tuned(explicit) == "configured" and explicit.retrieval.weights["ease"] == 1.0


def test_cli_tune_samples_users_keeps_weights_and_eval_uses_them(cli_env, positions_csv):
    out = cli_env / "run"
    tuned = CliRunner().invoke(
        app, ["tune", "--dataset", str(positions_csv), "--users", "12", "--pseudo", "0"]
    )
    assert tuned.exit_code == 0, tuned.output
    assert "over 12 targets" in tuned.output
    assert tuned.output.count("order of interactions only") == 1
    entry = _tuned_for(positions_csv)
    assert (
        entry is not None
        and entry["users"] == 12
        and set(entry["weights"]) == {"transition", "timed_transition"}
    )

    args = ["eval", "--baselines", "none", "--history-cut", "", "--users", "10", "--out", str(out)]
    used = CliRunner().invoke(app, [*args, "--dataset", str(positions_csv)])
    assert used.exit_code == 0, used.output
    assert "fusion weights: tuned for this dataset" in used.output and "no tuned weights" not in used.output
    settings = json.loads((out / "results.json").read_text())["settings"]["retrieval"]
    assert _weights(settings) == {**_defaults(_weights(settings)), **entry["weights"]}

    other = write_interactions(cli_env / "other" / "ratings.csv", seed=5)
    untuned = CliRunner().invoke(app, [*args, "--dataset", str(other), "--out", str(cli_env / "run2")])
    assert untuned.exit_code == 0, untuned.output
    assert untuned.output.count("no tuned weights for this dataset") == 1 and "fewrec tune" in untuned.output
    bad = CliRunner().invoke(app, ["tune", "--dataset", str(positions_csv), "--users", "100000"])
    assert bad.exit_code != 0 and "--users must be between 1 and" in bad.output


def test_cli_tune_samples_users_to_fit_its_memory_budget(cli_env, positions_csv, monkeypatch):
    from fewrec.data import load_dataset
    from fewrec.fit.tune import memory_sample_size

    split = load_dataset(str(positions_csv), cache_dir=None)
    eligible = len(split.eval_users("valid"))
    assert memory_sample_size(split, 2, 0, 1.0) is None  # a small dataset: every user fits
    # Two sources, one split: (4 * 2 + 1) bytes per item and user.
    budget_gb = 15 * split.n_items * 9 / 1024**3
    assert memory_sample_size(split, 2, 0, budget_gb) == 15 < eligible
    monkeypatch.setenv("FEWREC_RETRIEVAL__TUNE_MEMORY_GB", repr(budget_gb))
    tuned = CliRunner().invoke(app, ["tune", "--dataset", str(positions_csv), "--pseudo", "0"])
    assert tuned.exit_code == 0, tuned.output
    assert "seeded sample of 15 users" in tuned.output and "over 15 targets" in tuned.output
    entry = _tuned_for(positions_csv)
    assert entry is not None and entry["users"] == 15


def test_cli_eval_tune_chooses_weights_first_only_when_none_are_kept(cli_env, positions_csv):
    args = [
        "eval",
        "--dataset",
        str(positions_csv),
        "--baselines",
        "none",
        "--history-cut",
        "",
        "--users",
        "10",
    ]
    first = CliRunner().invoke(app, [*args, "--tune", "--out", str(cli_env / "run1")])
    assert first.exit_code == 0, first.output
    assert (
        "choosing them on its validation targets first" in first.output and "no tuned weights" in first.output
    )
    assert "test split not used" in first.output
    entry = _tuned_for(positions_csv)
    assert entry is not None
    used = _weights(json.loads((cli_env / "run1" / "results.json").read_text())["settings"]["retrieval"])
    assert used == {**_defaults(used), **entry["weights"]}  # the run used what it chose
    again = CliRunner().invoke(app, [*args, "--tune", "--out", str(cli_env / "run2")])
    assert again.exit_code == 0, again.output
    assert "already" in again.output and "choosing them" not in again.output
    notes = json.loads((cli_env / "run2" / "results.json").read_text())["notes"]
    assert any(n.startswith("fusion weights: tuned for this dataset") for n in notes)
    leak = CliRunner().invoke(app, [*args, "--tune", "--split", "valid"])
    assert leak.exit_code != 0 and "--split test" in str(leak.exception)


# --------------------------------------------------------------------------- SIGTERM

# Runs `fewrec eval` through the real entry point; the first partial results.json is followed by
# a long pause (a stand-in for a slow baseline), during which the test sends SIGTERM.
DRIVER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import fewrec.eval.report as report

    original, marker = report.write, Path(sys.argv[1])

    def write(result, folder, with_plots=True):
        files = original(result, folder, with_plots=with_plots)
        if not with_plots:
            marker.write_text("partial written")
            time.sleep(3600)  # SIGTERM ends it
        return files

    report.write = write
    from fewrec.cli import main

    sys.argv = ["fewrec", *sys.argv[2:]]
    main()
    """
)


def test_sigterm_stops_eval_like_ctrl_c(cli_env, positions_csv):
    marker, out = cli_env / "marker", cli_env / "run"
    args = ["eval", "--dataset", str(positions_csv), "--users", "20", "--baselines", "popularity"]
    readme = cli_env / "README.md"
    readme.write_text("<!-- results:start -->\nold figures\n<!-- results:end -->\n")
    args += ["--history-cut", "", "--out", str(out), "--readme", str(readme)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(marker), *args], cwd=cli_env, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        while not marker.exists():  # however long a loaded machine takes to get there
            assert process.poll() is None, process.communicate()[0]
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, output  # as after Ctrl-C, not killed by the signal (-15)
    data = json.loads((out / "results.json").read_text())  # valid JSON
    assert data["complete"] is False
    assert any("interrupted" in note for note in data["notes"])
    assert [m["name"] for m in data["methods"]] == ["fewrec retrieval (fused)"]
    assert "INCOMPLETE" in (out / "report.md").read_text()
    assert readme.read_text() == "<!-- results:start -->\nold figures\n<!-- results:end -->\n"
    assert "is not updated: the run did not finish" in " ".join(output.split())


def _weights(retrieval: dict) -> dict[str, float]:
    """The fusion weights a results.json's retrieval settings name (the enabled sources')."""
    return {name: table["weight"] for name, table in retrieval["sources"].items() if table["enabled"]}


def _tuned_for(csv: Path) -> dict | None:
    """The tuned entry `fewrec tune` kept for `csv`, read as eval reads it: with the settings
    fitted to the data first (positions switch the time decay off, which the key records)."""
    settings = Settings(dataset=str(csv))
    fit_to_data(settings, load_dataset(str(csv), split=settings.split, cache_dir=None), say=lambda _: None)
    return load_tuned(settings)


def _defaults(names: dict[str, float]) -> dict[str, float]:
    """The default fusion weights of these sources."""
    return {name: RetrievalSettings().source(name).weight for name in names}
