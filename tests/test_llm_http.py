"""The OpenAI-compatible HTTP backend against real servers.

- llama-cpp-python's server (`python -m llama_cpp.server`) with the bundled SmolLM2-135M, once as
  shipped and once told to add a BOS token (its echoed prompt log-probabilities are only aligned
  then: SmolLM2 adds none, and llama-cpp-python shifts them by one position in that case);
- tiny `http.server` servers in a thread for the faults (5xx, 4xx, garbage, missing logprobs,
  slowness) and for the ordering of the concurrent batch API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from servers import FakeServer, Reply, free_port, start_llama_server, stop_process

from fewrec.llm.base import LLMBackend, LLMError
from fewrec.llm.models import resolve_model
from fewrec.llm.openai_http import OpenAICompatibleBackend, _continuation_logprob, _first_top_logprobs

# ------------------------------------------------------------------ helpers


def _fast(base_url: str, **kw) -> OpenAICompatibleBackend:
    """A backend with small retry settings, for the fault tests."""
    settings = {"timeout_s": 2.0, "max_retries": 3, "retry_max_wait_s": 0.05, "concurrency": 4}
    settings.update(kw)
    return OpenAICompatibleBackend(base_url, "fake-model", **settings)


@pytest.fixture(scope="module")
def smollm_path(tmp_path_factory) -> Path:
    return resolve_model("smollm2-135m", tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def smollm_server(smollm_path, tmp_path_factory) -> Iterator[str]:
    proc, url = start_llama_server(smollm_path, tmp_path_factory.mktemp("server") / "server.log")
    try:
        yield url
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def smollm_bos_server(smollm_path, tmp_path_factory) -> Iterator[str]:
    """The same model with a BOS token forced, so that the server's echo log-probabilities line up."""
    proc, url = start_llama_server(
        smollm_path,
        tmp_path_factory.mktemp("server-bos") / "server.log",
        "--kv_overrides",
        "tokenizer.ggml.add_bos_token=bool:true",
    )
    try:
        yield url
    finally:
        stop_process(proc)


@pytest.fixture
def backend_for() -> Iterator[Callable[..., OpenAICompatibleBackend]]:
    made: list[OpenAICompatibleBackend] = []

    def make(base_url: str, **kw) -> OpenAICompatibleBackend:
        backend = OpenAICompatibleBackend(base_url, "smollm2-135m", timeout_s=60, **kw)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def fake_server() -> Iterator[Callable[[Callable[[int, dict], Reply]], FakeServer]]:
    servers: list[FakeServer] = []

    def start(respond: Callable[[int, dict], Reply]) -> FakeServer:
        server = FakeServer(respond)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return status, headers or {}, json.dumps(data).encode()


CHOICE_OK = {
    "choices": [
        {
            "text": " A",
            "logprobs": {
                "tokens": [" A"],
                "text_offset": [10],
                "token_logprobs": [-0.5],
                "top_logprobs": [{" A": -0.5, "B": -1.5, " b": -3.0}],
            },
        }
    ]
}


def _echo_reply(body: dict) -> dict:
    """An echo completion whose token log-probability is minus the token's length (a word and its
    leading spaces are one token), with the generated token "." appended."""
    text = body["prompt"] + "."
    tokens = re.findall(r"\s*[^\s.]+|\.", text) if body.get("echo") else ["."]
    assert "".join(tokens) == (text if body.get("echo") else ".")
    offsets, position = [], 0 if body.get("echo") else len(body["prompt"])
    for token in tokens:
        offsets.append(position)
        position += len(token)
    values = [None if i == 0 and body.get("echo") else -float(len(t)) for i, t in enumerate(tokens)]
    return {
        "choices": [
            {
                "text": text if body.get("echo") else ".",
                "logprobs": {"tokens": tokens, "text_offset": offsets, "token_logprobs": values},
            }
        ]
    }


def _expected(continuation: str) -> float:
    return -float(sum(len(t) for t in re.findall(r"\s*\S+", continuation)))


# ------------------------------------------------------------------ the real llama.cpp server


@pytest.mark.slow
def test_protocol_and_settings(smollm_server):
    from fewrec.config import LLMSettings

    backend = OpenAICompatibleBackend.from_settings(
        LLMSettings(backend="openai", model="smollm2-135m", base_url=smollm_server)
    )
    try:
        assert isinstance(backend, LLMBackend)
        assert backend.name == "openai:smollm2-135m"
        assert backend.count_tokens("The capital of France") == 4  # the server's tokenizer, not len // 4 + 1
    finally:
        backend.close()


@pytest.mark.slow
def test_live_score_choices(smollm_server, backend_for):
    backend = backend_for(smollm_server)
    prompt = "Question: Which letter comes first in the alphabet, A or B?\nAnswer:"
    scores = backend.score_choices(prompt, [" A", " B"])
    assert list(scores) == [" A", " B"]
    assert any(math.isfinite(v) for v in scores.values())
    assert all(v <= 0 for v in scores.values())
    # a label given without its space matches the same token
    assert backend.score_choices(prompt, ["A"])["A"] == pytest.approx(scores[" A"], abs=1e-3)


@pytest.mark.slow
def test_live_generate(smollm_server, backend_for):
    text = backend_for(smollm_server).generate("The capital of France is", max_tokens=8)
    assert text and text == text.strip() and "\n" not in text


@pytest.mark.slow
def test_live_misaligned_echo_is_refused(smollm_server, backend_for):
    """llama-cpp-python 0.3.x shifts echoed log-probabilities by one position for a model without a
    BOS token; the backend must refuse them instead of returning wrong numbers."""
    backend = backend_for(smollm_server)
    with pytest.raises(LLMError, match="shifted by one position"):
        backend.score_continuations("The capital of France is", [" Paris", " banana"])


@pytest.mark.slow
def test_live_score_continuations(smollm_bos_server, smollm_path, backend_for):
    backend = backend_for(smollm_bos_server)
    prompt = "The capital of France is"
    paris, banana = backend.score_continuations(prompt, [" Paris", " banana"])
    assert math.isfinite(paris) and math.isfinite(banana)
    assert paris > banana

    # the same numbers computed in-process from the model's logits (BOS forced as on the server)
    from llama_cpp import Llama

    llm = Llama(
        str(smollm_path),
        n_ctx=256,
        logits_all=True,
        verbose=False,
        kv_overrides={"tokenizer.ggml.add_bos_token": True},
    )
    try:
        for continuation, got in [(" Paris", paris), (" banana", banana)]:
            head = llm.tokenize(prompt.encode(), add_bos=True)
            full = llm.tokenize((prompt + continuation).encode(), add_bos=True)
            assert full[: len(head)] == head
            llm.reset()
            llm.eval(full)
            rows = Llama.logits_to_logprobs(llm.scores[: len(full)])  # row i predicts token i + 1
            reference = sum(float(rows[i - 1][full[i]]) for i in range(len(head), len(full)))
            assert got == pytest.approx(reference, abs=0.3)
    finally:
        llm.close()


@pytest.mark.slow
def test_live_score_continuations_many(smollm_bos_server, backend_for):
    backend = backend_for(smollm_bos_server, concurrency=4)
    subjects = ["France", "Italy", "Spain", "Japan", "Peru"]
    jobs = [(f"The capital of {s} is", [" Paris" if i % 2 == 0 else " Rome"]) for i, s in enumerate(subjects)]
    jobs += [("Hello", []), *jobs[:4]]  # 10 jobs, an empty one and repeats

    results = asyncio.run(backend.score_continuations_many(jobs))
    assert len(results) == 10
    assert results[5] == []
    assert all(isinstance(r, list) and len(r) == len(j[1]) for r, j in zip(results, jobs, strict=True))
    first = [r[0] for r in results[:5]]  # type: ignore[index]
    assert [r[0] for r in results[6:]] == pytest.approx(first[:4], abs=0.05)  # same job, same place
    assert first[0] > first[2] and first[1] > first[3]  # France-Paris > Spain-Paris, Italy-Rome > Japan-Rome
    assert backend.score_continuations(*jobs[1]) == pytest.approx(results[1], abs=0.05)


# ------------------------------------------------------------------ faults


def test_closed_port_gives_up_quickly():
    port = free_port()  # nothing listens there
    backend = _fast(f"http://127.0.0.1:{port}/v1", max_retries=2)
    with pytest.raises(LLMError) as caught:
        backend.score_choices("x", ["A"])
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "3 attempt(s)" in message and "Connect" in message
    assert backend.count_tokens("twelve chars") == 4  # no server: the len // 4 + 1 estimate
    backend.close()


def test_deadline_bounds_retries():
    port = free_port()
    backend = _fast(
        f"http://127.0.0.1:{port}/v1", max_retries=1000, retry_max_wait_s=0.2, retry_deadline_s=1.0
    )
    with pytest.raises(LLMError, match="attempt") as caught:
        backend.generate("x")
    # The deadline, not the 1,000 retries allowed, ended it (however fast the machine).
    attempts = int(re.search(r"(\d+) attempt", str(caught.value)).group(1))
    assert 1 <= attempts < 100
    backend.close()


@pytest.mark.parametrize("status", [500, 503, 429])
def test_transient_errors_are_retried(fake_server, status):
    def respond(attempt: int, body: dict) -> Reply:
        if attempt <= 2:
            return _json({"error": "busy"}, status, {"Retry-After": "0"})
        return _json(CHOICE_OK)

    server = fake_server(respond)
    backend = _fast(server.url)
    scores = backend.score_choices("Pick:", [" A", "B", "C"])
    assert server.attempts == 3
    assert scores == {" A": -0.5, "B": -1.5, "C": float("-inf")}
    backend.close()


def test_retries_exhausted_names_url_and_status(fake_server):
    server = fake_server(lambda attempt, body: _json({"detail": "overloaded"}, 503))
    backend = _fast(server.url, max_retries=2)
    with pytest.raises(LLMError) as caught:
        backend.generate("x")
    assert server.attempts == 3
    assert f"127.0.0.1:{server.port}/v1/completions" in str(caught.value) and "HTTP 503" in str(caught.value)
    backend.close()


def test_client_error_is_not_retried(fake_server):
    server = fake_server(lambda attempt, body: _json({"error": {"message": "bad request"}}, 400))
    backend = _fast(server.url)
    with pytest.raises(LLMError, match="HTTP 400"):
        backend.score_choices("x", ["A"])
    assert server.attempts == 1
    backend.close()


def test_garbage_is_an_error(fake_server):
    server = fake_server(lambda attempt, body: (200, {"Content-Type": "text/html"}, b"<html>oops</html>"))
    backend = _fast(server.url)
    with pytest.raises(LLMError, match="malformed JSON"):
        backend.generate("x")
    assert server.attempts == 1
    backend.close()


def test_missing_logprobs_is_an_error(fake_server):
    def respond(attempt: int, body: dict) -> Reply:
        return _json({"choices": [{"text": body["prompt"] + " Paris", "logprobs": None}]})

    backend = _fast(fake_server(respond).url)
    with pytest.raises(LLMError, match="no top log-probabilities"):
        backend.score_choices("x", ["A"])
    with pytest.raises(LLMError, match="no token log-probabilities"):
        backend.score_continuations("x", [" y"])
    backend.close()


def test_server_without_echo_is_an_error(fake_server):
    def respond(attempt: int, body: dict) -> Reply:
        return _json(_echo_reply({**body, "echo": False}))  # ignores echo, like llama.cpp's llama-server

    backend = _fast(fake_server(respond).url)
    with pytest.raises(LLMError, match="did not echo"):
        backend.score_continuations("The capital of France is", [" Paris"])
    backend.close()


def test_slow_server_times_out(fake_server):
    def respond(attempt: int, body: dict) -> Reply:
        time.sleep(3)
        return _json(CHOICE_OK)

    server = fake_server(respond)
    backend = _fast(server.url, timeout_s=0.3, max_retries=1)
    # The server answers after 3 s: only the 0.3 s timeout makes this fail.
    with pytest.raises(LLMError, match="timed out"):
        backend.score_choices("x", ["A"])
    assert server.attempts == 2
    backend.close()


def test_trickling_server_times_out(fake_server):
    """A server that keeps sending a byte at a time never trips a read timeout; the attempt's
    own bound ends it."""

    class Trickle(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            with contextlib.suppress(OSError):  # the client hangs up
                for _ in range(100):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.05)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    backend = _fast(f"http://127.0.0.1:{httpd.server_address[1]}/v1", timeout_s=0.5, max_retries=0)
    try:
        with pytest.raises(LLMError, match=r"1 attempt\(s\).*timed out after 0.5s"):
            backend.generate("x")
    finally:
        backend.close()
        httpd.shutdown()
        httpd.server_close()


def test_a_calls_first_failure_stops_its_other_requests(fake_server):
    server = fake_server(lambda attempt, body: _json({"error": {"message": "bad request"}}, 400))
    backend = _fast(server.url, concurrency=1)  # one request at a time: the rest wait in line
    with pytest.raises(LLMError, match="HTTP 400"):
        backend.score_continuations("x", [" a", " b", " c", " d", " e"])
    assert server.attempts == 1
    backend.close()


# ------------------------------------------------------------------ concurrency and parsing


def test_many_keeps_order_under_concurrency(fake_server):
    rng = random.Random(0)

    def respond(attempt: int, body: dict) -> Reply:
        time.sleep(rng.uniform(0.0, 0.05))  # answers finish out of order
        return _json(_echo_reply(body))

    server = fake_server(respond)
    backend = _fast(server.url, concurrency=4)
    words = ["a", "bb", "ccc", "dddd", "eeeee", "ffffff"]
    jobs = [(f"user {i} likes", [" " + words[i % 6], " " + words[(i + 1) % 6] + " x"]) for i in range(10)]
    results = asyncio.run(backend.score_continuations_many(jobs))
    assert results == [[_expected(c) for c in conts] for _, conts in jobs]
    assert 2 <= server.peak <= 4

    # the synchronous API, called from inside a running event loop, gives the same numbers
    async def inside_a_loop() -> list[float]:
        return backend.score_continuations(*jobs[3])

    assert asyncio.run(inside_a_loop()) == results[3]
    # one synchronous call's continuations are in flight together too, within the limit
    server.peak = 0
    assert backend.score_continuations("user likes", [" " + w for w in words * 2]) == [
        _expected(" " + w) for w in words * 2
    ]
    assert 2 <= server.peak <= 4
    backend.close()


def test_many_returns_errors_per_job(fake_server):
    def respond(attempt: int, body: dict) -> Reply:
        if "bad" in body["prompt"]:
            return _json({"error": {"message": "nope"}}, 400)
        return _json(_echo_reply(body))

    backend = _fast(fake_server(respond).url)
    jobs = [("good one", [" a"]), ("bad one", [" a", " b"]), ("good two", [" bb", ""])]
    results = asyncio.run(backend.score_continuations_many(jobs))
    assert results[0] == [-2.0]
    assert isinstance(results[1], LLMError) and "HTTP 400" in str(results[1])
    assert results[2] == [-3.0, float("-inf")]
    backend.close()


def test_top_logprobs_shapes():
    completions = {"top_logprobs": [{" A": -0.1, "ĠB": -2.0}]}
    objects = {"top_logprobs": [[{"token": " A", "logprob": -0.1}, {"token": "B", "logprob": -2.0}]]}
    chat = {"content": [{"token": " A", "logprob": -0.1, "top_logprobs": [{"token": "▁B", "logprob": -2.0}]}]}
    assert _first_top_logprobs(completions) == {" A": -0.1, " B": -2.0}
    assert _first_top_logprobs(objects) == {" A": -0.1, "B": -2.0}
    assert _first_top_logprobs(chat) == {" B": -2.0}
    assert _first_top_logprobs(None) is None
    assert _first_top_logprobs({"top_logprobs": [None]}) is None


def test_vllm_echo_with_a_bos_token():
    """vLLM lists the BOS token it does not echo and counts its text in the offsets."""
    text = "The capital of France is Paris"
    tokens = ["<s>", "The", " capital", " of", " France", " is", " Paris", "."]
    offsets, position = [], 0
    for token in tokens:
        offsets.append(position)
        position += len(token)
    values = [None, -9.0, -2.0, -1.0, -3.0, -1.5, -0.25, -0.5]
    choice = {
        "text": text + ".",
        "logprobs": {"tokens": tokens, "text_offset": offsets, "token_logprobs": values},
    }
    assert _continuation_logprob(choice, "The capital of France is", text, "u") == -0.25
    assert _continuation_logprob(choice, "The capital of France", text, "u") == -1.75
    # a token straddling the boundary counts for the continuation
    assert _continuation_logprob(choice, "The capital of France i", text, "u") == -1.75


def test_constructor_validation():
    from fewrec.config import LLMSettings

    with pytest.raises(LLMError, match="base_url"):
        OpenAICompatibleBackend.from_settings(LLMSettings(backend="openai", model="m"))
    with pytest.raises(LLMError, match="http"):
        OpenAICompatibleBackend("localhost:8000", "m")
    backend = OpenAICompatibleBackend("http://h:1/v1/", "m")
    assert backend.completions_url == "http://h:1/v1/completions" and backend.server_root == "http://h:1"
