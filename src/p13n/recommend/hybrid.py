"""A hybrid recommender: component scores combined with weights learned on validation data.

Each component's scores are standardised per user (z-scores over the catalog), so weights compare
across models. Cold-start users (at most ``COLD_START_MAX`` training interactions) get their own
weights: a collaborative model with little to go on may deserve less for them, and the data
decides. Weights are non-negative and maximise NDCG on the validation split by coordinate ascent
(Metzler & Croft 2007); the test split is never read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
from pydantic import PositiveInt

from p13n.errors import NotFittedError, SavedRecommenderError
from p13n.recommend.data import RecData
from p13n.recommend.models import (
    ModelState,
    Recommender,
    RecommenderConfig,
    Saveable,
    Scores,
)
from p13n.recommend.split import COLD_START_MAX


def standardised(scores: Scores) -> Scores:
    """Per-row z-scores (a constant row becomes zeros)."""
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return np.asarray((scores - mean) / np.where(std > 0, std, 1.0), dtype=np.float32)


@dataclass(frozen=True)
class HybridWeights:
    """Learned weight of each component, for warm and for cold-start users."""

    warm: Mapping[str, float]
    cold: Mapping[str, float]

    def describe(self) -> str:
        def fmt(weights: Mapping[str, float]) -> str:
            return ", ".join(f"{name} {w:+.2f}" for name, w in weights.items())

        return f"warm: {fmt(self.warm)}; cold: {fmt(self.cold)}"


class HybridConfig(RecommenderConfig):
    objective_k: PositiveInt = 20
    """Weights maximise NDCG at this depth."""


class LearnedHybrid:
    """Weighted sum of standardised component scores; ``learn`` sets the weights."""

    kind: ClassVar[str] = "hybrid"

    def __init__(
        self,
        components: Sequence[Recommender],
        *,
        name: str = "hybrid",
        objective_k: int = 20,
    ) -> None:
        self.name = name
        self.components = list(components)
        self.objective_k = objective_k
        self.weights: HybridWeights | None = None
        self._counts: npt.NDArray[np.int64] | None = None
        self._counts_items = 0

    def fit(self, train: RecData) -> None:
        """Fit every component (weights are kept; ``learn`` sets them)."""
        for component in self.components:
            component.fit(train)
        self._counts, self._counts_items = train.counts, train.n_items

    def learn(
        self,
        train: RecData,
        held_out: Mapping[int, Sequence[int]],
        rows: Sequence[int] | None = None,
    ) -> HybridWeights:
        """Learn the weights that maximise NDCG@``objective_k`` of the held-out (validation)
        items, by coordinate ascent (Metzler & Croft 2007), separately for warm and cold users."""
        users = sorted(held_out) if rows is None else [r for r in rows if r in held_out]
        if self._counts is None:
            raise NotFittedError(f"{self.name} is not fitted: call fit() first")
        z = np.stack([standardised(c.scores(users)) for c in self.components], axis=-1)
        for i, row in enumerate(users):
            z[i, train.seen(row)] = -np.inf  # seen items are never candidates
        relevant = np.zeros(z.shape[:2], dtype=bool)
        for i, row in enumerate(users):
            relevant[i, list(held_out[row])] = True
        is_cold = self._counts[users] <= COLD_START_MAX
        names = [c.name for c in self.components]
        groups: dict[str, dict[str, float]] = {}
        for group, members in (("warm", ~is_cold), ("cold", is_cold)):
            if not members.any():
                groups[group] = dict(groups.get("warm", {n: 0.0 for n in names}))
                continue
            best = coordinate_ascent(z[members], relevant[members], self.objective_k)
            groups[group] = {n: float(w) for n, w in zip(names, best, strict=True)}
        self.weights = HybridWeights(warm=groups["warm"], cold=groups["cold"])
        return self.weights

    def scores(self, rows: Sequence[int]) -> Scores:
        if self.weights is None:
            raise NotFittedError(f"{self.name} has no weights: call learn() on validation data")
        if self._counts is None:
            raise NotFittedError(f"{self.name} is not fitted: call fit() first")
        names = [c.name for c in self.components]
        warm = np.array([self.weights.warm[n] for n in names], dtype=np.float32)
        cold = np.array([self.weights.cold[n] for n in names], dtype=np.float32)
        is_cold = self._counts[list(rows)] <= COLD_START_MAX
        weights = np.where(is_cold[:, None], cold[None, :], warm[None, :])
        total = np.zeros((len(rows), self._counts_items), dtype=np.float32)
        for j, component in enumerate(self.components):
            total += weights[:, j : j + 1] * standardised(component.scores(rows))
        return total

    def state(self) -> ModelState:
        """The weights, the training counts and each component's state (all must be saveable)."""
        if self.weights is None:
            raise NotFittedError(f"{self.name} has no weights: call learn() on validation data")
        if self._counts is None:
            raise NotFittedError(f"{self.name} is not fitted: call fit() first")
        names = [c.name for c in self.components]
        parts = []
        for component in self.components:
            if not isinstance(component, Saveable):
                raise SavedRecommenderError(
                    f"{self.name}: component {component.name!r} cannot be saved"
                )
            parts.append(component.state())
        arrays = {
            "weights.warm": np.array([self.weights.warm[n] for n in names], dtype=np.float64),
            "weights.cold": np.array([self.weights.cold[n] for n in names], dtype=np.float64),
            "counts": self._counts,
            "n_items": np.array(self._counts_items, dtype=np.int64),
        }
        config = HybridConfig(objective_k=self.objective_k).model_dump()
        return ModelState(self.kind, self.name, config, arrays, tuple(parts))

    @classmethod
    def from_state(cls, state: ModelState, parts: Sequence[Recommender] = ()) -> Self:
        config = HybridConfig.from_saved(state.config, state.name)
        warm, cold, counts, n_items = state.expect(
            "weights.warm", "weights.cold", "counts", "n_items"
        )
        names = [part.name for part in parts]
        if not len(names) == len(warm) == len(cold):
            raise SavedRecommenderError(
                f"saved hybrid {state.name!r} has {len(names)} components but "
                f"{len(warm)} and {len(cold)} weights"
            )
        model = cls(parts, name=state.name, objective_k=config.objective_k)
        model.weights = HybridWeights(
            warm={n: float(w) for n, w in zip(names, warm, strict=True)},
            cold={n: float(w) for n, w in zip(names, cold, strict=True)},
        )
        model._counts, model._counts_items = counts, int(n_items)
        return model


WEIGHT_GRID = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)


def ndcg_at(
    scores: npt.NDArray[np.floating[Any]], relevant: npt.NDArray[np.bool_], k: int
) -> float:
    """Mean binary NDCG@k of each row's ranking by ``scores`` (the learning objective; reported
    figures come from ranx)."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1)
    gains = np.take_along_axis(relevant, order, 1) / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(1 / np.log2(np.arange(2, k + 2)))[np.minimum(relevant.sum(1), k) - 1]
    return float(np.mean(gains.sum(1) / ideal))


def coordinate_ascent(
    z: npt.NDArray[np.float32],
    relevant: npt.NDArray[np.bool_],
    k: int,
    passes: int = 3,
) -> npt.NDArray[np.float32]:
    """Non-negative weights over the last axis of ``z`` (users x items x components) that
    maximise NDCG@k: start from the best single component, then try each grid value for each
    weight in turn, keeping a change only when it improves the objective."""
    n = z.shape[-1]
    finite = np.where(np.isfinite(z), z, -1e9).astype(np.float32)

    def objective(weights: npt.NDArray[np.float32]) -> float:
        combined = finite @ weights
        combined[~np.isfinite(z[..., 0])] = -np.inf
        return ndcg_at(combined, relevant, k)

    singles = [objective(np.eye(n, dtype=np.float32)[j]) for j in range(n)]
    weights = np.eye(n, dtype=np.float32)[int(np.argmax(singles))]
    best = max(singles)
    for _ in range(passes):
        improved = False
        for j in range(n):
            for value in WEIGHT_GRID:
                trial = weights.copy()
                trial[j] = value
                if not trial.any():
                    continue
                score = objective(trial)
                if score > best + 1e-9:
                    best, weights, improved = score, trial, True
        if not improved:
            break
    return np.asarray(weights / max(float(weights.sum()), 1e-9), dtype=np.float32)
