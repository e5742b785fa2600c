"""Measures the rule that reads an everyday-word title opening a sentence as a title when a
predicate follows it ("Jaws still holds up"; `understand.SUBJECT_PREDICATE`): every link it adds
on real seeker messages, where every film is written with its year, is a word taken as a film.

    python -m fewrec.fit.opening_titles ../shared/datasets/redial/train_data.jsonl \
        ../shared/datasets/redial/valid_data.jsonl
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from fewrec.agent import understand
from fewrec.data import load_dataset
from fewrec.data.dialogues import read_dialogues
from fewrec.data.errors import FewrecError

NEVER = re.compile(r"(?!x)x")


def added_links(files: list[Path]) -> tuple[int, list[tuple[str, str]]]:
    """(seeker messages read, [(the words linked, the message)] the rule adds)."""
    catalog = load_dataset(cache_dir=None).catalog
    reader = understand.MessageReader(catalog, catalog.genre_names)
    rule, messages, added = understand.SUBJECT_PREDICATE, 0, []
    try:
        for path in files:
            for dialogue in read_dialogues(path):
                for turn in (t for t in dialogue.turns if t.role == "seeker"):
                    text, messages = dialogue.shown_text(turn), messages + 1
                    understand.SUBJECT_PREDICATE = rule
                    with_rule = {(link.start, link.end) for link in reader._link(text)}
                    understand.SUBJECT_PREDICATE = NEVER
                    without = {(link.start, link.end) for link in reader._link(text)}
                    added += [(text[s:e], text) for s, e in sorted(with_rule - without)]
    finally:
        understand.SUBJECT_PREDICATE = rule
    return messages, added


def main(argv: list[str] | None = None) -> None:
    files = [Path(a) for a in (argv if argv is not None else sys.argv[1:])]
    if not files:
        sys.exit("usage: python -m fewrec.fit.opening_titles DIALOGUES.jsonl [MORE.jsonl …]")
    try:
        messages, added = added_links(files)
    except FewrecError as exc:
        sys.exit(f"opening_titles: {exc}")
    print(f"{messages} seeker messages; the opening-subject rule adds {len(added)} link(s)")
    for words, text in added:
        print(f"  {words!r}: {text[:100]}")


if __name__ == "__main__":
    main()
