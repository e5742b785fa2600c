"""Retrieval: candidate sources (content index in Chroma, collaborative filtering) and their
fusion into ranked `Candidate`s. `open_retriever(settings)` wires it all from Settings."""

from __future__ import annotations

import logging

import numpy as np

from fewrec.config import Settings
from fewrec.data import LeaveOneOutSplit, load_dataset
from fewrec.data.split import SplitName
from fewrec.retrieval.base import Candidate, CandidateSource, FitData, ScoringContext
from fewrec.retrieval.fusion import Retriever

__all__ = [
    "Candidate",
    "CandidateSource",
    "FitData",
    "Retriever",
    "ScoringContext",
    "load_item_vectors",
    "open_retriever",
]

log = logging.getLogger(__name__)


def load_item_vectors(
    settings: Settings, split: LeaveOneOutSplit, build: bool = True, progress: bool = True
) -> np.ndarray:
    """Item vectors from the Chroma index (built or updated first when `build`)."""
    from fewrec.retrieval.content import aligned_vectors
    from fewrec.retrieval.store import ContentIndex

    index = ContentIndex.from_settings(settings)
    if build:
        index.build(split.catalog, progress=progress)
    return aligned_vectors(index, split.item_ids)


def open_retriever(
    settings: Settings | None = None,
    split: LeaveOneOutSplit | None = None,
    fit_on: SplitName = "all",
    progress: bool = True,
) -> Retriever:
    """Dataset, content index and CF sources as Settings say, fitted on `fit_on`."""
    settings = settings or Settings()
    split = split or load_dataset(
        settings.dataset, settings.dataset_format, split=settings.split, cache_dir=settings.cache_dir,
        **settings.loader_options,
    )  # fmt: skip
    vectors = None
    if "content" in settings.retrieval.active:
        vectors = load_item_vectors(settings, split, progress=progress)
    return Retriever(split, settings.retrieval, vectors, model_dir=settings.model_dir, progress=progress).fit(
        fit_on
    )
