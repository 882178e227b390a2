"""Indirect predictors side by side on one task.

``run_lamp_rating``, ``run_lamp_label`` and ``run_movielens`` fit every predictor of a task,
choose hyper-parameters on dev and predict the scored split; ``indirect_scores.score_run`` gives
each figure a bootstrap interval and a paired test against the best non-personalized predictor
on dev.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal

import numpy as np

from p13n.datasets.lamp import LampSplit
from p13n.errors import IndirectDataError
from p13n.predict.base import (
    Case,
    Flags,
    LabelCase,
    Observations,
    Progress,
    RatingCase,
    V,
)
from p13n.predict.classify import (
    KnnGlobalLabel,
    KnnPersonalLabel,
    LabelPredictor,
    Majority,
    StackedLabel,
    UserMajority,
    label_accuracy,
)
from p13n.predict.data import (
    lamp_label_cases,
    lamp_rating_cases,
    movielens_cases,
    movielens_observations,
    observations_from_cases,
    per_user_holdout,
    read_movielens_fold,
    task_labels,
)
from p13n.predict.history import EmbeddingTable
from p13n.predict.rating import (
    BiasBaseline,
    GlobalMean,
    ItemMean,
    KnnPersonalRating,
    LLMExpectedRating,
    RatingPredictor,
    StackedRating,
    UserMean,
    rating_error,
)

# --- Runs: predictors side by side on one task ----------------------------------------------


@dataclass
class ArmOutput:
    """One predictor's test predictions (as the metrics read them) and its fallback count."""

    name: str
    personalized: bool
    description: str
    predictions: list[str]
    fallback: list[bool]

    @property
    def fallbacks(self) -> int:
        return sum(self.fallback)


@dataclass
class TaskRun:
    """Every predictor of one task on the same evaluated examples."""

    task: str
    kind: Literal["rating", "label"]
    split: str
    primary: str
    ids: list[str]
    references: list[str]
    arms: list[ArmOutput]
    dev_scores: dict[str, float]
    """Each predictor's primary metric on dev: picks the reference without looking at test."""
    chosen: dict[str, Any] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    chosen_on: str = "dev"
    """The data hyper-parameters, weights and the reference were chosen on."""

    def reference(self) -> str:
        """The best non-personalized predictor on dev (the comparison for every other row)."""
        candidates = [arm.name for arm in self.arms if not arm.personalized]
        if not candidates:
            raise IndirectDataError(f"{self.task}: no non-personalized predictor to compare with")
        lower = self.primary in ("mae", "rmse")

        def key(name: str) -> float:
            value = self.dev_scores.get(name, math.nan)
            if math.isnan(value):
                return math.inf
            return value if lower else -value

        return min(candidates, key=key)


def _arm(
    predictor: RatingPredictor | LabelPredictor, predictions: list[str], fallback: Flags
) -> ArmOutput:
    description = (type(predictor).__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    return ArmOutput(
        predictor.name,
        predictor.personalized,
        description,
        predictions,
        [bool(f) for f in fallback],
    )


def _rating_arms(
    predictors: Sequence[RatingPredictor], cases: Sequence[RatingCase]
) -> list[ArmOutput]:
    arms = []
    for predictor in predictors:
        output = predictor.predict(cases)
        arms.append(_arm(predictor, [repr(float(v)) for v in output.values], output.fallback))
    return arms


def _label_arms(
    predictors: Sequence[LabelPredictor], cases: Sequence[LabelCase]
) -> list[ArmOutput]:
    arms = []
    for predictor in predictors:
        output = predictor.predict(cases)
        arms.append(_arm(predictor, list(output.labels), output.fallback))
    return arms


def _k(k: int | None) -> int | str:
    return k if k is not None else "all"


def _describe_knn(knn: KnnPersonalRating) -> dict[str, Any]:
    return {
        "k": _k(knn.params.k),
        "shrinkage": knn.params.shrinkage,
        "power": knn.params.power,
        f"dev_{knn.criterion}": knn.dev_error,
    }


def _describe_stacked(stacked: StackedRating) -> dict[str, float]:
    return {"intercept": stacked.intercept, **stacked.coefficients}


def _rating_dev_score(predictor: RatingPredictor, dev: Sequence[RatingCase], primary: str) -> float:
    if not dev:
        return math.nan
    gold = np.array([case.gold for case in dev], dtype=np.float64)
    return rating_error(predictor.predict(dev).values, gold, primary)


def _label_dev_score(predictor: LabelPredictor, dev: Sequence[LabelCase]) -> float:
    if not dev:
        return math.nan
    return label_accuracy(predictor.predict(dev).labels, dev)


def _texts(cases: Iterable[Case[Any]]) -> Iterable[str]:
    for case in cases:
        yield case.text
        yield from case.history.texts


@dataclass(frozen=True)
class _LampCases(Generic[V]):
    """A LaMP task's three splits as cases (the first ``limit`` of each), and what the
    predictors are fit on."""

    train: list[Case[V]]
    dev: list[Case[V]]
    test: list[Case[V]]
    observations: Observations[V]


def _lamp_cases(
    read: Callable[[LampSplit], list[Case[V]]],
    train: LampSplit,
    dev: LampSplit,
    test: LampSplit,
    table: EmbeddingTable,
    limit: int | None,
) -> _LampCases[V]:
    """The three splits as cases, their texts embedded; train and test must have some."""
    train_cases: list[Case[V]] = read(train)[:limit]
    dev_cases: list[Case[V]] = read(dev)[:limit]
    test_cases: list[Case[V]] = read(test)[:limit]
    if not train_cases or not test_cases:
        raise IndirectDataError(
            f"{test.spec.name}: the train and {test.split} splits need examples"
        )
    observations = observations_from_cases(train_cases)
    table.add(_texts([*train_cases, *dev_cases, *test_cases]))
    return _LampCases(train_cases, dev_cases, test_cases, observations)


def _fit_note(cases: _LampCases[V], train: LampSplit, dev: LampSplit, what: str) -> str:
    return (
        f"fit on {len(cases.train)} {train.split} examples ({len(cases.observations)} {what} "
        f"with their profiles), chosen on {len(cases.dev)} {dev.split} examples"
    )


def _lamp_run(
    kind: Literal["rating", "label"],
    primary: str,
    dev: LampSplit,
    test: LampSplit,
    evaluated: Sequence[Case[V]],
    arms: list[ArmOutput],
    dev_scores: dict[str, float],
    chosen: dict[str, Any],
    notes: list[str],
    started: float,
    labels: tuple[str, ...] = (),
) -> TaskRun:
    """The run of a LaMP task: every predictor's predictions on the ``evaluated`` cases."""
    return TaskRun(
        test.spec.name,
        kind,
        test.split,
        primary,
        [case.id for case in evaluated],
        [str(case.gold) for case in evaluated],
        arms,
        dev_scores,
        chosen,
        labels=labels,
        notes=notes,
        seconds=time.perf_counter() - started,
        chosen_on=dev.split,
    )


def run_lamp_rating(
    train: LampSplit,
    dev: LampSplit,
    test: LampSplit,
    table: EmbeddingTable,
    *,
    limit: int | None = None,
    llm: Any = None,
    llm_limit: int | None = None,
    llm_cache: Any = None,
    progress: Progress | None = None,
) -> TaskRun:
    """global-mean, user-mean, knn-personal and stacked (and, given ``llm``, llm-expected and
    stacked+llm) on a LaMP-3 style task: fit on ``train``, choose on ``dev``, score ``test``.
    With ``llm`` every predictor is scored on the first ``llm_limit`` test examples only."""
    started = time.perf_counter()
    cases = _lamp_cases(lamp_rating_cases, train, dev, test, table, limit)
    observations, dev_cases, test_cases = cases.observations, cases.dev, cases.test
    global_mean, user_mean = GlobalMean(), UserMean()
    knn = KnnPersonalRating(table, UserMean(), criterion="mae")
    predictors: list[RatingPredictor] = [global_mean, user_mean, knn]
    for predictor in predictors:
        predictor.fit(observations, dev_cases)
    stacked = StackedRating([user_mean, knn, global_mean])
    stacked.fit(observations, dev_cases)
    predictors.append(stacked)
    chosen: dict[str, Any] = {
        "knn-personal": _describe_knn(knn),
        "stacked": _describe_stacked(stacked),
    }
    notes = [_fit_note(cases, train, dev, "ratings")]
    evaluated = test_cases
    llm_arm: LLMExpectedRating | None = None
    if llm is not None:
        n = len(test_cases) if llm_limit is None else min(llm_limit, len(test_cases))
        evaluated = test_cases[:n]
        k = min(knn.params.k or 4, 4)
        llm_arm = LLMExpectedRating(llm, knn, k=k, cache=llm_cache, progress=progress)
        llm_arm.fit(observations)
        llm_dev = dev_cases[:n]
        stacked_llm = StackedRating([user_mean, knn, global_mean, llm_arm], name="stacked+llm")
        stacked_llm.fit(observations, llm_dev)
        predictors += [llm_arm, stacked_llm]
        chosen["llm-expected"] = {"k": k, "model": llm.model}
        chosen["stacked+llm"] = _describe_stacked(stacked_llm)
        notes.append(
            f"every row on the first {n} {test.split} examples; stacked+llm's weights learned on "
            f"the first {len(llm_dev)} {dev.split} examples"
        )
    # the LLM arms are personalized (never the reference): not worth scoring on all of dev
    dev_scores = {
        p.name: _rating_dev_score(p, dev_cases, "mae")
        for p in predictors
        if p.name not in ("llm-expected", "stacked+llm")
    }
    arms = _rating_arms(predictors, evaluated)
    if llm_arm is not None:
        notes.append(
            f"llm-expected: {llm_arm.scored} prompts scored, {llm_arm.reused} reused from the cache"
        )
    return _lamp_run(
        "rating", "mae", dev, test, evaluated, arms, dev_scores, chosen, notes, started
    )


def run_lamp_label(
    train: LampSplit,
    dev: LampSplit,
    test: LampSplit,
    table: EmbeddingTable,
    *,
    limit: int | None = None,
    progress: Progress | None = None,
) -> TaskRun:
    """majority, user-majority, knn-personal, knn-global and stacked on a LaMP-2 style task."""
    started = time.perf_counter()
    labels = task_labels(train, dev, test)
    cases = _lamp_cases(
        lambda split: lamp_label_cases(split, labels), train, dev, test, table, limit
    )
    observations, dev_cases, test_cases = cases.observations, cases.dev, cases.test
    if progress is not None:
        progress("fitting", 0, 1)
    majority, user_majority = Majority(labels), UserMajority(labels)
    personal, general = KnnPersonalLabel(table, labels), KnnGlobalLabel(table, labels)
    predictors: list[LabelPredictor] = [majority, user_majority, personal, general]
    for predictor in predictors:
        predictor.fit(observations, dev_cases)
    stacked = StackedLabel(personal, general, labels)
    stacked.fit(observations, dev_cases)
    predictors.append(stacked)
    dev_scores = {p.name: _label_dev_score(p, dev_cases) for p in predictors}
    arms = _label_arms(predictors, test_cases)
    chosen = {
        "knn-personal": {
            "k": _k(personal.params.k),
            "power": personal.params.power,
            "dev_accuracy": personal.dev_accuracy,
        },
        "knn-global": {"C": general.C, "dev_accuracy": general.dev_accuracy},
        "stacked": {"alpha": stacked.alpha, "dev_accuracy": stacked.dev_accuracy},
    }
    notes = [f"{_fit_note(cases, train, dev, 'labelled texts')}; {len(labels)} labels"]
    return _lamp_run(
        "label", "accuracy", dev, test, test_cases, arms, dev_scores, chosen, notes, started, labels
    )


def run_movielens(
    path: Path,
    table: EmbeddingTable,
    *,
    fold: str = "u1",
    limit: int | None = None,
    dev_fraction: float = 0.1,
    seed: int = 0,
    progress: Progress | None = None,
) -> TaskRun:
    """global-mean, user-mean, item-mean, bias, knn-personal (residual kNN over the bias
    baseline) and stacked on MovieLens ``{fold}.base`` -> ``{fold}.test``. Hyper-parameters and
    stack weights are chosen on a seeded per-user ``dev_fraction`` holdout of the base file,
    then every predictor is refit on the whole base file. ``limit``: the first N test ratings,
    and the dev holdout of their users only."""
    started = time.perf_counter()
    data = read_movielens_fold(path, fold)
    fit_rows, dev_rows = per_user_holdout(data.base, dev_fraction, seed)
    test_rows = data.test if limit is None else data.test[:limit]
    if limit is not None:
        users = {row[0] for row in test_rows}
        dev_rows = [row for row in dev_rows if row[0] in users]
    dev_cases = movielens_cases(dev_rows, fit_rows, data.texts)
    test_cases = movielens_cases(test_rows, data.base, data.texts)
    table.add(_texts([*dev_cases, *test_cases]))
    fit_observations = movielens_observations(fit_rows, data.texts)
    knn = KnnPersonalRating(table, BiasBaseline(), criterion="rmse")
    predictors: list[RatingPredictor] = [GlobalMean(), UserMean(), ItemMean(), BiasBaseline(), knn]
    for predictor in predictors:
        predictor.fit(fit_observations, dev_cases)
    stacked = StackedRating(predictors)
    stacked.fit(fit_observations, dev_cases)
    dev_scores = {p.name: _rating_dev_score(p, dev_cases, "rmse") for p in [*predictors, stacked]}
    full = movielens_observations(data.base, data.texts)
    for predictor in predictors:
        predictor.refit(full)
    predictors.append(stacked)
    no_history = sum(1 for case in test_cases if not case.history.values)
    return TaskRun(
        f"movielens-100k-{fold}",
        "rating",
        f"{fold}.test",
        "rmse",
        [case.id for case in test_cases],
        [repr(case.gold) for case in test_cases],
        _rating_arms(predictors, test_cases),
        dev_scores,
        {
            "knn-personal": {"residual_of": "bias", **_describe_knn(knn)},
            "stacked": _describe_stacked(stacked),
        },
        notes=[
            f"fit on {fold}.base ({len(data.base)} ratings); chosen on a seeded {dev_fraction:.0%} "
            f"per-user holdout of it ({len(dev_rows)} ratings, seed {seed}), then refit on all "
            f"of it; {no_history} test ratings from users without base ratings",
        ],
        seconds=time.perf_counter() - started,
        chosen_on=f"the {dev_fraction:.0%} dev holdout of {fold}.base",
    )
