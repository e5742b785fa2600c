"""`fewrec bench` on the dataset (fewrec/bench/speed.py): the figures a run reports, its users
drawn by the evaluations' one sampler, and its run record."""

from __future__ import annotations

import numpy as np
from conftest import cheap_settings


def test_the_speed_bench_times_a_seeded_sample_and_records_its_run(fewrec_data_dir, monkeypatch):
    from fewrec.bench import speed

    drawn: list[tuple[int, int]] = []
    real = speed.seeded_sample

    def watched(pool: np.ndarray, n: int | None, seed: int) -> np.ndarray:
        drawn.append((len(pool), n or 0))
        return real(pool, n, seed)

    monkeypatch.setattr(speed, "seeded_sample", watched)
    settings = cheap_settings(fewrec_data_dir)
    result = speed.run_bench(settings, users=7, llm_users=0, chat_sessions=2, load_threads=0)

    figures = result.figures
    assert figures["retrieval_users"] == 7
    assert figures["chat_turn_default_turns"] > 0
    assert 0 < figures["retrieval_p50_ms"] <= figures["retrieval_p95_ms"]
    assert "index_build_s" not in figures  # the cheap sources need no content index
    assert "chat_turn_llm_rerank_turns" not in figures  # no reranker in these settings
    # The retrieval users and the chat's dataset users, each from the one seeded sampler.
    assert [n for _, n in drawn] == [7, 2]
    assert result.complete and result.started and result.finished
    assert result.provenance is not None and result.provenance.load_average_end
