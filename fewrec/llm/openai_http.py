"""LLM backend over an OpenAI-compatible HTTP server (`vllm serve MODEL`, `python -m llama_cpp.server`, …).

Only the legacy `/v1/completions` endpoint is used: fewrec's prompts are raw text and base models
have no chat template. What is sent and how the answers are read (label scores, echoed
log-probabilities and their alignment) is `completions.py`; this module is the transport.

- `score_choices`: one request, `max_tokens=1`, `logprobs=top_logprobs`.
- `score_continuations`: one request per continuation for `prompt + continuation` with
  `echo=true, logprobs=1, max_tokens=1`. The server must echo prompt log-probabilities: vLLM
  does; llama.cpp's C++ `llama-server` does not; llama-cpp-python's server does, but misaligns
  them for models that add no BOS token — raised as an LLMError instead of wrong numbers.
- `generate`: greedy text.
- `count_tokens`: the server's tokenizer (`/extras/tokenize` of llama-cpp-python, `/tokenize` of
  vLLM and llama-server) when it has one, else an estimate of len(text) // 4 + 1 (about four
  characters per token for English BPE vocabularies).

Transport: one `httpx.Client` (its connection pool kept between calls) shared by a pool of
`concurrency` worker threads, so that up to `concurrency` requests are in flight across all
callers, which keeps a vLLM server's continuous batching busy. A synchronous call's requests
(a user's continuations) run on the workers at once; `score_continuations_many` queues many
users' jobs on them for evaluation. Blocking calls also work where the caller's thread already
runs an event loop (a notebook).

Retries (tenacity): connection errors, timeouts, HTTP 429 and 5xx are retried with exponential
back-off (jitter, capped at `retry_max_wait_s`, a 429's Retry-After honoured within that cap), at
most `max_retries` times after the first attempt and not after `retry_deadline_s` have passed
since the first attempt. An attempt ends after `timeout_s`, even against a server that trickles
its answer. Other 4xx answers fail at once. Whatever fails ends as an LLMError naming the URL and
the last status or error. A synchronous call (all of its requests together) is also bounded: it
ends after `retry_deadline_s + timeout_s`, and its first failed request stops the others before
their next attempt, so a dead or stalled server costs one bounded wait per call, not one per
request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    stop_any,
    stop_when_event_set,
)

from fewrec.llm.base import LLMError
from fewrec.llm.completions import (
    NEG_INF,
    CompletionRequest,
    choice_request,
    continuation_logprob,
    excerpt,
    first_choice,
    first_top_logprobs,
    generate_request,
    generated_text,
    label_scores,
    likelihood_request,
    token_count,
)

if TYPE_CHECKING:
    from fewrec.config import LLMSettings

T = TypeVar("T")
# One request of a call; it stops retrying once the event is set (the call has given up).
Request = Callable[[threading.Event], T]

# The names the HTTP tests import from here.
_continuation_logprob = continuation_logprob
_first_top_logprobs = first_top_logprobs


class _Transient(Exception):
    """A failure worth another attempt (connection, timeout, 429, 5xx)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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
        self._client: httpx.Client | None = None
        self._workers: concurrent.futures.ThreadPoolExecutor | None = None
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
    def _started(self) -> tuple[httpx.Client, concurrent.futures.ThreadPoolExecutor]:
        """The client and its workers, made on first use (again after `close`)."""
        with self._start_lock:
            if self._client is None or self._workers is None:
                headers = {"Content-Type": "application/json"}
                if self.api_key:
                    headers["Authorization"] = f"Bearer {self.api_key}"
                self._client = httpx.Client(
                    timeout=httpx.Timeout(self.timeout_s),
                    headers=headers,
                    limits=httpx.Limits(
                        max_connections=self.concurrency, max_keepalive_connections=self.concurrency
                    ),
                )
                self._workers = concurrent.futures.ThreadPoolExecutor(
                    self.concurrency, thread_name_prefix=f"fewrec-{self.name}"
                )
            return self._client, self._workers

    def close(self) -> None:
        """Close the connection pool and stop the workers (idempotent)."""
        with self._start_lock:
            client, workers = self._client, self._workers
            self._client = self._workers = None
        if workers is not None:
            workers.shutdown(wait=False, cancel_futures=True)
        if client is not None:
            client.close()

    def __enter__(self) -> OpenAICompatibleBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    def _call(self, requests: Sequence[Request[T]]) -> list[T]:
        """Run one synchronous call's requests on the workers: all their results, in order, within
        one bounded wait, or the first failure (which stops the rest)."""
        _, workers = self._started()
        given_up = threading.Event()
        futures = [workers.submit(request, given_up) for request in requests]
        limit = self.retry_deadline_s + self.timeout_s  # one call, all its requests and retries
        done, pending = concurrent.futures.wait(
            futures, timeout=limit, return_when=concurrent.futures.FIRST_EXCEPTION
        )
        failed = next((f.exception() for f in futures if f in done and f.exception() is not None), None)
        if failed is None and not pending:
            return [f.result() for f in futures]
        given_up.set()  # running requests make no further attempt; queued ones never start
        for future in pending:
            future.cancel()
        if failed is not None:
            raise failed
        raise LLMError(f"{self.base_url}: no complete answer within {limit:g}s")

    # ---------------------------------------------------------------- HTTP
    def _post(
        self, url: str, request: CompletionRequest | dict[str, Any], given_up: threading.Event
    ) -> dict[str, Any]:
        """POST JSON with bounded retries; returns the decoded JSON object or raises LLMError."""
        payload = request.payload() if isinstance(request, CompletionRequest) else request
        start = time.monotonic()
        retrying = Retrying(
            stop=stop_any(
                stop_after_attempt(self.max_retries + 1),
                stop_after_delay(self.retry_deadline_s),
                stop_when_event_set(given_up),
            ),
            wait=self._backoff,
            retry=retry_if_exception_type(_Transient),
            sleep=given_up.wait,  # a call that gave up wakes its requests from their back-off
            reraise=True,
        )
        try:
            return retrying(self._attempt, url, payload)
        except _Transient as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            raise LLMError(
                f"POST {url}: no answer after {attempts} attempt(s) in {time.monotonic() - start:.1f}s; "
                f"last error: {exc}"
            ) from exc

    def _backoff(self, state: RetryCallState) -> float:
        base = 0.5 * 2 ** (state.attempt_number - 1) + random.uniform(0, 0.5)  # exponential, jittered
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, _Transient) and error.retry_after is not None:
            base = max(base, error.retry_after)
        return min(base, self.retry_max_wait_s)

    def _attempt(self, url: str, payload: dict[str, Any]) -> dict[str, Any]:
        client, _ = self._started()
        deadline = time.monotonic() + self.timeout_s  # a hard bound, even for a trickling server
        try:
            with client.stream("POST", url, json=payload) as response:
                body = b"".join(_until(deadline, response.iter_bytes()))
        except TimeoutError as exc:
            raise _Transient(f"timed out after {self.timeout_s:g}s") from exc
        except httpx.TimeoutException as exc:
            raise _Transient(f"timed out after {self.timeout_s:g}s ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        text = body.decode(response.encoding or "utf-8", errors="replace")
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status}: {excerpt(text)}", _retry_after(response))
        if status >= 400:
            raise LLMError(f"POST {url} returned HTTP {status}: {excerpt(text)}")
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LLMError(f"POST {url} returned malformed JSON: {excerpt(text)}") from exc
        if not isinstance(data, dict):
            raise LLMError(f"POST {url} returned JSON that is not an object: {excerpt(text)}")
        if isinstance(data.get("error"), dict | str):  # some servers report errors with status 200
            raise LLMError(f"POST {url} returned an error: {excerpt(json.dumps(data['error']))}")
        return data

    def _complete(self, request: CompletionRequest) -> dict[str, Any]:
        """One completion request as a call of its own: its first choice."""
        data = self._call([partial(self._post, self.completions_url, request)])[0]
        return first_choice(data, self.completions_url)

    # ---------------------------------------------------------------- protocol
    def score_choices(self, prompt: str, labels: Sequence[str]) -> dict[str, float]:
        choice = self._complete(choice_request(self.model, prompt, self.top_logprobs))
        return label_scores(choice, labels, self.completions_url)

    def score_continuations(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        return self._call([partial(self._score_one, prompt, c) for c in continuations])

    def _score_one(self, prompt: str, continuation: str, given_up: threading.Event) -> float:
        if not continuation:
            return NEG_INF  # as the embedded backend: nothing to score
        text = prompt + continuation
        data = self._post(self.completions_url, likelihood_request(self.model, text), given_up)
        return continuation_logprob(
            first_choice(data, self.completions_url), prompt, text, self.completions_url
        )

    def generate(self, prompt: str, max_tokens: int = 64, stop: Sequence[str] = ("\n",)) -> str:
        choice = self._complete(generate_request(self.model, prompt, max_tokens, stop))
        return generated_text(choice, stop, self.completions_url)

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` by the server's tokenizer, or len(text) // 4 + 1 when it has none."""
        return self._call([partial(self._count_tokens, text)])[0]

    def _count_tokens(self, text: str, given_up: threading.Event) -> int:
        if self._tokenize_route is not None:
            url, body = self._tokenize_route
            return token_count(self._post(url, body(text), given_up), url)
        if not self._tokenize_probed:
            count = self._probe_tokenizer(text)
            if count is not None:
                return count
        return len(text) // 4 + 1

    def _probe_tokenizer(self, text: str) -> int | None:
        """The count from the first tokenizer route that answers (remembered), or None."""
        client, _ = self._started()
        model = self.model
        # llama-cpp-python's server; then vLLM ("prompt") and llama-server ("content").
        routes: list[tuple[str, Callable[[str], dict[str, Any]]]] = [
            (f"{self.server_root}/extras/tokenize", lambda t: {"model": model, "input": t}),
            (f"{self.server_root}/tokenize", lambda t: {"model": model, "prompt": t, "content": t}),
        ]
        reached = False
        for url, body in routes:
            try:
                response = client.post(url, json=body(text))
            except httpx.HTTPError:
                continue
            reached = True
            if response.status_code != 200:
                continue
            try:
                count = token_count(response.json(), url)
            except (ValueError, LLMError):
                continue
            self._tokenize_route = (url, body)
            return count
        self._tokenize_probed = reached  # a server that answered has no tokenizer route; retry if down
        return None

    # ---------------------------------------------------------------- batch
    def score_continuations_batch(self, jobs: list[tuple[str, list[str]]]) -> list[list[float] | LLMError]:
        """Score many (prompt, continuations) jobs, keeping up to `concurrency` requests in flight.

        Results come in the order of `jobs`, a failed job as its LLMError (the other jobs go on)."""
        _, workers = self._started()
        failures: dict[int, LLMError] = {}
        never = threading.Event()  # a job's requests are bounded by their own retries only

        def score(job: int, prompt: str, continuation: str) -> float:
            if job in failures:
                return NEG_INF  # the job already failed; spare the server its other requests
            try:
                return self._score_one(prompt, continuation, never)
            except LLMError as exc:
                failures.setdefault(job, exc)
                return NEG_INF

        futures = [
            [workers.submit(score, job, prompt, c) for c in conts] for job, (prompt, conts) in enumerate(jobs)
        ]
        rows = [[future.result() for future in row] for row in futures]
        return [failures.get(job, row) for job, row in enumerate(rows)]

    async def score_continuations_many(
        self, jobs: list[tuple[str, list[str]]]
    ) -> list[list[float] | LLMError]:
        """`score_continuations_batch` for a caller on an event loop (the loop is not blocked)."""
        return await asyncio.to_thread(self.score_continuations_batch, jobs)


def _until(deadline: float, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The chunks of a body, raising TimeoutError once `deadline` (monotonic) has passed."""
    for chunk in chunks:
        if time.monotonic() > deadline:
            raise TimeoutError
        yield chunk


def _retry_after(response: httpx.Response) -> float | None:
    try:
        value = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


__all__ = ["OpenAICompatibleBackend"]
