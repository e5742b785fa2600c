"""The LLM backend protocol: what the reranker needs, not a general chat wrapper.

- `score_choices`: log-probabilities of single-token labels (A, B, …) as the next token after
  a prompt, in one forward pass (LlamaRec's verbalizer).
- `score_continuations`: the log-likelihood of each continuation (a candidate's title) after
  one shared prompt, the prompt evaluated once.
- `generate`: short greedy text (explanations).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from fewrec.data.errors import FewrecError


class LLMError(FewrecError):
    """The model could not be loaded, reached, or gave an unusable answer."""


@runtime_checkable
class LLMBackend(Protocol):
    name: str

    def count_tokens(self, text: str) -> int: ...

    def score_choices(self, prompt: str, labels: Sequence[str]) -> dict[str, float]:
        """Log-probability of each label as the next token (-inf when the backend does not
        report it, e.g. outside a server's top-k)."""
        ...

    def score_continuations(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        """Sum of token log-probabilities of each continuation after `prompt`."""
        ...

    def generate(self, prompt: str, max_tokens: int = 64, stop: Sequence[str] = ("\n",)) -> str: ...
