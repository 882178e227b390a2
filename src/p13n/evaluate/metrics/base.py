"""What every metric shares: its result, its description, and the pairing checks."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

MetricKind = Literal["text", "label", "rating", "dialogue"]


@dataclass(frozen=True)
class MetricResult:
    """A corpus-level value and, where the metric has them, per-example scores.

    For a decomposable metric ``value == mean(per_example)``; BLEU gives sentence BLEU per
    example while its value is corpus BLEU; other metrics give ``None``.
    """

    value: float
    per_example: list[float] | None


@dataclass(frozen=True)
class Metric:
    """A named metric: ``compute(predictions, references)`` and what it means."""

    name: str
    kind: MetricKind
    higher_is_better: bool
    decomposable: bool
    description: str
    compute: Callable[[Sequence[str], Sequence[str]], MetricResult]


def check_pairs(predictions: Sequence[Any], references: Sequence[Any]) -> None:
    """Refuse unpaired or empty inputs: one prediction per reference, at least one."""
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references: pair them one to one"
        )
    if not predictions:
        raise ValueError("no examples to score")


def mean(values: Sequence[float]) -> float:
    """The exact (``math.fsum``) mean of ``values``."""
    return math.fsum(values) / len(values)


def decomposed(per_example: list[float]) -> MetricResult:
    """A decomposable metric's result: the mean of its per-example scores, and those scores."""
    return MetricResult(mean(per_example), per_example)


__all__ = ["Metric", "MetricKind", "MetricResult", "check_pairs", "decomposed", "mean"]
