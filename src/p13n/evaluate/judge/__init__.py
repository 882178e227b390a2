"""A personalized LLM-as-judge (survey §6.1 and §9.1): any ``LLM`` rates how well an answer suits
one user on the survey's personalization criteria (§3.5, Table 1).

``judge`` holds the ``Judge`` and its config; ``prompts`` the criteria and what the judge is asked;
``parse`` reads its output; ``judgements`` the results; ``summary`` their aggregates.
"""

from __future__ import annotations

from p13n.evaluate.judge.judge import Judge, JudgeConfig
from p13n.evaluate.judge.judgements import (
    Label,
    OrderVerdict,
    PairwiseJudgement,
    PointwiseJudgement,
    Verdict,
    combine,
)
from p13n.evaluate.judge.parse import (
    first_json_object,
    likelihood_verdict,
    normalize_confidence,
    parse_pointwise,
    parse_verdict,
)
from p13n.evaluate.judge.prompts import (
    CRITERIA,
    CRITERION_NAMES,
    LIKELIHOOD_CHOICES,
    LIKELIHOOD_SYSTEM_PROMPT,
    PAIRWISE_LIKELIHOOD_PROMPT,
    PAIRWISE_PROMPT,
    POINTWISE_PROMPT,
    SYSTEM_PROMPT,
    Criterion,
)
from p13n.evaluate.judge.summary import (
    PairwiseSummary,
    PointwiseSummary,
    WinCounts,
    summarize_pairwise,
    summarize_pointwise,
)

__all__ = [
    "CRITERIA",
    "CRITERION_NAMES",
    "LIKELIHOOD_CHOICES",
    "LIKELIHOOD_SYSTEM_PROMPT",
    "PAIRWISE_LIKELIHOOD_PROMPT",
    "PAIRWISE_PROMPT",
    "POINTWISE_PROMPT",
    "SYSTEM_PROMPT",
    "Criterion",
    "Judge",
    "JudgeConfig",
    "Label",
    "OrderVerdict",
    "PairwiseJudgement",
    "PairwiseSummary",
    "PointwiseJudgement",
    "PointwiseSummary",
    "Verdict",
    "WinCounts",
    "combine",
    "first_json_object",
    "likelihood_verdict",
    "normalize_confidence",
    "parse_pointwise",
    "parse_verdict",
    "summarize_pairwise",
    "summarize_pointwise",
]
