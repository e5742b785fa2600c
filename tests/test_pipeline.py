"""The one pipeline (fewrec/agent/pipeline.py): the Recommender, `evaluate` and the CLI build
their parts from it and agree; data without titles gets no content index; an LLM that cannot
load is a reason, not a crash. Cheap sources only: seconds, no embedding model, no LLM."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from conftest import only_sources
from typer.testing import CliRunner

from fewrec.agent.pipeline import Pipeline
from fewrec.agent.recommender import Recommender
from fewrec.cli import app
from fewrec.config import RetrievalSettings, Settings
from fewrec.eval.runner import EvalError, evaluate
from fewrec.retrieval.fusion import Retriever
from fewrec.retrieval.store import VectorStoreError

FUSED = "fewrec retrieval (fused)"
WEIGHTS = {"itemknn": 1.0, "transition": 1.0, "popularity": 0.1}
SOURCES = only_sources(*WEIGHTS, **{name: {"weight": weight} for name, weight in WEIGHTS.items()})


def cheap(data_dir, **update) -> Settings:
    return Settings(data_dir=data_dir, retrieval=RetrievalSettings(sources=SOURCES), **update)


def test_recommender_evaluate_and_the_cli_agree(bundled_split, clean_env, monkeypatch):
    settings = cheap(clean_env / "data")
    pipeline = Pipeline(settings, bundled_split, fit_on="test")
    assert pipeline.tuned_status == "configured" and pipeline.notes == []
    recommender = Recommender(pipeline=pipeline)
    assert recommender.retriever is pipeline.retriever and recommender.settings is pipeline.settings

    # The facade's candidates are those of a Retriever built by hand from the same settings.
    by_hand = Retriever(bundled_split, settings.retrieval, model_dir=settings.model_dir, progress=False)
    by_hand.fit("test")
    for u in (0, 7, 42, 300, 609):
        history = bundled_split.history(u, "test")
        context = by_hand.context_for(np.array([u]), "test")
        expected = [c.item_id for c in by_hand.candidates(history, 10, context)]
        found = recommender.recommend(
            user_id=bundled_split.user_ids[u].item(), k=10, rerank=False, explain=False
        )
        assert [r.item_id for r in found] == expected

    # evaluate() through the pipeline scores with its retriever, and matches the path without it.
    assert pipeline.retriever_for("test") is pipeline.retriever
    through = evaluate(bundled_split, baselines=[], users=80, seed=3, pipeline=pipeline)
    plain = evaluate(bundled_split, settings, baselines=[], users=80, seed=3)
    assert through.settings == plain.settings
    assert through.method(FUSED).metrics == plain.method(FUSED).metrics
    assert through.method(FUSED).metrics["ndcg@10"] > 0

    # `fewrec eval` builds its own pipeline from the same settings and writes the same numbers.
    monkeypatch.setenv("FEWREC_DATA_DIR", str(clean_env / "data"))
    monkeypatch.setenv("FEWREC_RETRIEVAL__SOURCES", json.dumps(SOURCES))
    out = clean_env / "run"
    args = ["eval", "--baselines", "none", "--history-cut", "", "--users", "80", "--seed", "3"]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    methods = {m["name"]: m for m in json.loads((out / "results.json").read_text())["methods"]}
    assert methods[FUSED]["metrics"] == pytest.approx(plain.method(FUSED).metrics, rel=1e-12)


def test_retriever_for_fits_on_the_split_asked_for(bundled_split, tmp_path):
    pipeline = Pipeline(cheap(tmp_path), bundled_split)
    with ThreadPoolExecutor(max_workers=8) as pool:  # one fit, however many threads ask at once
        built = list(pool.map(lambda _: pipeline.retriever, range(8)))
    assert all(r is built[0] for r in built) and built[0].fitted_on == "all"
    valid = pipeline.retriever_for("valid")
    assert valid.fitted_on == "valid" and valid is not pipeline.retriever
    assert pipeline.retriever_for("all") is pipeline.retriever
    # Fitted on valid: it scores as a Retriever fitted on valid by hand, not as the "all" one.
    by_hand = Retriever(bundled_split, pipeline.settings.retrieval, progress=False).fit("valid")
    histories = [bundled_split.history(u, "valid") for u in range(20)]
    users = np.arange(20)
    fused = valid.score(histories, valid.context_for(users, "valid")).fused
    np.testing.assert_allclose(fused, by_hand.score(histories, by_hand.context_for(users, "valid")).fused)
    only = pipeline.retriever_for("valid", sources=["popularity"])
    assert list(only.sources) == ["popularity"] and only.fitted_on == "valid"


def test_without_titles_there_is_no_content_index(tmp_path, bundled_split):
    rows = [(u, (u + step) % 25 + 1, step) for u in range(1, 41) for step in range(10)]
    csv = tmp_path / "positions" / "ratings.csv"
    csv.parent.mkdir()
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(csv, index=False)
    retrieval = RetrievalSettings(
        sources=only_sources("content", "transition", content={"weight": 1.0}, transition={"weight": 1.0})
    )
    settings = Settings(data_dir=tmp_path / "data", dataset=str(csv), retrieval=retrieval)
    said: list[str] = []
    pipeline = Pipeline(settings, say=said.append)  # loads the dataset on first use
    assert pipeline.notes == [] and said == []
    assert pipeline.content is None and pipeline.item_vectors is None
    assert any("no titles" in note for note in pipeline.notes) and said == pipeline.notes
    assert "content" not in pipeline.settings.retrieval.active
    assert "content" in settings.retrieval.active  # the caller's settings are left alone
    assert list(pipeline.retriever.sources) == ["transition"]
    assert pipeline.demo_pool.collection is None  # demonstrations by shared items: no Chroma
    recommender = Recommender(pipeline=pipeline)
    with pytest.raises(VectorStoreError, match="no titles"):
        recommender.search("anything", 3)
    found = recommender.recommend(user_id=1, query="something", k=3, rerank=False, explain=False)
    assert len(found) == 3 and "content index is unavailable" in (found[0].fallback or "")
    assert not (tmp_path / "data" / "chroma").exists()
    with pytest.raises(EvalError, match="another split"):
        evaluate(bundled_split, baselines=[], pipeline=pipeline)
    with pytest.raises(ValueError, match="not both"):
        Recommender(settings, pipeline=pipeline)


def test_an_llm_that_cannot_load_is_a_reason_not_a_crash(bundled_split, tmp_path):
    settings = cheap(tmp_path)
    settings.llm.model = "/nonexistent/model.gguf"
    pipeline = Pipeline(settings, bundled_split)
    assert pipeline.reranker is None and pipeline.llm_parts() is None
    assert pipeline.llm_error is not None and pipeline.llm_error.startswith("LLM unavailable")
    assert "/nonexistent/model.gguf" in pipeline.llm_error
    recommender = Recommender(pipeline=pipeline)
    plain = recommender.recommend(user_id=1, k=5, rerank=False, explain=False)
    reranked = recommender.recommend(user_id=1, k=5, rerank=True, explain=False)
    assert [r.item_id for r in reranked] == [r.item_id for r in plain]
    assert all("LLM unavailable" in (r.fallback or "") for r in reranked)
    assert recommender.explain(plain[0].item_id, user_id=1)  # explanations need no LLM
    with pytest.raises(EvalError, match="LLM backend: LLM unavailable"):
        evaluate(bundled_split, stages=["retrieval", "fused"], baselines=[], users=10, pipeline=pipeline)


def test_the_settings_dataset_is_loaded_once_on_first_use(tmp_path):
    pipeline = Pipeline(cheap(tmp_path))
    assert pipeline._split is None  # nothing loaded until asked for
    assert pipeline.split is pipeline.split and pipeline.split.name == "ml-latest-small"
    assert pipeline.tuned_status == "configured" and pipeline.notes == []
