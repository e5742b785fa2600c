"""fewrec: an LLM-agent recommender with prompt-based few-shot reasoning.

Public API: `Recommender` (recommend a `RecRequest` / similar_items / search), `Settings` and
`load_dataset` (the bundled demo data, split as in the LlamaRec paper). Everything else
lives in its own sub-package (data, retrieval, prompts, llm, agent, eval, ui).
"""

from fewrec.numerics import pin_blas_kernel

pin_blas_kernel()  # before numpy loads OpenBLAS: the same kernels, so the same figures, anywhere

from fewrec.agent import Filters, Recommendation, Recommender, RecRequest  # noqa: E402
from fewrec.config import Settings  # noqa: E402
from fewrec.data import load_dataset  # noqa: E402

__all__ = ["Filters", "RecRequest", "Recommendation", "Recommender", "Settings", "load_dataset"]
__version__ = "0.1.0"
