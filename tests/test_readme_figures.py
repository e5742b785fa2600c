"""Every figure table in the README and the docs it links (docs/RESULTS.md holds the result blocks)
has a source: a block a make target rewrites from a committed results file, or a note naming the
command and the date that gave it (the README's headline table: `figures · from: docs/RESULTS.md`,
its numbers checked there by tests/test_front_door.py)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START = re.compile(r"<!-- ([a-z0-9-]+):start -->")
NOTE = re.compile(
    r"<!-- figures · (command: (?P<command>[^·]+?) · date: (?P<date>\d{4}-\d{2}-\d{2})"
    r"|from: docs/RESULTS\.md)"
)
# The README and the pages its figures and long sections moved to (DESIGN and RELIABILITY hold
# tables of choices and of tests, not published figures).
PAGES = [
    ROOT / "README.md",
    *(ROOT / "docs" / page for page in ("RESULTS.md", "USAGE.md", "SCALE.md", "LLM.md")),
]


def _source(block: str) -> Path | None:
    for candidate in (ROOT / "docs" / block / "results.json", ROOT / "docs" / f"{block}.json"):
        if candidate.exists():
            return candidate
    return None


def figure_tables(text: str) -> list[tuple[int, str | None, str | None]]:
    """(first line, enclosing block, the figures note above it) of every table with a number in
    its body. A table's note is the last `<!-- figures · … -->` line since the previous table."""
    tables: list[tuple[int, str | None, str | None]] = []
    block: str | None = None
    note: str | None = None
    lines = text.splitlines()
    row = 0
    while row < len(lines):
        line = lines[row]
        if (match := START.search(line)) is not None:
            block = match.group(1)
        elif block is not None and f"<!-- {block}:end -->" in line:
            block = None
        elif NOTE.search(line) or line.startswith("<!-- figures"):
            note = line
        elif line.startswith("|"):
            first = row
            body = []
            while row < len(lines) and lines[row].startswith("|"):
                body.append(lines[row])
                row += 1
            if any(re.search(r"\d", cells) for cells in body[2:]):
                tables.append((first + 1, block, note))
            note = None
            continue
        row += 1
    return tables


def unsourced(text: str, makefile: str, page: str = "README") -> list[str]:
    problems = []
    for line, block, note in figure_tables(text):
        if block is not None:
            if _source(block) is None:
                problems.append(f"{page} line {line}: block {block!r} has no results file in docs/")
            elif not re.search(rf"(docs|\$\(RESULTS\))/{re.escape(block)}(?![\w-])", makefile):
                problems.append(f"{page} line {line}: no make target writes docs/{block}")
            continue
        match = NOTE.search(note or "")
        if match is None:
            problems.append(f"{page} line {line}: figures with no source block and no figures note")
    return problems


def test_every_readme_figure_table_has_a_source():
    makefile = (ROOT / "Makefile").read_text()
    problems = [
        problem
        for page in PAGES
        for problem in unsourced(page.read_text(encoding="utf-8"), makefile, str(page.relative_to(ROOT)))
    ]
    assert not problems, "\n".join(problems)


def test_the_result_blocks_live_in_results_md():
    blocks = {START.search(line).group(1) for line in (ROOT / "docs/RESULTS.md").read_text().splitlines()
              if START.search(line)}  # fmt: skip
    assert {"results", "results-ties-random", "results-temporal", "results-chat", "results-llm",
            "results-conversations", "bench"} <= blocks  # fmt: skip


def test_the_check_finds_a_table_without_a_source():
    text = "\n".join([
        "| method | NDCG@10 |", "|---|---|", "| a | 0.1 |", "",
        "<!-- figures · command: fewrec tune --folds 5 · date: 2026-11-30 -->",
        "| method | NDCG@10 |", "|---|---|", "| b | 0.2 |", "",
        "<!-- nowhere:start -->", "| method | NDCG@10 |", "|---|---|", "| c | 0.3 |", "<!-- nowhere:end -->",
        "| words only |", "|---|", "| none |",
    ])  # fmt: skip
    problems = unsourced(text, makefile="")
    assert len(problems) == 2
    assert "line 1:" in problems[0] and "no figures note" in problems[0]
    assert "'nowhere'" in problems[1]


def _block(markers: tuple[str, str]) -> str:
    start, end = markers
    return (ROOT / "docs/RESULTS.md").read_text().split(start, 1)[1].split(end, 1)[0].strip("\n")


def test_every_report_and_block_is_written_again_from_its_committed_results():
    """The renderers (their prose in fewrec/eval/report_texts.toml) write each published report.md
    and docs/RESULTS.md block, byte for byte, from the committed results file."""
    from fewrec.bench import speed
    from fewrec.eval import chat_eval, conversation_eval, report
    from fewrec.eval.runner import EvalReport

    docs, readme = ROOT / "docs", ROOT / "docs/RESULTS.md"
    kinds = [("results-chat", chat_eval, chat_eval.ChatEvalReport),
             ("results-conversations", conversation_eval, conversation_eval.ConversationsReport)]  # fmt: skip
    for folder, module, model in kinds:
        published = model.model_validate_json((docs / folder / "results.json").read_text())
        assert module.markdown(published) == (docs / folder / "report.md").read_text()
        assert module.readme_section(published, docs / folder, readme) == _block(module.README_MARKERS)
    for folder in ("results", "results-temporal", "results-ties-random"):
        published = EvalReport.model_validate_json((docs / folder / "results.json").read_text())
        assert report.readme_section(published, docs / folder, readme) == _block(
            report.readme_markers(published)
        )
    figures = speed.BenchResult.model_validate_json((docs / "bench.json").read_text())
    assert speed.readme_section(figures, docs / "bench.json", readme) == _block(speed.README_MARKERS)
