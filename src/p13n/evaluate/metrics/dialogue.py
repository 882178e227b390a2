"""Dialogue metrics: ParlAI's token F1 and Hits@K."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from p13n.evaluate.metrics.base import MetricResult, check_pairs, decomposed

# ParlAI cannot be installed here; this follows parlai/core/metrics.py (normalize_answer,
# F1Metric, TeacherMetrics._update_ranking_metrics) line for line.

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = re.compile(r"[!\"#$%&()*+,-./:;<=>?@\[\]\\^`{|}~_\']")


def normalize_answer(text: str) -> str:
    """ParlAI's normalization: lower, punctuation and articles to spaces, whitespace collapsed."""
    text = _PUNCTUATION.sub(" ", text.lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def _token_f1(guess: str, answer: str) -> float:
    pred_tokens, gold_tokens = normalize_answer(guess).split(), normalize_answer(answer).split()
    same = sum((Counter(gold_tokens) & Counter(pred_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> MetricResult:
    """ParlAI's unigram F1 per example (max over an example's references), averaged."""
    check_pairs(predictions, references)
    return decomposed(
        [
            max(_token_f1(pred, ref) for ref in ([refs] if isinstance(refs, str) else refs))
            for pred, refs in zip(predictions, references, strict=True)
        ]
    )


def hits_at_k(ranked: Sequence[Sequence[str]], gold: Sequence[str], k: int) -> MetricResult:
    """ParlAI's hits@k: 1 where a normalized candidate in the top ``k`` equals the gold reply."""
    check_pairs(ranked, gold)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return decomposed(
        [
            float(any(normalize_answer(c) == normalize_answer(g) for c in candidates[:k]))
            for candidates, g in zip(ranked, gold, strict=True)
        ]
    )


__all__ = ["hits_at_k", "normalize_answer", "token_f1"]
