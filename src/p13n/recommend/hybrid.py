"""A hybrid recommender: component scores combined with weights learned on validation data.

Each component's scores are standardised per user (z-scores over the catalog), so weights compare
across models. Cold-start users (at most ``COLD_START_MAX`` training interactions) get their own
weights: a collaborative model with little to go on may deserve less for them, and the data
decides. Weights are non-negative and maximise NDCG on the validation split by coordinate ascent
(Metzler & Croft 2007); the test split is never read.

Learned weights must earn their place: out of fold (learned on half the validation users,
scored on the other half, and back), they are kept only when the one-standard-error rule
prefers them to the best single component (and, for cold-start users, to popularity and to the
warm users' weights). On thin validation the error is wide and the simpler model serves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
from pydantic import Field, PositiveInt

from p13n.errors import NotFittedError, SavedRecommenderError
from p13n.evaluate.stats import one_standard_error_choice
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
    chosen: Mapping[str, str] = field(default_factory=dict)
    """Per group, what the one-standard-error rule kept (e.g. "learned", "best single: als")."""

    def describe(self) -> str:
        def fmt(weights: Mapping[str, float]) -> str:
            return ", ".join(f"{name} {w:+.2f}" for name, w in weights.items())

        def why(group: str) -> str:
            return f" ({self.chosen[group]})" if group in self.chosen else ""

        return f"warm: {fmt(self.warm)}{why('warm')}; cold: {fmt(self.cold)}{why('cold')}"


class HybridConfig(RecommenderConfig):
    objective_k: PositiveInt = 20
    """Weights maximise NDCG at this depth."""
    chosen: dict[str, str] = Field(default_factory=dict)
    """Per group, what validation kept (``HybridWeights.chosen``)."""


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
        chosen: dict[str, str] = {}
        for group, members in (("warm", ~is_cold), ("cold", is_cold)):
            if not members.any():
                groups[group] = dict(groups.get("warm", {n: 0.0 for n in names}))
                chosen[group] = "the warm users' weights (no cold-start validation users)"
                continue
            shared = None
            if group == "cold":
                shared = np.array([groups["warm"][n] for n in names], dtype=np.float32)
            weights, chosen[group] = guarded_weights(
                z[members], relevant[members], self.objective_k, names, shared=shared
            )
            groups[group] = {n: float(w) for n, w in zip(names, weights, strict=True)}
        self.weights = HybridWeights(warm=groups["warm"], cold=groups["cold"], chosen=chosen)
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
        config = HybridConfig(
            objective_k=self.objective_k, chosen=dict(self.weights.chosen)
        ).model_dump()
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
            chosen=config.chosen,
        )
        model._counts, model._counts_items = counts, int(n_items)
        return model


WEIGHT_GRID = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)


def ndcg_at(
    scores: npt.NDArray[np.floating[Any]], relevant: npt.NDArray[np.bool_], k: int
) -> float:
    """Mean binary NDCG@k of each row's ranking by ``scores`` (the learning objective; reported
    figures come from ranx)."""
    return float(np.mean(ndcg_rows(scores, relevant, k)))


def ndcg_rows(
    scores: npt.NDArray[np.floating[Any]], relevant: npt.NDArray[np.bool_], k: int
) -> npt.NDArray[np.float64]:
    """Binary NDCG@k of each row's ranking by ``scores``."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1)
    gains = np.take_along_axis(relevant, order, 1) / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(1 / np.log2(np.arange(2, k + 2)))[np.minimum(relevant.sum(1), k) - 1]
    return np.asarray(gains.sum(1) / ideal, dtype=np.float64)


def combined(z: npt.NDArray[np.float32], weights: npt.NDArray[np.float32]) -> Scores:
    """The weighted sum over the last axis of ``z``; items that are -inf (seen) stay -inf."""
    finite = np.where(np.isfinite(z), z, -1e9).astype(np.float32)
    total = finite @ weights
    total[~np.isfinite(z[..., 0])] = -np.inf
    return np.asarray(total, dtype=np.float32)


def guarded_weights(
    z: npt.NDArray[np.float32],
    relevant: npt.NDArray[np.bool_],
    k: int,
    names: Sequence[str],
    *,
    shared: npt.NDArray[np.float32] | None = None,
) -> tuple[npt.NDArray[np.float32], str]:
    """Learned weights only where validation supports them over simpler choices: popularity
    (when a component is named so) and ``shared`` weights (the warm users', for cold-start
    users) first, then the best single component, then weights learned here. The learned
    candidate is scored out of fold (two halves of the users, each scored with weights learned
    on the other), the rest as they are; the one-standard-error rule picks."""
    n = z.shape[-1]
    singles = [
        ndcg_rows(combined(z, np.eye(n, dtype=np.float32)[j]), relevant, k) for j in range(n)
    ]
    best = int(np.argmax([values.mean() for values in singles]))
    candidates: list[tuple[str, npt.NDArray[np.float64]]] = []
    weights: dict[str, npt.NDArray[np.float32]] = {}
    if "popularity" in names and names[best] != "popularity":
        j = list(names).index("popularity")
        candidates.append(("popularity", singles[j]))
        weights["popularity"] = np.eye(n, dtype=np.float32)[j]
    if shared is not None:
        candidates.append(("the warm users' weights", ndcg_rows(combined(z, shared), relevant, k)))
        weights["the warm users' weights"] = shared
    label = f"best single: {names[best]}"
    candidates.append((label, singles[best]))
    weights[label] = np.eye(n, dtype=np.float32)[best]
    if len(z) >= 4:  # two halves of two users at least: else learned weights are no candidate
        fold = np.arange(len(z)) % 2
        out_of_fold = np.empty(len(z), dtype=np.float64)
        for half in (0, 1):
            fit, held = fold != half, fold == half
            on_other = coordinate_ascent(z[fit], relevant[fit], k)
            out_of_fold[held] = ndcg_rows(combined(z[held], on_other), relevant[held], k)
        candidates.append(("learned", out_of_fold))
        weights["learned"] = coordinate_ascent(z, relevant, k)  # served: fit on every user
    choice = one_standard_error_choice(candidates, higher_is_better=True)
    return weights[choice.chosen], choice.chosen


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

    def objective(weights: npt.NDArray[np.float32]) -> float:
        return ndcg_at(combined(z, weights), relevant, k)

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
