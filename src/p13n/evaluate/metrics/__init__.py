"""Evaluation metrics (survey §6) as pure functions over the reference packages the field uses.

Every metric says in its ``description`` which implementation and configuration it follows, so a
number can be traced to the code that defines it: rouge-score as LaMP/LongLaMP call it, sacrebleu,
NLTK's METEOR as LongLaMP (HF ``evaluate``) calls it, bert-score with the bundled encoder,
scikit-learn, ranx, and ParlAI's token F1 and Hits@K. Heavy packages are imported on first use.

By concern: ``text`` (ROUGE, BLEU, METEOR, BERTScore), ``resources`` (the WordNet and Punkt data
METEOR reads), ``dialogue``, ``labels``, ``ratings``, ``ranking``; ``base`` holds ``Metric`` and
``MetricResult``. This package holds the registry of named metrics and the defaults per output
kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial

from p13n.errors import MetricUnavailableError
from p13n.evaluate.metrics.base import Metric, MetricKind, MetricResult
from p13n.evaluate.metrics.dialogue import hits_at_k, normalize_answer, token_f1
from p13n.evaluate.metrics.labels import accuracy, macro_f1, micro_f1, parse_label
from p13n.evaluate.metrics.ranking import ranking_metrics, ranking_metrics_per_query
from p13n.evaluate.metrics.ratings import mae, parse_rating, rmse
from p13n.evaluate.metrics.text import ROUGE_TYPES, bertscore_minilm, bleu, meteor, rouge
from p13n.registry import Registry

_ROUGE_SCORE = (
    "rouge-score 0.1.2 {type} F1 configured as LaMP/LongLaMP's eval (HF evaluate 'rouge'): "
    "no stemming, rouge-score's tokenizer (lowercase, non-[a-z0-9] dropped), predictions and "
    "references stripped. Value = mean of per-example F1; LaMP reports HF's BootstrapAggregator "
    "'mid', an unseeded bootstrap median of that mean, which differs only by sampling noise."
)

metric_registry: Registry[Metric] = Registry("metric")
"""Every named metric (``rouge-1``, ``bleu``, ``accuracy`` ...), with what it means."""
for _name, _type in ROUGE_TYPES.items():
    metric_registry.register(
        _name,
        Metric(
            _name,
            "text",
            True,
            True,
            _ROUGE_SCORE.format(type=_type),
            partial(rouge, rouge_type=_type),
        ),
    )
metric_registry.register(
    "bleu",
    Metric(
        "bleu",
        "text",
        True,
        False,
        "sacrebleu corpus_bleu with HF evaluate 'sacrebleu' defaults (13a tokenizer, exp "
        "smoothing, case-sensitive), on sacrebleu's 0-100 scale as LaMP's code reports it; "
        "per example: sacrebleu sentence_bleu (not decomposable: the value is corpus BLEU).",
        bleu,
    ),
)
metric_registry.register(
    "meteor",
    Metric(
        "meteor",
        "text",
        True,
        True,
        "NLTK meteor_score as LongLaMP computes it (HF evaluate 'meteor'): alpha=0.9, beta=3, "
        "gamma=0.5, inputs stripped and tokenized by NLTK's word_tokenize (English Punkt "
        "parameters), Porter stemmer, WordNet 3.0 synonyms from Debian's wordnet-base (which "
        "differs from NLTK's copy in verb pointers, not in synonym sets); mean over examples.",
        meteor,
    ),
)
metric_registry.register(
    "bertscore-minilm",
    Metric(
        "bertscore-minilm",
        "text",
        True,
        True,
        "bert-score F1 with the bundled all-MiniLM-L6-v2 (layer 6 of 6, no idf, no baseline "
        "rescaling), mean over examples. NOT comparable with published BERTScore, which uses "
        "roberta-large.",
        bertscore_minilm,
    ),
)
metric_registry.register(
    "token-f1",
    Metric(
        "token-f1",
        "dialogue",
        True,
        True,
        "ParlAI's token F1 (normalize_answer: lowercase, punctuation and articles removed; "
        "unigram overlap), mean over examples; re-implemented because ParlAI is not installable.",
        token_f1,
    ),
)
_LABELS = (
    " Outputs are read as LaMP's eval reads them (stripped, exact label or wrong); without a "
    "label set the classes are the union of stripped outputs and references."
)
metric_registry.register(
    "accuracy",
    Metric("accuracy", "label", True, True, "Share of exact labels." + _LABELS, accuracy),
)
metric_registry.register(
    "macro-f1",
    Metric(
        "macro-f1",
        "label",
        True,
        False,
        "scikit-learn f1_score(average='macro', zero_division=0) over the label set, as LaMP-2's "
        "eval (HF evaluate 'f1')." + _LABELS,
        macro_f1,
    ),
)
metric_registry.register(
    "micro-f1",
    Metric(
        "micro-f1",
        "label",
        True,
        False,
        "scikit-learn f1_score(average='micro', zero_division=0) over the label set." + _LABELS,
        micro_f1,
    ),
)
_RATINGS = (
    " Outputs parsed as LaMP-3's eval does (float of the stripped text); an unparsable one "
    "becomes 1 or 5, whichever is farther from the gold rating."
)
metric_registry.register(
    "mae", Metric("mae", "rating", False, True, "Mean absolute error." + _RATINGS, mae)
)
metric_registry.register(
    "rmse",
    Metric("rmse", "rating", False, False, "Root mean squared error." + _RATINGS, rmse),
)

_LABEL_METRICS = {"accuracy": accuracy, "macro-f1": macro_f1, "micro-f1": micro_f1}

DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "text": ("rouge-1", "rouge-l", "meteor", "bleu"),
    "label": ("accuracy", "macro-f1"),
    "rating": ("mae", "rmse"),
    "dialogue": ("token-f1",),
}


def metrics_for(
    output_kind: str, labels: Sequence[str] = (), names: Sequence[str] = ()
) -> list[Metric]:
    """The metrics ``names`` (default: the output kind's); ``labels`` fixes a label task's
    classes for the metrics that average over classes."""
    if output_kind not in DEFAULT_METRICS:
        raise ValueError(
            f"unknown output kind {output_kind!r}; known: {', '.join(sorted(DEFAULT_METRICS))}"
        )
    chosen = [metric_registry.get(name) for name in names or DEFAULT_METRICS[output_kind]]
    if output_kind != "label" or not labels:
        return chosen
    label_set = tuple(labels)
    return [
        replace(
            metric,
            compute=partial(_LABEL_METRICS[metric.name], labels=label_set),
            description=f"{metric.description} Label set: {list(label_set)}.",
        )
        if metric.name in _LABEL_METRICS
        else metric
        for metric in chosen
    ]


__all__ = [
    "DEFAULT_METRICS",
    "Metric",
    "MetricKind",
    "MetricResult",
    "MetricUnavailableError",
    "accuracy",
    "bertscore_minilm",
    "bleu",
    "hits_at_k",
    "macro_f1",
    "mae",
    "meteor",
    "metric_registry",
    "metrics_for",
    "micro_f1",
    "normalize_answer",
    "parse_label",
    "parse_rating",
    "ranking_metrics",
    "ranking_metrics_per_query",
    "rmse",
    "rouge",
    "token_f1",
]
