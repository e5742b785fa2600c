"""The agent layer: the `Recommender` facade (retrieve → rerank → explain), the chat agent
and the LangChain tools."""

from fewrec.agent.recommender import Filters, Recommendation, Recommender, RecRequest

__all__ = ["Filters", "RecRequest", "Recommendation", "Recommender"]
