"""What a benchmark run measured: each arm's answer to each example, the metrics' intervals and
paired comparisons, and what training the learned-user arms cost."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from p13n.benchmarks.config import BenchConfig
from p13n.datasets.lamp import LampExample, LampSplit, TaskSpec
from p13n.evaluate.stats import Interval, PairedComparison
from p13n.llm import GenerationOptions
from p13n.llm.cache import CachedGeneration
from p13n.personalize import Policy, PreparedPrompt
from p13n.retrieve import CorpusLoader
from p13n.store import Store, StoredAdapter


@dataclass
class ArmOutput:
    """One arm's answer to one example."""

    prediction: str
    prompt_tokens: int
    completion_tokens: int
    generate_ms: float
    retrieved: list[str]
    items_in_prompt: int
    cached: bool
    scores: dict[str, float] = field(default_factory=dict)
    choice_scores: list[float] | None = None
    calibrated_scores: list[float] | None = None
    """With contextual calibration: the labels' calibrated log-probabilities (the prediction is
    their argmax; ``choice_scores`` stay the model's own)."""
    fused_scores: list[float] | None = None
    """With fusion: the labels' log-probabilities after the user's own label prior (the
    prediction is their argmax)."""


@dataclass
class ExampleRecord:
    id: str
    user_id: str | None
    reference: str
    profile_size: int
    outputs: dict[str, ArmOutput] = field(default_factory=dict)
    swapped: dict[str, ArmOutput] = field(default_factory=dict)
    swapped_with: str | None = None
    input: str = ""


@dataclass
class MetricSummary:
    name: str
    higher_is_better: bool
    description: str
    unavailable: str | None = None
    arms: dict[str, Interval] = field(default_factory=dict)
    versus_baseline: dict[str, PairedComparison] = field(default_factory=dict)


@dataclass
class TrainingCost:
    """What training an arm's adapters cost (including adapters reused from an earlier run)."""

    method: str
    adapters: int = 0
    trained_now: int = 0
    train_seconds: list[float] = field(default_factory=list)
    examples: list[int] = field(default_factory=list)
    size_bytes: list[int] = field(default_factory=list)
    swap_ms: list[float] = field(default_factory=list)
    untrained: list[str] = field(default_factory=list)
    """Users with too little data for an adapter (auto served them its fallback)."""
    llm_calls: list[int] = field(default_factory=list)
    """Refined instructions: the LLM calls each refinement made."""

    def add(self, entry: StoredAdapter, *, fresh: bool) -> None:
        self.adapters += 1
        self.trained_now += int(fresh)
        self.train_seconds.append(float(entry.metrics.get("train_seconds", 0.0)))
        self.examples.append(entry.data_size)
        # A fine-tuned model's entry holds a manifest; the model's own size is in its metrics.
        self.size_bytes.append(int(entry.metrics.get("model_bytes", entry.size_bytes)))

    def to_dict(self) -> dict[str, Any]:
        def mean(values: Sequence[float]) -> float | None:
            return round(float(np.mean(values)), 2) if values else None

        return {
            "method": self.method,
            "adapters": self.adapters,
            "trained_now": self.trained_now,
            "train_seconds_total": round(sum(self.train_seconds), 1),
            "train_seconds_mean": mean(self.train_seconds),
            "examples_mean": mean(self.examples),
            "size_bytes_mean": mean(self.size_bytes),
            "swap_ms_median": round(float(np.median(self.swap_ms)), 2) if self.swap_ms else None,
            "untrained": len(self.untrained),
            **({"llm_calls_mean": mean(self.llm_calls)} if self.llm_calls else {}),
        }


@dataclass
class TaskResult:
    """Everything measured on one task split."""

    task: str
    split: str
    spec: TaskSpec
    arms: list[str]
    examples: list[ExampleRecord]
    primary: str
    metrics: dict[str, MetricSummary] = field(default_factory=dict)
    swap: dict[str, dict[str, Any]] = field(default_factory=dict)
    selected_k: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped_profile_items: int = 0
    training: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Learned-user methods: what training their adapters cost (``TrainingCost.to_dict``)."""
    policy: dict[str, Any] | None = None
    """With ``auto``: the policy learned on dev, with its evidence (``Policy.to_json``)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "split": self.split,
            "spec": self.spec.to_dict(),
            "arms": self.arms,
            "primary": self.primary,
            "n": len(self.examples),
            "skipped_profile_items": self.skipped_profile_items,
            "metrics": {
                name: {
                    "higher_is_better": m.higher_is_better,
                    "description": m.description,
                    "unavailable": m.unavailable,
                    "arms": {arm: asdict(value) for arm, value in m.arms.items()},
                    "versus_baseline": {arm: asdict(c) for arm, c in m.versus_baseline.items()},
                }
                for name, m in self.metrics.items()
            },
            "swap": self.swap,
            "selected_k": self.selected_k,
            "training": self.training,
            "policy": self.policy,
            "examples": [asdict(example) for example in self.examples],
        }


@dataclass
class BenchResult:
    config: BenchConfig
    tasks: list[TaskResult]
    generated: int
    reused: int
    llm: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": json.loads(self.config.model_dump_json()),
            "llm": self.llm,
            "cache": {"generated": self.generated, "reused": self.reused},
            "tasks": [task.to_dict() for task in self.tasks],
        }


@dataclass
class SplitRun:
    """One task split being run: its examples' store, decoding, and each example's record."""

    task: str
    folder: Path
    split: LampSplit
    examples: list[LampExample]
    store: Store
    loader: CorpusLoader
    options: GenerationOptions
    choices: tuple[str, ...] | None
    records: list[ExampleRecord]
    partners: list[int]
    """Example i is also answered with example ``partners[i]``'s profile (the swap test)."""
    selecting: bool
    """A validation run for k: no profile swap, the primary metric only."""
    training: dict[str, TrainingCost] = field(default_factory=dict)
    """What training each learned arm's adapters cost."""
    policy: Policy | None = None
    """What the ``auto`` arm serves (learned on dev)."""
    advice: str | None = None
    """The instruction refined on the train split (``refine-task``), once refined."""

    @property
    def spec(self) -> TaskSpec:
        return self.split.spec


def arm_output(answer: CachedGeneration, prepared: PreparedPrompt, *, cached: bool) -> ArmOutput:
    """What is recorded of one arm's answer to one prepared prompt."""
    retrieved = prepared.trace_fields.get("retrieved")
    return ArmOutput(
        prediction=answer.text,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        generate_ms=round(answer.generate_ms, 1),
        retrieved=[item.id for item in retrieved.items] if retrieved else [],
        items_in_prompt=len(prepared.prompt.items),
        cached=cached,
        choice_scores=answer.choice_scores,
    )


def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation with no fixed point: example i is answered with partner[i]'s profile."""
    if n < 2:
        return list(range(n))
    rng = np.random.default_rng(seed)
    shift = int(rng.integers(1, n))
    order = rng.permutation(n)
    partner = [0] * n
    for position, index in enumerate(order):  # a cyclic shift over a random order
        partner[int(index)] = int(order[(position + shift) % n])
    return partner
