"""The command line's shape (tests/test_layout.py's counterpart for fewrec/cli/): every command
answers --help, no command function outgrows 60 lines, and the chat and conversation
evaluations are commands of their own that the old `eval --chat` / `--conversations` still reach,
after one line naming them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from typer.testing import CliRunner

import fewrec.cli
from fewrec.cli import app
from fewrec.data.dialogues import ConversationFormatError
from fewrec.data.errors import FewrecError
from fewrec.eval.chat_phrasings import PhrasingsError
from fewrec.eval.runner import EvalError

CLI = Path(fewrec.cli.__file__).parent
COMMANDS = ["datasets", "index", "recommend", "chat", "search", "eval", "eval-chat", "eval-conversations",
            "compare-results", "tune", "bench", "recommend-batch"]  # fmt: skip
SAMPLE = Path(__file__).resolve().parent / "data" / "redial_sample.jsonl"


def _long_functions(source: str, limit: int) -> list[str]:
    nodes = ast.walk(ast.parse(source))
    functions = [n for n in nodes if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    return [
        f"{f.name}: {f.end_lineno - f.lineno + 1} lines"
        for f in functions
        if f.end_lineno - f.lineno >= limit
    ]


def test_no_function_of_the_cli_is_over_60_lines():
    long = [f"{path.name} {line}" for path in sorted(CLI.glob("*.py"))
            for line in _long_functions(path.read_text(encoding="utf-8"), 60)]  # fmt: skip
    assert long == []


def test_the_length_check_sees_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    assert _long_functions(f"def grown():\n{body}\n", 60) == ["grown: 61 lines"]
    assert _long_functions("def small():\n    return 1\n", 60) == []


def test_every_command_answers_help():
    listing = CliRunner().invoke(app, ["--help"])
    assert listing.exit_code == 0
    for command in COMMANDS:
        assert command in listing.output
        result = CliRunner().invoke(app, [command, "--help"])
        assert result.exit_code == 0, (command, result.output)
        assert "Usage:" in result.output


def test_eval_help_hides_the_old_switches_and_names_the_new_commands():
    text = CliRunner().invoke(app, ["eval", "--help"], terminal_width=200).output
    assert "eval-chat" in text and "eval-conversations" in text
    assert "--chat " not in text and "--conversations" not in text and "--query-weights" not in text
    chat = CliRunner().invoke(app, ["eval-chat", "--help"], terminal_width=200).output
    assert (
        "--query-weights" in chat and "--families" in chat and "--phrasings" in chat and "--ray" not in chat
    )


def test_eval_chat_and_the_old_switch_run_the_same_evaluation(events_without_titles):
    args = ["--dataset", str(events_without_titles), "--users", "3"]
    new = CliRunner().invoke(app, ["eval-chat", *args])
    old = CliRunner().invoke(app, ["eval", "--chat", *args])
    for result in (new, old):  # both reach the chat evaluation, which needs titles
        assert isinstance(result.exception, EvalError) and "titles" in str(result.exception)
    assert "eval-chat" not in new.output
    assert [line for line in old.output.splitlines() if "`fewrec eval-chat`" in line] != []


def test_the_old_switch_passes_the_chat_options_on(clean_env):
    old = CliRunner().invoke(app, ["eval", "--chat", "--chat-families", "no-such-family"])
    new = CliRunner().invoke(app, ["eval-chat", "--families", "no-such-family"])
    for result in (old, new):  # refused before any data is loaded
        assert isinstance(result.exception, PhrasingsError) and "no-such-family" in str(result.exception)


def test_eval_conversations_checks_the_file_as_the_old_switch_did(clean_env):
    bad = clean_env / "ratings.csv"
    bad.write_text("userId,movieId\n1,2\n")
    new = CliRunner().invoke(app, ["eval-conversations", str(bad)])
    old = CliRunner().invoke(app, ["eval", "--conversations", str(bad)])
    for result in (new, old):
        assert isinstance(result.exception, ConversationFormatError)
    assert "`fewrec eval-conversations FILE`" in old.output
    zero = CliRunner().invoke(app, ["eval-conversations", str(SAMPLE), "--dialogues", "0"])
    assert isinstance(zero.exception, EvalError) and "--dialogues" in str(zero.exception)


def test_the_ranking_evaluation_refuses_the_chat_options():
    for args, named in ((["--query-weights", "0"], "eval-chat"), (["--dialogues", "5"], "eval-conversations"),
                        (["--chat", "--ray", "auto"], "--ray")):  # fmt: skip
        result = CliRunner().invoke(app, ["eval", *args])
        assert isinstance(result.exception, EvalError) and named in str(result.exception), args
    both = CliRunner().invoke(app, ["eval", "--chat", "--conversations", str(SAMPLE)])
    assert isinstance(both.exception, EvalError) and "choose one" in str(both.exception)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["recommend", "--user", "1", "--k", "0"], "--k must be between 1 and 100, got 0"),
        (["recommend", "--user", "1", "--year-min", "2010", "--year-max", "1990"], "2010 is after"),
        (["search", "space", "--k", "-1"], "--k must be between 1 and 100, got -1"),
        (["search", "space", "--year-min", "2010", "--year-max", "1990"], "--year-min 2010 is after"),
        (["search", "  "], "give the search some words"),
    ],
)
def test_a_request_that_could_match_nothing_stops_before_any_work(cli_env, args, said):
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and isinstance(result.exception, FewrecError)
    assert said in str(result.exception)
    assert not (cli_env / "data").exists()  # nothing was loaded, fitted or indexed first


def test_the_chat_says_its_port_is_taken_before_loading_anything(cli_env):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["chat", "--port", str(port)])
    assert isinstance(result.exception, FewrecError)
    assert f"cannot listen on 127.0.0.1:{port}" in str(result.exception) and "--port" in str(result.exception)
    out_of_range = CliRunner().invoke(app, ["chat", "--port", "99999"])
    assert "--port must be between 1 and 65535, got 99999" in str(out_of_range.exception)
    assert not (cli_env / "data").exists()
