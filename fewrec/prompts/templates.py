"""Prompt templates: versioned TOML files under fewrec/prompts/templates, never strings in code.

Values put into a template (titles, user text) are data: `clean_text` makes them single-line,
strips control characters and caps their length, so they cannot add fields or instructions
to the prompt's frame.
"""

from __future__ import annotations

import re
import tomllib
from functools import cache
from importlib import resources

from fewrec.data.errors import FewrecError

MAX_FIELD_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_ARTICLE = re.compile(r"^(.*), (The|A|An|La|Le|Les|Il|El|Der|Die|Das|L')(\s*\(.*\))?$")


class PromptError(FewrecError):
    """A prompt template is missing or lacks a field."""


@cache
def load_template(name: str, version: str = "v1") -> dict[str, str]:
    try:
        text = resources.files("fewrec.prompts").joinpath("templates", f"{name}.{version}.toml").read_text()
    except FileNotFoundError as exc:
        raise PromptError(
            f"no prompt template {name!r} version {version!r} under fewrec/prompts/templates"
        ) from exc
    return {k: v for k, v in tomllib.loads(text).items() if isinstance(v, str)}


def clean_text(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """One line, no control characters, at most `limit` characters."""
    text = _CONTROL.sub(" ", str(text))
    text = re.sub(r"\s+", " ", text).strip()
    return text[:limit]


def display_title(title: str) -> str:
    """MovieLens writes 'Matrix, The (1999)'; prompts read better as 'The Matrix (1999)'."""
    title = clean_text(title)
    match = _ARTICLE.match(title)
    if match:
        article = match.group(2)
        joiner = "" if article.endswith("'") else " "
        title = f"{article}{joiner}{match.group(1)}{match.group(3) or ''}"
    return title
