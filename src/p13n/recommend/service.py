"""Serving recommendations from the store: fit once, save, then recommend (and explain) per user.

A user the fitted model has never seen, or one without interactions, gets the documented
fallback: the most popular items, and the result says so (``fallback``). So does everyone when
the tenant has too little data for the requested model to choose its settings, where the caller
asks for that (the service does) rather than an error.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from p13n.data import Item
from p13n.encode import Encoder
from p13n.recommend.content import ContentRecommender, Vectors, item_vectors
from p13n.recommend.data import RecData, RecDataError
from p13n.recommend.evaluate import tune_classic
from p13n.recommend.hybrid import LearnedHybrid
from p13n.recommend.llm import Explanation, LLMTexts, explain
from p13n.recommend.models import Popularity, Recommender, classic
from p13n.recommend.split import leave_last_out
from p13n.store import Store

CLASSIC = ("popularity", "item-knn", "als", "bpr")
SERVABLE = (*CLASSIC, "content", "hybrid")
FORMAT = 2
Fallback = Literal["unknown user", "no interactions", "too little data"]


def data_from_store(store: Store, kinds: Sequence[str] | None = None) -> RecData:
    """Every interaction of the store's tenant (of these kinds), against its catalog. A user who
    interacted with an item more than once counts with the latest interaction. Interactions with
    items no longer in the catalog (or with values float32 cannot hold) are left out and counted,
    so one user's stale history never stops recommendations for the others."""
    return RecData.build(
        store.all_interactions(kinds=kinds),
        store.catalog(),
        store.all_users(),
        kinds=kinds,
        duplicates="latest",
        invalid="skip",
    )


def fingerprint(data: RecData) -> str:
    """Changes whenever the interactions or the catalog change."""
    digest = hashlib.sha256()
    for part in (data.user_ids, data.item_ids):
        digest.update("\x1f".join(part).encode())
    for array in (data.rows, data.cols, data.values, data.times):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Recommendation:
    item: Item
    score: float
    explanation: Explanation | None = None


@dataclass(frozen=True)
class RecommendResult:
    user_id: str
    model: str
    items: list[Recommendation]
    fallback: Fallback | None = None
    history: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class FittedRecommender:
    """A model fitted on all of a tenant's interactions, with the popularity fallback."""

    model_name: str
    data: RecData
    model: Recommender
    popularity: Popularity
    vectors: Vectors
    encoder_id: str
    fingerprint: str
    notes: list[str] = field(default_factory=list)
    fallback: Fallback | None = None
    """Set when the requested model could not be fitted: everyone gets popularity."""

    def recommend(
        self, user_id: str, k: int = 10, *, texts: LLMTexts | None = None
    ) -> RecommendResult:
        """The ``k`` best items the user has not interacted with; explained when ``texts``."""
        if k <= 0:
            raise RecDataError(f"k must be positive, got {k}")
        row = self.data.user_index.get(user_id)
        history = 0 if row is None else int(self.data.counts[row])
        fallback: Fallback | None = self.fallback
        if row is None:
            fallback = "unknown user"
        elif history == 0:
            fallback = "no interactions"
        model: Recommender = self.popularity if fallback else self.model
        scores = model.scores([row if row is not None else 0])[0].astype(np.float64)
        if row is not None:
            scores[self.data.seen(row)] = -np.inf
        if len(self.data) == 0:  # no interaction anywhere: nothing is more popular than the rest
            scores[:] = -np.inf
        order = [int(c) for c in np.argsort(-scores, kind="stable")[:k] if np.isfinite(scores[c])]
        explanations: list[Explanation | None] = [None] * len(order)
        if texts is not None:
            if fallback or row is None:
                explanations = [
                    Explanation(self.data.item_ids[c], (), "Popular with other viewers.")
                    for c in order
                ]
            else:
                explanations = list(explain(self.data, row, order, self.vectors, texts))
        return RecommendResult(
            user_id,
            "popularity" if fallback else self.model_name,
            [
                Recommendation(self.data.item(c), float(scores[c]), e)
                for c, e in zip(order, explanations, strict=True)
            ],
            fallback,
            history,
            list(self.notes),
        )

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        with partial.open("wb") as handle:
            pickle.dump({"format": FORMAT, "fitted": self}, handle)
        partial.replace(path)  # atomic: a reader never sees half a model
        return path

    @staticmethod
    def load(path: Path) -> FittedRecommender | None:
        """The saved model, or None when there is none or it has an older format."""
        if not path.exists():
            return None
        # Only files this module wrote, under the user's own model folder, are unpickled.
        with path.open("rb") as handle:
            saved = pickle.load(handle)
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            return None
        fitted = saved["fitted"]
        return fitted if isinstance(fitted, FittedRecommender) else None


def fit_recommender(
    data: RecData,
    model_name: str,
    encoder: Encoder,
    *,
    thin_data: Literal["error", "popularity"] = "error",
) -> FittedRecommender:
    """Fit ``model_name`` on all of ``data``. Hyperparameters and hybrid weights are chosen on a
    temporal leave-last-out validation split of the same data, then the model is refitted on all.
    Data too thin for that (or no interaction at all) is an error, or with
    ``thin_data="popularity"`` serves the popularity fallback to everyone, saying so."""
    if model_name not in SERVABLE:
        raise RecDataError(f"unknown model {model_name!r}; servable: {', '.join(SERVABLE)}")
    notes = [
        f"left out {count} interaction{'s' * (count != 1)}: {reason}"
        for reason, count in sorted(data.skipped.items())
    ]

    def too_thin(problem: str) -> FittedRecommender:
        if thin_data == "error":
            raise RecDataError(problem)
        popularity = Popularity()
        popularity.fit(data)
        return FittedRecommender(
            model_name,
            data,
            popularity,
            popularity,
            np.zeros((data.n_items, 0), dtype=np.float32),
            encoder.id,
            fingerprint(data),
            [*notes, f"{problem}: everyone gets the most popular items"],
            "too little data",
        )

    if len(data) == 0:
        return too_thin("the store has no interactions to fit a recommender on")
    vectors = item_vectors(data, encoder)
    popularity = Popularity()
    popularity.fit(data)
    model: Recommender
    if model_name == "popularity":
        model = popularity
    elif model_name == "content":
        model = ContentRecommender("content", vectors)
    else:
        try:
            split = leave_last_out(data)
        except RecDataError:
            return too_thin(
                f"{model_name} chooses its settings on each user's last interactions, and no "
                "user has the 3 it needs (use the popularity or content model meanwhile)"
            )
        rows = sorted(split.valid)
        tuned: dict[str, Recommender] = {}
        for name in (model_name,) if model_name in classic else CLASSIC:
            tuned[name], params, _ = tune_classic(name, split, rows)
            notes.append(f"{name}: {params} chosen on leave-last-out validation")
        if model_name in classic:
            model = tuned[model_name]
        else:
            hybrid = LearnedHybrid([*tuned.values(), ContentRecommender("content", vectors)])
            hybrid.fit(split.train)
            weights = hybrid.learn(split.train, split.valid)
            notes.append(
                "hybrid weights learned on leave-last-out validation: " + weights.describe()
            )
            model = hybrid
    model.fit(data)
    return FittedRecommender(
        model_name, data, model, popularity, vectors, encoder.id, fingerprint(data), notes
    )
