"""What fewrec sends to and reads from an OpenAI-compatible `/v1/completions` endpoint.

The transport lives in `openai_http.py`; this module only knows the format:

- the request bodies of the three uses (choice scoring, likelihood scoring, generation);
- the label scores of a choice request: the labels are read off the first generated position's
  top-k (a label outside the top-k gets -inf);
- the log-probability of a continuation from an echoed request: the sum of the echoed
  log-probabilities of the tokens whose text overlaps the continuation (a token straddling the
  boundary counts), with the servers' known misalignments detected or corrected (see
  `continuation_logprob`);
- the token count of a tokenizer route's answer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from fewrec.llm.base import LLMError

NEG_INF = float("-inf")
# Byte-level BPE and SentencePiece spell a leading space this way in raw token strings.
_SPACE_MARKERS = ("Ġ", "▁")


class CompletionRequest(BaseModel):
    """The body of one POST to /v1/completions: greedy, not streamed."""

    model_config = ConfigDict(extra="forbid")

    model: str
    prompt: str
    max_tokens: int
    # llama-cpp-python's server ignores max_completion_tokens; newer servers prefer it.
    max_completion_tokens: int
    temperature: float = 0.0
    stream: bool = False
    logprobs: int | None = None
    echo: bool | None = None
    stop: list[str] | None = None

    @classmethod
    def make(cls, model: str, prompt: str, max_tokens: int, **extra: Any) -> CompletionRequest:
        return cls(
            model=model, prompt=prompt, max_tokens=max_tokens, max_completion_tokens=max_tokens, **extra
        )

    def payload(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


def choice_request(model: str, prompt: str, top_logprobs: int) -> CompletionRequest:
    """One generated token and the top-k of its position."""
    return CompletionRequest.make(model, prompt, 1, logprobs=top_logprobs, echo=False)


def likelihood_request(model: str, text: str) -> CompletionRequest:
    """`text` echoed with its tokens' log-probabilities. `max_tokens=0` is not used:
    llama-cpp-python's server reads 0 as "unlimited" and older vLLM rejects it."""
    return CompletionRequest.make(model, text, 1, logprobs=1, echo=True)


def generate_request(model: str, prompt: str, max_tokens: int, stop: Sequence[str]) -> CompletionRequest:
    return CompletionRequest.make(model, prompt, max(1, int(max_tokens)), stop=list(stop) or None)


def excerpt(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def first_choice(data: dict[str, Any], url: str) -> dict[str, Any]:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise LLMError(f"POST {url} returned no choices: {excerpt(json.dumps(data))}")
    return choices[0]


def label_scores(choice: dict[str, Any], labels: Sequence[str], url: str) -> dict[str, float]:
    """Each label's log-probability at the first generated position (-inf outside the top-k)."""
    top = first_top_logprobs(choice.get("logprobs"))
    if top is None:
        raise LLMError(
            f"POST {url} returned no top log-probabilities (does the server support "
            "'logprobs' on /v1/completions? vLLM needs --max-logprobs >= top_logprobs)"
        )
    scores: dict[str, float] = {}
    for label in labels:
        bare = label.lstrip(" ")
        found = [top[v] for v in (bare, " " + bare) if bare and v in top]
        scores[label] = max(found) if found else NEG_INF
    return scores


def generated_text(choice: dict[str, Any], stop: Sequence[str], url: str) -> str:
    text = choice.get("text")
    if not isinstance(text, str):
        raise LLMError(f"POST {url} returned a choice without text")
    for s in stop:  # servers disagree on whether the stop string is included
        if s and s in text:
            text = text[: text.index(s)]
    return text.strip()


def _token_key(token: str) -> str:
    for marker in _SPACE_MARKERS:
        if token.startswith(marker):
            return " " + token[len(marker) :]
    return token


def first_top_logprobs(logprobs: Any) -> dict[str, float] | None:
    """The top-k of the first generated position as {token: logprob}, from any of the known shapes:
    completions' {"top_logprobs": [{tok: lp}, …]} (OpenAI, vLLM, llama-cpp-python), the same with a
    list of {"token", "logprob"} objects, or chat-style {"content": [{"top_logprobs": [...]}]}
    (llama-server)."""
    if not isinstance(logprobs, dict):
        return None
    first: Any = None
    top = logprobs.get("top_logprobs")
    content = logprobs.get("content")
    if isinstance(top, list) and top:
        first = top[0]
    elif isinstance(content, list) and content and isinstance(content[0], dict):
        first = content[0].get("top_logprobs")
    pairs: list[tuple[Any, Any]] = []
    if isinstance(first, dict):
        pairs = list(first.items())
    elif isinstance(first, list):
        pairs = [(e.get("token"), e.get("logprob")) for e in first if isinstance(e, dict)]
    out: dict[str, float] = {}
    for token, value in pairs:
        if not isinstance(token, str) or not isinstance(value, int | float) or isinstance(value, bool):
            continue
        key = _token_key(token)
        out[key] = max(out.get(key, NEG_INF), float(value))
    return out or None


def _echo_entries(logprobs: Any) -> tuple[list[str], list[int], list[float | None]] | None:
    """(tokens, character offsets, token log-probabilities) of an echoed completion, or None."""
    if not isinstance(logprobs, dict):
        return None
    tokens, offsets, values = (
        logprobs.get("tokens"),
        logprobs.get("text_offset"),
        logprobs.get("token_logprobs"),
    )
    if isinstance(tokens, list) and isinstance(values, list) and len(tokens) == len(values) and tokens:
        if not isinstance(offsets, list) or len(offsets) != len(tokens):
            offsets = _cumulative([str(t) for t in tokens])
        return [str(t) for t in tokens], [int(o) for o in offsets], [_number(v) for v in values]
    content = logprobs.get("content")
    if isinstance(content, list) and content and all(isinstance(e, dict) for e in content):
        tokens = [str(e.get("token", "")) for e in content]
        return tokens, _cumulative(tokens), [_number(e.get("logprob")) for e in content]
    return None


def _cumulative(tokens: list[str]) -> list[int]:
    offsets, position = [], 0
    for token in tokens:
        offsets.append(position)
        position += len(token)
    return offsets


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _aligned_spans(
    choice: dict[str, Any], text: str, url: str
) -> tuple[list[int], list[int], list[float | None]]:
    """(starts, ends, log-probabilities) of the echoed tokens as spans of `text`, or an LLMError
    saying why the server's echo cannot be trusted.

    vLLM lists a BOS token it does not echo ("<s>") and counts its text in `text_offset`; that is
    corrected. llama.cpp's C++ `llama-server` echoes no prompt log-probabilities; llama-cpp-python's
    server misaligns them by one position for models that add no BOS token (SmolLM2, Qwen, …):
    that case shows as echoed log-probabilities that stop short of the generated token."""
    entries = _echo_entries(choice.get("logprobs"))
    echoed = choice.get("text")
    if entries is None:
        raise LLMError(f"POST {url} returned no token log-probabilities for the echoed prompt")
    if not isinstance(echoed, str) or not echoed.startswith(text):
        raise LLMError(
            f"POST {url} did not echo the prompt (echo=true unsupported?); scoring continuations over "
            "HTTP needs prompt log-probabilities, as vLLM gives"
        )
    tokens, offsets, values = entries
    if len(tokens) > 1 and values[0] is None and tokens[0] and not echoed.startswith(tokens[0]):
        # Give vLLM's unechoed BOS token zero width so the offsets index the echoed text.
        lead = offsets[1] - offsets[0]
        offsets = [0, *(o - lead for o in offsets[1:])]
    ends = [*offsets[1:], offsets[-1] + len(tokens[-1])]
    if offsets[0] > 0 or ends[-1] < len(text):
        raise LLMError(
            f"POST {url} returned log-probabilities that do not cover the echoed prompt: the server "
            "cannot echo prompt log-probabilities (llama.cpp's llama-server cannot; use vLLM)"
        )
    if len(echoed) > len(text) and ends[-1] <= len(text):
        raise LLMError(
            f"POST {url} returned echoed log-probabilities that stop short of the generated token, so "
            "they are shifted by one position (llama-cpp-python's server does this for models that add "
            "no BOS token, e.g. SmolLM2); use vLLM, a model with a BOS token, or the embedded backend"
        )
    return offsets, ends, values


def continuation_logprob(choice: dict[str, Any], prompt: str, text: str, url: str) -> float:
    """Sum of the echoed log-probabilities of the tokens overlapping text[len(prompt):]."""
    starts, ends, values = _aligned_spans(choice, text, url)
    start, stop = len(prompt), len(text)
    total, counted = 0.0, 0
    for begin, end, value in zip(starts, ends, values, strict=True):
        if begin >= stop or end <= start:
            continue
        if value is None:
            raise LLMError(
                f"POST {url} gave no log-probability for the continuation's first token (empty prompt?)"
            )
        total += value
        counted += 1
    if counted == 0 or math.isnan(total):
        raise LLMError(f"POST {url} returned no log-probabilities for the continuation")
    return total


def token_count(data: Any, url: str) -> int:
    if isinstance(data, dict):
        if isinstance(data.get("count"), int):
            return int(data["count"])
        if isinstance(data.get("tokens"), list):
            return len(data["tokens"])
    raise LLMError(f"POST {url} returned no tokens")
