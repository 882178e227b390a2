"""Label predictors (LaMP-2 style classification) over the user's own embedded history.

``fit`` on training observations (hyper-parameters chosen on a dev split, never on test), then
``predict`` any cases: ``majority``, ``user-majority``, ``knn-personal`` (a similarity-weighted
vote of the user's most similar own items), ``knn-global`` (a logistic regression over all
training inputs) and ``stacked`` (a mix of the personal and global class scores).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from p13n.errors import IndirectDataError
from p13n.predict.base import (
    KNN_KS,
    KNN_POWERS,
    Flags,
    Floats,
    LabelCase,
    LabelPredictions,
    Observations,
    first_best,
)
from p13n.predict.history import EmbeddingTable, SimilarHistory


class LabelPredictor(Protocol):
    """Predicts labels: ``fit`` on training observations (hyper-parameters chosen on ``dev``),
    ``predict`` any cases."""

    name: str
    personalized: bool

    def fit(self, train: Observations[str], dev: Sequence[LabelCase]) -> None: ...

    def predict(self, cases: Sequence[LabelCase]) -> LabelPredictions: ...


def _history_counts(case: LabelCase, index: dict[str, int]) -> Floats:
    counts = np.zeros(len(index))
    for value in case.history.values:
        counts[index[value]] += 1
    return counts


def _pick(scores: Floats, *tie_breakers: Floats) -> int:
    """The best column; ties go to the next score vector, then to label order."""
    candidates = np.flatnonzero(scores >= scores.max() - 1e-12)
    for breaker in tie_breakers:
        if len(candidates) == 1:
            break
        values = breaker[candidates]
        candidates = candidates[values >= values.max() - 1e-12]
    return int(candidates[0])


def label_accuracy(predicted: Sequence[str], cases: Sequence[LabelCase]) -> float:
    """The share of ``cases`` whose gold label is the predicted one."""
    return float(np.mean([p == case.gold for p, case in zip(predicted, cases, strict=True)]))


class Majority:
    """``majority``: the most frequent training label (ties: the first in label order)."""

    name = "majority"
    personalized = False

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = tuple(labels)
        self.index = {label: n for n, label in enumerate(self.labels)}
        self.counts = np.zeros(len(self.labels))

    def fit(self, train: Observations[str], dev: Sequence[LabelCase] = ()) -> None:
        self.counts = np.zeros(len(self.labels))
        for value in train.values:
            self.counts[self.index[value]] += 1

    @property
    def label(self) -> str:
        return self.labels[int(np.argmax(self.counts))]

    def predict(self, cases: Sequence[LabelCase]) -> LabelPredictions:
        prior = self.counts / max(1.0, float(self.counts.sum()))
        return LabelPredictions(
            [self.label] * len(cases),
            np.zeros(len(cases), dtype=bool),
            np.tile(prior, (len(cases), 1)),
        )

    def _best_labels(self, scores: Floats) -> list[str]:
        """Each row's best label (ties: the more frequent in training, then label order)."""
        return [self.labels[_pick(row, self.counts)] for row in scores]

    def _own_labels(self, cases: Sequence[LabelCase], votes: Floats) -> tuple[list[str], Flags]:
        """Each case's best-voted label (ties: the more frequent in its history, then in
        training); no history -> the training majority, marked as a fallback."""
        labels, fallback = [], np.zeros(len(cases), dtype=bool)
        for n, case in enumerate(cases):
            if not case.history.values:
                fallback[n] = True
                labels.append(self.label)
            else:
                counts = _history_counts(case, self.index)
                labels.append(self.labels[_pick(votes[n], counts, self.counts)])
        return labels, fallback


class UserMajority(Majority):
    """``user-majority``: the most frequent label of the user's own history (ties: the more
    frequent in training); no history -> the training majority (a fallback)."""

    name = "user-majority"
    personalized = True

    def predict(self, cases: Sequence[LabelCase]) -> LabelPredictions:
        counts = np.zeros((len(cases), len(self.labels)))
        for n, case in enumerate(cases):
            counts[n] = _history_counts(case, self.index)
        labels, fallback = self._own_labels(cases, counts)
        scores = counts / np.maximum(1.0, counts.sum(axis=1, keepdims=True))
        return LabelPredictions(labels, fallback, scores)


@dataclass(frozen=True)
class VoteParams:
    """The k most similar own items (None: all) and the exponent applied to similarities."""

    k: int | None = 5
    power: float = 1.0


def _votes(
    cases: Sequence[LabelCase],
    similar: SimilarHistory,
    index: dict[str, int],
    params: Sequence[VoteParams],
) -> list[Floats]:
    """For each parameter setting: the n x labels matrix of similarity-weighted votes."""
    out = [np.zeros((len(cases), len(index))) for _ in params]
    for n, case in enumerate(cases):
        sims, order = similar(case)
        labels = np.array([index[case.history.values[i]] for i in order], dtype=np.intp)
        for matrix, setting in zip(out, params, strict=True):
            top = slice(0, setting.k)
            weights = np.maximum(sims[top], 0.0) ** setting.power
            np.add.at(matrix[n], labels[top], weights)
    return out


def select_knn_label(
    dev: Sequence[LabelCase], similar: SimilarHistory, labels: Sequence[str], prior: Floats
) -> tuple[VoteParams, float]:
    """The k and similarity exponent with the best accuracy on ``dev`` (ties: the first in grid
    order), and that accuracy. It sees only dev cases, never test."""
    grid = [VoteParams(k, power) for power in KNN_POWERS for k in KNN_KS]
    if not dev:
        return VoteParams(), float("nan")
    index = {label: n for n, label in enumerate(labels)}
    gold = np.array([index[case.gold] for case in dev if case.gold is not None])
    counts = [_history_counts(case, index) for case in dev]

    def accuracy(votes: Floats) -> float:
        chosen = np.array([_pick(votes[n], counts[n], prior) for n in range(len(dev))])
        return float((chosen == gold).mean())

    votes = _votes(dev, similar, index, grid)
    return first_best(
        ((setting, accuracy(v)) for setting, v in zip(grid, votes, strict=True)), lower=False
    )


class KnnPersonalLabel(Majority):
    """``knn-personal``: a similarity-weighted vote of the k most similar items of the user's
    own history (ties: the user's more frequent label); k and exponent chosen on dev. No
    history -> the training majority (a fallback)."""

    name = "knn-personal"
    personalized = True

    def __init__(self, table: EmbeddingTable, labels: Sequence[str]) -> None:
        super().__init__(labels)
        self.similar = SimilarHistory(table)
        self.params = VoteParams()
        self.dev_accuracy = float("nan")

    def fit(self, train: Observations[str], dev: Sequence[LabelCase] = ()) -> None:
        super().fit(train)
        if dev:
            self.params, self.dev_accuracy = select_knn_label(
                dev, self.similar, self.labels, self.counts
            )

    def predict(self, cases: Sequence[LabelCase]) -> LabelPredictions:
        (votes,) = _votes(cases, self.similar, self.index, [self.params])
        labels, fallback = self._own_labels(cases, votes)
        totals = votes.sum(axis=1, keepdims=True)
        scores = np.divide(votes, totals, out=np.zeros_like(votes), where=totals > 0)
        return LabelPredictions(labels, fallback, scores)


class KnnGlobalLabel(Majority):
    """``knn-global``: a non-personalized classifier, scikit-learn's multinomial logistic
    regression on the embeddings of every training input (its C chosen on dev), not a kNN."""

    name = "knn-global"
    personalized = False
    CS = (1.0, 10.0, 100.0)

    def __init__(self, table: EmbeddingTable, labels: Sequence[str]) -> None:
        super().__init__(labels)
        self.table = table
        self.C = 10.0
        self.dev_accuracy = float("nan")
        self._model: Any = None

    def _train(self, train: Observations[str], c: float) -> Any:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=c, max_iter=2000).fit(
            self.table.vectors(train.texts), np.array(train.values)
        )

    def fit(self, train: Observations[str], dev: Sequence[LabelCase] = ()) -> None:
        super().fit(train)
        if len(set(train.values)) < 2:  # one class: nothing to learn, the majority it is
            self._model = None
            return
        if not dev:
            self._model = self._train(train, self.C)
            return
        vectors = self.table.vectors([case.text for case in dev])
        models = ((c, self._train(train, c)) for c in self.CS)
        (self.C, self._model), self.dev_accuracy = first_best(
            (((c, model), label_accuracy(model.predict(vectors), dev)) for c, model in models),
            lower=False,
        )

    def predict(self, cases: Sequence[LabelCase]) -> LabelPredictions:
        if self._model is None:
            return super().predict(cases)
        scores = np.zeros((len(cases), len(self.labels)))
        if cases:
            probabilities = self._model.predict_proba(self.table.vectors([c.text for c in cases]))
            columns = [self.labels.index(str(label)) for label in self._model.classes_]
            scores[:, columns] = probabilities
        return LabelPredictions(self._best_labels(scores), np.zeros(len(cases), dtype=bool), scores)


class StackedLabel(Majority):
    """``stacked``: class scores alpha * personal + (1 - alpha) * global, alpha chosen on dev by
    accuracy (ties: the smaller alpha); no history -> the global classifier alone."""

    name = "stacked"
    personalized = True
    ALPHAS = tuple(float(a) for a in np.round(np.linspace(0.0, 1.0, 21), 2))

    def __init__(
        self, personal: LabelPredictor, general: LabelPredictor, labels: Sequence[str]
    ) -> None:
        super().__init__(labels)
        self.personal, self.general = personal, general
        self.alpha = 0.5
        self.dev_accuracy = float("nan")

    def _components(self, cases: Sequence[LabelCase]) -> tuple[Floats, Floats, Flags]:
        """(the personal class scores, the global ones, the personal fallbacks)."""
        personal, general = self.personal.predict(cases), self.general.predict(cases)
        if personal.scores is None or general.scores is None:
            raise IndirectDataError(f"{self.name}: both components must give class scores")
        return personal.scores, general.scores, personal.fallback

    def fit(self, train: Observations[str], dev: Sequence[LabelCase] = ()) -> None:
        super().fit(train)
        if not dev:
            return
        personal, general, _ = self._components(dev)
        self.alpha, self.dev_accuracy = first_best(
            (
                (
                    alpha,
                    label_accuracy(
                        self._best_labels(alpha * personal + (1 - alpha) * general), dev
                    ),
                )
                for alpha in self.ALPHAS
            ),
            lower=False,
        )

    def predict(self, cases: Sequence[LabelCase]) -> LabelPredictions:
        personal, general, fallback = self._components(cases)
        mixed = self.alpha * personal + (1 - self.alpha) * general
        return LabelPredictions(self._best_labels(mixed), fallback, mixed)
