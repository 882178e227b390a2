"""Rating metrics (LaMP-3): MAE and RMSE of parsed ratings."""

from __future__ import annotations

import math
from collections.abc import Sequence

from p13n.evaluate.metrics.base import MetricResult, check_pairs, decomposed, mean


def parse_rating(text: str) -> float | None:
    """A rating as LaMP's eval reads it: ``float(text.strip())``, else ``None``.

    Unlike LaMP, ``nan`` and ``inf`` count as unparsable (LaMP would report a NaN or infinite
    MAE). Numbers outside the scale are kept as they are, as in LaMP.
    """
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _rating_errors(
    predictions: Sequence[str], references: Sequence[str], scale: tuple[float, float]
) -> list[float]:
    check_pairs(predictions, references)
    low, high = scale
    errors = []
    for pred, ref in zip(predictions, references, strict=True):
        gold = parse_rating(ref)
        if gold is None:
            raise ValueError(f"reference rating {ref!r} is not a number")
        value = parse_rating(pred)
        if value is None:  # LaMP: an unparsable rating becomes the scale end farther from gold
            value = low if abs(low - gold) > abs(high - gold) else high
        errors.append(value - gold)
    return errors


def mae(
    predictions: Sequence[str], references: Sequence[str], scale: tuple[float, float] = (1, 5)
) -> MetricResult:
    """Mean absolute error of ``parse_rating`` outputs against numeric references."""
    return decomposed([abs(e) for e in _rating_errors(predictions, references, scale)])


def rmse(
    predictions: Sequence[str], references: Sequence[str], scale: tuple[float, float] = (1, 5)
) -> MetricResult:
    """Root mean squared error of ``parse_rating`` outputs against numeric references."""
    errors = _rating_errors(predictions, references, scale)
    return MetricResult(math.sqrt(mean([e * e for e in errors])), None)


__all__ = ["mae", "parse_rating", "rmse"]
