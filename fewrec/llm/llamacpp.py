"""Embedded llama.cpp backend (llama-cpp-python), the CPU default.

Scoring continuations is where the time goes, and Gemma's vocabulary has 262k tokens, so
full-sequence logits are out of the question. The prompt is evaluated once in sequence 0
(reusing whatever prefix the previous call left in the KV cache); then every continuation
becomes its own sequence that shares the prompt's cache cells, and all of them are decoded
in one batch that asks for logits only at the positions that predict a continuation token.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fewrec.llm.base import LLMError


def _log_softmax_at(row: np.ndarray, token: int) -> float:
    peak = float(row.max())
    return float(row[token] - peak - np.log(np.exp(row - peak).sum()))


class LlamaCppBackend:
    """A GGUF model in-process. Thread-safe (one call at a time)."""

    def __init__(
        self,
        model_path: Path | str,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        max_continuations: int = 64,
        name: str | None = None,
    ) -> None:
        try:
            import llama_cpp
            from llama_cpp import _internals
        except ImportError as exc:
            raise LLMError(
                "llama-cpp-python is not installed; install fewrec with the 'llm' extra: "
                "pip install 'fewrec[llm]'"
            ) from exc
        path = Path(model_path)
        if not path.is_file():
            raise LLMError(f"model file not found: {path}")
        self.name = name or path.stem
        self._ll = llama_cpp
        llama_cpp.llama_log_set(_silence, ctypes.c_void_p(0))
        model_params = llama_cpp.llama_model_default_params()
        self._model = _internals.LlamaModel(path_model=str(path), params=model_params, verbose=False)
        params = llama_cpp.llama_context_default_params()
        threads = n_threads or os.cpu_count() or 1
        params.n_ctx = n_ctx
        params.n_batch = n_ctx
        params.n_ubatch = 512
        params.n_seq_max = max_continuations + 1
        params.kv_unified = True  # continuations share the prompt's cells instead of copying them
        params.n_threads = threads
        params.n_threads_batch = threads
        self._ctx = _internals.LlamaContext(model=self._model, params=params, verbose=False)
        self.n_ctx = n_ctx
        self.max_continuations = max_continuations
        self._batch = llama_cpp.llama_batch_init(n_ctx, 0, max_continuations + 1)
        self._vocab = llama_cpp.llama_model_get_vocab(self._model.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self._memory = llama_cpp.llama_get_memory(self._ctx.ctx)
        self._cached: list[int] = []  # tokens whose KV cells sequence 0 holds
        self._lock = threading.Lock()

    def close(self) -> None:
        if getattr(self, "_batch", None) is not None:
            self._ll.llama_batch_free(self._batch)
            self._batch = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # ---------------------------------------------------------------- tokens
    def tokenize(self, text: str, bos: bool = False) -> list[int]:
        return list(self._model.tokenize(text.encode("utf-8"), add_bos=bos, special=False))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text, bos=True))

    def piece(self, token: int) -> str:
        return self._model.token_to_piece(token).rstrip(b"\x00").decode("utf-8", errors="replace")

    # ---------------------------------------------------------------- decoding
    def _decode(self, tokens: list[tuple[int, int, int, bool]]) -> None:
        """Decode (token, position, sequence, wants_logits) entries in one batch."""
        batch = self._batch
        for i, (token, pos, seq, logits) in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
        batch.n_tokens = len(tokens)
        status = self._ll.llama_decode(self._ctx.ctx, batch)
        if status != 0:
            raise LLMError(
                f"llama_decode failed with status {status} (context of {self.n_ctx} tokens too small?)"
            )

    def _logits(self, index: int) -> np.ndarray:
        pointer = self._ll.llama_get_logits_ith(self._ctx.ctx, index)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))

    def _eval_prompt(self, tokens: list[int]) -> np.ndarray:
        """Put `tokens` in sequence 0 (reusing the common prefix) and return the last logits."""
        if len(tokens) >= self.n_ctx:
            raise LLMError(f"prompt of {len(tokens)} tokens does not fit the context of {self.n_ctx}")
        common = 0
        for a, b in zip(self._cached, tokens, strict=False):
            if a != b:
                break
            common += 1
        common = min(common, len(tokens) - 1)  # always re-evaluate at least the last token
        self._ll.llama_memory_seq_rm(self._memory, -1, common, -1)
        for seq in range(1, self.max_continuations + 1):
            self._ll.llama_memory_seq_rm(self._memory, seq, -1, -1)
        self._cached = list(tokens[:common])  # still true if the decode below fails midway
        rest = tokens[common:]
        chunk = 512
        for start in range(0, len(rest), chunk):
            part = rest[start : start + chunk]
            last_chunk = start + chunk >= len(rest)
            self._decode(
                [(t, common + start + i, 0, last_chunk and i == len(part) - 1) for i, t in enumerate(part)]
            )
        self._cached = list(tokens)
        return np.array(self._logits(-1), copy=True)

    # ---------------------------------------------------------------- protocol
    def score_choices(self, prompt: str, labels: Sequence[str]) -> dict[str, float]:
        with self._lock:
            logits = self._eval_prompt(self.tokenize(prompt, bos=True))
        out: dict[str, float] = {}
        for label in labels:
            ids = self.tokenize(label)
            if len(ids) != 1:
                raise LLMError(
                    f"label {label!r} is {len(ids)} tokens for this tokenizer; labels must be one token"
                )
            out[label] = _log_softmax_at(logits, ids[0])
        return out

    def score_continuations(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        if len(continuations) > self.max_continuations:
            raise LLMError(
                f"at most {self.max_continuations} continuations per call, got {len(continuations)}"
            )
        prompt_tokens = self.tokenize(prompt, bos=True)
        pieces = [self.tokenize(c) for c in continuations]
        if sum(len(p) for p in pieces) + len(prompt_tokens) >= self.n_ctx:
            raise LLMError("prompt and continuations do not fit the context window")
        with self._lock:
            first = self._eval_prompt(prompt_tokens)
            start = len(prompt_tokens)
            entries: list[tuple[int, int, int, bool]] = []
            rows: list[list[int]] = []  # batch index of the logits predicting each next token
            for seq, tokens in enumerate(pieces, start=1):
                self._ll.llama_memory_seq_cp(self._memory, 0, seq, -1, -1)
                row = []
                for i, token in enumerate(tokens[:-1]):
                    row.append(len(entries))
                    entries.append((token, start + i, seq, True))
                rows.append(row)
            if entries:
                self._decode(entries)
            scores = []
            for tokens, row in zip(pieces, rows, strict=True):
                if not tokens:
                    scores.append(float("-inf"))
                    continue
                total = _log_softmax_at(first, tokens[0])
                for index, token in zip(row, tokens[1:], strict=True):
                    total += _log_softmax_at(self._logits(index), token)
                scores.append(total)
            for seq in range(1, len(pieces) + 1):
                self._ll.llama_memory_seq_rm(self._memory, seq, -1, -1)
        return scores

    def generate(self, prompt: str, max_tokens: int = 64, stop: Sequence[str] = ("\n",)) -> str:
        eos = self._ll.llama_vocab_eos(self._vocab)
        with self._lock:
            tokens = self.tokenize(prompt, bos=True)
            logits = self._eval_prompt(tokens)
            text = ""
            for _ in range(max_tokens):
                token = int(np.argmax(logits))
                if token == eos or len(tokens) + 1 >= self.n_ctx:
                    break
                text += self.piece(token)
                if any(s in text for s in stop):
                    text = text[: min(text.index(s) for s in stop if s in text)]
                    break
                self._decode([(token, len(tokens), 0, True)])
                tokens.append(token)
                self._cached = list(tokens)
                logits = np.array(self._logits(-1), copy=True)
        return text.strip()


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _silence(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """llama.cpp logs every load to stderr; fewrec keeps the terminal for its own output."""
