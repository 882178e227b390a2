"""A personalized LLM-as-judge (survey §6.1 and §9.1): any ``LLM`` rates how well an answer suits
one user on the survey's personalization criteria (§3.5, Table 1).

``Judge.judge`` scores one answer per criterion (1-5); ``Judge.compare`` asks which of two
answers suits the user better, twice, with the answers' positions swapped: a verdict counts only
when both orders agree, and a disagreement is a tie marked inconsistent. The judge is asked for a
small strict JSON object, decoded greedily with a bounded length; output that cannot be parsed
makes the judgement invalid and is counted as such, never turned into a default winner.

With ``JudgeConfig(verdict="likelihood")`` a comparison generates nothing: each order's prompt asks
for the letter of the better answer, and the verdict is whichever of "A" and "B" the model gives
the higher log-probability as its whole answer (``ChoiceScorer.score_choices``), so it is always
valid; the confidence is that letter's probability of the two (softmax over their summed
log-probabilities, 0.5-1). Small models that cannot follow the JSON format still give a verdict
this way. Swapping and the consistency bookkeeping are the same in both modes. It needs a backend
that can score fixed answers (local transformers models: ``embedded``, ``hf``); pointwise judging
(``Judge.judge``) always generates.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from p13n.errors import ConfigError, LLMError
from p13n.evaluate.judge.judgements import (
    Label,
    OrderVerdict,
    PairwiseJudgement,
    PointwiseJudgement,
    Verdict,
    combine,
)
from p13n.evaluate.judge.parse import likelihood_verdict, parse_pointwise, parse_verdict
from p13n.evaluate.judge.prompts import (
    CRITERION_NAMES,
    LIKELIHOOD_CHOICES,
    LIKELIHOOD_SYSTEM_PROMPT,
    PAIRWISE_LIKELIHOOD_PROMPT,
    PAIRWISE_PROMPT,
    POINTWISE_PROMPT,
    SYSTEM_PROMPT,
    check_criteria,
    criteria_lines,
    fence,
)
from p13n.llm import LLM, ChatMessage, ChoiceScorer, GenerationOptions


class JudgeConfig(BaseModel):
    """Decoding bounds, input cuts and how a pairwise verdict is reached: ``generate`` (the judge
    writes a JSON verdict, decoded greedily, temperature 0) or ``likelihood`` (the more likely of
    the letters "A" and "B"; needs a backend that is a ``ChoiceScorer``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verdict: Literal["generate", "likelihood"] = "generate"

    max_new_tokens_pointwise: int = Field(128, gt=0, le=1024)
    max_new_tokens_pairwise: int = Field(32, gt=0, le=1024)
    max_answer_tokens: int = Field(384, gt=0, description="each answer is cut to this many")
    max_context_tokens: int = Field(256, gt=0, description="the user context is cut to this")
    seed: int = 0


@dataclass
class Judge:
    """Any ``LLM`` as a judge of personalization, with prompts from ``p13n.evaluate.judge.prompts``.
    ``config.verdict == "likelihood"`` needs an ``llm`` that is a ``ChoiceScorer`` (else
    ``ConfigError``) and changes only ``compare``; ``judge`` (pointwise) always generates."""

    llm: LLM
    config: JudgeConfig = field(default_factory=JudgeConfig)

    def __post_init__(self) -> None:
        if self.config.verdict == "likelihood" and not isinstance(self.llm, ChoiceScorer):
            raise ConfigError(
                f"judge verdict 'likelihood' needs a backend that scores choices "
                f"(log-probabilities); backend {self.llm.backend!r} ({self.llm.model}) cannot: "
                "use verdict 'generate' or a local model backend such as 'embedded' or 'hf'"
            )

    def _cut(self, text: str, max_tokens: int) -> str:
        cut = self.llm.tokenizer.truncate(text, max_tokens)
        return fence(cut if cut == text else cut.rstrip() + " …")

    def _ask(self, prompt: str, max_new_tokens: int) -> str:
        messages: list[ChatMessage] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": prompt},
        ]
        options = GenerationOptions(
            max_new_tokens=max_new_tokens, temperature=0.0, seed=self.config.seed
        )
        return self.llm.generate(messages, options).text

    def judge(
        self,
        user_context: str,
        query: str,
        answer: str,
        criteria: Sequence[str] = CRITERION_NAMES,
    ) -> PointwiseJudgement:
        """Score ``answer`` to ``query`` for the user described by ``user_context``."""
        chosen = check_criteria(criteria)
        schema = json.dumps({c.name: "<1-5>" for c in chosen} | {"confidence": "<1-5>"})
        prompt = POINTWISE_PROMPT.format(
            user_context=self._cut(user_context, self.config.max_context_tokens),
            query=fence(query),
            answer=self._cut(answer, self.config.max_answer_tokens),
            criteria=criteria_lines(chosen),
            schema=schema.replace('"<1-5>"', "<1-5>"),
        )
        raw = self._ask(prompt, self.config.max_new_tokens_pointwise)
        return parse_pointwise(raw, [c.name for c in chosen])

    def _order(
        self, first: Literal["a", "b"], prompt_parts: dict[str, str], answers: dict[str, str]
    ) -> OrderVerdict:
        second: Literal["a", "b"] = "b" if first == "a" else "a"
        shown: dict[Label, Verdict] = {"A": first, "B": second, "tie": "tie"}
        if self.config.verdict == "likelihood":
            return self._order_by_likelihood(first, prompt_parts, answers, shown)
        prompt = PAIRWISE_PROMPT.format(
            **prompt_parts, first=answers[first], second=answers[second]
        )
        raw = self._ask(prompt, self.config.max_new_tokens_pairwise)
        label, confidence = parse_verdict(raw)
        return OrderVerdict(
            first=first,
            winner=shown[label] if label is not None else None,
            confidence=confidence,
            raw=raw,
        )

    def _order_by_likelihood(
        self,
        first: Literal["a", "b"],
        prompt_parts: dict[str, str],
        answers: dict[str, str],
        shown: dict[Label, Verdict],
    ) -> OrderVerdict:
        scorer = self.llm
        assert isinstance(scorer, ChoiceScorer)  # checked when the judge was made
        prompt = PAIRWISE_LIKELIHOOD_PROMPT.format(
            **prompt_parts, first=answers[first], second=answers[shown["B"]]
        )
        messages: list[ChatMessage] = [
            {"role": "system", "content": LIKELIHOOD_SYSTEM_PROMPT},
            {"role": "user", "content": prompt},
        ]
        scores = scorer.score_choices(messages, LIKELIHOOD_CHOICES)
        if len(scores) != len(LIKELIHOOD_CHOICES):
            raise LLMError(f"{self.llm.model} scored {len(scores)} choices, asked for 2")
        logprob_a, logprob_b = (float(score) for score in scores)
        label, confidence = likelihood_verdict(logprob_a, logprob_b)
        return OrderVerdict(
            first=first,
            winner=shown[label],
            confidence=confidence,
            raw=label,
            logprobs=(logprob_a, logprob_b),
        )

    def compare(
        self,
        user_context: str,
        query: str,
        answer_a: str,
        answer_b: str,
        criteria: Sequence[str] = CRITERION_NAMES,
    ) -> PairwiseJudgement:
        """Which of ``answer_a`` and ``answer_b`` suits the user better: asked with a first,
        then with b first (two calls: generations, or choice scorings in likelihood mode)."""
        parts = {
            "user_context": self._cut(user_context, self.config.max_context_tokens),
            "query": fence(query),
            "criteria": criteria_lines(check_criteria(criteria)),
        }
        answers = {
            "a": self._cut(answer_a, self.config.max_answer_tokens),
            "b": self._cut(answer_b, self.config.max_answer_tokens),
        }
        orders = (self._order("a", parts, answers), self._order("b", parts, answers))
        return combine(orders)


__all__ = ["Judge", "JudgeConfig"]
