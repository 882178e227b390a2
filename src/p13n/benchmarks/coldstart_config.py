"""What a cold-start study is: its config (tasks, profile cuts, retrieval, personas, model) and
the router policies it chooses among on dev."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

from p13n.benchmarks.config import BenchConfig, load_config
from p13n.encode import DEFAULT_ENCODER
from p13n.llm import LLMConfig
from p13n.personalize.router import GranularityConfig

ALL = -1
"""The profile size that means the whole profile."""
ARMS = ("none", "user", "persona", "global", "blend")
COLLAB = "collab"
ROUTER = "router"


class ColdStartConfig(BaseModel):
    """A cold-start study: tasks, profile cuts, retrieval, personas, model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "coldstart"
    tasks: list[str] = Field(min_length=1)
    tasks_dir: Path = Path("tasks")
    data: Path | None = None
    sizes: list[int] = Field([0, 1, 2, 5, 10], description="profile cuts; the whole is added")
    limit: int | None = Field(40, gt=0, description="test examples per task")
    limits: dict[str, PositiveInt] = Field(default_factory=dict)
    dev_limit: int | None = Field(25, gt=0, description="dev examples to choose the router on")
    dev_limits: dict[str, PositiveInt] = Field(default_factory=dict)
    retriever: str = "bm25"
    k: int = Field(4, ge=1)
    require_match: bool = Field(
        True, description="quote only items sharing a word with the input (false: the top k)"
    )
    discovery_users: int = Field(300, ge=3, description="training users personas come from")
    personas: int | None = Field(None, ge=1, description="None: chosen by silhouette")
    max_personas: int = Field(8, ge=2)
    collaborative_members: int = Field(
        20, ge=0, description="the collab arm: persona level + retrieval from this many members"
    )
    llm: LLMConfig = Field(
        default_factory=lambda: LLMConfig(backend="onnx"),
        description="onnx int4 by default: as good as torch float32 on the four-task suite and "
        "6-8x faster to decode (docs/BENCHMARKS.md); training still runs in torch",
    )
    encoder: str = DEFAULT_ENCODER
    max_new_tokens: dict[str, int] = Field(default_factory=dict)
    max_item_tokens: int = Field(256, gt=0)
    max_prompt_tokens: int = Field(2048, gt=0)
    seed: int = 0
    resamples: int = Field(1000, ge=100)
    batch_size: int = Field(16, ge=1)
    out: Path = Path("bench/out/coldstart")
    cache: Path | None = None

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, value: list[int]) -> list[int]:
        if not value or any(size < 0 for size in value):
            raise ValueError(f"sizes must be non-negative item counts, got {value}")
        return sorted(set(value))

    def bench_config(self) -> BenchConfig:
        """The runner settings the study shares (cache, model, budgets, resamples)."""
        return BenchConfig(
            name=self.name,
            tasks=self.tasks,
            tasks_dir=self.tasks_dir,
            data=self.data,
            llm=self.llm,
            encoder=self.encoder,
            max_item_tokens=self.max_item_tokens,
            max_prompt_tokens=self.max_prompt_tokens,
            seed=self.seed,
            resamples=self.resamples,
            batch_size=self.batch_size,
            out=self.out,
            cache=self.cache,
        )


def load_coldstart_config(path: Path | None, **overrides: Any) -> ColdStartConfig:
    """A ``ColdStartConfig`` from a TOML file (its ``[coldstart]`` table) and overrides."""
    return load_config(ColdStartConfig, path, "coldstart", "cold-start config", **overrides)


def size_label(size: int) -> str:
    return "all" if size == ALL else str(size)


@dataclass(frozen=True)
class Policy:
    """A router setting: below ``persona_min`` items global, below ``user_min`` persona (with
    the nearest members' items when ``collaborative``), else user (with the persona's
    description when ``blend``)."""

    persona_min: int
    user_min: int
    blend: bool
    collaborative: bool = False

    def arm(self, items: int) -> str:
        if items < self.persona_min:
            return "global"
        if items < self.user_min:
            return COLLAB if self.collaborative else "persona"
        return "blend" if self.blend else "user"

    def granularity(self, members: int) -> GranularityConfig:
        return GranularityConfig(
            level="auto",
            persona_min_items=self.persona_min,
            user_min_items=self.user_min,
            blend=self.blend,
            collaborative_members=members if self.collaborative else 0,
        )


def choose_policy(
    scores: dict[str, list[float]],
    items: Sequence[int],
    thresholds: Sequence[int],
    *,
    higher_is_better: bool,
) -> tuple[Policy, dict[str, float]]:
    """The router setting with the best mean dev score, given each arm's per-example dev scores
    and each example's item count; thresholds are tried at the given counts and "never".
    Ties go to the policy that personalizes most (user level from the fewest items, then no
    blending, no collaborative retrieval)."""
    cuts = sorted({*thresholds, max(items, default=0) + 1})
    sign = 1.0 if higher_is_better else -1.0
    scored: list[tuple[float, Policy]] = []
    for persona_min, user_min in itertools.combinations_with_replacement(cuts, 2):
        for blend, collaborative in itertools.product((False, True), repeat=2):
            if collaborative and COLLAB not in scores:
                continue
            policy = Policy(persona_min, user_min, blend, collaborative)
            total = [scores[policy.arm(n)][i] for i, n in enumerate(items)]
            scored.append((float(np.mean(total)), policy))
    best = max(
        scored,
        key=lambda pair: (
            sign * pair[0],
            -pair[1].user_min,
            -pair[1].persona_min,
            not pair[1].blend,
            not pair[1].collaborative,
        ),
    )
    table = {
        f"persona_min={p.persona_min} user_min={p.user_min} blend={p.blend} "
        f"collaborative={p.collaborative}": round(v, 5)
        for v, p in scored
    }
    return best[1], table
