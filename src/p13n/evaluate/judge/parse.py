"""Reading the judge's output: a JSON object (or a bare verdict) into scores and verdicts, and a
likelihood verdict from the log-probabilities of the two letters."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from p13n.errors import LLMError
from p13n.evaluate.judge.judgements import Label, PointwiseJudgement
from p13n.evaluate.judge.prompts import CRITERION_NAMES


def first_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object anywhere in ``text`` (models often wrap it in prose or fences)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _key(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*5\s*)?", value)
        return float(match.group(1)) if match else None
    return None


def _score(value: Any) -> int | None:
    number = _number(value)
    if number is None or not number.is_integer() or not 1 <= number <= 5:
        return None
    return int(number)


def normalize_confidence(value: Any) -> float | None:
    """A stated confidence on [0, 1]: 1-5 (as asked) maps linearly, so 1 → 0 and 5 → 1; a value
    below 1 is read as already on a 0-1 scale; anything else is None."""
    number = _number(value)
    if number is None:
        return None
    if 1 <= number <= 5:
        return (number - 1) / 4
    if 0 <= number < 1:
        return number
    return None


def parse_pointwise(text: str, criteria: Sequence[str] = CRITERION_NAMES) -> PointwiseJudgement:
    """Scores for ``criteria`` from the judge's output; invalid unless all are present."""
    found = first_json_object(text)
    if found is None:
        return PointwiseJudgement({}, None, text, valid=False, problem="no JSON object")
    fields = {_key(k): v for k, v in found.items()}
    scores = {name: s for name in criteria if (s := _score(fields.get(name))) is not None}
    missing = [name for name in criteria if name not in scores]
    return PointwiseJudgement(
        scores=scores,
        confidence=normalize_confidence(fields.get("confidence")),
        raw=text,
        valid=not missing,
        problem=f"no 1-5 score for {', '.join(missing)}" if missing else None,
    )


_WINNER_KEYS = ("winner", "verdict", "better", "preferred")
_BARE = re.compile(
    r"""\s*(?:(?:the\s+)?(?:winner|verdict|better\s+answer|answer)\s*(?:is)?\s*[:=\-]?\s*)?
    ["'(\[*]*\s*(?:answer\s*)?(?P<label>a|b|tie)\s*["')\]*]*\s*[.!]?\s*""",
    re.IGNORECASE | re.VERBOSE,
)


def _label(value: Any) -> Label | None:
    if not isinstance(value, str):
        return None
    word = re.sub(r"^(?:answer|response)[\s_]*", "", value.strip().strip("\"'").lower())
    if word in ("a", "b"):
        return "A" if word == "a" else "B"
    if word in ("tie", "equal", "draw", "both"):
        return "tie"
    return None


def parse_verdict(text: str) -> tuple[Label | None, float | None]:
    """("A" | "B" | "tie", confidence) from one comparison's output: the first JSON object's
    ``winner``, else a bare verdict such as ``B`` or ``Winner: A`` that is the whole reply.
    (None, None) when neither is there."""
    found = first_json_object(text)
    if found is not None:
        fields = {_key(k): v for k, v in found.items()}
        winner = next((fields[k] for k in _WINNER_KEYS if k in fields), None)
        return _label(winner), normalize_confidence(fields.get("confidence"))
    bare = _BARE.fullmatch(text)
    if bare is None:
        return None, None
    return _label(bare.group("label")), None


def likelihood_verdict(logprob_a: float, logprob_b: float) -> tuple[Label, float]:
    """("A" | "B", confidence) from the summed log-probabilities of the two letters: the more
    likely letter, and its probability of the two (softmax, so 0.5-1). Exactly equal scores are a
    tie at 0.5."""
    difference = logprob_a - logprob_b
    if math.isnan(difference):
        raise LLMError(f"choice log-probabilities are not comparable: {logprob_a}, {logprob_b}")
    if difference == 0:
        return "tie", 0.5
    # the chosen letter's probability, 1 / (1 + e^-|d|): cannot overflow
    confidence = 1.0 / (1.0 + math.exp(-abs(difference)))
    return ("A" if difference > 0 else "B"), confidence


__all__ = [
    "first_json_object",
    "likelihood_verdict",
    "normalize_confidence",
    "parse_pointwise",
    "parse_verdict",
]
