"""Judgements aggregated: win counts and rates (overall, consistent, high-confidence), position
bias, and mean scores per criterion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from p13n.evaluate.judge.judgements import PairwiseJudgement, PointwiseJudgement, Verdict


@dataclass(frozen=True)
class WinCounts:
    """Outcomes for answer "a" over some set of valid judgements."""

    wins: int = 0
    losses: int = 0
    ties: int = 0

    @property
    def n(self) -> int:
        return self.wins + self.losses + self.ties

    @property
    def win_rate(self) -> float | None:
        """Ties count half (the usual win-rate convention); None over no judgements."""
        return (self.wins + self.ties / 2) / self.n if self.n else None

    @property
    def strict_win_rate(self) -> float | None:
        """Ties count as not won: the accuracy when "a" is the gold-preferred answer."""
        return self.wins / self.n if self.n else None

    @property
    def decisive_win_rate(self) -> float | None:
        """Ties left out: wins / (wins + losses)."""
        decisive = self.wins + self.losses
        return self.wins / decisive if decisive else None

    @property
    def tie_rate(self) -> float | None:
        return self.ties / self.n if self.n else None

    def add(self, winner: Verdict) -> WinCounts:
        return WinCounts(
            self.wins + (winner == "a"),
            self.losses + (winner == "b"),
            self.ties + (winner == "tie"),
        )


@dataclass(frozen=True)
class PairwiseSummary:
    """Pairwise judgements aggregated: win counts for "a" over all valid, consistent and
    high-confidence (≥ ``threshold``) judgements; invalid judgements and calls counted apart;
    ``position_consistency`` = consistent / valid; ``first_shown_rate`` = share of parsed
    decisive single-order verdicts that picked the answer shown first (0.5 without position
    bias)."""

    n: int
    invalid: int
    calls: int
    invalid_calls: int
    valid: WinCounts
    consistent: WinCounts
    high_confidence: WinCounts
    threshold: float
    position_consistency: float | None
    first_shown_rate: float | None

    @property
    def invalid_rate(self) -> float | None:
        return self.invalid / self.n if self.n else None

    @property
    def invalid_call_rate(self) -> float | None:
        return self.invalid_calls / self.calls if self.calls else None


def summarize_pairwise(
    judgements: Sequence[PairwiseJudgement], *, threshold: float = 0.75
) -> PairwiseSummary:
    """Aggregate ``judgements``; ``threshold`` (on the normalized [0, 1] confidence) defines the
    high-confidence subset."""
    valid = consistent = high = WinCounts()
    invalid = invalid_calls = calls = first_picked = decisive_orders = 0
    for judgement in judgements:
        calls += judgement.calls
        for order in judgement.orders:
            if not order.valid:
                invalid_calls += 1
            elif order.winner != "tie":
                decisive_orders += 1
                first_picked += order.winner == order.first
        if judgement.winner is None:
            invalid += 1
            continue
        valid = valid.add(judgement.winner)
        if judgement.consistent:
            consistent = consistent.add(judgement.winner)
        if judgement.confidence is not None and judgement.confidence >= threshold:
            high = high.add(judgement.winner)
    return PairwiseSummary(
        n=len(judgements),
        invalid=invalid,
        calls=calls,
        invalid_calls=invalid_calls,
        valid=valid,
        consistent=consistent,
        high_confidence=high,
        threshold=threshold,
        position_consistency=consistent.n / valid.n if valid.n else None,
        first_shown_rate=first_picked / decisive_orders if decisive_orders else None,
    )


@dataclass(frozen=True)
class PointwiseSummary:
    """Mean score per criterion over valid judgements, and over the high-confidence ones."""

    n: int
    invalid: int
    mean_scores: dict[str, float]
    high_confidence_n: int
    high_confidence_mean_scores: dict[str, float]
    threshold: float

    @property
    def invalid_rate(self) -> float | None:
        return self.invalid / self.n if self.n else None


def _means(judgements: Sequence[PointwiseJudgement]) -> dict[str, float]:
    names = sorted({name for j in judgements for name in j.scores})
    return {
        name: sum(j.scores[name] for j in judgements if name in j.scores)
        / sum(name in j.scores for j in judgements)
        for name in names
    }


def summarize_pointwise(
    judgements: Sequence[PointwiseJudgement], *, threshold: float = 0.75
) -> PointwiseSummary:
    valid = [j for j in judgements if j.valid]
    high = [j for j in valid if j.confidence is not None and j.confidence >= threshold]
    return PointwiseSummary(
        n=len(judgements),
        invalid=len(judgements) - len(valid),
        mean_scores=_means(valid),
        high_confidence_n=len(high),
        high_confidence_mean_scores=_means(high),
        threshold=threshold,
    )


__all__ = [
    "PairwiseSummary",
    "PointwiseSummary",
    "WinCounts",
    "summarize_pairwise",
    "summarize_pointwise",
]
