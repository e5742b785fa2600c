"""Builds the talk's word counts that tell the chat which words describe films
(`fewrec/agent/query_words.py`): in how many messages of ReDial's training dialogues each word
occurs.

    python -m fewrec.fit.build_query_words ../shared/datasets/redial/train_data.jsonl \
        fewrec/data/bundled/redial_words.json

Only ever from training dialogues (`train_data.jsonl`): the validation file is what the
conversation evaluation reports on, and the labelled messages of `fewrec.fit.query_words`
are read with their own dialogue taken out of these counts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

from fewrec.agent.query_words import count_talk

SOURCE = (
    "ReDial (Li, Ebrahimi Kahou, Schulz, Michalski, Charlin and Pal, 'Towards Deep Conversational "
    "Recommendations', NeurIPS 2018): word counts derived from its dialogues"
)
LICENCE = "CC BY 4.0"
COMMAND = "python -m fewrec.fit.build_query_words {train} {out}"


def build(train_file: Path, out_name: str = "redial_words.json") -> dict[str, Any]:
    """The bundled file's content, from a ReDial JSONL file of training dialogues."""
    raw = Path(train_file).read_bytes()
    counts, messages, dialogues = count_talk(raw.decode("utf-8").splitlines())
    return {
        "source": SOURCE,
        "licence": LICENCE,
        "file": Path(train_file).name,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "command": COMMAND.format(train=Path(train_file).name, out=out_name),
        "counted": "messages of every speaker that hold the word (lower case, @ids left out)",
        "dialogues": dialogues,
        "messages": messages,
        "counts": dict(sorted(counts.items())),
    }


def dump(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_file", type=Path, help="ReDial's train_data.jsonl (never the validation file)")
    parser.add_argument("out", type=Path, help="the JSON file to write")
    args = parser.parse_args(argv)
    if "valid" in args.train_file.name or "test" in args.train_file.name:
        parser.error(f"{args.train_file.name}: the counts come from training dialogues only")
    data = build(args.train_file, args.out.name)
    args.out.write_text(dump(data), encoding="utf-8")
    print(
        f"{args.out}: {data['dialogues']} dialogues, {data['messages']} messages, {len(data['counts'])} words"
    )


if __name__ == "__main__":
    main()
