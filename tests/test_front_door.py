"""The README is a front door that does not lie: at most 200 lines, every command and make
target it shows exists (with the options it gives them), every link stays inside the repository
and lands on a file or heading that exists, every figure of its results table is in
docs/RESULTS.md, and `make run`'s quick evaluation uses the points `make results` chose. And a
file without a block's markers stops `--readme` before the run, in one line."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer.main

from fewrec.cli import app
from fewrec.data.errors import FewrecError
from fewrec.eval.report import check_markers, markers_for, readme_markers_named, update_readme

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "docs" / "RESULTS.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
LOOPBACK = ("http://127.0.0.1", "http://localhost")


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:bash|python)?\n(.*?)```", text, re.S)


def shown_commands(text: str) -> list[list[str]]:
    """Each `fewrec …` command line of the bash blocks and of inline code, as argv after
    `fewrec` (a line continued with a backslash is joined; comments are dropped)."""
    lines: list[str] = []
    for block in code_blocks(text):
        lines += block.replace("\\\n", " ").splitlines()
    lines += re.findall(r"`(fewrec [^`]+)`", text)
    commands = []
    for line in lines:
        line = line.split(" #", 1)[0].strip()
        match = re.search(r"(?:^|\s|/)fewrec\s+(.*)$", line)
        if match is None or line.startswith(("from ", "import ", "print(")):
            continue
        argv = shlex.split(match.group(1).replace("[", " ").replace("]", " ").replace("|", " "))
        if argv and not argv[0].startswith(("-", "'", '"')) and re.fullmatch(r"[a-z][a-z-]*", argv[0]):
            commands.append(argv)
    return commands


def commands() -> dict[str, Any]:
    """`fewrec`'s commands by name, as click sees them."""
    return dict(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def option_names(command: Any) -> set[str]:
    return {name for param in command.params for name in (*param.opts, *param.secondary_opts)}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), re.M)}


def test_the_readme_is_at_most_200_lines():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200


def test_every_fewrec_command_the_readme_shows_exists_with_its_options():
    group = commands()
    shown = shown_commands(README.read_text(encoding="utf-8"))
    assert {"recommend", "chat", "eval", "index", "datasets"} <= {argv[0] for argv in shown}
    problems = []
    for argv in shown:
        command = group.get(argv[0])
        if command is None:
            problems.append(f"`fewrec {argv[0]}` is not a command ({', '.join(sorted(group))})")
            continue
        known = option_names(command)
        problems += [
            f"`fewrec {argv[0]}` has no option {arg.split('=')[0]}"
            for arg in argv[1:]
            if arg.startswith("--") and arg.split("=")[0] not in known
        ]
    assert not problems, "\n".join(problems)


def test_the_check_finds_an_unknown_command_and_option():
    text = "```bash\nfewrec recommend --user 42 --nope\nfewrec nosuch --k 3\n```\n"
    group = commands()
    argvs = shown_commands(text)
    assert argvs == [["recommend", "--user", "42", "--nope"], ["nosuch", "--k", "3"]]
    assert "--nope" not in option_names(group["recommend"]) and "nosuch" not in group


def test_every_make_target_the_readme_names_exists():
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
    named = set(re.findall(r"(?:`|^)make ([a-z][a-z-]*)", README.read_text(encoding="utf-8"), re.M))
    assert {"run", "test", "results"} <= named
    assert named <= targets, named - targets


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_links_stay_in_the_repository_and_land(path: Path):
    problems = []
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://")):
            if not target.startswith(LOOPBACK):
                problems.append(f"{target}: outside the repository")
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.is_relative_to(ROOT) or not linked.exists():
            problems.append(f"{target}: no such file in the repository")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            problems.append(f"{target}: no heading #{anchor} in {linked.name}")
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def test_every_figure_of_the_readme_results_table_is_in_results_md():
    text = README.read_text(encoding="utf-8")
    section = text.split("## Results\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]
    assert len(rows) >= 6  # one per evaluation
    results = RESULTS.read_text(encoding="utf-8")
    numbers = [(number, row[:60]) for row in rows for number in re.findall(r"\d+\.\d+", row)]
    missing = [(number, row) for number, row in numbers if number not in results]
    assert not missing, missing
    assert all("](docs/RESULTS.md#" in row for row in rows)


def test_every_block_a_make_target_writes_is_in_results_md():
    makefile = (ROOT / "Makefile").read_text()
    assert "--readme README.md" not in makefile and "--readme docs/RESULTS.md" in makefile
    results = RESULTS.read_text(encoding="utf-8")
    blocks = [
        markers_for("loo", "id"), markers_for("loo", "random"), markers_for("temporal", "id"),
        *map(readme_markers_named, ("results-chat", "results-llm", "results-conversations", "bench")),
    ]  # fmt: skip
    for start, end in blocks:
        assert results.count(start) == 1 and results.count(end) == 1, start
        assert results.index(start) < results.index(end)
    assert "<!-- results:start -->" not in README.read_text(encoding="utf-8")  # the blocks moved


def test_a_file_without_the_markers_stops_in_one_line_and_is_left_alone(tmp_path):
    target = tmp_path / "RESULTS.md"
    target.write_text("intro\n<!-- results:start -->\nold\n")
    with pytest.raises(
        FewrecError, match=r"^cannot update .*RESULTS\.md: it has no <!-- results:end --> marker$"
    ):
        check_markers(target, markers_for("loo", "id"))
    both = "no <!-- results-temporal:start --> and no <!-- results-temporal:end -->"
    with pytest.raises(FewrecError, match=both):
        check_markers(target, markers_for("temporal", "id"))
    with pytest.raises(FewrecError, match=r"cannot update .*absent\.md"):
        check_markers(tmp_path / "absent.md", markers_for("loo", "id"))
    with pytest.raises(ValueError, match="no <!-- results:end --> marker"):
        update_readme(target, "new", markers_for("loo", "id"))
    assert target.read_text() == "intro\n<!-- results:start -->\nold\n"  # nothing half-written


def test_eval_with_readme_stops_before_loading_anything(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from fewrec.cli import evaluate

    def must_not_run(*args, **kwargs):
        raise AssertionError("the pipeline was built before the markers were checked")

    monkeypatch.setattr(evaluate, "ranking_pipeline", must_not_run)
    target = tmp_path / "RESULTS.md"
    target.write_text("<!-- results:start -->\n<!-- results:end -->\n")
    result = CliRunner().invoke(app, ["eval", "--ties", "random", "--readme", str(target)])
    assert isinstance(result.exception, FewrecError), result.output
    assert "results-ties-random:start" in str(result.exception)


@pytest.mark.parametrize(
    ("args", "loads", "block"),
    [
        (["eval-chat"], "load_split", "results-chat"),
        (["eval-conversations", str(ROOT / "tests" / "data" / "redial_sample.jsonl")], "build_pipeline",
         "results-conversations"),
    ],
)  # fmt: skip
def test_the_chat_evaluations_with_readme_stop_before_loading_anything(tmp_path, monkeypatch, args, loads,
                                                                       block):  # fmt: skip
    from typer.testing import CliRunner

    from fewrec.cli import chat_evaluation

    def must_not_run(*args, **kwargs):
        raise AssertionError("the data was loaded before the markers were checked")

    monkeypatch.setattr(chat_evaluation, loads, must_not_run)
    target = tmp_path / "RESULTS.md"
    target.write_text("<!-- results:start -->\n<!-- results:end -->\n")
    result = CliRunner().invoke(app, [*args, "--readme", str(target)])
    assert isinstance(result.exception, FewrecError), result.output
    assert str(result.exception) == (
        f"cannot update {target}: it has no <!-- {block}:start --> and no <!-- {block}:end --> marker"
    )
    assert target.read_text() == "<!-- results:start -->\n<!-- results:end -->\n"  # nothing half-written


def test_make_run_evaluates_at_the_points_make_results_chose():
    quick = tomllib.loads((ROOT / "configs" / "quick.toml").read_text())["retrieval"]["sources"]
    loo = tomllib.loads((ROOT / "configs" / "loo.toml").read_text())["retrieval"]["sources"]
    assert {name: table["weight"] for name, table in quick.items()} == {
        name: table["weight"] for name, table in loo.items()
    }
    methods = json.loads((ROOT / "docs/results/results.json").read_text())["methods"]
    published = {method["name"]: method["params"] for method in methods}
    ease = published["ease"]
    assert quick["ease"]["grid"] == [{"lambda": ease["ease_lambda"], "half_life": ease["ease_half_life"]}]
    assert quick["itemknn"]["grid"] == [
        {"k": published["item-knn"]["itemknn_k"], "half_life": published["item-knn"]["recency_half_life"]}
    ]
    run = (ROOT / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "--config configs/quick.toml" in run and "--baselines popularity,item-knn,ease" in run
    assert "make results" in run  # it names the full set
