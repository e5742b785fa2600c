"""The agent layer: the `Recommender` facade (retrieve → rerank → explain), the chat agent
and the LangChain tools."""

from fewrec.agent.recommender import Filters, Recommendation, Recommender

__all__ = ["Filters", "Recommendation", "Recommender"]
