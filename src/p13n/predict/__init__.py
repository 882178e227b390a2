"""Indirect prediction (survey §2, §8.2): the user's own history, as text vectors and statistics,
feeds a downstream rating predictor (``rating``) or label predictor (``classify``).

``base`` holds the shared types, ``data`` reads LaMP splits and MovieLens folds into them, and
``history`` embeds texts once and ranks a case's own history by similarity to its target.
"""

from p13n.predict.base import (
    Case,
    History,
    LabelCase,
    LabelPredictions,
    Observations,
    RatingCase,
    RatingPredictions,
)
from p13n.predict.classify import LabelPredictor
from p13n.predict.history import EmbeddingTable, SimilarHistory
from p13n.predict.rating import RatingPredictor

__all__ = [
    "Case",
    "EmbeddingTable",
    "History",
    "LabelCase",
    "LabelPredictions",
    "LabelPredictor",
    "Observations",
    "RatingCase",
    "RatingPredictions",
    "RatingPredictor",
    "SimilarHistory",
]
