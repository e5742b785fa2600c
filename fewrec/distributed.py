"""Batch work past one process, on Ray: `RayPool` shards row ranges over Ray actors that keep
the fitted object they work on (a fitted Retriever, for instance), and puts the results back in
row order, so a sharded run returns what one process would.

`--ray auto` joins the cluster Ray would find itself (RAY_ADDRESS, or the one `ray start` left
on this machine) and otherwise starts a local instance; `--ray ADDRESS` joins that cluster and
fails at once, with a clear message, when nothing answers there. An actor that dies is
restarted and its shard retried (`retries` times); past that the run stops with a
`DistributedError` and no merged result.

Ray is imported only here and only when asked for: everything else runs without it.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fewrec.data.errors import FewrecError
from fewrec.numerics import worker_environment

log = logging.getLogger("fewrec.distributed")

T = TypeVar("T")
# What each actor imports as it starts, while the driver is still fitting: the ranking code and
# the libraries fitted sources need to load (names only: nothing here imports them).
PRELOAD = ("fewrec.eval.ranking", "fewrec.agent.batch", "torch", "implicit")
MIN_SHARD_ROWS = 64  # smaller shards would score in tiny batches (another BLAS path, other bits)
CONNECT_TIMEOUT_S = 5.0


class DistributedError(FewrecError):
    """Ray is missing, its cluster does not answer, or a shard failed past its retries."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is a declared dependency
        raise DistributedError(
            "--ray needs the ray package: pip install 'fewrec[ray]' (or pip install ray)"
        ) from exc
    return ray


def check_address(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast on an address where nothing listens (ray.init would otherwise wait long);
    'auto' always passes."""
    if address == "auto":
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise DistributedError(
            f"--ray {address!r} is not an address: give HOST:PORT (the head's GCS port, 6379 unless "
            "`ray start --head --port` chose another), ray://HOST:10001, or 'auto'"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise DistributedError(
            f"no Ray cluster answers at {address} ({exc}); start one there with `ray start --head`, "
            "or use --ray auto for a local instance"
        ) from exc


def connect(
    address: str = "auto", num_cpus: int | None = None, say: Callable[[str], None] | None = None
) -> str:
    """Join (or start) a Ray cluster; returns a one-line description of it."""
    ray = _import_ray()
    say = say or (lambda message: log.info("%s", message))
    if ray.is_initialized():
        return _describe(ray)
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address == "auto":
        if not os.environ.get("RAY_ADDRESS") and not _local_cluster_running(ray):
            options["num_cpus"] = num_cpus
            say("no Ray cluster is running here: starting a local Ray instance")
        ray.init(**options)
    else:
        check_address(address)
        try:
            ray.init(address=address, **options)
        except Exception as exc:  # ray raises ConnectionError, RuntimeError, … depending on the cause
            raise DistributedError(f"cannot join the Ray cluster at {address}: {exc}") from exc
    return _describe(ray)


def _local_cluster_running(ray: Any) -> bool:
    """Whether `ray start` left a cluster on this machine (ray.init() would join it)."""
    try:
        from ray._private.services import find_gcs_addresses

        return bool(find_gcs_addresses())
    except Exception:  # a private helper: if it moves, let ray.init() decide
        return False


def _describe(ray: Any) -> str:
    resources = ray.cluster_resources()
    nodes = len([n for n in ray.nodes() if n.get("Alive")])
    return f"Ray: {nodes} node(s), {int(resources.get('CPU', 0))} CPUs"


def is_connected() -> bool:
    """Whether this process has joined a Ray cluster already."""
    try:
        import ray
    except ImportError:
        return False
    return ray.is_initialized()


def shutdown() -> None:
    """Leave the cluster (and stop the local instance this process started)."""
    ray = _import_ray()
    if ray.is_initialized():
        ray.shutdown()


def shard_ranges(n_rows: int, shards: int, align: int) -> list[slice]:
    """Consecutive row ranges, about equal, for `shards` workers. Above `align` rows each range
    is made of whole `align`-row batches (the batches one process would score); below, ranges are
    kept at `MIN_SHARD_ROWS` rows or more."""
    if n_rows <= 0:
        return []
    if n_rows > align:
        batches = math.ceil(n_rows / align)
        per = math.ceil(batches / max(1, min(shards, batches))) * align
    else:
        per = max(MIN_SHARD_ROWS, math.ceil(n_rows / max(1, shards)))
    return [slice(start, min(start + per, n_rows)) for start in range(0, n_rows, per)]


@dataclass(frozen=True)
class Shipped:
    """A payload in Ray's object store (`RayPool.put`), named so actors know when it changes."""

    key: str
    ref: Any


class _Worker:
    """A Ray actor: keeps the last payload it was given (fetched once from the object store)."""

    def __init__(self, preload: tuple[str, ...] = ()) -> None:
        import importlib

        self.key: str | None = None
        self.payload: Any = None
        for module in preload:  # paid while the driver still fits, not on the first shard
            try:
                importlib.import_module(module)
            except ImportError:  # an optional part (torch) this node lacks: its shard will say so
                continue

    def run(self, key: str, boxed_payload: list, fn: Callable[..., Any], *args: Any) -> Any:
        if key != self.key:
            import ray

            self.payload, self.key = None, None  # drop the old one before fetching the new
            self.payload = ray.get(boxed_payload[0])
            self.key = key
        return fn(self.payload, *args)

    def pid(self) -> int:
        return os.getpid()


class RayPool:
    """`workers` Ray actors. `map(fn, payload, parts)` runs `fn(payload, part)` for each part,
    spread over the actors, each of which fetches `payload` once; results in the order of
    `parts`."""

    def __init__(
        self, workers: int | None = None, retries: int = 2, cpus_per_worker: float = 1.0,
        start_timeout_s: float = 600.0, preload: tuple[str, ...] = PRELOAD,
    ) -> None:  # fmt: skip
        """The actors start in the background (importing the `preload` modules); the first
        `map` waits for them, at most `start_timeout_s`, so their start overlaps the caller's
        fitting."""
        ray = _import_ray()
        if not ray.is_initialized():
            connect("auto")
        self.ray = ray
        total = int(ray.cluster_resources().get("CPU", 1))
        self.workers = max(1, workers or max(1, int(total // cpus_per_worker)))  # default: one per CPU
        self.retries = retries
        # More workers than free CPUs share them: an actor waiting for a whole CPU that another
        # job holds would never start.
        free = float(ray.available_resources().get("CPU", 0.0))
        cpus = min(cpus_per_worker, free / self.workers) if free > 0 else 0.0
        # The actors run this process's BLAS kernel: a worker that picked its own (numpy loaded
        # before fewrec could pin it, or another processor) would round otherwise.
        remote = ray.remote(
            num_cpus=cpus, max_restarts=retries, max_task_retries=retries,
            runtime_env={"env_vars": worker_environment()},
        )(_Worker)  # fmt: skip
        self.actors = [remote.remote(tuple(preload)) for _ in range(self.workers)]
        self._started = [actor.pid.remote() for actor in self.actors]
        self._cpus, self._start_timeout_s = cpus, start_timeout_s

    def wait_started(self) -> None:
        """Block until every actor runs; an actor the cluster cannot place (which would leave
        every map waiting forever) or that fails to start raises DistributedError."""
        if not self._started:
            return
        try:
            self.ray.get(self._started, timeout=self._start_timeout_s)
        except self.ray.exceptions.GetTimeoutError as exc:
            self.close()
            free = self.ray.available_resources().get("CPU", 0)
            raise DistributedError(
                f"{self.workers} Ray worker(s) of {self._cpus:.2g} CPU each did not start within "
                f"{self._start_timeout_s:.0f} s ({free:.2g} CPUs free in the cluster): ask for fewer "
                "(--ray-workers)"
            ) from exc
        except self.ray.exceptions.RayError as exc:
            self.close()
            raise DistributedError(f"the Ray workers failed to start: {_first_line(exc)}") from exc
        self._started = []

    def put(self, payload: Any) -> Shipped:
        """Ship a payload to the object store once (reuse the handle for several maps)."""
        return Shipped(uuid.uuid4().hex, self.ray.put(payload))

    def map(
        self, fn: Callable[..., T], payload: Any, parts: Sequence[Any], *args: Any,
        timeout_s: float | None = None,
    ) -> list[T]:  # fmt: skip
        """`[fn(payload, part, *args) for part in parts]`, on the actors. `payload` may be a
        handle from `put`. A failure past the actors' retries raises DistributedError."""
        if not parts:
            return []
        self.wait_started()
        shipped = payload if isinstance(payload, Shipped) else self.put(payload)
        key, ref = shipped.key, shipped.ref
        # The reference is boxed in a list so Ray hands it to the actor as a reference (fetched
        # once per actor) rather than resolving it for every call.
        refs = [
            self.actors[i % len(self.actors)].run.remote(key, [ref], fn, part, *args)
            for i, part in enumerate(parts)
        ]
        started = time.perf_counter()
        try:
            return self.ray.get(refs, timeout=timeout_s)
        except self.ray.exceptions.GetTimeoutError as exc:
            self._cancel(refs)
            raise DistributedError(f"Ray shards did not finish within {timeout_s:.0f} s") from exc
        except self.ray.exceptions.RayActorError as exc:
            self._cancel(refs)
            raise DistributedError(
                f"a Ray worker died and stayed down after {self.retries} restart(s) "
                f"({time.perf_counter() - started:.0f} s into the run): {_first_line(exc)}"
            ) from exc
        except self.ray.exceptions.RayTaskError as exc:
            self._cancel(refs)
            cause = exc.as_instanceof_cause() if hasattr(exc, "as_instanceof_cause") else exc
            if isinstance(cause, FewrecError):
                raise cause from None
            raise DistributedError(f"a Ray shard failed: {_first_line(exc)}") from exc

    def map_rows(self, fn: Callable[..., T], payload: Any, n_rows: int, align: int) -> list[T]:
        """`fn(payload, rows)` over `n_rows` rows cut by `shard_ranges` (one range per worker,
        on `align`-row batch edges), results in row order."""
        return self.map(fn, payload, shard_ranges(n_rows, self.workers, align))

    def _cancel(self, refs: list) -> None:
        for ref in refs:
            try:
                self.ray.cancel(ref)
            except Exception:  # already finished or its actor is gone
                continue

    def pids(self) -> list[int]:
        """The actors' process ids (tests kill one to check the retry)."""
        self.wait_started()
        return self.ray.get([actor.pid.remote() for actor in self.actors])

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # already gone
                continue
        self.actors = []

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
