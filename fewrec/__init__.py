"""fewrec: an LLM-agent recommender with prompt-based few-shot reasoning.

Public API: `Recommender` (recommend a `RecRequest` / similar_items / search), `Settings` and
`load_dataset` (the bundled demo data, split as in the LlamaRec paper). Everything else
lives in its own sub-package (data, retrieval, prompts, llm, agent, eval, ui).
"""

from fewrec.agent import Filters, Recommendation, Recommender, RecRequest
from fewrec.config import Settings
from fewrec.data import load_dataset

__all__ = ["Filters", "RecRequest", "Recommendation", "Recommender", "Settings", "load_dataset"]
__version__ = "0.1.0"
