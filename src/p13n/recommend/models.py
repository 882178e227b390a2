"""Classic recommenders: popularity, item-kNN, ALS and BPR (the last three from ``implicit``).

Every recommender fits on a training ``RecData`` and then scores all items for given user rows;
ranking, filtering of seen items and fallbacks live outside the models (``recommend.service``).
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from p13n.recommend.data import RecData
from p13n.registry import Registry

Scores = npt.NDArray[np.float32]


@runtime_checkable
class Recommender(Protocol):
    """Fit once on training interactions, then score every item for any user row."""

    name: str

    def fit(self, train: RecData) -> None: ...

    def scores(self, rows: Sequence[int]) -> Scores:
        """Shape (len(rows), n_items); higher is better. Seen items are not filtered here."""
        ...


class Popularity:
    """Items by how many users interacted with them in training: the same list for everyone."""

    name = "popularity"

    def __init__(self) -> None:
        self._counts: Scores | None = None

    def fit(self, train: RecData) -> None:
        self._counts = np.bincount(train.cols, minlength=train.n_items).astype(np.float32)

    def scores(self, rows: Sequence[int]) -> Scores:
        counts = _fitted(self._counts, self.name)
        return np.tile(np.log1p(counts), (len(rows), 1))


def _fitted(value: Any, name: str) -> Any:
    if value is None:
        raise RuntimeError(f"{name} is not fitted: call fit() first")
    return value


def _blas_single_thread() -> Any:
    # implicit warns (and slows down) when BLAS runs its own threads beside implicit's.
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")


class ItemKNN:
    """Item-based kNN (Sarwar et al. 2001): a user's items vote for their ``neighbours`` most
    cosine-similar items (implicit's ``CosineRecommender``)."""

    name = "item-knn"

    def __init__(self, neighbours: int = 100) -> None:
        self.neighbours = neighbours
        self._train: Any = None
        self._similarity: Any = None

    def fit(self, train: RecData) -> None:
        from implicit.nearest_neighbours import CosineRecommender
        from implicit.utils import ParameterWarning

        model = CosineRecommender(K=self.neighbours)
        with _blas_single_thread(), warnings.catch_warnings():
            # implicit 0.7 warns about a COO matrix it makes itself while normalising our CSR
            warnings.filterwarnings("ignore", "Method expects CSR input", ParameterWarning)
            model.fit(train.matrix(), show_progress=False)
        self._train, self._similarity = train.matrix(), model.similarity

    def scores(self, rows: Sequence[int]) -> Scores:
        similarity = _fitted(self._similarity, self.name)
        return np.asarray((self._train[list(rows)] @ similarity).todense(), dtype=np.float32)


class _Factorisation(ABC):
    name = "mf"

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


class ALS(_Factorisation):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008), implicit's conjugate-gradient solver."""

    name = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 1.0,
        iterations: int = 15,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.factors, self.regularization, self.alpha = factors, regularization, alpha
        self.iterations, self.seed = iterations, seed

    def _model(self) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            random_state=self.seed,
            num_threads=1,  # see BPR: one thread makes the fit reproducible
        )


class BPR(_Factorisation):
    """Bayesian Personalized Ranking (Rendle et al. 2009) matrix factorisation, implicit's SGD."""

    name = "bpr"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.factors, self.learning_rate = factors, learning_rate
        self.regularization, self.iterations, self.seed = regularization, iterations, seed

    def _model(self) -> Any:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            random_state=self.seed,
            # implicit's parallel SGD is Hogwild-style: with more threads two fits of the same
            # data differ (hybrid weights learned on top of them moved by 0.1 between runs).
            num_threads=1,
        )


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

classic: Registry[Callable[..., Recommender]] = Registry("recommender")
classic.register("popularity", Popularity)
classic.register("item-knn", ItemKNN)
classic.register("als", ALS)
classic.register("bpr", BPR)
