"""What a judgement is: per-criterion scores for one answer, or a pairwise verdict from two orders
combined into one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Verdict = Literal["a", "b", "tie"]
Label = Literal["A", "B", "tie"]


@dataclass(frozen=True)
class PointwiseJudgement:
    """Per-criterion scores (1-5) for one answer. ``valid`` only when every requested criterion
    got a score; ``scores`` holds whatever parsed either way. ``confidence`` is the judge's
    stated confidence normalized to [0, 1], None when it gave none."""

    scores: dict[str, int]
    confidence: float | None
    raw: str
    valid: bool
    problem: str | None = None

    @property
    def mean_score(self) -> float | None:
        return sum(self.scores.values()) / len(self.scores) if self.valid else None


@dataclass(frozen=True)
class OrderVerdict:
    """One call of a pairwise comparison: which answer was shown first, and the verdict in the
    caller's labels ("a"/"b"), None when the output did not parse. In likelihood mode ``raw`` is
    the chosen letter and ``logprobs`` the summed log-probabilities of "A" and "B"."""

    first: Literal["a", "b"]
    winner: Verdict | None
    confidence: float | None
    raw: str
    logprobs: tuple[float, float] | None = None

    @property
    def valid(self) -> bool:
        return self.winner is not None


@dataclass(frozen=True)
class PairwiseJudgement:
    """The two orders combined. ``winner`` is None exactly when ``valid`` is False (either order
    unparseable); ``consistent`` says whether both orders agreed (None when invalid), and an
    inconsistent pair is a tie. ``confidence`` is the lower of the two orders' confidences."""

    winner: Verdict | None
    confidence: float | None
    consistent: bool | None
    valid: bool
    orders: tuple[OrderVerdict, OrderVerdict]

    @property
    def calls(self) -> int:
        return len(self.orders)


def combine(orders: tuple[OrderVerdict, OrderVerdict]) -> PairwiseJudgement:
    """Both orders' verdicts as one judgement: agreement wins, disagreement is an inconsistent
    tie, and an unparseable order makes the whole judgement invalid."""
    first, second = orders
    if first.winner is None or second.winner is None:
        return PairwiseJudgement(None, None, None, valid=False, orders=orders)
    stated = [c for c in (first.confidence, second.confidence) if c is not None]
    confidence = min(stated) if len(stated) == 2 else None
    consistent = first.winner == second.winner
    winner: Verdict = first.winner if consistent else "tie"
    return PairwiseJudgement(winner, confidence, consistent, valid=True, orders=orders)


__all__ = [
    "Label",
    "OrderVerdict",
    "PairwiseJudgement",
    "PointwiseJudgement",
    "Verdict",
    "combine",
]
