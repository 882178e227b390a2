"""Scoring a task's answers: per-example metric values, bootstrap intervals, paired tests
against the non-personalized baseline, the profile-swap test, and k chosen on validation."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from p13n.benchmarks.config import BASELINE, BenchConfig
from p13n.benchmarks.results import MetricSummary, TaskResult
from p13n.datasets.lamp import TaskSpec
from p13n.evaluate.stats import (
    Interval,
    PairedComparison,
    bootstrap_corpus,
    bootstrap_mean,
    paired_corpus,
    paired_decomposable,
)

PRIMARY = {"text": "rouge-1", "label": "accuracy", "rating": "mae"}


def primary_metric(spec: TaskSpec) -> str:
    """The metric a task is judged on first: its own first metric (task.toml), else token F1
    for dialogue, else by output kind."""
    if spec.metrics:
        return spec.metrics[0]
    return "token-f1" if spec.template == "chat" else PRIMARY[spec.output_kind]


def task_file_names() -> dict[str, Any]:
    """The template names and metric kinds a ``task.toml`` may use (``read_task_file``'s
    keyword arguments): the registries live in layers above the file's reader."""
    from p13n.evaluate.metrics import metric_registry
    from p13n.prompt import templates

    return {
        "templates": templates.names(),
        "metrics": {name: metric_registry.get(name).kind for name in metric_registry.names()},
    }


# metrics are imported lazily: bert-score and nltk are heavy
def metrics_for_task(spec: TaskSpec, config: BenchConfig, task: str) -> list[Any]:
    """The metrics a task is scored with: the config's override, else the task's own
    (task.toml), else by its output kind."""
    from p13n.evaluate.metrics import metric_registry, metrics_for

    if task in config.metrics:
        return [metric_registry.get(name) for name in config.metrics[task]]
    if spec.metrics:
        return list(metrics_for(spec.output_kind, labels=spec.labels, names=spec.metrics))
    if spec.template == "chat":  # next-utterance tasks: ConvAI2's token F1, then ROUGE
        return [*metrics_for("dialogue"), *metrics_for("text")]
    return list(metrics_for(spec.output_kind, labels=spec.labels))


def score_task(result: TaskResult, task_metrics: Sequence[Any], config: BenchConfig) -> None:
    """Per-example scores, intervals and paired comparisons for every metric and arm."""
    from p13n.evaluate.metrics import MetricUnavailableError

    references = [record.reference for record in result.examples]
    for metric in task_metrics:
        summary = MetricSummary(metric.name, metric.higher_is_better, metric.description)
        result.metrics[metric.name] = summary
        predictions: dict[str, list[str]] = {}
        per_example: dict[str, list[float] | None] = {}
        try:
            for arm in result.arms:
                predictions[arm] = [r.outputs[arm].prediction for r in result.examples]
                computed = metric.compute(predictions[arm], references)
                per_example[arm] = computed.per_example
                if computed.per_example is not None:
                    for record, value in zip(result.examples, computed.per_example, strict=True):
                        record.outputs[arm].scores[metric.name] = value
                summary.arms[arm] = _interval(
                    metric, computed, predictions[arm], references, config
                )
        except MetricUnavailableError as error:
            summary.unavailable = str(error)
            summary.arms.clear()
            continue
        base = result.arms[0]
        for arm in result.arms[1:]:
            summary.versus_baseline[arm] = _paired(
                metric,
                predictions[arm],
                predictions[base],
                references,
                per_example,
                arm,
                base,
                config,
            )
    if not result.primary or result.primary not in result.metrics:
        result.primary = next(iter(result.metrics), "")
    _score_swaps(result, task_metrics)


def _interval(
    metric: Any, computed: Any, predictions: list[str], references: list[str], config: BenchConfig
) -> Interval:
    if metric.decomposable and computed.per_example is not None:
        interval = bootstrap_mean(
            computed.per_example, resamples=config.resamples, seed=config.seed
        )
        return Interval(computed.value, interval.low, interval.high)
    return bootstrap_corpus(
        lambda p, r: float(metric.compute(p, r).value),
        predictions,
        references,
        resamples=config.corpus_resamples,
        seed=config.seed,
    )


def _paired(
    metric: Any,
    system: list[str],
    baseline: list[str],
    references: list[str],
    per_example: Mapping[str, list[float] | None],
    arm: str,
    base: str,
    config: BenchConfig,
) -> PairedComparison:
    ours, theirs = per_example[arm], per_example[base]
    if metric.decomposable and ours is not None and theirs is not None:
        return paired_decomposable(
            ours,
            theirs,
            higher_is_better=metric.higher_is_better,
            resamples=config.resamples,
            seed=config.seed,
        )
    return paired_corpus(
        lambda p, r: float(metric.compute(p, r).value),
        system,
        baseline,
        references,
        per_example=(ours, theirs) if ours is not None and theirs is not None else None,
        higher_is_better=metric.higher_is_better,
        resamples=config.corpus_resamples,
        seed=config.seed,
    )


def _score_swaps(result: TaskResult, task_metrics: Sequence[Any]) -> None:
    from p13n.evaluate.degree import profile_swap

    primary = next((m for m in task_metrics if m.name == result.primary), None)
    if primary is None or not primary.decomposable:
        return
    references = [record.reference for record in result.examples]
    for arm in result.arms:
        if not all(arm in record.swapped for record in result.examples):
            continue
        own = primary.compute([r.outputs[arm].prediction for r in result.examples], references)
        other = primary.compute([r.swapped[arm].prediction for r in result.examples], references)
        assert own.per_example is not None and other.per_example is not None
        sign: Callable[[float], float] = (
            (lambda v: v) if primary.higher_is_better else (lambda v: -v)
        )
        for record, value in zip(result.examples, other.per_example, strict=True):
            record.swapped[arm].scores[primary.name] = value
        swap = profile_swap(
            [sign(v) for v in own.per_example], [sign(v) for v in other.per_example]
        )
        result.swap[arm] = {"metric": primary.name, **asdict(swap)}


def select_k(dev: TaskResult) -> dict[str, dict[str, Any]]:
    """Per method, the k with the best primary metric on the validation split."""
    summary = dev.metrics.get(dev.primary)
    if summary is None or summary.unavailable:
        return {}
    chosen: dict[str, dict[str, Any]] = {}
    sign = 1.0 if summary.higher_is_better else -1.0
    for label, interval in summary.arms.items():
        if label == BASELINE:
            continue
        method, _, k = label.partition(" k=")
        best = chosen.get(method)
        if best is None or sign * interval.value > sign * best["dev_value"] + 1e-12:
            chosen[method] = {
                "k": int(k),
                "arm": label,
                "dev_value": interval.value,
                "dev_split": dev.split,
                "dev_n": len(dev.examples),
                "metric": dev.primary,
            }
    return chosen
