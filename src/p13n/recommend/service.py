"""Serving recommendations from the store: fit once, save, then recommend (and explain) per user.

A user the fitted model has never seen, or one without interactions, gets the documented
fallback: the most popular items, and the result says so (``fallback``). So does everyone when
the tenant has too little data for the requested model to choose its settings, where the caller
asks for that (the service does) rather than an error.

A fitted recommender is saved as a folder of plain arrays and a JSON document
(``recommend.artifact``), never pickled; ``delete_saved`` removes a tenant's saved models.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from p13n.data import Item
from p13n.encode import Encoder
from p13n.errors import RecDataError, SavedRecommenderError
from p13n.recommend.artifact import (
    CONFIG,
    SavedData,
    SavedDocument,
    SavedModel,
    data_entry,
    read_folder,
    remove,
    restore_data,
    restore_model,
    saved_model,
    write_folder,
)
from p13n.recommend.content import ContentRecommender, Vectors, item_vectors
from p13n.recommend.data import RecData
from p13n.recommend.hybrid import LearnedHybrid
from p13n.recommend.llm import Explanation, RecommendationTexts, explain
from p13n.recommend.models import Array, Popularity, Recommender
from p13n.recommend.ranking import tune_classic
from p13n.recommend.split import Split, leave_last_out
from p13n.registry import Registry
from p13n.store import Store

CLASSIC = ("popularity", "item-knn", "als", "bpr")
SERVABLE = (*CLASSIC, "content", "hybrid")
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
        self, user_id: str, k: int = 10, *, texts: RecommendationTexts | None = None
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
        """Save into the folder ``path`` (plain arrays and ``config.json``), atomically: a reader
        never sees half a model."""
        arrays: dict[str, Array] = {"vectors.npy": self.vectors}
        document = {
            "model_name": self.model_name,
            "encoder_id": self.encoder_id,
            "fingerprint": self.fingerprint,
            "notes": list(self.notes),
            "fallback": self.fallback,
            "data": data_entry(self.data, arrays),
            "model": saved_model(self.model, "model", arrays),
            "popularity": saved_model(self.popularity, "popularity", arrays),
            "vectors": "vectors.npy",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_folder(path, document, arrays)

    @staticmethod
    def load(path: Path) -> FittedRecommender | None:
        """The model saved at ``path``, scoring exactly as when it was saved; None when nothing
        is there. Another format version, or a missing or altered file, is a
        ``SavedRecommenderError`` (refit to replace it)."""
        read = read_folder(path, SavedRecommender)
        if read is None:
            return None
        document, folder = read
        data = restore_data(document.data, folder)
        if fingerprint(data) != document.fingerprint:
            raise SavedRecommenderError(
                f"{path}: the saved interactions do not match their fingerprint"
            )
        popularity = restore_model(document.popularity, folder)
        if not isinstance(popularity, Popularity):
            raise SavedRecommenderError(f"{path}: the fallback model is not popularity")
        return FittedRecommender(
            document.model_name,
            data,
            restore_model(document.model, folder),
            popularity,
            folder.array(document.vectors, "vectors"),
            document.encoder_id,
            document.fingerprint,
            list(document.notes),
            document.fallback,
        )


class SavedRecommender(SavedDocument):
    """``config.json`` of a saved ``FittedRecommender``."""

    model_name: str
    encoder_id: str
    fingerprint: str
    notes: list[str] = Field(default_factory=list)
    fallback: Fallback | None = None
    data: SavedData
    model: SavedModel
    popularity: SavedModel
    vectors: str
    """The file of the item vectors (explanations read them)."""


def saved_path(directory: Path, name: str) -> Path:
    """Where ``FittedRecommender.save`` keeps the model ``name`` under ``directory`` (a folder;
    for the CLI, ``paths.recommenders_dir(tenant)``)."""
    return directory / name


def delete_saved(directory: Path) -> list[Path]:
    """Delete every saved recommender under ``directory`` (``p13n forget`` calls this: saved
    models hold the tenant's user ids), with half-written ``.partial``/``.old`` folders and models
    pickled by older versions (``*.pkl``). Returns what was deleted, models only."""
    if not directory.is_dir():
        return []
    deleted = []
    for path in sorted(directory.iterdir()):
        if path.suffix in (".partial", ".old"):  # half-written or being replaced
            remove(path)
        elif (path.is_dir() and (path / CONFIG).exists()) or path.suffix == ".pkl":
            remove(path)
            deleted.append(path)
    return deleted


# --- Fitting: one registered fit per servable model -----------------------------------------


@dataclass
class FitInputs:
    """What fitting a servable model reads: the tenant's data, its item vectors, the popularity
    model, the leave-last-out split (models that choose settings on it), and the notes so far."""

    name: str
    data: RecData
    vectors: Vectors
    popularity: Popularity
    split: Split | None
    notes: list[str]


@dataclass(frozen=True)
class ServableModel:
    """How ``fit_recommender`` builds one model before it is refitted on all the data."""

    build: Callable[[FitInputs], Recommender]
    tuned: bool = False
    """Chooses its settings on each user's last interactions (needs a leave-last-out split)."""


def _tuned(inputs: FitInputs, names: Sequence[str]) -> dict[str, Recommender]:
    """Each classic model at its best grid point on the validation split, noted."""
    assert inputs.split is not None  # a tuned model always gets a split
    rows = sorted(inputs.split.valid)
    tuned: dict[str, Recommender] = {}
    for name in names:
        tuned[name], params, _ = tune_classic(name, inputs.split, rows)
        inputs.notes.append(f"{name}: {params} chosen on leave-last-out validation")
    return tuned


def _classic(inputs: FitInputs) -> Recommender:
    return _tuned(inputs, [inputs.name])[inputs.name]


def _hybrid(inputs: FitInputs) -> Recommender:
    """The four classic models, tuned, and content, weighted on the validation split."""
    assert inputs.split is not None
    tuned = _tuned(inputs, CLASSIC)
    hybrid = LearnedHybrid([*tuned.values(), ContentRecommender("content", inputs.vectors)])
    hybrid.fit(inputs.split.train)
    weights = hybrid.learn(inputs.split.train, inputs.split.valid)
    inputs.notes.append(
        "hybrid weights learned on leave-last-out validation: " + weights.describe()
    )
    return hybrid


servable: Registry[ServableModel] = Registry("servable recommender")
"""The models ``fit_recommender`` serves (in ``SERVABLE`` order)."""
servable.register("popularity", ServableModel(lambda inputs: inputs.popularity))
for _name in CLASSIC[1:]:
    servable.register(_name, ServableModel(_classic, tuned=True))
servable.register("content", ServableModel(lambda i: ContentRecommender("content", i.vectors)))
servable.register("hybrid", ServableModel(_hybrid, tuned=True))


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
    if model_name not in servable:
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
    entry = servable.get(model_name)
    vectors = item_vectors(data, encoder)
    popularity = Popularity()
    popularity.fit(data)
    split = None
    if entry.tuned:
        try:
            split = leave_last_out(data)
        except RecDataError:
            return too_thin(
                f"{model_name} chooses its settings on each user's last interactions, and no "
                "user has the 3 it needs (use the popularity or content model meanwhile)"
            )
    model = entry.build(FitInputs(model_name, data, vectors, popularity, split, notes))
    model.fit(data)
    return FittedRecommender(
        model_name, data, model, popularity, vectors, encoder.id, fingerprint(data), notes
    )
