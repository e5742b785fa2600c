"""Tests of the evaluation metrics, the runner behind `fewrec eval`, its reports and the CLI."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from conftest import only_sources
from typer.testing import CliRunner

from fewrec.cli import app
from fewrec.config import RetrievalSettings, Settings
from fewrec.data import FewrecError
from fewrec.eval import metrics as m
from fewrec.eval.report import write
from fewrec.eval.runner import EvalError, EvalReport, evaluate
from fewrec.fit.tune import ValidationQueries, neutral_starts, tune_on, validation_queries
from fewrec.retrieval import Retriever

FUSED = "fewrec retrieval (fused)"
# A cheap retrieval configuration for tests about the runner's mechanics, not its quality.
CHEAP = RetrievalSettings(
    sources=only_sources("transition", "timepop", transition={"weight": 1.0}, timepop={"weight": 0.2})
)


def cheap_settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, retrieval=CHEAP)


# --------------------------------------------------------------------------- metrics


def test_target_ranks_exclude_history_and_count_ties_against_target():
    scores = np.array(
        [
            [0.9, 0.5, 0.5, 0.1, 0.0],  # target 1 ties with item 2; item 0 is in the history
            [0.1, 0.2, 0.3, 0.4, 0.5],  # target 4 is the best
            [0.1, 0.2, 0.3, 0.4, 0.5],  # target 0 is the worst
            [0.9, 0.8, 0.7, 0.6, 0.5],  # target 2: items 0 and 1 are better, 0 is history
            [1.0, 1.0, 1.0, 1.0, 1.0],  # a constant scorer earns nothing
        ]
    )
    targets = np.array([1, 4, 0, 2, 3])
    histories = [
        np.array([0]),
        np.array([], dtype=np.int64),
        np.array([3]),
        np.array([0]),
        np.array([]),
    ]
    ranks = m.target_ranks(scores, targets, [np.asarray(h, dtype=np.int64) for h in histories])
    np.testing.assert_array_equal(ranks, [1, 0, 3, 1, 4])
    assert scores[0, 0] == 0.9  # the caller's array is not modified


def test_target_ranks_without_history_and_with_target_in_history():
    scores = np.array([[0.3, 0.2, 0.1], [0.3, 0.2, 0.1]])
    ranks = m.target_ranks(scores, np.array([2, 0]), [np.array([], dtype=np.int64), np.array([0])])
    assert ranks[0] == 2
    assert ranks[1] >= scores.shape[1] - 1  # a target hidden by the history can never count as a hit
    assert m.per_user_metrics(ranks, (3,))["recall@3"][1] == 0.0


def test_per_user_metrics_known_values():
    ranks = np.array([0, 1, 4, 9, 10, 50])
    out = m.per_user_metrics(ranks, (10,))
    assert set(out) == {"recall@10", "ndcg@10", "mrr@10"}
    np.testing.assert_allclose(
        out["ndcg@10"], [1.0, 1 / math.log2(3), 1 / math.log2(6), 1 / math.log2(11), 0, 0]
    )
    np.testing.assert_array_equal(out["recall@10"], [1, 1, 1, 1, 0, 0])
    np.testing.assert_allclose(out["mrr@10"], [1.0, 0.5, 0.2, 0.1, 0, 0])
    defaults = m.per_user_metrics(ranks)
    assert {"ndcg@5", "ndcg@20", "recall@5", "recall@20", "mrr@20"} <= set(defaults)
    np.testing.assert_array_equal(defaults["recall@5"], [1, 1, 1, 0, 0, 0])
    assert m.summarise(out)["recall@10"] == pytest.approx(4 / 6)


def test_coverage_and_long_tail_share():
    top = np.array([[0, 1], [0, 2], [1, 2]])
    assert m.coverage(top, 10) == pytest.approx(0.3)
    assert m.coverage(np.array([], dtype=np.int64), 10) == 0.0
    popularity = np.array([100, 50, 1, 2, 3, 4, 5, 6, 7, 8])  # head (top 20%) = items 0 and 1
    assert m.long_tail_share(top.ravel(), popularity) == pytest.approx(2 / 6)
    assert m.long_tail_share(np.array([0, 1, 0]), popularity) == 0.0
    assert m.long_tail_share(np.array([5, 9]), popularity) == 1.0
    assert m.long_tail_share(np.array([], dtype=np.int64), popularity) == 0.0


# --------------------------------------------------------------------------- the runner


@pytest.fixture(scope="module")
def full_report(bundled_split, tmp_path_factory) -> EvalReport:
    """The default retrieval stage plus popularity and random, on every user of the test split."""
    # Every default source, but SASRec trained briefly: this tests the runner, not SASRec.
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("eval-data"),
        retrieval=RetrievalSettings(sources={"sasrec": {"epochs": 2}}),
    )
    return evaluate(
        bundled_split,
        settings,
        baselines=["popularity", "random"],
        stages=["retrieval"],
        users=None,
    )


def test_popularity_sanity_anchor(full_report):
    pop = full_report.method("popularity")
    assert pop.kind == "baseline"
    assert pop.metrics["ndcg@10"] == pytest.approx(0.020, abs=0.003)
    assert pop.metrics["recall@10"] == pytest.approx(0.042, abs=0.003)


def test_full_report_shape_and_ordering(full_report, bundled_split):
    r = full_report
    assert r.complete and r.users == bundled_split.n_users == 610
    assert r.protocol == "full ranking" and r.split == "test" and r.dataset == "ml-latest-small"
    fused, pop, rnd = r.method(FUSED), r.method("popularity"), r.method("random")
    assert fused.kind == "fewrec"
    assert fused.metrics["ndcg@10"] > pop.metrics["ndcg@10"] > rnd.metrics["ndcg@10"]
    assert rnd.metrics["ndcg@10"] < 0.01
    for result in r.methods:
        low, high = result.intervals["ndcg@10"]
        assert low <= result.metrics["ndcg@10"] <= high
        assert 0 < result.coverage_at_10 <= 1 and 0 <= result.long_tail_at_10 <= 1
        assert result.metrics["recall@5"] <= result.metrics["recall@10"] <= result.metrics["recall@20"]
    # Each configured source is reported on its own too.
    assert {f"source: {s}" for s in Settings().retrieval.active if s != "content"} <= {
        x.name for x in r.methods
    }
    # Candidate recall grows with depth and starts at Recall@20.
    depths = list(fused.candidate_recall.values())
    assert depths == sorted(depths) and depths[0] == pytest.approx(fused.metrics["recall@20"])
    # Popularity recommends from the head; random covers most of the catalog.
    assert pop.long_tail_at_10 < 0.05 < rnd.long_tail_at_10
    assert pop.coverage_at_10 < rnd.coverage_at_10
    # The published anchors are listed, never as measured methods.
    assert r.published and all(p.kind == "published" for p in r.published)
    assert r.comparison is not None
    assert r.comparison.method == FUSED and r.comparison.baseline == "popularity"
    assert r.comparison.p_value < 0.05 and "better" in r.comparison.verdict


def test_same_seed_gives_identical_numbers(bundled_split, tmp_path):
    def run(seed: int) -> dict:
        report = evaluate(
            bundled_split,
            cheap_settings(tmp_path),
            baselines=["popularity", "random"],
            users=50,
            seed=seed,
        )
        return {r.name: (r.metrics, r.intervals) for r in report.methods}

    first, again = run(7), run(7)
    assert first == again
    assert run(8) != first  # another seed samples other users and other noise


def test_users_sample_size(bundled_split, tmp_path):
    report = evaluate(bundled_split, cheap_settings(tmp_path), baselines=["popularity"], users=50)
    assert report.users == 50
    assert report.complete


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"users": 611}, "610"),
        ({"users": 100_000}, "610"),
        ({"users": 0}, "between 1 and 610"),
        ({"stages": ["foo"]}, "unknown stage"),
        ({"stages": ["rerank"]}, "rerank"),
        ({"stages": ["retrieval", "fused"]}, "LLM backend"),
        ({"baselines": ["popularity", "gru4rec"]}, "unknown baseline"),
        ({"history_cuts": [0]}, "history cuts"),
    ],
)
def test_bad_arguments_raise_eval_error(bundled_split, tmp_path, kwargs, message):
    with pytest.raises(EvalError, match=message) as info:
        evaluate(bundled_split, cheap_settings(tmp_path), **{"baselines": [], **kwargs})
    assert isinstance(info.value, FewrecError)
    if "stages" in kwargs and kwargs["stages"] == ["foo"]:
        assert "foo" in str(info.value) and "retrieval" in str(info.value)
    if kwargs.get("baselines"):
        assert "gru4rec" in str(info.value) and "markov" in str(info.value)


def test_sampled_protocol(bundled_split, tmp_path):
    report = evaluate(
        bundled_split,
        cheap_settings(tmp_path),
        baselines=["popularity", "random"],
        users=100,
        sampled=20,
    )
    assert "sampled" in report.protocol and "19" in report.protocol
    assert not report.published  # the published anchors are full-ranking numbers
    for result in report.methods:
        assert result.metrics["recall@20"] == 1.0, result.name  # 1 target + 19 negatives
        assert result.metrics["ndcg@10"] >= result.metrics["ndcg@5"]
    # Sampling negatives inflates everything compared with full ranking.
    full = evaluate(bundled_split, cheap_settings(tmp_path), baselines=["popularity"], users=100)
    assert report.method("popularity").metrics["ndcg@10"] > full.method("popularity").metrics["ndcg@10"]
    assert report.method(FUSED).metrics["ndcg@10"] > full.method(FUSED).metrics["ndcg@10"]


def test_history_cuts_fill_slices(bundled_split, tmp_path):
    report = evaluate(
        bundled_split,
        cheap_settings(tmp_path),
        baselines=["popularity"],
        users=80,
        history_cuts=[1, 3],
    )
    assert report.history_cuts == [1, 3]
    assert set(report.slices) == {"1", "3"}
    for cut in ("1", "3"):
        assert set(report.slices[cut]) == {FUSED, "popularity"}
        assert 0 <= report.slices[cut][FUSED]["ndcg@10"] <= 1
        # Popularity ignores the history, so cutting it changes nothing.
        assert report.slices[cut]["popularity"]["ndcg@10"] == pytest.approx(
            report.method("popularity").metrics["ndcg@10"]
        )
    # Cutting the history to one item changes the fused ranking.
    assert report.slices["1"][FUSED]["ndcg@10"] != report.method(FUSED).metrics["ndcg@10"]


def test_interrupt_returns_incomplete_report_and_writes_it(bundled_split, tmp_path):
    seen: list[int] = []

    def stop_after_first(partial: EvalReport) -> None:
        seen.append(len(partial.methods))
        raise KeyboardInterrupt

    report = evaluate(
        bundled_split, cheap_settings(tmp_path), baselines=["popularity", "random"], users=40,
        on_result=stop_after_first,
    )  # fmt: skip
    assert seen == [1]
    assert report.complete is False
    assert len(report.methods) >= 1 and report.methods[0].name == FUSED
    assert "random" not in {r.name for r in report.methods}
    assert any("interrupted" in n for n in report.notes)
    assert report.finished is not None
    # The best baseline by validation may be one that never ran: no verdict is given.
    assert report.comparison is None
    assert any(n.startswith("no comparison") and "popularity, random" in n for n in report.notes)

    run = tmp_path / "run"
    write(report, run)
    data = json.loads((run / "results.json").read_text())
    assert data["complete"] is False
    assert "INCOMPLETE" in (run / "report.md").read_text()


def test_report_write(full_report, tmp_path):
    run = tmp_path / "run"
    files = write(full_report, run)
    assert (run / "results.json") in files and (run / "report.md") in files
    data = json.loads((run / "results.json").read_text())
    assert data["complete"] is True and data["users"] == 610
    names = [r["name"] for r in data["methods"]]
    assert FUSED in names and "popularity" in names and "random" in names
    for method in data["methods"]:
        for key in ("ndcg@10", "recall@20", "mrr@10"):
            assert 0.0 <= method["metrics"][key] <= 1.0
    pop = next(r for r in data["methods"] if r["name"] == "popularity")
    assert pop["metrics"]["ndcg@10"] == pytest.approx(full_report.method("popularity").metrics["ndcg@10"])
    assert data["published"]

    md = (run / "report.md").read_text()
    assert "published" in md and "LlamaRec" in md
    assert "INCOMPLETE" not in md
    assert f"{full_report.method('popularity').metrics['ndcg@10']:.4f}" in md
    pngs = sorted(p.name for p in run.glob("*.png"))
    assert pngs == ["ndcg_by_method.png"]
    assert (run / "ndcg_by_method.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(run.glob(".*"))  # no temporary files left behind


def test_every_method_is_reported_in_order_as_it_is_ranked(bundled_split, tmp_path):
    """The fused retriever, its sources, then the baselines: one row each, handed to `on_result`
    as it is done; the baselines carry the validation score that picks the comparison."""
    seen: list[list[str]] = []
    report = evaluate(
        bundled_split, cheap_settings(tmp_path), baselines=["popularity", "markov"], users=60,
        on_result=lambda partial: seen.append([r.name for r in partial.methods]),
    )  # fmt: skip
    names = [FUSED, "source: transition", "source: timepop", "popularity", "markov"]
    assert [r.name for r in report.methods] == names
    assert [r.kind for r in report.methods] == ["fewrec", "source", "source", "baseline", "baseline"]
    assert seen == [names[: i + 1] for i in range(len(names))]
    sources = [r for r in report.methods if r.kind == "source"]
    assert all(r.seconds is None and r.validation_ndcg_at_10 is None for r in sources)
    baselines = [r for r in report.methods if r.kind == "baseline"]
    assert all(r.seconds is not None and r.validation_ndcg_at_10 is not None for r in baselines)
    best = max(baselines, key=lambda r: r.validation_ndcg_at_10 or 0.0)
    assert report.comparison is not None and report.comparison.baseline == best.name


@pytest.mark.parametrize("folder", ["results", "results-temporal", "results-ties-random", "results-llm"])
def test_report_md_is_written_again_from_the_published_results(folder):
    """Each published report.md is what `markdown` writes from its results.json, section by section."""
    from fewrec.eval.report import markdown

    docs = Path(__file__).resolve().parents[1] / "docs" / folder
    report = EvalReport.model_validate_json((docs / "results.json").read_text())
    assert markdown(report) == (docs / "report.md").read_text()


def test_report_write_with_slices_plots_history_length(bundled_split, tmp_path):
    report = evaluate(
        bundled_split,
        cheap_settings(tmp_path),
        baselines=["popularity"],
        users=30,
        history_cuts=[1, 2],
    )
    files = write(report, tmp_path / "run")
    assert tmp_path / "run" / "ndcg_by_history_length.png" in files
    assert "Few-shot slices" in (tmp_path / "run" / "report.md").read_text()


# --------------------------------------------------------------------------- CLI eval


def test_cli_eval_writes_results(cli_env):
    out = cli_env / "out"
    args = ["eval", "--stages", "retrieval", "--baselines", "popularity", "--users", "30"]
    args += ["--no-content", "--history-cut", "", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    assert data["users"] == 30 and data["complete"] is True
    assert {r["name"] for r in data["methods"]} >= {FUSED, "popularity"}
    assert data["slices"] == {}
    assert (out / "report.md").is_file() and (out / "ndcg_by_method.png").is_file()
    assert not (cli_env / "data" / "chroma").exists()  # --no-content: no index was built
    # The printed report is report.md's text: its table rows whole (CliRunner's 80 columns would
    # have cut them), its links as written.
    rows = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("|")]
    assert rows and max(map(len, rows)) > 80
    assert all(row in result.output.splitlines() for row in rows)


def test_cli_eval_too_many_users(cli_env):
    result = CliRunner().invoke(app, ["eval", "--users", "100000", "--baselines", "none"])
    assert result.exit_code != 0
    assert isinstance(result.exception, EvalError)
    assert "100000" in str(result.exception) and "610" in str(result.exception)
    assert not (cli_env / "runs").exists()


def test_cli_eval_unknown_stage(cli_env):
    result = CliRunner().invoke(app, ["eval", "--stages", "foo"])
    assert result.exit_code != 0
    assert isinstance(result.exception, EvalError)
    assert "foo" in str(result.exception)


def test_history_cut_slices_fold_in_factor_models(bundled_split, tmp_path):
    """ALS would otherwise score a known user from the factors of the full history."""
    als_only = RetrievalSettings(sources=only_sources("als", als={"weight": 1.0, "iterations": 3}))
    settings = Settings(data_dir=tmp_path, retrieval=als_only)
    report = evaluate(bundled_split, settings, baselines=[], users=200, history_cuts=[1])
    full = report.method(FUSED).metrics["ndcg@10"]
    assert report.slices["1"][FUSED]["ndcg@10"] != pytest.approx(full)


# --------------------------------------------------------------------------- tuning


def synthetic_queries(seed: int, users: int = 60, items: int = 40) -> ValidationQueries:
    """'signal' puts the target near the top; 'noise' is random."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(5, items, users)
    signal = rng.random((users, items)).astype(np.float32) * 0.5
    signal[np.arange(users), targets] += rng.random(users).astype(np.float32) * 0.7
    noise = rng.random((users, items)).astype(np.float32)
    seen = np.zeros((users, items), dtype=bool)
    seen[:, :3] = True
    return ValidationQueries(f"q{seed}", np.arange(users), targets, seen, {"noise": noise, "signal": signal})


def test_tune_on_finds_the_informative_source_and_reports_out_of_sample():
    queries = [synthetic_queries(0), synthetic_queries(1)]
    start = {"noise": 1.0, "signal": 0.0}
    before = float(np.concatenate([q.ndcg(start) for q in queries]).mean())
    result = tune_on(queries, anchor="noise", folds=3)
    assert result.weights["noise"] == 1.0  # the anchor keeps its weight
    assert result.weights["signal"] >= 1.0
    assert result.ndcg > before + 0.1
    assert set(result.per_split) == {"q0", "q1"} and result.targets == 120
    assert result.out_of_sample is not None and before < result.out_of_sample <= 1.0
    # Tuning never proposes weights that do worse on validation than the configured ones.
    configured = {"noise": 1.0, "signal": 7.0}  # off the grid: only reachable as a start
    configured_ndcg = float(np.concatenate([q.ndcg(configured) for q in queries]).mean())
    kept = tune_on(queries, anchor="noise", current=configured)
    assert kept.ndcg >= max(configured_ndcg, result.ndcg)
    # The untuned weightings are reported too (with few targets one may beat the tuned weights).
    assert list(kept.untuned) == [
        "equal weights",
        "the anchor alone",
        "the others at half",
        "the configured weights",
    ]
    assert kept.untuned["the anchor alone"] == pytest.approx(before)
    assert kept.untuned["the configured weights"] == pytest.approx(configured_ndcg)
    # Seen items are never ranked: a target among them would score 0.
    queries[0].targets[:] = 0
    assert not queries[0].ndcg(result.weights).any()


def test_tune_weights_pools_pseudo_validation_targets(bundled_split):
    settings = RetrievalSettings(
        sources=only_sources(
            "transition",
            "timed_transition",
            "timepop",
            transition={"weight": 1.0},
            timed_transition={"weight": 0.0},
            timepop={"weight": 0.0},
        ),
    )
    queries = validation_queries(bundled_split, settings, pseudo=1, progress=False)
    assert [q.label for q in queries] == ["valid", "valid-1"]
    _, moved = bundled_split.shifted(1)
    assert len(queries[1].users) == len(moved)
    np.testing.assert_array_equal(queries[1].targets, [bundled_split.train_sequence(u)[-1] for u in moved])
    result = tune_on(queries)
    for start in neutral_starts(list(queries[0].scores), "transition"):
        before = float(np.concatenate([q.ndcg(start) for q in queries]).mean())
        assert result.ndcg >= before  # the search never ends below where it started
    assert result.targets == bundled_split.n_users + len(moved)
    assert set(result.weights) == {"transition", "timed_transition", "timepop"}
    # The figure it reports is the metric the evaluation suite computes.
    retriever = Retriever(bundled_split, settings.with_weights(result.weights)).fit("valid")
    fused = retriever.score_split("valid").fused
    ranks = m.target_ranks(fused, bundled_split.targets("valid"), bundled_split.histories("valid"))
    ndcg = m.per_user_metrics(ranks, (10,))["ndcg@10"].mean()
    assert ndcg == pytest.approx(result.per_split["valid"], abs=2e-3)


def test_cli_tune_rejects_an_unknown_sweep_setting(cli_env):
    result = CliRunner().invoke(app, ["tune", "--no-content", "--pseudo", "0", "--sweep", "tau=1,2"])
    assert result.exit_code != 0
    assert "unknown retrieval setting 'tau'" in result.output
    result = CliRunner().invoke(app, ["tune", "--no-content", "--sweep", "timed_transition.tau_days="])
    assert result.exit_code != 0 and "KEY=V1,V2" in result.output


def test_cli_tune_prints_weights_as_toml(cli_env):
    result = CliRunner().invoke(app, ["tune", "--no-content", "--pseudo", "1", "--folds", "2"])
    assert result.exit_code == 0, result.output
    assert "over 1" in result.output and "out of sample (2-fold over users)" in result.output
    toml = result.output[result.output.index("[retrieval.sources.") :]
    tables = tomllib.loads(toml)["retrieval"]["sources"]
    weights = {name: table["weight"] for name, table in tables.items()}
    assert set(weights) == {"transition", "timepop"} and weights["transition"] == 1.0
    assert RetrievalSettings(sources=tables).weights["timepop"] == weights["timepop"]  # it loads as printed
