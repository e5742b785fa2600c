"""LLM backend over an OpenAI-compatible HTTP server (`vllm serve MODEL`, `python -m llama_cpp.server`, …).

Only the legacy `/v1/completions` endpoint is used: fewrec's prompts are raw text and base models
have no chat template.

- `score_choices`: one request, `max_tokens=1`, `logprobs=top_logprobs`; the labels are read off
  the first generated position's top-k (a label outside the top-k gets -inf).
- `score_continuations`: one request per continuation for `prompt + continuation` with
  `echo=true, logprobs=1, max_tokens=1`, summing the log-probabilities of the echoed tokens whose
  text overlaps the continuation (a token straddling the boundary counts). `max_tokens=0` is not
  used: llama-cpp-python's server reads 0 as "unlimited" and older vLLM rejects it.
  The server must echo prompt log-probabilities: vLLM does; llama.cpp's C++ `llama-server` does
  not; llama-cpp-python's server does, but misaligns them by one position for models that add no
  BOS token (SmolLM2, Qwen, …) — that case is detected (the echoed log-probabilities stop short of
  the generated token) and raised as an LLMError instead of returning wrong numbers. vLLM lists a
  BOS token it does not echo ("<s>") and counts its text in `text_offset`; that is corrected.
- `generate`: greedy text.
- `count_tokens`: the server's tokenizer (`/extras/tokenize` of llama-cpp-python, `/tokenize` of
  vLLM and llama-server) when it has one, else an estimate of len(text) // 4 + 1 (about four
  characters per token for English BPE vocabularies).

Transport: httpx.AsyncClient. The synchronous protocol methods run on a private event loop in a
daemon thread (so they also work when the caller's thread already runs a loop, e.g. a notebook),
which keeps one connection pool alive between calls. `score_continuations_many` is the async batch
API for evaluation and runs on the caller's loop with up to `concurrency` requests in flight, which
keeps a vLLM server's continuous batching busy.

Retries (tenacity): connection errors, timeouts, HTTP 429 and 5xx are retried with exponential
back-off (jitter, capped at `retry_max_wait_s`, a 429's Retry-After honoured within that cap), at
most `max_retries` times after the first attempt and not after `retry_deadline_s` have passed
since the first attempt. Other 4xx answers fail at once. Whatever fails ends as an LLMError naming
the URL and the last status or error. A synchronous call (all of its requests together) is also
bounded: it ends after `retry_deadline_s + timeout_s`, and its first failed request cancels the
others, so a dead or stalled server costs one bounded wait per call, not one per request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import math
import random
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
)

from fewrec.llm.base import LLMError

if TYPE_CHECKING:
    from fewrec.config import LLMSettings

T = TypeVar("T")

_NEG_INF = float("-inf")
# Byte-level BPE and SentencePiece spell a leading space this way in raw token strings.
_SPACE_MARKERS = ("Ġ", "▁")


class _Transient(Exception):
    """A failure worth another attempt (connection, timeout, 429, 5xx)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Session:
    """An AsyncClient and the semaphore bounding requests in flight, both bound to one event loop."""

    def __init__(self, backend: OpenAICompatibleBackend) -> None:
        headers = {"Content-Type": "application/json"}
        if backend.api_key:
            headers["Authorization"] = f"Bearer {backend.api_key}"
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(backend.timeout_s),
            headers=headers,
            limits=httpx.Limits(
                max_connections=backend.concurrency, max_keepalive_connections=backend.concurrency
            ),
        )
        self.semaphore = asyncio.Semaphore(backend.concurrency)

    async def aclose(self) -> None:
        await self.client.aclose()


class OpenAICompatibleBackend:
    """The LLMBackend protocol against an OpenAI-compatible completions server. Thread-safe."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "EMPTY",
        timeout_s: float = 30.0,
        max_retries: int = 3,
        retry_max_wait_s: float = 8.0,
        concurrency: int = 8,
        top_logprobs: int = 20,
        retry_deadline_s: float | None = None,
    ) -> None:
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise LLMError(f"the OpenAI-compatible backend needs an http(s) base_url, got {base_url!r}")
        if not model:
            raise LLMError("the OpenAI-compatible backend needs the model name the server serves")
        if timeout_s <= 0 or max_retries < 0 or retry_max_wait_s < 0 or concurrency < 1 or top_logprobs < 1:
            raise LLMError(
                "invalid HTTP backend settings: timeout_s > 0, max_retries >= 0, retry_max_wait_s >= 0, "
                "concurrency >= 1 and top_logprobs >= 1 are required"
            )
        self.base_url = base_url.rstrip("/")
        # vLLM and llama-server put their tokenizer at the server root, next to /v1.
        self.server_root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        self.completions_url = f"{self.base_url}/completions"
        self.model = model
        self.name = f"openai:{model}"
        self.api_key = api_key
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.retry_max_wait_s = float(retry_max_wait_s)
        self.concurrency = int(concurrency)
        self.top_logprobs = int(top_logprobs)
        # Total bound on one request's retries: no new attempt once this much time has passed.
        self.retry_deadline_s = (
            float(retry_deadline_s) if retry_deadline_s is not None else max(60.0, 2 * timeout_s)
        )
        self._tokenize_route: tuple[str, Callable[[str], dict[str, Any]]] | None = None
        self._tokenize_probed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: _Session | None = None
        self._start_lock = threading.Lock()

    @classmethod
    def from_settings(cls, llm: LLMSettings) -> OpenAICompatibleBackend:
        if not llm.base_url:
            raise LLMError(
                "llm.base_url is required for the openai backend (e.g. http://127.0.0.1:8000/v1, "
                "FEWREC_LLM__BASE_URL)"
            )
        return cls(
            base_url=llm.base_url,
            model=llm.model,
            api_key=llm.api_key,
            timeout_s=llm.timeout_s,
            max_retries=llm.max_retries,
            retry_max_wait_s=llm.retry_max_wait_s,
            concurrency=llm.concurrency,
            top_logprobs=llm.top_logprobs,
            retry_deadline_s=getattr(llm, "retry_deadline_s", None),
        )

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Close the connection pool and stop the private event loop (idempotent)."""
        with self._start_lock:
            loop, thread, session = self._loop, self._thread, self._session
            self._loop = self._thread = self._session = None
        if loop is None:
            return
        if session is not None and loop.is_running():
            with contextlib.suppress(Exception):  # best effort on shutdown
                asyncio.run_coroutine_threadsafe(session.aclose(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        if not loop.is_running():
            loop.close()

    def __enter__(self) -> OpenAICompatibleBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    def _run(self, make: Callable[[_Session], Coroutine[Any, Any, T]]) -> T:
        """Run a coroutine on the private loop (started on first use) and wait for its result."""
        with self._start_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=serve, name=f"fewrec-{self.name}", daemon=True)
                thread.start()
                ready.wait()
                self._session = asyncio.run_coroutine_threadsafe(_make_session(self), loop).result()
                self._loop, self._thread = loop, thread
            loop, session = self._loop, self._session
        assert session is not None
        if threading.current_thread() is self._thread:
            raise LLMError("the synchronous API cannot be called from the backend's own event loop")
        future = asyncio.run_coroutine_threadsafe(make(session), loop)
        limit = self.retry_deadline_s + self.timeout_s  # one call, all its requests and retries
        try:
            return future.result(timeout=limit)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise LLMError(f"{self.base_url}: no complete answer within {limit:g}s") from exc

    # ---------------------------------------------------------------- HTTP
    async def _post(self, session: _Session, url: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST JSON with bounded retries; returns the decoded JSON object or raises LLMError."""
        start = time.monotonic()
        attempts = 0

        def wait(state: RetryCallState) -> float:
            base = 0.5 * 2 ** (state.attempt_number - 1) + random.uniform(0, 0.5)  # exponential, jittered
            error = state.outcome.exception() if state.outcome is not None else None
            if isinstance(error, _Transient) and error.retry_after is not None:
                base = max(base, error.retry_after)
            return min(base, self.retry_max_wait_s)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1) | stop_after_delay(self.retry_deadline_s),
            wait=wait,
            retry=retry_if_exception_type(_Transient),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    async with session.semaphore:
                        return await self._attempt(session, url, payload)
        except _Transient as exc:
            raise LLMError(
                f"POST {url}: no answer after {attempts} attempt(s) in {time.monotonic() - start:.1f}s; "
                f"last error: {exc}"
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover - tenacity either returns or raises

    async def _attempt(self, session: _Session, url: str, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.timeout_s):  # a hard bound, even for a trickling server
                response = await session.client.post(url, json=payload)
        except TimeoutError as exc:
            raise _Transient(f"timed out after {self.timeout_s:g}s") from exc
        except httpx.TimeoutException as exc:
            raise _Transient(f"timed out after {self.timeout_s:g}s ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status}: {_excerpt(response.text)}", _retry_after(response))
        if status >= 400:
            raise LLMError(f"POST {url} returned HTTP {status}: {_excerpt(response.text)}")
        try:
            data = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LLMError(f"POST {url} returned malformed JSON: {_excerpt(response.text)}") from exc
        if not isinstance(data, dict):
            raise LLMError(f"POST {url} returned JSON that is not an object: {_excerpt(response.text)}")
        if isinstance(data.get("error"), dict | str):  # some servers report errors with status 200
            raise LLMError(f"POST {url} returned an error: {_excerpt(json.dumps(data['error']))}")
        return data

    def _completion_payload(self, prompt: str, max_tokens: int, **extra: Any) -> dict[str, Any]:
        # llama-cpp-python's server ignores max_completion_tokens; newer servers prefer it.
        return {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "max_completion_tokens": max_tokens,
            "temperature": 0.0,
            "stream": False,
            **extra,
        }

    def _choice(self, data: dict[str, Any]) -> dict[str, Any]:
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise LLMError(f"POST {self.completions_url} returned no choices: {_excerpt(json.dumps(data))}")
        return choices[0]

    # ---------------------------------------------------------------- protocol
    def score_choices(self, prompt: str, labels: Sequence[str]) -> dict[str, float]:
        return self._run(lambda session: self._score_choices(session, prompt, labels))

    async def _score_choices(self, session: _Session, prompt: str, labels: Sequence[str]) -> dict[str, float]:
        payload = self._completion_payload(prompt, 1, logprobs=self.top_logprobs, echo=False)
        choice = self._choice(await self._post(session, self.completions_url, payload))
        top = _first_top_logprobs(choice.get("logprobs"))
        if top is None:
            raise LLMError(
                f"POST {self.completions_url} returned no top log-probabilities (does the server support "
                "'logprobs' on /v1/completions? vLLM needs --max-logprobs >= top_logprobs)"
            )
        scores: dict[str, float] = {}
        for label in labels:
            bare = label.lstrip(" ")
            found = [top[v] for v in (bare, " " + bare) if bare and v in top]
            scores[label] = max(found) if found else _NEG_INF
        return scores

    def score_continuations(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        return self._run(lambda session: self._score_continuations(session, prompt, continuations))

    async def _score_continuations(
        self, session: _Session, prompt: str, continuations: Sequence[str]
    ) -> list[float]:
        tasks = [asyncio.ensure_future(self._score_one(session, prompt, c)) for c in continuations]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:  # the first failure ends the call: stop the rest, free their slots
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _score_one(self, session: _Session, prompt: str, continuation: str) -> float:
        if not continuation:
            return _NEG_INF  # as the embedded backend: nothing to score
        text = prompt + continuation
        payload = self._completion_payload(text, 1, logprobs=1, echo=True)
        choice = self._choice(await self._post(session, self.completions_url, payload))
        return _continuation_logprob(choice, prompt, text, self.completions_url)

    def generate(self, prompt: str, max_tokens: int = 64, stop: Sequence[str] = ("\n",)) -> str:
        return self._run(lambda session: self._generate(session, prompt, max_tokens, stop))

    async def _generate(self, session: _Session, prompt: str, max_tokens: int, stop: Sequence[str]) -> str:
        extra: dict[str, Any] = {"stop": list(stop)} if stop else {}
        payload = self._completion_payload(prompt, max(1, int(max_tokens)), **extra)
        choice = self._choice(await self._post(session, self.completions_url, payload))
        text = choice.get("text")
        if not isinstance(text, str):
            raise LLMError(f"POST {self.completions_url} returned a choice without text")
        for s in stop:  # servers disagree on whether the stop string is included
            if s and s in text:
                text = text[: text.index(s)]
        return text.strip()

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` by the server's tokenizer, or len(text) // 4 + 1 when it has none."""
        return self._run(lambda session: self._count_tokens(session, text))

    async def _count_tokens(self, session: _Session, text: str) -> int:
        if self._tokenize_route is not None:
            url, body = self._tokenize_route
            return _token_count(await self._post(session, url, body(text)), url)
        if not self._tokenize_probed:
            model = self.model
            # llama-cpp-python's server; then vLLM ("prompt") and llama-server ("content").
            routes: list[tuple[str, Callable[[str], dict[str, Any]]]] = [
                (f"{self.server_root}/extras/tokenize", lambda t: {"model": model, "input": t}),
                (f"{self.server_root}/tokenize", lambda t: {"model": model, "prompt": t, "content": t}),
            ]
            reached = False
            for url, body in routes:
                try:
                    response = await session.client.post(url, json=body(text))
                except httpx.HTTPError:
                    continue
                reached = True
                if response.status_code != 200:
                    continue
                try:
                    count = _token_count(response.json(), url)
                except (ValueError, LLMError):
                    continue
                self._tokenize_route = (url, body)
                return count
            self._tokenize_probed = reached  # a server that answered has no tokenizer route; retry if down
        return len(text) // 4 + 1

    # ---------------------------------------------------------------- batch (async)
    async def score_continuations_many(
        self, jobs: list[tuple[str, list[str]]]
    ) -> list[list[float] | LLMError]:
        """Score many (prompt, continuations) jobs, keeping up to `concurrency` requests in flight.

        Runs on the caller's event loop with its own connection pool; results come in the order of
        `jobs`, a failed job as its LLMError (the other jobs go on)."""
        session = await _make_session(self)
        results: list[list[float] | LLMError] = [[_NEG_INF] * len(conts) for _, conts in jobs]
        items = iter([(j, k) for j, (_, conts) in enumerate(jobs) for k in range(len(conts))])

        async def worker() -> None:
            for j, k in items:  # a shared iterator: each item goes to exactly one worker
                row = results[j]
                if isinstance(row, LLMError):
                    continue  # the job already failed; spare the server its other requests
                prompt, conts = jobs[j]
                try:
                    row[k] = await self._score_one(session, prompt, conts[k])
                except LLMError as exc:
                    results[j] = exc

        try:
            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        finally:
            await session.aclose()
        return results


async def _make_session(backend: OpenAICompatibleBackend) -> _Session:
    return _Session(backend)  # created inside a coroutine so that its semaphore binds to that loop


def _excerpt(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def _retry_after(response: httpx.Response) -> float | None:
    try:
        value = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


def _token_key(token: str) -> str:
    for marker in _SPACE_MARKERS:
        if token.startswith(marker):
            return " " + token[len(marker) :]
    return token


def _first_top_logprobs(logprobs: Any) -> dict[str, float] | None:
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
        out[key] = max(out.get(key, _NEG_INF), float(value))
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


def _continuation_logprob(choice: dict[str, Any], prompt: str, text: str, url: str) -> float:
    """Sum of the echoed log-probabilities of the tokens overlapping text[len(prompt):]."""
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
        # vLLM lists a BOS token it does not echo ("<s>", "<bos>", …) and counts its text in the
        # offsets; give it zero width so the offsets index the echoed text.
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
    start, stop = len(prompt), len(text)
    total, counted = 0.0, 0
    for begin, end, value in zip(offsets, ends, values, strict=True):
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


def _token_count(data: Any, url: str) -> int:
    if isinstance(data, dict):
        if isinstance(data.get("count"), int):
            return int(data["count"])
        if isinstance(data.get("tokens"), list):
            return len(data["tokens"])
    raise LLMError(f"POST {url} returned no tokens")


__all__ = ["OpenAICompatibleBackend"]
