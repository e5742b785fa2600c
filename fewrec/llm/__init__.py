"""LLM backends behind one small protocol (`LLMBackend`): embedded llama.cpp (the CPU default)
and any OpenAI-compatible server (`vllm serve`, llama.cpp's server). `make_backend` picks one
from Settings."""

from __future__ import annotations

from fewrec.config import Settings
from fewrec.llm.base import LLMBackend, LLMError

__all__ = ["LLMBackend", "LLMError", "make_backend"]


def make_backend(settings: Settings) -> LLMBackend:
    llm = settings.llm
    if llm.backend == "llamacpp":
        from fewrec.llm.llamacpp import LlamaCppBackend
        from fewrec.llm.models import resolve_model

        path = resolve_model(llm.model, settings.model_dir)
        return LlamaCppBackend(path, n_ctx=llm.n_ctx, n_threads=llm.threads, name=llm.model)
    if llm.backend == "openai":
        from fewrec.llm.openai_http import OpenAICompatibleBackend

        return OpenAICompatibleBackend.from_settings(llm)
    raise LLMError(f"unknown LLM backend {llm.backend!r}; choose 'llamacpp' or 'openai'")
