"""Text-based scoring: items and users embedded with the encoder, scored by cosine similarity.

A user's vector is either the centroid of the items they liked (no LLM) or the embedding of a
natural-language profile of their tastes written by an LLM (``recommend.llm``); item vectors come
from the catalog text or from LLM-enriched descriptions (LLM-Rec).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar, Self

import numpy as np
import numpy.typing as npt

from p13n.encode import Encoder
from p13n.errors import NotFittedError
from p13n.recommend.data import RecData, item_text
from p13n.recommend.models import ModelState, Recommender, RecommenderConfig, Scores

Vectors = npt.NDArray[np.float32]


def item_vectors(
    data: RecData, encoder: Encoder, texts: Mapping[int, str] | None = None
) -> Vectors:
    """One L2-normalised row per catalog column: the item's text, or ``texts[col]`` if given."""
    chosen = [
        texts[col] if texts is not None and col in texts else item_text(data.item(col))
        for col in range(data.n_items)
    ]
    return np.asarray(encoder.encode(chosen), dtype=np.float32)


def liked_centroids(train: RecData, vectors: Vectors) -> Vectors:
    """Each user's mean vector over the items they rated at or above their own mean rating
    (all their items when values are implicit), L2-normalised; zero for a user with none."""
    centroids = np.zeros((train.n_users, vectors.shape[1]), dtype=np.float32)
    for row in range(train.n_users):
        history = train.history(row)
        if len(history) == 0:
            continue
        values = train.values[history]
        liked = train.cols[history[values >= values.mean()]]
        centroids[row] = _normalised(vectors[liked].mean(axis=0))
    return centroids


def _normalised(vector: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


class ContentRecommender:
    """Cosine similarity between a user vector and every item vector.

    ``user_vectors`` fixes the users' vectors (an embedded LLM profile per row); without it, the
    centroid of each user's liked training items is used. Rows without a vector score 0.
    """

    kind: ClassVar[str] = "content"

    def __init__(
        self,
        name: str,
        vectors: Vectors,
        user_vectors: Mapping[int, npt.NDArray[np.float32]] | None = None,
    ) -> None:
        self.name = name
        self.vectors = vectors
        self.fixed_users = user_vectors
        self._users: Vectors | None = None

    def fit(self, train: RecData) -> None:
        if self.fixed_users is None:
            self._users = liked_centroids(train, self.vectors)
            return
        users = np.zeros((train.n_users, self.vectors.shape[1]), dtype=np.float32)
        for row, vector in self.fixed_users.items():
            users[row] = _normalised(np.asarray(vector, dtype=np.float32))
        self._users = users

    def scores(self, rows: Sequence[int]) -> Scores:
        if self._users is None:
            raise NotFittedError(f"{self.name} is not fitted: call fit() first")
        return np.asarray(self._users[list(rows)] @ self.vectors.T, dtype=np.float32)

    def state(self) -> ModelState:
        if self._users is None:
            raise NotFittedError(f"{self.name} is not fitted: call fit() first")
        arrays = {"vectors": self.vectors, "users": self._users}
        if self.fixed_users is not None:
            rows = list(self.fixed_users)
            arrays["fixed.rows"] = np.array(rows, dtype=np.int64)
            fixed = [np.asarray(self.fixed_users[row], dtype=np.float32) for row in rows]
            arrays["fixed.vectors"] = (
                np.stack(fixed) if fixed else np.zeros((0, self.vectors.shape[1]), np.float32)
            )
        return ModelState(self.kind, self.name, {}, arrays)

    @classmethod
    def from_state(cls, state: ModelState, parts: Sequence[Recommender] = ()) -> Self:
        RecommenderConfig.from_saved(state.config, state.name)  # content has no settings
        names = ["vectors", "users"]
        if "fixed.rows" in state.arrays:
            names += ["fixed.rows", "fixed.vectors"]
        arrays = state.expect(*names)
        fixed = None
        if len(arrays) == 4:
            fixed = {int(row): vector for row, vector in zip(arrays[2], arrays[3], strict=True)}
        model = cls(state.name, arrays[0], fixed)
        model._users = arrays[1]
        return model
