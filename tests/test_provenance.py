"""Provenance and hidden state: what a results.json records, when the README may be rewritten,
tuned weights that are only used for the settings they were chosen for, and `fewrec
compare-results` (`make verify-results`)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import only_sources
from typer.testing import CliRunner

from fewrec.cli import app
from fewrec.config import Settings
from fewrec.data.errors import FewrecError
from fewrec.eval import provenance
from fewrec.eval.provenance import Provenance, check_publishable
from fewrec.eval.verify import compare_folders
from fewrec.state import apply_tuned, load_tuned, save_tuned, tuned_key


def _eval(out: Path, *extra: str) -> subprocess.CompletedProcess | object:
    args = ["eval", "--baselines", "popularity", "--users", "40", "--history-cut", "", "--out", str(out)]
    return CliRunner().invoke(app, [*args, *extra])


def test_results_json_records_code_settings_weights_and_machine(cli_env):
    result = _eval(cli_env / "run")
    assert result.exit_code == 0, result.output
    data = json.loads((cli_env / "run" / "results.json").read_text())
    p = data["provenance"]
    assert p["commit"] == provenance.git_commit() and len(p["commit"]) == 40
    assert p["dirty"] == bool(provenance.changed_code_paths())
    assert len(p["settings_sha256"]) == 16 and p["cores"] >= 1
    assert len(p["load_average_start"]) == 3 and len(p["load_average_end"]) == 3
    assert (
        p["weights_from"].startswith("fusion weights: the defaults") and "transition 0.5" in p["weights_from"]
    )
    # The settings hash follows the settings, not the machine's data folder.
    settings = data["settings"]
    assert provenance.settings_hash(settings) == p["settings_sha256"]
    assert provenance.settings_hash({**settings, "data_dir": "/elsewhere"}) == p["settings_sha256"]
    assert provenance.settings_hash({**settings, "seed": 1}) != p["settings_sha256"]


@pytest.mark.parametrize(
    ("provenance_record", "complete", "message"),
    [
        (Provenance(commit="a" * 40, dirty=False), False, "did not finish"),
        (Provenance(commit="a" * 40, dirty=True, dirty_paths=["fewrec/cli.py"]), True, "fewrec/cli.py"),
        (Provenance(commit=None, dirty=None), True, "not a git checkout"),
        (None, True, "not a git checkout"),
    ],
)
def test_the_readme_takes_figures_only_from_a_complete_run_of_committed_code(
    provenance_record, complete, message
):
    with pytest.raises(FewrecError, match=message):
        check_publishable(provenance_record, complete, Path("README.md"))
    check_publishable(Provenance(commit="a" * 40, dirty=False), True, Path("README.md"))  # the one way in


def test_a_dirty_tree_leaves_the_readme_alone_and_says_so(cli_env, monkeypatch):
    readme = cli_env / "README.md"
    readme.write_text("before\n<!-- results:start -->\nold\n<!-- results:end -->\nafter\n")
    monkeypatch.setattr(provenance, "changed_code_paths", lambda: ["fewrec/eval/runner.py"])
    result = _eval(cli_env / "run", "--readme", str(readme))
    assert result.exit_code != 0
    assert "is not updated" in str(result.exception) and "fewrec/eval/runner.py" in str(result.exception)
    assert "old" in readme.read_text()  # untouched
    assert json.loads((cli_env / "run" / "results.json").read_text())["complete"]  # the run's files are kept


# --------------------------------------------------------------------------- tuned weights


def test_tuned_weights_for_another_source_list_are_not_used_and_it_is_said(clean_env):
    tuned = Settings(data_dir=clean_env, retrieval={"sources": only_sources("transition", "ease")})
    save_tuned(tuned, {"transition": 0.3, "ease": 0.9}, ndcg=0.1)
    other = Settings(data_dir=clean_env, retrieval={"sources": only_sources("transition", "timepop")})
    said: list[str] = []
    assert apply_tuned(other, said.append) == "none"
    assert len(said) == 1 and "chosen for other settings" in said[0] and "sources=ease,transition" in said[0]
    defaults = Settings().retrieval
    assert other.retrieval.weights == {
        n: defaults.source(n).weight for n in ("transition", "timepop")
    }  # unchanged
    assert load_tuned(tuned) is not None  # the file still holds them, for the settings they fit
    again = Settings(
        data_dir=clean_env, retrieval={"sources": only_sources("ease", "transition")}
    )  # order: same set
    assert apply_tuned(again) == "tuned" and again.retrieval.weights["ease"] == 0.9


@pytest.mark.parametrize(
    "change",
    [{"ties": "random"}, {"min_count": 3}, {"min_rating": 3.5}, {"protocol": "temporal"}, {"holdout": 3}],
)
def test_the_tuned_key_names_protocol_ties_and_filtering(clean_env, change):
    base = Settings(data_dir=clean_env)
    assert tuned_key(base) != tuned_key(Settings(data_dir=clean_env, split=change))


def test_an_old_tuned_file_is_kept_and_not_used(clean_env):
    settings = Settings(data_dir=clean_env)
    settings.tuned_path.parent.mkdir(parents=True)
    old = {"loo|default:all-MiniLM-L6-v2": {"weights": {"ease": 5.0}}}  # an older fewrec's key
    settings.tuned_path.write_text(json.dumps(old))
    said: list[str] = []
    assert apply_tuned(settings, said.append) == "none" and "chosen for other settings" in said[0]
    assert json.loads(settings.tuned_path.read_text()) == old


def test_make_results_uses_only_weights_committed_in_configs():
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    block = makefile.split("\nresults:", 1)[1].split("\n\n", 1)[0]
    evals = [line for line in block.splitlines() if "fewrec eval" in line]
    assert len(evals) == 3 and all("--config configs/" in line for line in evals)
    root = Path(__file__).resolve().parents[1]
    for name in ("loo.toml", "temporal.toml"):
        assert Settings.load(root / "configs" / name).retrieval.weights_configured
    # configs/loo.toml states the defaults (and says so): the two cannot drift apart.
    assert Settings.load(root / "configs" / "loo.toml").retrieval.weights == Settings().retrieval.weights


# --------------------------------------------------------------------------- compare-results


def test_compare_results_finds_a_changed_figure(tmp_path):
    docs = Path(__file__).resolve().parents[1] / "docs"
    first, second = tmp_path / "a", tmp_path / "b"
    shutil.copytree(docs / "results", first / "results")
    shutil.copytree(docs / "results", second / "results")
    (same,) = compare_folders(first, second)
    assert same.missing is None and not same.differences and same.compared > 100
    data = json.loads((second / "results" / "results.json").read_text())
    data["methods"][0]["metrics"]["ndcg@10"] += 0.0001  # the last printed digit
    (second / "results" / "results.json").write_text(json.dumps(data))
    (changed,) = compare_folders(first, second)
    assert [d.split(":")[0] for d in changed.differences] == [f"{data['methods'][0]['name']}.metrics.ndcg@10"]
    result = CliRunner().invoke(app, ["compare-results", str(first), str(second)])
    assert result.exit_code == 1 and "1 difference(s)" in result.output
    data["methods"][0]["metrics"]["ndcg@10"] -= 0.0001 - 1e-9  # below the printed digits: the same
    (second / "results" / "results.json").write_text(json.dumps(data))
    assert CliRunner().invoke(app, ["compare-results", str(first), str(second)]).exit_code == 0


def test_compare_results_compares_the_chat_and_the_conversations_but_not_their_seconds(tmp_path):
    docs = Path(__file__).resolve().parents[1] / "docs"
    first, second = tmp_path / "a", tmp_path / "b"
    for name in ("results-chat", "results-conversations"):
        shutil.copytree(docs / name, first / name)
        shutil.copytree(docs / name, second / name)
    chat = json.loads((second / "results-chat" / "results.json").read_text())
    chat["overall"]["seconds_p50"] *= 3  # another machine's load: not a figure
    conversations = json.loads((second / "results-conversations" / "results.json").read_text())
    conversations["cross_validation"]["per_fold"][0]["seconds"] += 100
    conversations["setup_seconds"] = 1.0
    for name, data in (("results-chat", chat), ("results-conversations", conversations)):
        (second / name / "results.json").write_text(json.dumps(data))
    same = compare_folders(first, second)
    assert [(c.name, c.differences) for c in same] == [("results-chat", []), ("results-conversations", [])]
    assert all(c.compared > 400 for c in same)
    chat["families"][2]["hits"]["chat"]["hits@20"] += 0.001
    conversations["cross_validation"]["mean"]["chat"]["recall@10"] -= 0.001
    for name, data in (("results-chat", chat), ("results-conversations", conversations)):
        (second / name / "results.json").write_text(json.dumps(data))
    changed = {c.name: [d.split(":")[0] for d in c.differences] for c in compare_folders(first, second)}
    assert changed == {
        "results-chat": ["chat.families[2].hits.chat.hits@20"],
        "results-conversations": ["conversations.cross_validation.mean.chat.recall@10"],
    }


PUBLISHED_REPORTS = [
    ("results", "EvalReport"),
    ("results-temporal", "EvalReport"),
    ("results-ties-random", "EvalReport"),
    ("results-llm", "EvalReport"),
    ("results-chat", "ChatEvalReport"),
    ("results-conversations", "ConversationsReport"),
]


@pytest.mark.parametrize(("folder", "model"), PUBLISHED_REPORTS)
def test_every_published_results_json_loads_into_its_report_and_writes_back_the_same(folder, model):
    """The run metadata is one model (RunRecord) that the reports extend: its keys stay flat, so
    the published files load, and a report writes every key and value it read (figures first)."""
    from fewrec.eval.chat_eval import ChatEvalReport
    from fewrec.eval.conversation_eval import ConversationsReport
    from fewrec.eval.runner import EvalReport

    models = {
        "EvalReport": EvalReport,
        "ChatEvalReport": ChatEvalReport,
        "ConversationsReport": ConversationsReport,
    }
    raw = json.loads((Path(__file__).resolve().parents[1] / "docs" / folder / "results.json").read_text())
    report = models[model].model_validate(raw)
    assert isinstance(report, provenance.RunRecord)
    written = json.loads(report.model_dump_json())
    if "provenance" not in raw:  # written before runs recorded it: the field is there, empty
        assert written.pop("provenance") is None
    assert written == raw
    run_fields = [key for key in provenance.RunRecord.model_fields if key in written]
    assert list(written)[-len(run_fields) :] == run_fields


def test_run_record_stamps_the_start_and_the_end_of_a_run():
    from fewrec.bench.speed import BenchResult

    # docs/bench.json as `make bench` wrote it before RunRecord: its figures and nothing else.
    old = BenchResult.model_validate_json('{"figures": {"retrieval_p50_ms": 5.1, "chat_load_s": 4.0}}')
    assert old.figures["chat_load_s"] == 4.0 and old.provenance is None and old.started == ""
    published = BenchResult.model_validate_json(
        (Path(__file__).resolve().parents[1] / "docs" / "bench.json").read_text()
    )
    assert published.figures and (published.provenance is None or published.started)
    record = BenchResult()
    record.start_run({"seed": 3}, "fusion weights: named")
    assert record.provenance is not None and record.provenance.weights_from == "fusion weights: named"
    assert record.git_commit == record.provenance.commit and record.versions == record.provenance.versions
    assert record.settings == {"seed": 3} and record.started and record.finished is None
    record.finish_run()
    assert record.finished is not None and record.finished >= record.started
    assert len(record.provenance.load_average_end) == 3


def test_a_run_records_the_processor_the_blas_kernel_and_the_command_as_typed(monkeypatch):
    from fewrec.eval import provenance as prov

    monkeypatch.setattr(prov.sys, "argv", ["/x/fewrec/__main__.py", "eval", "--split", "valid"])
    record = prov.capture({"seed": 0})
    assert record.command == ["python", "-m", "fewrec", "eval", "--split", "valid"]
    assert record.processor and "openblas" in record.blas.lower()
    assert prov.command_line(["/venv/bin/fewrec", "eval"]) == ["fewrec", "eval"]
