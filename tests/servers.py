"""Real servers for the tests, on loopback: llama-cpp-python's OpenAI-compatible server, a
Chroma server, a scriptable fake OpenAI server, and a fault-injecting proxy that sits in front
of a real server (errors, garbage, missing log-probabilities, slowness, a dead upstream)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _wait_until_ready(proc: subprocess.Popen, url: str, log_path: Path, what: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    stop_process(proc)
    raise RuntimeError(f"{what} not ready after {seconds:.0f} s:\n{log_path.read_text()[-3000:]}")


def start_llama_server(
    model_path: Path, log_path: Path, *extra: str, port: int | None = None
) -> tuple[subprocess.Popen, str]:
    port = port or free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model_path), "--model_alias", "smollm2-135m",
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
        # One thread: on a loaded machine two OpenMP threads spin on each other and a request
        # takes minutes instead of seconds.
        *([] if "--n_threads" in extra else ["--n_threads", "1"]),
        *extra,
    ]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    _wait_until_ready(proc, f"http://127.0.0.1:{port}/v1/models", log_path, "llama_cpp.server", 600)
    return proc, f"http://127.0.0.1:{port}/v1"


def chroma_binary() -> str | None:
    return shutil.which("chroma", path=os.path.dirname(sys.executable))


def start_chroma_server(path: Path, log_path: Path, port: int | None = None) -> tuple[subprocess.Popen, int]:
    binary = chroma_binary()
    if binary is None:
        raise RuntimeError("the chroma CLI is not installed next to the interpreter")
    port = port or free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [binary, "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    _wait_until_ready(proc, f"http://127.0.0.1:{port}/api/v2/heartbeat", log_path, "chroma run", 600)
    return proc, port


Reply = tuple[int, dict[str, str], bytes]


class FakeServer:
    """A tiny OpenAI-ish server whose every reply a test scripts: respond(attempt, body)."""

    def __init__(self, respond: Callable[[int, dict], Reply]) -> None:
        self.respond = respond
        self.attempts = 0
        self.in_flight = 0
        self.peak = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server.lock:
                    server.attempts += 1
                    attempt = server.attempts
                    server.in_flight += 1
                    server.peak = max(server.peak, server.in_flight)
                try:
                    status, headers, payload = server.respond(attempt, body)
                finally:
                    with server.lock:
                        server.in_flight -= 1
                try:
                    self.send_response(status)
                    for key, value in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FaultProxy(FakeServer):
    """Forwards to a real upstream server unless `mode` says otherwise:
    'pass', 'error' (HTTP 500), 'garbage' (200 with non-JSON), 'no-logprobs' (the real reply with
    its log-probabilities removed), 'slow' (sleeps `delay` seconds, then forwards). `on_request`
    runs before each forward (e.g. to kill the upstream after N requests); `rewrite` changes the
    body that is forwarded (`bodies` keeps what the client sent); `rewrite_answer` changes the
    upstream's JSON answer before the client gets it."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode = "pass"
        self.delay = 5.0
        self.forwarded = 0
        self.bodies: list[dict] = []
        self.on_request: Callable[[int], None] | None = None
        self.rewrite: Callable[[dict], dict] | None = None
        self.rewrite_answer: Callable[[dict], dict] | None = None
        super().__init__(self._reply)

    def _reply(self, attempt: int, body: dict) -> Reply:
        self.bodies.append(body)
        if self.on_request is not None:
            self.on_request(attempt)
        mode = self.mode
        if mode == "error":
            return 500, {}, b'{"error": "injected"}'
        if mode == "garbage":
            return 200, {}, b"<html>not json"
        if mode == "slow":
            time.sleep(self.delay)
        path = "/completions" if "prompt" in body else "/chat/completions"
        if self.rewrite is not None:
            body = self.rewrite(json.loads(json.dumps(body)))
        try:
            # The proxy never gives up before its client does (a loaded machine is slow, not down).
            answer = httpx.post(self.upstream + path, json=body, timeout=3600)
        except httpx.HTTPError:
            return 502, {}, b'{"error": "upstream unreachable"}'
        self.forwarded += 1
        payload = answer.content
        if self.rewrite_answer is not None and answer.status_code == 200:
            payload = json.dumps(self.rewrite_answer(answer.json())).encode()
        if mode == "no-logprobs" and answer.status_code == 200:
            data = answer.json()
            for choice in data.get("choices", []):
                choice["logprobs"] = None
            payload = json.dumps(data).encode()
        return answer.status_code, {}, payload
