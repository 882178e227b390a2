"""What the indirect predictors share: their data types, dev search grid and tie rule.

The survey's indirect stream (§5, §8.2): instead of putting the user's data into a prompt, the
user's own history becomes vectors and statistics that a downstream predictor uses. Rating
predictors (``p13n.predict.rating``) and label predictors (``p13n.predict.classify``) fit on
``Observations`` and predict ``Case`` objects that ``p13n.predict.data`` reads;
``p13n.benchmarks.indirect`` runs them side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Flags = npt.NDArray[np.bool_]
Progress = Callable[[str, int, int], None]
"""``progress(step, done, total)``: called as a long step advances."""
V = TypeVar("V", float, str)
T = TypeVar("T")

RATING_SCALE = (1.0, 5.0)
# The neighbourhood grid both kNN predictors search on dev: k most similar own items (None:
# all) and the exponent applied to their similarities.
KNN_KS: tuple[int | None, ...] = (1, 2, 3, 5, 10, 20, 50, None)
KNN_POWERS = (0.0, 1.0, 3.0, 10.0)


@dataclass(frozen=True, eq=False)
class History(Generic[V]):
    """A user's own past items: each one's text, the rating or label the user gave it, its id."""

    texts: tuple[str, ...]
    values: tuple[V, ...]
    item_ids: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class Case(Generic[V]):
    """One prediction to make: the target's text (and item id), the user's own history, the gold."""

    id: str
    text: str
    history: History[V]
    gold: V | None = None
    user_id: str = ""
    item_id: str = ""


RatingCase = Case[float]
LabelCase = Case[str]


@dataclass(frozen=True)
class Observations(Generic[V]):
    """What predictors fit on: every (user, item, text, value) known at training time."""

    users: tuple[str, ...]
    items: tuple[str, ...]
    texts: tuple[str, ...]
    values: tuple[V, ...]

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class RatingPredictions:
    """One rating per case; ``fallback`` marks cases where the predictor used its default."""

    values: Floats
    fallback: Flags


@dataclass(frozen=True)
class LabelPredictions:
    """One label per case, the class scores behind it (columns in the task's label order) when
    the predictor has them, and which cases fell back to the default."""

    labels: list[str]
    fallback: Flags
    scores: Floats | None = None


def first_best(candidates: Iterable[tuple[T, float]], *, lower: bool) -> tuple[T, float]:
    """The candidate with the best score and that score; a later candidate must beat the best so
    far by more than 1e-12, so ties keep the first in order."""
    best: tuple[T, float] | None = None
    for candidate, score in candidates:
        if best is None or (score < best[1] - 1e-12 if lower else score > best[1] + 1e-12):
            best = (candidate, score)
    if best is None:
        raise ValueError("first_best: no candidates")
    return best
