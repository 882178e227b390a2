"""Indirect predictors side by side on one task, and their scores.

``run_lamp_rating``, ``run_lamp_label`` and ``run_movielens`` fit every predictor of a task,
choose hyper-parameters on dev and predict the scored split; ``score_run`` gives each figure a
bootstrap interval and a paired test against the best non-personalized predictor on dev.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from p13n.datasets.lamp import LampSplit
from p13n.evaluate.metrics import accuracy, macro_f1, mae, rmse
from p13n.evaluate.stats import (
    Interval,
    PairedComparison,
    bootstrap_corpus,
    bootstrap_mean,
    paired_corpus,
    paired_decomposable,
)
from p13n.recommend.classify import (
    KnnGlobalLabel,
    KnnPersonalLabel,
    LabelPredictor,
    Majority,
    StackedLabel,
    UserMajority,
    label_accuracy,
)
from p13n.recommend.embeddings import EmbeddingTable
from p13n.recommend.indirect import (
    Case,
    Flags,
    Floats,
    IndirectDataError,
    LabelCase,
    Progress,
    RatingCase,
    V,
)
from p13n.recommend.indirect_data import (
    lamp_label_cases,
    lamp_rating_cases,
    movielens_cases,
    movielens_observations,
    observations_from_cases,
    per_user_holdout,
    read_movielens_fold,
    task_labels,
)
from p13n.recommend.rating import (
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


def _lamp_cases(
    read: Callable[[LampSplit], list[Case[V]]],
    train: LampSplit,
    dev: LampSplit,
    test: LampSplit,
    limit: int | None,
) -> tuple[list[Case[V]], list[Case[V]], list[Case[V]]]:
    """The three splits as cases (the first ``limit`` of each); train and test must have some."""
    train_cases, dev_cases, test_cases = (
        (cases if limit is None else cases[:limit])
        for cases in (read(train), read(dev), read(test))
    )
    if not train_cases or not test_cases:
        raise IndirectDataError(
            f"{test.spec.name}: the train and {test.split} splits need examples"
        )
    return train_cases, dev_cases, test_cases


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
    train_cases, dev_cases, test_cases = _lamp_cases(lamp_rating_cases, train, dev, test, limit)
    observations = observations_from_cases(train_cases)
    table.add(_texts([*train_cases, *dev_cases, *test_cases]))
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
    notes = [
        f"fit on {len(train_cases)} {train.split} examples ({len(observations)} ratings with "
        f"their profiles), chosen on {len(dev_cases)} {dev.split} examples",
    ]
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
    return TaskRun(
        test.spec.name,
        "rating",
        test.split,
        "mae",
        [case.id for case in evaluated],
        [str(case.gold) for case in evaluated],
        arms,
        dev_scores,
        chosen,
        notes=notes,
        seconds=time.perf_counter() - started,
        chosen_on=dev.split,
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
    train_cases, dev_cases, test_cases = _lamp_cases(
        lambda split: lamp_label_cases(split, labels), train, dev, test, limit
    )
    observations = observations_from_cases(train_cases)
    table.add(_texts([*train_cases, *dev_cases, *test_cases]))
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
    notes = [
        f"fit on {len(train_cases)} {train.split} examples ({len(observations)} labelled texts "
        f"with their profiles), chosen on {len(dev_cases)} {dev.split} examples; "
        f"{len(labels)} labels",
    ]
    return TaskRun(
        test.spec.name,
        "label",
        test.split,
        "accuracy",
        [case.id for case in test_cases],
        [str(case.gold) for case in test_cases],
        arms,
        dev_scores,
        chosen,
        labels=labels,
        notes=notes,
        seconds=time.perf_counter() - started,
        chosen_on=dev.split,
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


# --- Scores: intervals and paired tests against the best non-personalized predictor ---------


@dataclass(frozen=True)
class ArmScore:
    """One predictor's figures with 95% intervals and, except for the reference itself, the
    paired comparison with the reference (for RMSE: the RMSE difference with the p-value of the
    paired test on squared errors, and no interval)."""

    name: str
    personalized: bool
    metrics: dict[str, Interval]
    paired: dict[str, PairedComparison] | None
    fallbacks: int


@dataclass(frozen=True)
class TaskScore:
    """A task's scored predictors and the reference they are compared with."""

    run: TaskRun
    reference: str
    metric_names: tuple[str, ...]
    arms: list[ArmScore]


def _rating_errors(predictions: Sequence[str], references: Sequence[str]) -> Floats:
    # mae's per-example scores are the absolute errors, so its parsing rules stay the only ones
    per_example = mae(predictions, references).per_example
    assert per_example is not None
    return np.asarray(per_example, dtype=np.float64)


def score_run(run: TaskRun, *, resamples: int = 1000, seed: int = 0) -> TaskScore:
    """Each predictor's metrics with 95% bootstrap intervals, and the paired difference to the
    best non-personalized predictor on dev with a randomization p-value (p13n.evaluate.stats)."""
    reference = run.reference()
    references = run.references
    by_name = {arm.name: arm for arm in run.arms}
    arms: list[ArmScore] = []
    if run.kind == "rating":
        names: tuple[str, ...] = ("mae", "rmse")
        errors = {arm.name: _rating_errors(arm.predictions, references) for arm in run.arms}
        for arm in run.arms:
            absolute = errors[arm.name]
            mse = bootstrap_mean((absolute**2).tolist(), resamples=resamples, seed=seed)
            # sqrt is monotone, so the percentile interval of RMSE is that of MSE, square-rooted
            value = rmse(arm.predictions, references).value
            metrics = {
                "mae": bootstrap_mean(absolute.tolist(), resamples=resamples, seed=seed),
                "rmse": Interval(value, math.sqrt(mse.low), math.sqrt(mse.high)),
            }
            paired = None
            if arm.name != reference:
                base = errors[reference]
                squared = paired_decomposable(
                    (absolute**2).tolist(),
                    (base**2).tolist(),
                    higher_is_better=False,
                    resamples=resamples,
                    seed=seed,
                )
                base_rmse = rmse(by_name[reference].predictions, references).value
                paired = {
                    "mae": paired_decomposable(
                        absolute.tolist(),
                        base.tolist(),
                        higher_is_better=False,
                        resamples=resamples,
                        seed=seed,
                    ),
                    "rmse": replace(
                        squared, difference=value - base_rmse, low=math.nan, high=math.nan
                    ),
                }
            arms.append(ArmScore(arm.name, arm.personalized, metrics, paired, arm.fallbacks))
    else:
        names = ("accuracy", "macro-f1")
        labels = run.labels or None

        def f1(predictions: Sequence[str], refs: Sequence[str]) -> float:
            return macro_f1(predictions, refs, labels).value

        def correct(predictions: Sequence[str]) -> list[float]:
            per_example = accuracy(predictions, references, labels).per_example
            assert per_example is not None
            return per_example

        for arm in run.arms:
            hits = correct(arm.predictions)
            metrics = {
                "accuracy": bootstrap_mean(hits, resamples=resamples, seed=seed),
                "macro-f1": bootstrap_corpus(
                    f1, arm.predictions, references, resamples=resamples, seed=seed
                ),
            }
            paired = None
            if arm.name != reference:
                baseline = by_name[reference].predictions
                paired = {
                    "accuracy": paired_decomposable(
                        hits,
                        correct(baseline),
                        higher_is_better=True,
                        resamples=resamples,
                        seed=seed,
                    ),
                    "macro-f1": paired_corpus(
                        f1,
                        arm.predictions,
                        baseline,
                        references,
                        per_example=None,
                        higher_is_better=True,
                        resamples=resamples,
                        seed=seed,
                    ),
                }
            arms.append(ArmScore(arm.name, arm.personalized, metrics, paired, arm.fallbacks))
    return TaskScore(run, reference, names, arms)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def score_to_dict(score: TaskScore) -> dict[str, Any]:
    """A task's figures, choices and every example's predictions, ready for JSON."""
    run = score.run
    return {
        "task": run.task,
        "kind": run.kind,
        "split": run.split,
        "n": len(run.ids),
        "primary": run.primary,
        "reference": score.reference,
        "chosen_on": run.chosen_on,
        "chosen": run.chosen,
        "dev_scores": {k: _finite(v) for k, v in run.dev_scores.items()},
        "notes": run.notes,
        "seconds": round(run.seconds, 1),
        "labels": list(run.labels),
        "predictors": {
            arm.name: {
                "personalized": arm.personalized,
                "description": next(a.description for a in run.arms if a.name == arm.name),
                "fallbacks": arm.fallbacks,
                "metrics": {
                    name: {
                        "value": interval.value,
                        "low": _finite(interval.low),
                        "high": _finite(interval.high),
                    }
                    for name, interval in arm.metrics.items()
                },
                "vs_reference": None
                if arm.paired is None
                else {
                    name: {
                        "difference": c.difference,
                        "low": _finite(c.low),
                        "high": _finite(c.high),
                        "p_value": c.p_value,
                        "wins": c.wins,
                        "losses": c.losses,
                        "ties": c.ties,
                    }
                    for name, c in arm.paired.items()
                },
            }
            for arm in score.arms
        },
        "examples": [
            {
                "id": example_id,
                "gold": gold,
                "predictions": {arm.name: arm.predictions[n] for arm in run.arms},
                "fallback": [arm.name for arm in run.arms if arm.fallback[n]],
            }
            for n, (example_id, gold) in enumerate(zip(run.ids, run.references, strict=True))
        ],
    }
