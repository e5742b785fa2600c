"""Regenerate the 300 seeker messages labelled in redial_descriptive_words.jsonl (texts only).

Usage: python3 sample_messages.py [REDIAL_DIR]   (default /work/shared/datasets/redial)
Prints one JSON object per line: file, conversation_id, message_id, text.
Data: ReDial (Li et al., NeurIPS 2018), CC BY 4.0.
"""

import json
import random
import re
import sys

FILES = ("train_data.jsonl", "valid_data.jsonl")
SEED = 26
N = 300


def title(raw):
    return re.sub(r"\s+", " ", raw).strip()


def substitute(text, mentions):
    return re.sub(
        r"@(\d+)", lambda m: title(mentions[m.group(1)]) if m.group(1) in mentions else m.group(0), text
    )


def seeker_messages(data_dir):
    out = []
    for fi, name in enumerate(FILES):
        with open(f"{data_dir}/{name}", encoding="utf-8") as fh:
            for li, line in enumerate(fh):
                d = json.loads(line)
                for pos, m in enumerate(d["messages"]):
                    if m["senderWorkerId"] == d["initiatorWorkerId"] and m["text"].strip():
                        out.append((fi, li, pos, name, d, m))
    return out


def sample(data_dir):
    everything = seeker_messages(data_dir)
    picked = random.Random(SEED).sample(everything, N)
    picked.sort(key=lambda t: (t[0], t[1], t[2]))
    return [
        {
            "file": name,
            "conversation_id": d["conversationId"],
            "message_id": m["messageId"],
            "text": substitute(m["text"], d["movieMentions"]),
        }
        for _, _, _, name, d, m in picked
    ]


if __name__ == "__main__":
    for row in sample(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/datasets/redial"):
        print(json.dumps(row, ensure_ascii=False))
