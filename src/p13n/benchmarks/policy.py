"""The ``auto`` method: a personalization policy learned per task on the dev split.

Its candidates are every other configured arm and, on label and rating tasks answered by
likelihood, each arm's answers read through each calibration and each fusion weight with the
user's own label history ("history": the baseline's scores fused at weight infinity, i.e. the
user's most frequent label). The one-standard-error rule picks the simplest candidate within one
paired standard error of the best dev score; the baseline is the simplest. The policy goes to the
test split's store, and the ``auto`` arm answers through a ``Personalizer`` that serves it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from p13n.benchmarks.config import AUTO, BASELINE, Arm, BenchConfig, Calibration, methods
from p13n.benchmarks.results import TaskResult
from p13n.errors import ConfigError
from p13n.evaluate.stats import one_standard_error_choice
from p13n.personalize import LabelPolicy, Policy, PolicyEvidence
from p13n.personalize.policy import CandidateEvidence, ServedSettings
from p13n.retrieve import RetrieverConfig

HISTORY = "history"


@dataclass(frozen=True)
class Variant:
    """An arm's label answers read one way: calibrated by ``calibration``, fused with the user's
    label history at ``fusion`` (the raw arm: none and 0)."""

    arm: Arm
    calibration: Calibration = "none"
    fusion: float = 0.0

    @property
    def raw(self) -> bool:
        return self.calibration == "none" and self.fusion == 0

    @property
    def label(self) -> str:
        if self.arm.method == BASELINE and self.calibration == "none" and math.isinf(self.fusion):
            return HISTORY
        label = self.arm.label
        if self.calibration != "none":
            label += f" +{self.calibration}-cal"
        if self.fusion:
            label += f" +fuse={self.fusion:g}"
        return label


def candidates(config: BenchConfig, likelihood: bool) -> list[Variant]:
    """What ``auto`` chooses among, simplest first: each arm raw, then its label variants."""
    found = []
    for arm in config.arms():
        if arm.method == AUTO:
            continue
        found.append(Variant(arm))
        if likelihood:
            found += label_variants(config, arm)
    return found


def label_variants(config: BenchConfig, arm: Arm) -> list[Variant]:
    """The arm's answers calibrated and fused each configured way (the raw answers excluded)."""
    found = []
    for calibration in config.policy_calibrations:
        for fusion in config.policy_fusion:
            if arm.method == BASELINE and calibration != "none" and math.isinf(fusion):
                continue  # the user's most frequent label again, only the tie-break differs
            variant = Variant(arm, calibration, fusion)
            if not variant.raw:
                found.append(variant)
    return found


def learn_policy(
    dev: TaskResult, variants: list[Variant], config: BenchConfig, model: str
) -> Policy:
    """The policy the dev split supports, with its evidence. A choice that answers with the
    learned user's adapter gets a fallback: the choice among the candidates without one, by the
    same rule, for users who have no adapter when served."""
    metric = dev.metrics.get(dev.primary)
    if metric is None or metric.unavailable:
        raise ConfigError(f"task {dev.task!r}: auto needs the primary metric on dev")
    scores = []
    for variant in variants:
        values = [record.outputs[variant.label].scores.get(dev.primary) for record in dev.examples]
        if any(value is None for value in values):
            raise ConfigError(
                f"task {dev.task!r}: auto needs per-example {dev.primary} scores on dev"
            )
        scores.append((variant.label, [float(v) for v in values if v is not None]))
    choice = one_standard_error_choice(scores, higher_is_better=metric.higher_is_better)
    chosen = next(v for v in variants if v.label == choice.chosen)
    fallback = None
    if methods.get(chosen.arm.method).adapter is not None:
        plain = {v.label for v in variants if methods.get(v.arm.method).adapter is None}
        among = [(label, values) for label, values in scores if label in plain]
        settled = one_standard_error_choice(among, higher_is_better=metric.higher_is_better)
        fallback = ServedSettings(
            **served(next(v for v in variants if v.label == settled.chosen), config)
        )
    evidence = PolicyEvidence(
        metric=dev.primary,
        higher_is_better=metric.higher_is_better,
        split=dev.split,
        examples=choice.n,
        best=choice.best,
        candidates=[
            CandidateEvidence(
                label=c.label, mean=c.mean, gap=c.gap, standard_error=c.standard_error
            )
            for c in choice.candidates
        ],
    )
    return Policy(
        task=dev.spec.template,
        source=f"benchmark task {dev.task!r}",
        fallback=fallback,
        model=model,
        evidence=evidence,
        **served(chosen, config),
    )


def served(variant: Variant, config: BenchConfig) -> dict[str, Any]:
    """The ``ServedSettings`` fields that serve ``variant`` as the runner ran it."""
    method = methods.get(variant.arm.method)
    return {
        "choice": variant.label,
        "prompt": method.prompt,
        "retriever": RetrieverConfig(
            name=method.retriever or "bm25",
            k=variant.arm.k or 1,
            min_score=config.min_score,
            require_match=config.require_match,
        ),
        "max_item_tokens": config.max_item_tokens,
        "decoding": method.decoding,
        "steering": variant.arm.steering if variant.arm.steering is not None else 1.0,
        "labels": LabelPolicy(calibration=variant.calibration, fusion_weight=variant.fusion),
        "adapter": method.adapter or "none",
    }
