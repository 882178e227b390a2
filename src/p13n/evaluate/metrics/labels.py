"""Label metrics (LaMP-1/LaMP-2): accuracy and scikit-learn's F1 over a task's label set."""

from __future__ import annotations

from collections.abc import Sequence

from p13n.evaluate.metrics.base import MetricResult, check_pairs, decomposed


def parse_label(text: str, labels: Sequence[str]) -> str | None:
    """The label an output names, as LaMP's eval reads it: the stripped text if it is one of
    ``labels`` exactly, else ``None`` (a wrong answer)."""
    answer = text.strip()
    return answer if answer in labels else None


def _encode_labels(
    predictions: Sequence[str], references: Sequence[str], labels: Sequence[str] | None
) -> tuple[list[int], list[int], list[int]]:
    """Class indices as LaMP maps them (unparsable output -> -1, outside every class)."""
    check_pairs(predictions, references)
    if labels is None:
        classes = sorted({t.strip() for t in [*predictions, *references]})
    else:
        classes = list(labels)
        unknown = sorted({r.strip() for r in references} - set(classes))
        if unknown:
            raise ValueError(f"references outside the label set {classes}: {unknown}")
    index = {label: i for i, label in enumerate(classes)}
    preds = [index.get(p.strip(), -1) for p in predictions]
    refs = [index[r.strip()] for r in references]
    return preds, refs, list(range(len(classes)))


def accuracy(
    predictions: Sequence[str], references: Sequence[str], labels: Sequence[str] | None = None
) -> MetricResult:
    """Share of outputs that name the gold label (``parse_label``; exact after strip)."""
    preds, refs, _ = _encode_labels(predictions, references, labels)
    return decomposed([float(p == r) for p, r in zip(preds, refs, strict=True)])


def _f1(
    predictions: Sequence[str],
    references: Sequence[str],
    labels: Sequence[str] | None,
    average: str,
) -> MetricResult:
    from sklearn.metrics import f1_score

    preds, refs, classes = _encode_labels(predictions, references, labels)
    score = f1_score(refs, preds, labels=classes, average=average, zero_division=0)
    return MetricResult(float(score), None)


def macro_f1(
    predictions: Sequence[str], references: Sequence[str], labels: Sequence[str] | None = None
) -> MetricResult:
    """scikit-learn macro F1 over the label set (LaMP-2's F1)."""
    return _f1(predictions, references, labels, "macro")


def micro_f1(
    predictions: Sequence[str], references: Sequence[str], labels: Sequence[str] | None = None
) -> MetricResult:
    """scikit-learn micro F1 over the label set."""
    return _f1(predictions, references, labels, "micro")


__all__ = ["accuracy", "macro_f1", "micro_f1", "parse_label"]
