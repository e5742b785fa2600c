"""fewrec: an LLM-agent recommender with prompt-based few-shot reasoning.

Public API: `load_dataset` (the bundled demo data, split as in the LlamaRec paper) and
`Settings`. Everything else lives in its own sub-package (data, retrieval, eval, …).
"""

from fewrec.config import Settings
from fewrec.data import load_dataset

__all__ = ["Settings", "load_dataset"]
__version__ = "0.1.0"
