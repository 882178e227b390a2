"""Rating predictors (1-5) over the user's own embedded history: LaMP-3 style and MovieLens.

A small protocol: ``fit`` on training observations (choosing hyper-parameters on a dev split,
never on test), ``refit`` on more training data keeping those hyper-parameters, ``predict`` on
any cases. ``global-mean``, ``user-mean``, ``item-mean``, ``bias`` (Koren 2008),
``knn-personal`` (the user's most similar own items, by MiniLM cosine), ``llm-expected`` (the
embedded LLM's expected rating with similar own items in the prompt) and ``stacked`` (a linear
regression over the others, learned on dev).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import numpy as np

from p13n.errors import IndirectDataError
from p13n.llm import ChatMessage
from p13n.predict.base import (
    KNN_KS,
    KNN_POWERS,
    RATING_SCALE,
    Flags,
    Floats,
    Observations,
    Progress,
    RatingCase,
    RatingPredictions,
    first_best,
)
from p13n.predict.history import EmbeddingTable, SimilarHistory

RATING_CHOICES = ("1", "2", "3", "4", "5")


class RatingPredictor(Protocol):
    """Predicts ratings: ``fit`` on training observations (hyper-parameters chosen on ``dev``),
    ``refit`` on other training data keeping them, ``predict`` any cases."""

    name: str
    personalized: bool

    def fit(self, train: Observations[float], dev: Sequence[RatingCase]) -> None: ...

    def refit(self, train: Observations[float]) -> None: ...

    def predict(self, cases: Sequence[RatingCase]) -> RatingPredictions: ...


def _clip(values: Floats) -> Floats:
    return np.clip(values, *RATING_SCALE)


def rating_error(predictions: Floats, gold: Floats, criterion: str) -> float:
    """The mean absolute error (``criterion`` "mae"), else the root mean squared error."""
    errors = predictions - gold
    if criterion == "mae":
        return float(np.abs(errors).mean())
    return float(np.sqrt((errors**2).mean()))


class GlobalMean:
    """``global-mean``: the mean of every training rating, for every case."""

    name = "global-mean"
    personalized = False

    def __init__(self) -> None:
        self.mean = 3.0

    def fit(self, train: Observations[float], dev: Sequence[RatingCase] = ()) -> None:
        self.refit(train)

    def refit(self, train: Observations[float]) -> None:
        if not train.values:
            raise IndirectDataError("no training ratings to fit on")
        self.mean = math.fsum(train.values) / len(train.values)

    def predict(self, cases: Sequence[RatingCase]) -> RatingPredictions:
        return RatingPredictions(np.full(len(cases), self.mean), np.zeros(len(cases), dtype=bool))


class RatingBaseline(Protocol):
    """What ``knn-personal`` corrects: the user mean (LaMP) or the bias baseline (MovieLens)."""

    mean: float

    def fit(self, train: Observations[float], dev: Sequence[RatingCase] = ()) -> None: ...

    def refit(self, train: Observations[float]) -> None: ...

    def baseline(self, case: RatingCase) -> tuple[float, Floats, bool]: ...


def _baseline_predictions(
    baseline: RatingBaseline, cases: Sequence[RatingCase]
) -> RatingPredictions:
    baselines = [baseline.baseline(case) for case in cases]
    return RatingPredictions(
        np.array([b[0] for b in baselines], dtype=np.float64),
        np.array([b[2] for b in baselines], dtype=bool),
    )


class UserMean(GlobalMean):
    """``user-mean``: the mean of the user's own history ratings; no history -> the global mean
    (a fallback)."""

    name = "user-mean"
    personalized = True

    def baseline(self, case: RatingCase) -> tuple[float, Floats, bool]:
        """(the target's baseline, each history item's baseline, whether it fell back)."""
        values = case.history.values
        if not values:
            return self.mean, np.zeros(0), True
        mean = math.fsum(values) / len(values)
        return mean, np.full(len(values), mean), False

    def predict(self, cases: Sequence[RatingCase]) -> RatingPredictions:
        return _baseline_predictions(self, cases)


class ItemMean(GlobalMean):
    """``item-mean``: the mean training rating of the target item; an unseen item -> the global
    mean (a fallback)."""

    name = "item-mean"
    personalized = False

    def __init__(self) -> None:
        super().__init__()
        self.item_means: dict[str, float] = {}

    def refit(self, train: Observations[float]) -> None:
        super().refit(train)
        sums: dict[str, list[float]] = defaultdict(list)
        for item, value in zip(train.items, train.values, strict=True):
            sums[item].append(value)
        self.item_means = {item: math.fsum(v) / len(v) for item, v in sums.items()}

    def predict(self, cases: Sequence[RatingCase]) -> RatingPredictions:
        known = np.array([case.item_id in self.item_means for case in cases], dtype=bool)
        values = [self.item_means.get(case.item_id, self.mean) for case in cases]
        return RatingPredictions(np.array(values, dtype=np.float64), ~known)


class BiasBaseline(GlobalMean):
    """``bias``: mu + b_u + b_i, regularised, fitted by alternating closed-form updates (Koren
    2008, eq. 2-3); an unseen user or item gets a zero bias (a fallback)."""

    name = "bias"
    personalized = True

    # Written by hand: it is the standard baseline predictor of Koren 2008 and no maintained,
    # installable library offers it here (scikit-surprise needs a compiler to install).
    def __init__(
        self, reg_item: float = 10.0, reg_user: float = 15.0, iterations: int = 10
    ) -> None:
        super().__init__()
        self.reg_item, self.reg_user, self.iterations = reg_item, reg_user, iterations
        self.user_bias: dict[str, float] = {}
        self.item_bias: dict[str, float] = {}

    def refit(self, train: Observations[float]) -> None:
        super().refit(train)
        users = {u: n for n, u in enumerate(dict.fromkeys(train.users))}
        items = {i: n for n, i in enumerate(dict.fromkeys(train.items))}
        u = np.fromiter((users[x] for x in train.users), dtype=np.intp, count=len(train))
        i = np.fromiter((items[x] for x in train.items), dtype=np.intp, count=len(train))
        r = np.asarray(train.values, dtype=np.float64) - self.mean
        user_count = np.bincount(u, minlength=len(users))
        item_count = np.bincount(i, minlength=len(items))
        b_u = np.zeros(len(users))
        b_i = np.zeros(len(items))
        for _ in range(self.iterations):  # items first, then users, as Surprise's ALS does
            b_i = np.bincount(i, r - b_u[u], minlength=len(items)) / (self.reg_item + item_count)
            b_u = np.bincount(u, r - b_i[i], minlength=len(users)) / (self.reg_user + user_count)
        self.user_bias = {name: float(b_u[n]) for name, n in users.items()}
        self.item_bias = {name: float(b_i[n]) for name, n in items.items()}

    def baseline(self, case: RatingCase) -> tuple[float, Floats, bool]:
        """(mu + b_u + b_i of the target, of each history item, whether a bias was unknown)."""
        user = self.user_bias.get(case.user_id)
        item = self.item_bias.get(case.item_id)
        b_u = 0.0 if user is None else user
        history = np.array(
            [self.mean + b_u + self.item_bias.get(i, 0.0) for i in case.history.item_ids],
            dtype=np.float64,
        )
        target = self.mean + b_u + (0.0 if item is None else item)
        return target, history, user is None or item is None

    def predict(self, cases: Sequence[RatingCase]) -> RatingPredictions:
        predicted = _baseline_predictions(self, cases)
        return RatingPredictions(_clip(predicted.values), predicted.fallback)


@dataclass(frozen=True)
class KnnParams:
    """The k most similar own items (None: all), the baseline's pseudo-weight ``shrinkage`` (the
    prediction's pull toward the baseline) and the exponent applied to similarities."""

    k: int | None = 5
    shrinkage: float = 1.0
    power: float = 1.0


KNN_SHRINKAGES = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
_CHUNK = 2048  # cases per padded block: bounds memory on MovieLens's long histories


@dataclass
class _Neighbourhoods:
    """For each case: its baseline, and its history's similarities (decreasing) and residuals
    (rating minus that item's baseline) in the same order."""

    base: Floats
    sims: list[Floats]
    residuals: list[Floats]
    fallback: Flags


def _neighbourhoods(
    cases: Sequence[RatingCase], baseline: RatingBaseline, similar: SimilarHistory
) -> _Neighbourhoods:
    base = np.empty(len(cases))
    fallback = np.zeros(len(cases), dtype=bool)
    sims: list[Floats] = []
    residuals: list[Floats] = []
    for n, case in enumerate(cases):
        target, history_base, fell_back = baseline.baseline(case)
        if not case.history.values:
            fell_back = True
        ordered, order = similar(case)
        values = np.asarray(case.history.values, dtype=np.float64)
        base[n], fallback[n] = target, fell_back
        sims.append(ordered)
        residuals.append((values - history_base)[order] if len(values) else np.zeros(0))
    return _Neighbourhoods(base, sims, residuals, fallback)


def _knn_sums(
    sims: Sequence[Floats], residuals: Sequence[Floats], power: float, ks: Sequence[int | None]
) -> tuple[Floats, Floats]:
    """For each case and each k: the summed weights and weighted residuals of its top k."""
    n = len(sims)
    weights = np.zeros((n, len(ks)))
    sums = np.zeros((n, len(ks)))
    for start in range(0, n, _CHUNK):
        block = range(start, min(n, start + _CHUNK))
        lengths = np.array([len(sims[i]) for i in block], dtype=np.intp)
        width = max(1, int(lengths.max(initial=0)))
        w = np.zeros((len(block), width))
        res = np.zeros((len(block), width))
        for row, i in enumerate(block):
            w[row, : lengths[row]] = np.maximum(sims[i], 0.0) ** power
            res[row, : lengths[row]] = residuals[i]
        cum_w = np.cumsum(w, axis=1)
        cum_r = np.cumsum(w * res, axis=1)
        for col, k in enumerate(ks):
            take = np.minimum(lengths if k is None else np.minimum(lengths, k), width) - 1
            present = take >= 0
            index = np.maximum(take, 0)[:, None]
            weights[start : start + len(block), col] = np.where(
                present, np.take_along_axis(cum_w, index, axis=1)[:, 0], 0.0
            )
            sums[start : start + len(block), col] = np.where(
                present, np.take_along_axis(cum_r, index, axis=1)[:, 0], 0.0
            )
    return weights, sums


def _shrunk(base: Floats, weights: Floats, sums: Floats, shrinkage: float) -> Floats:
    denominator = weights + shrinkage
    safe = np.where(denominator > 0, denominator, 1.0)
    return _clip(base + np.where(denominator > 0, sums / safe, 0.0))


def select_knn_rating(
    dev: Sequence[RatingCase],
    baseline: RatingBaseline,
    similar: SimilarHistory,
    *,
    criterion: Literal["mae", "rmse"] = "mae",
) -> tuple[KnnParams, float]:
    """The k, shrinkage and similarity exponent with the lowest ``criterion`` on ``dev``, and
    that error; ties keep the first in grid order. It sees only dev cases, never test."""
    if not dev:
        return KnnParams(), float("nan")
    hoods = _neighbourhoods(dev, baseline, similar)
    gold = np.array([case.gold for case in dev], dtype=np.float64)

    def errors() -> Iterator[tuple[KnnParams, float]]:
        for power in KNN_POWERS:
            weights, sums = _knn_sums(hoods.sims, hoods.residuals, power, KNN_KS)
            for col, k in enumerate(KNN_KS):
                for shrinkage in KNN_SHRINKAGES:
                    predicted = _shrunk(hoods.base, weights[:, col], sums[:, col], shrinkage)
                    yield KnnParams(k, shrinkage, power), rating_error(predicted, gold, criterion)

    return first_best(errors(), lower=True)


class KnnPersonalRating:
    """``knn-personal``: the baseline plus the similarity-weighted mean residual of the k most
    similar items of the user's OWN history, shrunk toward the baseline; k, shrinkage and
    similarity exponent chosen on dev. No history -> the global mean (a fallback)."""

    name = "knn-personal"
    personalized = True

    def __init__(
        self,
        table: EmbeddingTable,
        baseline: RatingBaseline | None = None,
        *,
        criterion: Literal["mae", "rmse"] = "mae",
        params: KnnParams | None = None,
    ) -> None:
        self.similar = SimilarHistory(table)
        self.base: RatingBaseline = baseline if baseline is not None else UserMean()
        self.criterion = criterion
        self.params = params or KnnParams()
        self.dev_error = float("nan")

    def fit(self, train: Observations[float], dev: Sequence[RatingCase]) -> None:
        self.base.fit(train)
        if dev:
            self.params, self.dev_error = select_knn_rating(
                dev, self.base, self.similar, criterion=self.criterion
            )

    def refit(self, train: Observations[float]) -> None:
        self.base.refit(train)

    def predict(self, cases: Sequence[RatingCase]) -> RatingPredictions:
        hoods = _neighbourhoods(cases, self.base, self.similar)
        weights, sums = _knn_sums(hoods.sims, hoods.residuals, self.params.power, [self.params.k])
        values = _shrunk(hoods.base, weights[:, 0], sums[:, 0], self.params.shrinkage)
        no_history = np.array([not case.history.values for case in cases], dtype=bool)
        values = np.where(no_history, self.base.mean, values)
        return RatingPredictions(values, hoods.fallback)

    def neighbours(self, case: RatingCase, k: int) -> list[int]:
        """History positions of the ``k`` items most similar to the target."""
        return [int(i) for i in self.similar(case)[1][:k]]


class StackedRating:
    """``stacked``: a least-squares linear regression learned on dev over the component
    predictors' outputs (components must be fitted first); clipped to 1-5."""

    personalized = True

    def __init__(self, components: Sequence[RatingPredictor], name: str = "stacked") -> None:
        self.name = name
        self.components = list(components)
        self.coefficients: dict[str, float] = {}
        self.intercept = 0.0
        self._model: Any = None

    def _features(self, cases: Sequence[RatingCase]) -> tuple[Floats, Flags]:
        outputs = [component.predict(cases) for component in self.components]
        features = np.column_stack([o.values for o in outputs]) if cases else np.zeros((0, 1))
        fallback = np.zeros(len(cases), dtype=bool)
        for component, output in zip(self.components, outputs, strict=True):
            if component.personalized:
                fallback |= output.fallback
        return features, fallback

    def fit(self, train: Observations[float], dev: Sequence[RatingCase]) -> None:
        from sklearn.linear_model import LinearRegression

        if not dev:
            raise IndirectDataError(f"{self.name}: no dev examples to learn the weights on")
        features, _ = self._features(dev)
        gold = np.array([case.gold for case in dev], dtype=np.float64)
        self._model = LinearRegression().fit(features, gold)
        self.coefficients = {
            c.name: float(w) for c, w in zip(self.components, self._model.coef_, strict=True)
        }
        self.intercept = float(self._model.intercept_)

    def refit(self, train: Observations[float]) -> None:
        """Nothing to refit: the weights stay as learned on dev, the components refit alone."""

    def predict(self, cases: Sequence[RatingCase]) -> RatingPredictions:
        if self._model is None:
            raise IndirectDataError(f"{self.name}: predict before fit")
        if not cases:
            return RatingPredictions(np.zeros(0), np.zeros(0, dtype=bool))
        features, fallback = self._features(cases)
        return RatingPredictions(_clip(np.asarray(self._model.predict(features))), fallback)


class LLMExpectedRating(GlobalMean):
    """``llm-expected``: the LLM, shown the user's k most similar own reviews with their scores,
    scores the answers "1".."5"; the prediction is the probability-weighted expected rating.
    No history -> the global mean (a fallback)."""

    name = "llm-expected"
    personalized = True
    INSTRUCTION: ClassVar[str] = (
        "What is the score of the following review on a scale of 1 to 5? Just answer with 1, 2, "
        "3, 4, or 5 without further explanation."
    )

    def __init__(
        self,
        llm: Any,
        knn: KnnPersonalRating,
        *,
        k: int = 3,
        cache: Any = None,
        max_item_tokens: int = 96,
        max_input_tokens: int = 384,
        progress: Progress | None = None,
    ) -> None:
        from p13n.llm import ChoiceScorer

        if not isinstance(llm, ChoiceScorer):
            raise IndirectDataError(
                f"{getattr(llm, 'model', llm)!r} cannot score answers (ChoiceScorer); "
                "llm-expected needs a local model"
            )
        super().__init__()
        self.llm: Any = llm  # an LLM that is also a ChoiceScorer
        self.knn = knn
        self.k = k
        self.cache = cache
        self.max_item_tokens, self.max_input_tokens = max_item_tokens, max_input_tokens
        self.progress = progress
        self.scored = 0
        self.reused = 0
        self._memo: dict[str, list[float]] = {}

    def messages(self, case: RatingCase) -> list[ChatMessage]:
        """The prompt: the k most similar own reviews with their scores, then the review."""
        tokenizer = self.llm.tokenizer
        lines = []
        for position in self.knn.neighbours(case, self.k):
            text = tokenizer.truncate(case.history.texts[position], self.max_item_tokens)
            score = case.history.values[position]
            lines.append(f"{score:g} is the score for {json.dumps(text, ensure_ascii=False)}")
        review = tokenizer.truncate(case.text, self.max_input_tokens)
        content = (
            "Reviews this user wrote before, with the score they gave:\n<user_data>\n"
            + "\n".join(lines)
            + f"\n</user_data>\n\n{self.INSTRUCTION}\nreview: {review}"
        )
        message: ChatMessage = {"role": "user", "content": content}
        return [message]

    def choice_scores(self, case: RatingCase) -> list[float]:
        """Log-probabilities of "1".."5" as the answer (cached by the exact prompt)."""
        from p13n.llm import GenerationOptions
        from p13n.llm.cache import cached_choice_scores, generation_key

        messages = self.messages(case)
        key = generation_key(
            messages, self.llm.backend, self.llm.model, GenerationOptions(), RATING_CHOICES
        )
        if key in self._memo:  # stacked+llm asks again for what this arm already scored
            return self._memo[key]
        scores, reused = cached_choice_scores(
            self.cache, self.llm, messages, RATING_CHOICES, GenerationOptions()
        )
        if reused:
            self.reused += 1
        else:
            self.scored += 1
        self._memo[key] = scores
        return scores

    @staticmethod
    def expected(scores: Sequence[float]) -> float:
        """The rating's expected value under the softmax of the choices' log-probabilities."""
        logits = np.asarray(scores, dtype=np.float64)
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        return float(probabilities @ np.arange(1.0, 1.0 + len(scores)))

    def predict(self, cases: Sequence[RatingCase]) -> RatingPredictions:
        values = np.empty(len(cases))
        fallback = np.zeros(len(cases), dtype=bool)
        for n, case in enumerate(cases):
            if not case.history.values:
                values[n], fallback[n] = self.mean, True
            else:
                values[n] = self.expected(self.choice_scores(case))
            if self.progress is not None:
                self.progress("llm-expected", n + 1, len(cases))
        return RatingPredictions(values, fallback)
