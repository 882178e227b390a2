"""Classic recommenders: popularity, item-kNN, ALS and BPR (the last three from ``implicit``).

Every recommender fits on a training ``RecData`` and then scores all items for given user rows;
ranking, filtering of seen items and fallbacks live outside the models (``recommend.service``).
Each classic model has a typed config (``classic`` maps its name to the config and the class), and
every model here can give its fitted state as plain arrays (``state``) and be rebuilt from them
(``from_state``) to score exactly the same (``recommend.artifact`` saves them).
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt
from pydantic import (
    BaseModel,
    ConfigDict,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
)

from p13n.errors import NotFittedError, SavedRecommenderError
from p13n.recommend.data import RecData
from p13n.registry import Registry

Scores = npt.NDArray[np.float32]
Array = npt.NDArray[Any]


@runtime_checkable
class Recommender(Protocol):
    """Fit once on training interactions, then score every item for any user row."""

    name: str

    def fit(self, train: RecData) -> None: ...

    def scores(self, rows: Sequence[int]) -> Scores:
        """Shape (len(rows), n_items); higher is better. Seen items are not filtered here."""
        ...


# --- Saving: a fitted model as plain parts -----------------------------------------------------


@dataclass(frozen=True)
class ModelState:
    """What a fitted recommender needs to score, in plain parts: its kind (which class rebuilds
    it), its name, the settings it was built with (JSON), its arrays, and its components' states."""

    kind: str
    name: str
    config: Mapping[str, Any] = field(default_factory=dict)
    arrays: Mapping[str, Array] = field(default_factory=dict)
    parts: tuple[ModelState, ...] = ()

    def expect(self, *names: str) -> list[Array]:
        """The named arrays, in order: a missing one is an error, one not asked for a warning."""
        missing = [name for name in names if name not in self.arrays]
        if missing:
            raise SavedRecommenderError(
                f"saved {self.kind} model {self.name!r} lacks its {', '.join(missing)} array"
            )
        unknown = sorted(set(self.arrays) - set(names))
        if unknown:
            warnings.warn(
                f"saved {self.kind} model {self.name!r}: ignoring unknown arrays "
                f"{', '.join(unknown)} (written by a newer p13n?)",
                UserWarning,
                stacklevel=2,
            )
        return [self.arrays[name] for name in names]


@runtime_checkable
class Saveable(Protocol):
    """A recommender that gives its fitted state as plain parts and is rebuilt from them."""

    kind: ClassVar[str]

    def state(self) -> ModelState:
        """The fitted state (fit first)."""
        ...

    @classmethod
    def from_state(cls, state: ModelState, parts: Sequence[Recommender]) -> Self:
        """The fitted model again, scoring exactly as the saved one; ``parts`` are its
        components, already rebuilt."""
        ...


class RecommenderConfig(BaseModel):
    """Settings of one recommender: validated, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_saved(cls, values: Mapping[str, Any], model: str) -> Self:
        """The settings a saved ``model`` was built with. Keys this version does not know are
        warned about and left out (a newer p13n may have written them); scores do not depend
        on them, only a refit would."""
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            warnings.warn(
                f"saved model {model!r}: ignoring unknown settings {', '.join(unknown)} "
                "(written by a newer p13n?)",
                UserWarning,
                stacklevel=2,
            )
        return cls.model_validate({k: v for k, v in values.items() if k in cls.model_fields})


class PopularityConfig(RecommenderConfig):
    """Popularity has no settings."""


class ItemKNNConfig(RecommenderConfig):
    neighbours: PositiveInt = 100
    """How many most similar items each item keeps."""


class ALSConfig(RecommenderConfig):
    factors: PositiveInt = 64
    regularization: NonNegativeFloat = 0.05
    alpha: NonNegativeFloat = 1.0
    """Confidence weight of an interaction (Hu, Koren & Volinsky 2008)."""
    iterations: NonNegativeInt = 15
    seed: int = 0


class BPRConfig(RecommenderConfig):
    factors: PositiveInt = 64
    learning_rate: PositiveFloat = 0.01
    regularization: NonNegativeFloat = 0.01
    iterations: NonNegativeInt = 100
    seed: int = 0


class Popularity:
    """Items by how many users interacted with them in training: the same list for everyone."""

    name = "popularity"
    kind: ClassVar[str] = "popularity"

    def __init__(self) -> None:
        self.config = PopularityConfig()
        self._counts: Scores | None = None

    def fit(self, train: RecData) -> None:
        self._counts = np.bincount(train.cols, minlength=train.n_items).astype(np.float32)

    def scores(self, rows: Sequence[int]) -> Scores:
        counts = _fitted(self._counts, self.name)
        return np.tile(np.log1p(counts), (len(rows), 1))

    def state(self) -> ModelState:
        return ModelState(self.kind, self.name, {}, {"counts": _fitted(self._counts, self.name)})

    @classmethod
    def from_state(cls, state: ModelState, parts: Sequence[Recommender] = ()) -> Self:
        PopularityConfig.from_saved(state.config, state.name)
        model = cls()
        (model._counts,) = state.expect("counts")
        return model


def _fitted(value: Any, name: str) -> Any:
    if value is None:
        raise NotFittedError(f"{name} is not fitted: call fit() first")
    return value


def _blas_single_thread() -> Any:
    # implicit warns (and slows down) when BLAS runs its own threads beside implicit's.
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")


def _sparse_arrays(prefix: str, matrix: Any) -> dict[str, Array]:
    return {
        f"{prefix}.data": matrix.data,
        f"{prefix}.indices": matrix.indices,
        f"{prefix}.indptr": matrix.indptr,
        f"{prefix}.shape": np.array(matrix.shape, dtype=np.int64),
    }


def _sparse(data: Array, indices: Array, indptr: Array, shape: Array) -> Any:
    from scipy.sparse import csr_matrix

    return csr_matrix((data, indices, indptr), shape=(int(shape[0]), int(shape[1])))


_SPARSE_PARTS = ("data", "indices", "indptr", "shape")


class ItemKNN:
    """Item-based kNN (Sarwar et al. 2001): a user's items vote for their ``neighbours`` most
    cosine-similar items (implicit's ``CosineRecommender``)."""

    name = "item-knn"
    kind: ClassVar[str] = "item-knn"

    def __init__(self, neighbours: int = 100) -> None:
        self.config = ItemKNNConfig(neighbours=neighbours)
        self._train: Any = None
        self._similarity: Any = None

    @classmethod
    def from_config(cls, config: ItemKNNConfig) -> Self:
        return cls(**config.model_dump())

    def fit(self, train: RecData) -> None:
        from implicit.nearest_neighbours import CosineRecommender
        from implicit.utils import ParameterWarning

        model = CosineRecommender(K=self.config.neighbours)
        with _blas_single_thread(), warnings.catch_warnings():
            # implicit 0.7 warns about a COO matrix it makes itself while normalising our CSR
            warnings.filterwarnings("ignore", "Method expects CSR input", ParameterWarning)
            model.fit(train.matrix(), show_progress=False)
        self._train, self._similarity = train.matrix(), model.similarity

    def scores(self, rows: Sequence[int]) -> Scores:
        similarity = _fitted(self._similarity, self.name)
        return np.asarray((self._train[list(rows)] @ similarity).todense(), dtype=np.float32)

    def state(self) -> ModelState:
        similarity = _fitted(self._similarity, self.name)
        arrays = {
            **_sparse_arrays("train", self._train),
            **_sparse_arrays("similarity", similarity),
        }
        return ModelState(self.kind, self.name, self.config.model_dump(), arrays)

    @classmethod
    def from_state(cls, state: ModelState, parts: Sequence[Recommender] = ()) -> Self:
        model = cls.from_config(ItemKNNConfig.from_saved(state.config, state.name))
        names = [f"{matrix}.{part}" for matrix in ("train", "similarity") for part in _SPARSE_PARTS]
        arrays = state.expect(*names)
        model._train, model._similarity = _sparse(*arrays[:4]), _sparse(*arrays[4:])
        return model


class _Factorisation(ABC):
    name = "mf"
    kind: ClassVar[str] = "mf"
    config: RecommenderConfig

    def __init__(self) -> None:
        self._users: Scores | None = None
        self._items: Scores | None = None

    @abstractmethod
    def _model(self) -> Any:
        """The unfitted ``implicit`` model."""

    def fit(self, train: RecData) -> None:
        with _blas_single_thread():
            model = self._model()  # implicit checks the BLAS threads when it is built
            model.fit(train.matrix(), show_progress=False)
        self._users = np.asarray(model.user_factors, dtype=np.float32)
        self._items = np.asarray(model.item_factors, dtype=np.float32)

    def scores(self, rows: Sequence[int]) -> Scores:
        users = _fitted(self._users, self.name)
        return np.asarray(users[list(rows)] @ _fitted(self._items, self.name).T, dtype=np.float32)

    def state(self) -> ModelState:
        arrays = {
            "users": _fitted(self._users, self.name),
            "items": _fitted(self._items, self.name),
        }
        return ModelState(self.kind, self.name, self.config.model_dump(), arrays)

    def _restore(self, state: ModelState) -> None:
        self._users, self._items = state.expect("users", "items")


class ALS(_Factorisation):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008), implicit's conjugate-gradient solver."""

    name = "als"
    kind: ClassVar[str] = "als"
    config: ALSConfig

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 1.0,
        iterations: int = 15,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.config = ALSConfig(
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            seed=seed,
        )

    @classmethod
    def from_config(cls, config: ALSConfig) -> Self:
        return cls(**config.model_dump())

    def _model(self) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        config = self.config
        return AlternatingLeastSquares(
            factors=config.factors,
            regularization=config.regularization,
            alpha=config.alpha,
            iterations=config.iterations,
            random_state=config.seed,
            num_threads=1,  # see BPR: one thread makes the fit reproducible
        )

    @classmethod
    def from_state(cls, state: ModelState, parts: Sequence[Recommender] = ()) -> Self:
        model = cls.from_config(ALSConfig.from_saved(state.config, state.name))
        model._restore(state)
        return model


class BPR(_Factorisation):
    """Bayesian Personalized Ranking (Rendle et al. 2009) matrix factorisation, implicit's SGD."""

    name = "bpr"
    kind: ClassVar[str] = "bpr"
    config: BPRConfig

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.config = BPRConfig(
            factors=factors,
            learning_rate=learning_rate,
            regularization=regularization,
            iterations=iterations,
            seed=seed,
        )

    @classmethod
    def from_config(cls, config: BPRConfig) -> Self:
        return cls(**config.model_dump())

    def _model(self) -> Any:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        config = self.config
        return BayesianPersonalizedRanking(
            factors=config.factors,
            learning_rate=config.learning_rate,
            regularization=config.regularization,
            iterations=config.iterations,
            random_state=config.seed,
            # implicit's parallel SGD is Hogwild-style: with more threads two fits of the same
            # data differ (hybrid weights learned on top of them moved by 0.1 between runs).
            num_threads=1,
        )

    @classmethod
    def from_state(cls, state: ModelState, parts: Sequence[Recommender] = ()) -> Self:
        model = cls.from_config(BPRConfig.from_saved(state.config, state.name))
        model._restore(state)
        return model


CLASSIC_GRIDS: dict[str, list[dict[str, Any]]] = {
    "popularity": [{}],
    "item-knn": [{"neighbours": k} for k in (20, 50, 100, 200)],
    "als": [
        {"factors": f, "regularization": r, "alpha": a}
        for f in (32, 64, 128)
        for r in (0.01, 0.1)
        for a in (1.0, 4.0)
    ],
    "bpr": [
        {"factors": f, "learning_rate": lr, "iterations": n}
        for f in (64, 128)
        for lr in (0.01, 0.05)
        for n in (100, 300)
    ],
}
"""Hyperparameters tried on the validation split for each classic model (small, honest grids)."""

C = TypeVar("C", bound=RecommenderConfig)


@dataclass(frozen=True)
class ClassicModel(Generic[C]):
    """A registered classic recommender: its typed config and how to build it from one."""

    config: type[C]
    build: Callable[[C], Recommender]

    def make(self, params: Mapping[str, Any] | None = None) -> Recommender:
        """The unfitted model with these settings (validated by the config; the rest default)."""
        return self.build(self.config.model_validate(dict(params or {})))


classic: Registry[ClassicModel[Any]] = Registry("recommender")
classic.register("popularity", ClassicModel(PopularityConfig, lambda _: Popularity()))
classic.register("item-knn", ClassicModel(ItemKNNConfig, ItemKNN.from_config))
classic.register("als", ClassicModel(ALSConfig, ALS.from_config))
classic.register("bpr", ClassicModel(BPRConfig, BPR.from_config))
