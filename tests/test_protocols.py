"""The two evaluation protocols (the paper's leave-one-out and the global temporal split), the
tie order, and how reports show ties, choose the best baseline and state p-values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import only_sources
from typer.testing import CliRunner

from fewrec.cli import app
from fewrec.config import RetrievalSettings, Settings
from fewrec.data import DatasetError, load_dataset, load_raw
from fewrec.data.models import Dataset, Interactions, build_catalog
from fewrec.data.split import SplitSettings, temporal_split
from fewrec.eval import intervals as iv
from fewrec.eval.report import markdown, readme_markers
from fewrec.eval.runner import EvalReport, MethodResult, _compare, evaluate, format_p

CHEAP = RetrievalSettings(
    sources=only_sources("transition", "timepop", transition={"weight": 1.0}, timepop={"weight": 0.2})
)


@pytest.fixture(scope="module")
def bundled_raw():
    return load_raw()


@pytest.fixture(scope="module")
def temporal(bundled_raw):
    return temporal_split(bundled_raw, SplitSettings(protocol="temporal"))


@pytest.fixture(scope="module")
def random_ties():
    return load_dataset(cache_dir=None, split=SplitSettings(ties="random"))


# --------------------------------------------------------------------------- ties


def test_tied_users_share_the_targets_second_with_the_item_before(bundled_split):
    tied = bundled_split.tied("test")
    assert tied.sum() == 91  # of 610: the artefact the README reports
    np.testing.assert_array_equal(tied, bundled_split.test_time == bundled_split.valid_time)


def test_random_tie_order_moves_only_same_second_items(bundled_split, random_ties):
    tied = bundled_split.tied("test")
    same_test = random_ties.test_item == bundled_split.test_item
    assert same_test[~tied].all()  # untied users keep their targets
    assert not same_test[tied].all()  # some tied ones get another of their same-second items
    for user in np.flatnonzero(tied)[:20]:
        for split in (bundled_split, random_ties):
            assert split.test_time[user] == bundled_split.test_time[user]
        events = bundled_split.interactions_before("all")
        second = events[(events["user"] == user) & (events["timestamp"] == bundled_split.test_time[user])]
        assert random_ties.test_item[user] in set(second["item"])


def test_fit_data_keeps_the_splits_own_order(random_ties):
    """Under random ties the sequence a source learns from is the users' history order."""
    fit = random_ties.interactions_before("test")
    for user in (0, 7, 123):
        np.testing.assert_array_equal(fit.loc[fit["user"] == user, "item"], random_ties.history(user, "test"))


# --------------------------------------------------------------------------- temporal split


def test_temporal_split_targets_are_first_after_the_cut(temporal):
    users = temporal.eval_users("test")
    assert 0 < len(users) < temporal.n_users
    assert (temporal.test_time[users] >= temporal.test_cut).all()
    assert (temporal.valid_time[temporal.eval_users("valid")] < temporal.test_cut).all()
    assert temporal.valid_cut < temporal.test_cut
    without = np.setdiff1d(np.arange(temporal.n_users), users)
    assert (
        (temporal.test_item[without] == -1)
        | (np.array([len(temporal.history(u, "test")) for u in without]) == 0)
    ).all()


def test_temporal_pseudo_validation_lies_a_window_earlier(temporal):
    earlier, users = temporal.shifted(1)
    assert earlier.valid_cut == temporal.valid_cut - (temporal.test_cut - temporal.valid_cut)
    assert len(users) > 0
    assert (earlier.valid_time[users] >= earlier.valid_cut).all()
    assert (earlier.valid_time[users] < temporal.valid_cut).all()
    assert (earlier.interactions_before("valid")["timestamp"] < earlier.valid_cut).all()


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"test_cut": "1990-01-01"}, "outside the data"),
        ({"test_cut": "2031-06-01"}, "outside the data"),
        ({"test_cut": "soon"}, "cannot read the test cut"),
        ({"test_cut": 0.5, "valid_cut": 0.7}, "must come before"),
    ],
)
def test_temporal_cut_errors_name_the_problem(bundled_raw, update, message):
    with pytest.raises(DatasetError, match=message):
        temporal_split(bundled_raw, SplitSettings(protocol="temporal", **update))


def test_temporal_cut_accepts_dates_and_unix_seconds(bundled_raw):
    by_date = temporal_split(bundled_raw, SplitSettings(protocol="temporal", test_cut="2017-01-01"))
    assert by_date.test_cut == int(pd.Timestamp("2017-01-01", tz="UTC").timestamp())
    by_seconds = temporal_split(
        bundled_raw, SplitSettings(protocol="temporal", test_cut=str(by_date.test_cut))
    )
    assert by_seconds.test_cut == by_date.test_cut


def test_a_dataset_without_timestamps_cannot_be_split_by_time():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "user_id": np.repeat(np.arange(30), 8),
            "item_id": rng.integers(0, 20, 240),
            "rating": 1.0,
            "timestamp": 0,
        }
    ).drop_duplicates(["user_id", "item_id"])
    catalog = build_catalog(pd.Series(np.arange(20)), pd.Series([f"Item {i}" for i in range(20)]))
    untimed = Dataset("untimed", catalog, Interactions(frame))
    with pytest.raises(DatasetError, match=r"no timestamps.*--protocol loo"):
        temporal_split(untimed, SplitSettings(protocol="temporal", min_count=2))


# --------------------------------------------------------------------------- evaluation


def test_temporal_evaluation_reports_its_protocol_and_no_paper_anchors(temporal, tmp_path):
    report = evaluate(temporal, Settings(data_dir=tmp_path, retrieval=CHEAP), baselines=["popularity"])
    assert report.split_protocol == "temporal"
    assert "global temporal" in report.split_description
    assert report.users == len(temporal.eval_users("test"))
    assert report.published == []
    assert report.comparison is not None and report.comparison.baseline == "popularity"


def test_tie_metrics_split_every_method_into_tied_and_untied(bundled_split, tmp_path):
    report = evaluate(
        bundled_split, Settings(data_dir=tmp_path, retrieval=CHEAP), baselines=["popularity", "markov"]
    )
    assert report.ties is not None and report.ties.tied_users == 91 and report.ties.untied_users == 519
    assert report.published  # the paper's protocol and tie order: the anchors are shown
    for method in report.methods:
        tied, untied = method.ties["tied"], method.ties["untied"]
        assert tied["users"] + untied["users"] == report.users
        pooled = (tied["ndcg@10"] * tied["users"] + untied["ndcg@10"] * untied["users"]) / report.users
        assert pooled == pytest.approx(method.metrics["ndcg@10"])
    # First-order transitions lean on the id order of same-second items.
    markov = report.method("markov").ties
    assert markov["tied"]["ndcg@10"] > 2 * markov["untied"]["ndcg@10"]
    assert "Tied and untied users" in markdown(report)


def test_random_ties_hide_the_paper_anchors(random_ties, tmp_path):
    settings = Settings(data_dir=tmp_path, retrieval=CHEAP, split={"ties": "random"})
    report = evaluate(random_ties, settings, baselines=["popularity"], users=50)
    assert report.published == []
    assert readme_markers(report)[0] == "<!-- results-ties-random:start -->"


def test_popularity_reproduces_the_sanity_anchor(bundled_split, tmp_path):
    report = evaluate(bundled_split, Settings(data_dir=tmp_path, retrieval=CHEAP), baselines=["popularity"])
    popularity = report.method("popularity").metrics
    assert popularity["ndcg@10"] == pytest.approx(0.020, abs=0.003)
    assert popularity["recall@10"] == pytest.approx(0.042, abs=0.003)


def _result(name: str, kind: str, valid: float | None) -> MethodResult:
    return MethodResult(name=name, kind=kind, validation_ndcg_at_10=valid)  # type: ignore[arg-type]


def test_the_best_baseline_is_chosen_on_validation_not_on_test():
    report = EvalReport(
        dataset="d", split="test", protocol="full ranking", users=4, seed=0, stages=[], started=""
    )
    report.methods = [
        _result("ours", "fewrec", None),
        _result("a", "baseline", 0.30),
        _result("b", "baseline", 0.10),
    ]
    per_user = {
        "ours": {"ndcg@10": np.array([0.5, 0.5, 0.5, 0.5])},
        "a": {"ndcg@10": np.array([0.1, 0.1, 0.1, 0.1])},  # best on validation, worse on test
        "b": {"ndcg@10": np.array([0.9, 0.9, 0.9, 0.9])},
    }
    comparison = _compare(report.methods, per_user, seed=0)
    assert comparison is not None and comparison.baseline == "a"
    assert comparison.p_text == f"p < 1/{iv.PAIRED_RESAMPLES}"
    assert "p=0.000" not in comparison.verdict


def test_p_values_are_never_printed_as_zero():
    assert format_p(0.0, 2000) == "p < 1/2000"
    assert format_p(0.0123, 2000) == "p=0.012"


# --------------------------------------------------------------------------- command line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--protocol", "rolling"], "unknown --protocol 'rolling'; choose loo or temporal"),
        (["--ties", "sometimes"], "unknown --ties 'sometimes'; choose id or random"),
        (["--protocol", "temporal", "--test-cut", "1985-01-01"], "outside the data"),
        (["--test-cut", "2017-01-01"], "apply to --protocol temporal only"),
    ],
)
def test_cli_rejects_bad_protocol_arguments(clean_env, args, message):
    from fewrec.data.errors import FewrecError

    runner = CliRunner()
    result = runner.invoke(app, ["eval", "--baselines", "none", "--history-cut", "", *args])
    assert result.exit_code != 0
    assert isinstance(result.exception, FewrecError)
    assert message in " ".join(str(result.exception).split())
