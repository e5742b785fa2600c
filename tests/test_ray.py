"""Sharding over Ray (fewrec/distributed.py): on a real local Ray instance, a sharded evaluation
and a sharded batch recommendation give exactly the single-process results; a worker killed
mid-run is restarted and its shard retried, or the run fails with a clear error; an address
where no cluster answers fails at once."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import only_sources, require_module
from typer.testing import CliRunner

from fewrec.config import RetrievalSettings, Settings
from fewrec.data.errors import FewrecError

CHEAP = RetrievalSettings(
    sources=only_sources(
        "itemknn",
        "transition",
        "als",
        "popularity",
        itemknn={"weight": 0.5},
        transition={"weight": 1.0},
        als={"weight": 0.3, "iterations": 3},
        popularity={"weight": 0.1},
    ),
    batch_users=100,  # several batches per shard, and shards cut inside the user list
)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray instance for this module (2 CPUs), shut down afterwards."""
    ray = require_module("ray", "ray (the 'ray' extra)")
    from fewrec.distributed import connect, shutdown

    assert not ray.is_initialized()
    # The shard functions below live in this test module, which Ray's workers cannot import.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    description = connect("auto", num_cpus=2)
    assert "CPUs" in description
    yield ray
    shutdown()


@pytest.fixture(scope="module")
def pool(ray_cluster):
    from fewrec.distributed import RayPool

    with RayPool(workers=3, retries=1, cpus_per_worker=0.5) as workers:
        yield workers


def test_shard_ranges_cover_every_row_once_in_whole_batches():
    from fewrec.distributed import MIN_SHARD_ROWS, shard_ranges

    for n_rows, shards, align in [(610, 3, 1024), (5000, 3, 1024), (1025, 2, 1024), (70, 8, 100), (1, 4, 64)]:
        parts = shard_ranges(n_rows, shards, align)
        covered = np.concatenate([np.arange(p.start, p.stop) for p in parts])
        assert np.array_equal(covered, np.arange(n_rows)), (n_rows, shards, align)
        assert len(parts) <= max(shards, 1)
        if n_rows > align:  # one process scores the same batches: each shard starts on a batch edge
            assert all(p.start % align == 0 for p in parts)
        else:
            assert all(p.stop - p.start >= min(MIN_SHARD_ROWS, n_rows) for p in parts[:-1])
    assert shard_ranges(0, 4, 100) == []


def _same_report(single, sharded) -> None:
    assert [r.name for r in single.methods] == [r.name for r in sharded.methods]
    for a, b in zip(single.methods, sharded.methods, strict=True):
        assert a.metrics == b.metrics, a.name  # to the last digit
        assert a.coverage_at_10 == b.coverage_at_10 and a.long_tail_at_10 == b.long_tail_at_10, a.name
        assert a.intervals == b.intervals, a.name
    assert single.slices == sharded.slices
    assert single.comparison == sharded.comparison


@pytest.mark.parametrize(("sampled", "batch_users"), [(None, 100), (30, 100), (None, 1024)])
def test_sharded_evaluation_equals_one_process(bundled_split, tmp_path, pool, sampled, batch_users):
    """With 100-user batches each shard is whole batches; with 1,024 (the default) the 610 users
    are one batch in one process and three shards of 204 or fewer on Ray."""
    from fewrec.eval.runner import evaluate

    settings = Settings(data_dir=tmp_path, retrieval=CHEAP.model_copy(update={"batch_users": batch_users}))
    kwargs = {"baselines": ["popularity", "markov", "random"], "history_cuts": [1, 3], "sampled": sampled}
    single = evaluate(bundled_split, settings, **kwargs)
    sharded = evaluate(bundled_split, settings, ray=pool, **kwargs)
    _same_report(single, sharded)
    assert any(r.name == "source: itemknn" for r in sharded.methods)
    assert sharded.method("fewrec retrieval (fused)").metrics["ndcg@10"] > 0.02


def test_sharded_batch_recommendation_equals_one_process(bundled_split, pool):
    from fewrec.agent.batch import recommend_users, user_rows
    from fewrec.retrieval.fusion import Retriever

    retriever = Retriever(bundled_split, CHEAP, progress=False).fit("all")
    rows = user_rows(bundled_split, None)
    done: list[int] = []
    single = recommend_users(retriever, rows, 10)
    sharded = recommend_users(retriever, rows, 10, ray=pool, progress=done.append)
    assert np.array_equal(single.ids, sharded.ids) and np.array_equal(single.scores, sharded.scores)
    assert sum(done) == len(rows) == bundled_split.n_users
    # Each row is what the facade's candidates give that user first, never an item they have.
    user = 7
    history = bundled_split.history(user, "all")
    expected = retriever.candidates(history, 10, retriever.context_for(np.array([user]), "all"))
    assert [bundled_split.item_index(c.item_id) for c in expected] == single.ids[user].tolist()
    assert not set(single.ids[user]) & set(history.tolist())


def _die_once(marker_dir: str, part: slice) -> int:
    """Kill this worker process the first time any shard runs; later attempts succeed."""
    marker = Path(marker_dir) / "died"
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return part.stop - part.start


def _always_die(payload: object, part: slice) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


def _size(payload: object, part: slice) -> int:
    return part.stop - part.start


def _raise_fewrec(payload: object, part: slice) -> int:
    raise FewrecError(f"bad shard {part.start}")


def test_a_killed_worker_is_restarted_and_its_shard_retried(pool, tmp_path):
    parts = [slice(i * 10, i * 10 + 10) for i in range(6)]
    sizes = pool.map(_die_once, str(tmp_path), parts)
    assert sizes == [10] * 6
    assert (tmp_path / "died").exists()  # a worker really died on the way


def test_a_worker_that_keeps_dying_fails_the_run_clearly(ray_cluster):
    from fewrec.distributed import DistributedError, RayPool

    doomed = RayPool(workers=1, retries=1, cpus_per_worker=0.1)
    with doomed, pytest.raises(DistributedError) as info:
        doomed.map(_always_die, None, [slice(0, 1)])
    assert "worker died" in str(info.value) and "restart" in str(info.value)


def test_a_second_pool_starts_while_another_holds_the_cpus(pool):
    from fewrec.distributed import RayPool

    # `pool` holds 1.5 of the 2 CPUs: two more workers share the half that is free.
    with RayPool(workers=2, start_timeout_s=600) as second:
        assert second.map(_size, None, [slice(0, 3), slice(3, 10)]) == [3, 7]
        assert len(set(second.pids())) == 2


def test_an_error_in_a_shard_comes_back_as_itself(pool):
    with pytest.raises(FewrecError, match="bad shard"):
        pool.map(_raise_fewrec, None, [slice(0, 5), slice(5, 9)])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_address_where_nothing_answers_fails_at_once():
    from fewrec.distributed import DistributedError, check_address

    with pytest.raises(DistributedError, match="no Ray cluster answers"):
        check_address(f"127.0.0.1:{_free_port()}", timeout_s=2)
    with pytest.raises(DistributedError, match="not an address"):
        check_address("my-cluster")
    check_address("auto")  # always allowed: Ray finds or starts one


def test_cli_rejects_a_dead_ray_address_before_fitting_anything(tmp_path, monkeypatch):
    from fewrec.cli import app

    monkeypatch.setenv("FEWREC_DATA_DIR", str(tmp_path))
    port = _free_port()
    for command in (["eval", "--stages", "retrieval"], ["recommend-batch", "--out", str(tmp_path / "r.csv")]):
        result = CliRunner().invoke(app, [*command, "--ray", f"127.0.0.1:{port}"])
        assert result.exit_code != 0
        assert isinstance(result.exception, FewrecError) and "no Ray cluster answers" in str(result.exception)
        assert not (tmp_path / "r.csv").exists()
        assert not (tmp_path / "cache").exists()  # nothing was loaded or fitted


def test_ray_bench_reports_time_and_identical_metrics(ray_cluster, tmp_path):
    from fewrec.bench.ray_overhead import run_ray_bench

    settings = Settings(data_dir=tmp_path, retrieval=CHEAP)
    notes: list[str] = []
    figures = run_ray_bench(
        settings, "auto", workers=2, users=200, baselines=["popularity", "markov"], history_cuts=[1],
        say=notes.append,
    )  # fmt: skip
    assert figures["identical_metrics"] is True and figures["differences"] == []
    assert figures["users"] == 200 and figures["workers"] == 2
    assert figures["one_process_s"] > 0 and figures["ray_s"] > 0
    assert figures["overhead_check"].startswith(("met", "missed"))
    assert ray_cluster.is_initialized()  # the test's cluster is left running


def test_cli_recommend_batch_writes_every_users_top_k_and_names_unknown_ids(tmp_path, monkeypatch):
    import pandas as pd

    from fewrec.cli import app

    monkeypatch.setenv("FEWREC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FEWREC_RETRIEVAL__SOURCES", json.dumps(only_sources("transition", "itemknn")))
    users = tmp_path / "users.txt"
    users.write_text("1\n42\n\n7\n")
    out = tmp_path / "out" / "recs.csv"
    done = CliRunner().invoke(app, ["recommend-batch", "--out", str(out), "--users", str(users), "--k", "5"])
    assert done.exit_code == 0, done.output
    recs = pd.read_csv(out)
    assert list(recs.columns) == ["user_id", "rank", "item_id", "title", "score"]
    assert recs["user_id"].tolist() == [1] * 5 + [42] * 5 + [7] * 5 and recs["rank"].tolist()[:5] == [
        1,
        2,
        3,
        4,
        5,
    ]
    assert (recs.groupby("user_id")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()
    assert not list(out.parent.glob("*.partial"))
    users.write_text("1\nnobody\n")
    bad = CliRunner().invoke(
        app, ["recommend-batch", "--out", str(tmp_path / "bad.csv"), "--users", str(users)]
    )
    assert bad.exit_code != 0 and "unknown user id 'nobody'" in str(bad.exception)
    assert not (tmp_path / "bad.csv").exists()
