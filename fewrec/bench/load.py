"""Bounded load tests on loopback: `Recommender.recommend` from many threads, and the chat page
from many `gradio_client` sessions at once. Each reports throughput and latency percentiles and
checks every answer against what that caller alone should see (no state shared between
sessions, no result for another user). `fewrec bench --load-threads N` runs both."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from fewrec.agent.chat import ChatAgent
from fewrec.agent.recommender import Recommender

SESSION_TITLES = ["Alien", "Heat", "Toy Story", "Fargo", "Casablanca", "Jumanji", "Braveheart", "Seven",
                  "Clueless", "Apollo 13", "Babe", "Batman", "Speed", "Ghost", "Aladdin", "Gladiator",
                  "Memento", "Shrek", "Amelie", "Chicago"]  # fmt: skip


PageLauncher = Callable[..., Any]  # (agent, host, port, block=False) -> a page with .close()


class LoadResult(BaseModel):
    what: str
    threads: int
    requests: int
    completed: int
    seconds: float
    throughput_per_s: float
    p50_s: float
    p95_s: float
    leaks: list[str] = Field(default_factory=list)  # answers that belonged to someone else, or failed


def _summary(what: str, threads: int, requests: int, latencies: list[float], seconds: float,
             leaks: list[str]) -> LoadResult:  # fmt: skip
    lat = np.array(latencies) if latencies else np.zeros(1)
    return LoadResult(
        what=what, threads=threads, requests=requests, completed=len(latencies), seconds=round(seconds, 2),
        throughput_per_s=round(len(latencies) / seconds, 2) if seconds > 0 else 0.0,
        p50_s=round(float(np.percentile(lat, 50)), 4), p95_s=round(float(np.percentile(lat, 95)), 4),
        leaks=leaks,
    )  # fmt: skip


def load_recommend(recommender: Recommender, threads: int = 20, requests: int = 200,
                   time_limit_s: float = 300.0) -> LoadResult:  # fmt: skip
    """`requests` calls spread over `threads` threads, each for its own user; every answer is
    compared with the same call made alone beforehand."""
    split = recommender.split
    users = [split.user_ids[i].item() for i in range(min(threads * 2, split.n_users))]
    expected = {u: [r.item_id for r in recommender.recommend(user_id=u, k=10, explain=False)] for u in users}
    jobs = [users[i % len(users)] for i in range(requests)]
    latencies: list[float] = []
    leaks: list[str] = []

    def call(user: object) -> None:
        begin = time.perf_counter()
        got = [r.item_id for r in recommender.recommend(user_id=user, k=10, explain=False)]
        latencies.append(time.perf_counter() - begin)
        if got != expected[user]:
            leaks.append(f"user {user}: got another answer under load")

    seconds = _run_all(call, jobs, threads, time_limit_s, leaks)
    return _summary("recommend", threads, requests, latencies, seconds, leaks)


def _run_all(work: Callable[[Any], None], jobs: list, threads: int, limit: float, leaks: list[str]) -> float:
    """`work(job)` for every job on `threads` threads, for at most `limit` seconds (the jobs not
    done by then are cancelled); a job that raised is a leak. The seconds it all took."""
    started = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=threads)
    try:
        done, _ = wait([pool.submit(work, job) for job in jobs], timeout=limit)
        for error in (f.exception() for f in done if f.exception() is not None):
            leaks.append(f"a call failed: {type(error).__name__}: {error}")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return time.perf_counter() - started


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_chat_page(recommender: Recommender, launch: PageLauncher, sessions: int = 20, turns: int = 2,
                   time_limit_s: float = 300.0) -> LoadResult:  # fmt: skip
    """Start the page (`launch`: `fewrec.ui.app.launch`, passed in by the caller because the page
    sits above the evaluation) on a free loopback port; `sessions` gradio_client sessions at
    once, each liking its own title and then asking for something; each must only ever see its
    own title."""
    from gradio_client import Client

    port = _free_port()
    page = launch(ChatAgent(recommender), "127.0.0.1", port, block=False)
    url = f"http://127.0.0.1:{port}/"
    titles = [SESSION_TITLES[i % len(SESSION_TITLES)] for i in range(sessions)]
    latencies: list[float] = []
    leaks: list[str] = []
    messages = ["something from the 90s", "more please", "no horror", "something funny"]

    def session(title: str) -> None:
        client = Client(url, verbose=False)
        for n, message in enumerate([f"I loved {title}", *messages][:turns]):
            begin = time.perf_counter()
            left = time_limit_s - (time.perf_counter() - started)
            _, _, profile, *_ = client.submit(message, api_name="/chat").result(timeout=max(left, 0.1))
            latencies.append(time.perf_counter() - begin)
            liked = profile.split("**Liked:**")[1].split("**Disliked:**")[0]
            foreign = [t for t in SESSION_TITLES if t != title and f"{t} (" in liked and title not in t]
            if title not in liked or foreign:
                leaks.append(f"session {title!r}, turn {n + 1}: liked list {liked.strip()!r}")

    started = time.perf_counter()  # each request's timeout is what is left of `time_limit_s`
    try:
        seconds = _run_all(session, titles, sessions, time_limit_s, leaks)
    finally:
        page.close()
    return _summary("chat page", sessions, sessions * turns, latencies, seconds, leaks)
