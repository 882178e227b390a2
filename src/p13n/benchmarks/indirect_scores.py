"""Scores of an indirect run: each predictor's figures with 95% intervals, and the paired test
against the best non-personalized predictor on dev (``p13n.evaluate.stats``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from p13n.benchmarks.indirect import TaskRun
from p13n.evaluate.metrics import accuracy, macro_f1, mae, rmse
from p13n.evaluate.stats import (
    Interval,
    PairedComparison,
    bootstrap_corpus,
    bootstrap_mean,
    paired_corpus,
    paired_decomposable,
)
from p13n.predict.base import Floats


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
