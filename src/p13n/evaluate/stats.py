"""Uncertainty for benchmark figures: bootstrap intervals and paired significance tests.

Both work for any metric: a decomposable one (the mean of per-example scores) is resampled on its
per-example scores; any other (corpus BLEU, macro-F1, RMSE) is recomputed from the resampled
predictions. The paired test is approximate randomization (Noreen 1989; Riezler & Maxwell 2005):
for each example the two systems' outputs swap places with probability 1/2, which is the standard
paired test for NLP metrics that do not decompose. scipy's ``permutation_test`` does the same for
decomposable metrics but cannot recompute a corpus metric; one implementation serves both here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

CorpusScore = Callable[[Sequence[str], Sequence[str]], float]


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95% bootstrap percentile interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class PairedComparison:
    """A system against the baseline on the same examples: difference, its interval, p-value."""

    difference: float
    low: float
    high: float
    p_value: float
    wins: int
    losses: int
    ties: int


def _percentiles(samples: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(samples, [2.5, 97.5])
    return float(low), float(high)


def bootstrap_mean(values: Sequence[float], *, resamples: int, seed: int) -> Interval:
    """Mean with a 95% percentile bootstrap interval."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("no values to bootstrap")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, data.size, size=(resamples, data.size))
    low, high = _percentiles(data[index].mean(axis=1))
    return Interval(float(data.mean()), low, high)


def bootstrap_corpus(
    score: CorpusScore,
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    resamples: int,
    seed: int,
) -> Interval:
    """A corpus-level metric with a 95% interval, recomputed on each resample."""
    if not predictions:
        raise ValueError("no examples to bootstrap")
    rng = np.random.default_rng(seed)
    n = len(predictions)
    samples = np.empty(resamples)
    for r in range(resamples):
        index = rng.integers(0, n, size=n)
        samples[r] = score([predictions[i] for i in index], [references[i] for i in index])
    low, high = _percentiles(samples)
    return Interval(score(predictions, references), low, high)


def _counts(system: np.ndarray, baseline: np.ndarray, higher_is_better: bool) -> tuple[int, ...]:
    better = system > baseline if higher_is_better else system < baseline
    worse = system < baseline if higher_is_better else system > baseline
    return int(better.sum()), int(worse.sum()), int((system == baseline).sum())


def paired_decomposable(
    system: Sequence[float],
    baseline: Sequence[float],
    *,
    higher_is_better: bool,
    resamples: int,
    seed: int,
) -> PairedComparison:
    """System minus baseline on per-example scores: bootstrap interval, randomization p-value."""
    a, b = np.asarray(system, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("paired scores must be non-empty and of equal length")
    diff = a - b
    rng = np.random.default_rng(seed)
    index = rng.integers(0, diff.size, size=(resamples, diff.size))
    low, high = _percentiles(diff[index].mean(axis=1))
    signs = rng.choice(np.array([-1.0, 1.0]), size=(resamples, diff.size))
    observed = abs(diff.mean())
    extreme = int((np.abs((signs * diff).mean(axis=1)) >= observed - 1e-12).sum())
    wins, losses, ties = _counts(a, b, higher_is_better)
    return PairedComparison(
        float(diff.mean()), low, high, (extreme + 1) / (resamples + 1), wins, losses, ties
    )


def paired_corpus(
    score: CorpusScore,
    system: Sequence[str],
    baseline: Sequence[str],
    references: Sequence[str],
    *,
    per_example: tuple[Sequence[float], Sequence[float]] | None,
    higher_is_better: bool,
    resamples: int,
    seed: int,
) -> PairedComparison:
    """System minus baseline for a corpus-level metric: paired bootstrap interval of the
    difference and an approximate-randomization p-value (outputs swapped per example, the metric
    recomputed)."""
    n = len(references)
    if not (len(system) == len(baseline) == n) or n == 0:
        raise ValueError("paired outputs must be non-empty and of equal length")
    rng = np.random.default_rng(seed)
    observed = score(system, references) - score(baseline, references)
    diffs = np.empty(resamples)
    for r in range(resamples):
        index = rng.integers(0, n, size=n)
        refs = [references[i] for i in index]
        diffs[r] = score([system[i] for i in index], refs) - score(
            [baseline[i] for i in index], refs
        )
    low, high = _percentiles(diffs)
    extreme = 0
    for _ in range(resamples):
        swap = rng.random(n) < 0.5
        a = [baseline[i] if swap[i] else system[i] for i in range(n)]
        b = [system[i] if swap[i] else baseline[i] for i in range(n)]
        if abs(score(a, references) - score(b, references)) >= abs(observed) - 1e-12:
            extreme += 1
    if per_example is not None:
        wins, losses, ties = _counts(
            np.asarray(per_example[0], dtype=float),
            np.asarray(per_example[1], dtype=float),
            higher_is_better,
        )
    else:
        wins = losses = ties = 0
    return PairedComparison(
        float(observed), low, high, (extreme + 1) / (resamples + 1), wins, losses, ties
    )


@dataclass(frozen=True)
class Candidate:
    """One choice's validation evidence under the one-standard-error rule."""

    label: str
    mean: float
    gap: float
    """How far below the best mean (in the metric's better direction; 0 for the best)."""
    standard_error: float
    """The standard error of the per-example difference from the best choice."""

    @property
    def within_one_se(self) -> bool:
        return self.gap <= self.standard_error + 1e-12


@dataclass(frozen=True)
class OneSEChoice:
    chosen: str
    best: str
    candidates: tuple[Candidate, ...]
    n: int


def one_standard_error_choice(
    candidates: Sequence[tuple[str, Sequence[float] | np.ndarray]], *, higher_is_better: bool
) -> OneSEChoice:
    """The simplest candidate within one standard error of the best (Hastie, Tibshirani &
    Friedman, *Elements of Statistical Learning* §7.10): ``candidates`` are ordered simplest
    first and scored on the same examples, so the error is that of the paired per-example
    difference from the best, not of each mean alone. Ties in the mean go to the simpler."""
    if not candidates:
        raise ValueError("no candidates to choose among")
    sizes = {len(values) for _, values in candidates}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"candidates must be scored on the same examples, got sizes {sizes}")
    n = sizes.pop()
    sign = 1.0 if higher_is_better else -1.0
    scores = [sign * np.asarray(values, dtype=float) for _, values in candidates]
    means = [float(values.mean()) for values in scores]
    best = max(range(len(means)), key=lambda i: (means[i], -i))
    evidence = []
    for (label, _), values, mean in zip(candidates, scores, means, strict=True):
        difference = values - scores[best]
        error = float(difference.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
        evidence.append(Candidate(label, sign * mean, means[best] - mean, error))
    chosen = next(c for c in evidence if c.within_one_se)
    return OneSEChoice(chosen.label, candidates[best][0], tuple(evidence), n)
