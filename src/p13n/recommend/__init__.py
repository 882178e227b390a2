"""Recommenders (survey §8.2): interactions as ``RecData``, evaluation splits, the classic models
(``classic``: popularity, item-kNN, ALS, BPR), the content model, the learned hybrid, the
LLM-augmented family (``llm``), full-ranking evaluation (``ranking``), saved models as plain
arrays (``artifact``) and serving with fallbacks and explanations (``service``).

Rating prediction and classification, the other half of the indirect stream, live in
``p13n.predict``.
"""

from p13n.recommend.data import RecData, item_text
from p13n.recommend.models import (
    ALSConfig,
    BPRConfig,
    ItemKNNConfig,
    ModelState,
    PopularityConfig,
    Recommender,
    RecommenderConfig,
    Saveable,
    Scores,
    classic,
)

__all__ = [
    "ALSConfig",
    "BPRConfig",
    "ItemKNNConfig",
    "ModelState",
    "PopularityConfig",
    "RecData",
    "Recommender",
    "RecommenderConfig",
    "Saveable",
    "Scores",
    "classic",
    "item_text",
]
