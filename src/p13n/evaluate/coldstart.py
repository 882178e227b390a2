"""The cold-start study (survey §4.4): quality against how much of a user's data there is.

Each test user's profile is cut to its first 0, 1, 2, 5, 10 items or kept whole, and every cut is
answered at each granularity through the real ``Personalizer``:

- ``none``: the non-personalized prompt;
- ``user``: retrieval over the user's own (cut) profile (the LaMP recipe);
- ``persona``: the description of the persona nearest the user's items (global without items);
- ``global``: the population's profile;
- ``blend``: user retrieval plus the persona's description;
- ``router``: the granularity router, with thresholds and blending chosen on the dev split
  from the other arms' dev scores (never on test), then run through ``Router`` on test.

Personas and the global profile are discovered (k-means + LLM descriptions) from training users
who are not test users, so no test user's own data shapes their persona. Examples with the same
ids at every cut make each comparison paired.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator
from rich.progress import Progress

from p13n.datasets import Sourced
from p13n.datasets.lamp import LampExample, LampSplit, TaskSpec, profile_text
from p13n.datasets.lamp import read_split as read_lamp_split
from p13n.encode import DEFAULT_ENCODER
from p13n.errors import ConfigError
from p13n.evaluate.runner import (
    PRIMARY,
    Arm,
    BenchConfig,
    BenchRunner,
    ExampleRecord,
    TaskResult,
    default_max_new_tokens,
    load_config,
    metrics_for_task,
    profile_records,
    questions_digest,
    score_task,
)
from p13n.evaluate.stats import Interval, PairedComparison, paired_decomposable
from p13n.ingest import ingest
from p13n.llm import GenerationOptions, LLMConfig
from p13n.personalize import Personalizer, PersonalizerConfig
from p13n.personalize.personas import DiscoveryConfig, PersonaSet, discover_personas
from p13n.personalize.router import GranularityConfig
from p13n.retrieve import CorpusLoader, RetrieverConfig
from p13n.store import Store, open_store

STORE_FORMAT = 1
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
    discovery_users: int = Field(300, ge=3, description="training users personas come from")
    personas: int | None = Field(None, ge=1, description="None: chosen by silhouette")
    max_personas: int = Field(8, ge=2)
    collaborative_members: int = Field(
        20, ge=0, description="the collab arm: persona level + retrieval from this many members"
    )
    llm: LLMConfig = LLMConfig()
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


@dataclass
class SizeResult:
    """One profile cut of one task: each arm's primary metric with its interval."""

    size: int
    n: int
    mean_items: float
    values: dict[str, Interval]
    versus_none: dict[str, PairedComparison]
    router_versus_user: PairedComparison | None
    router_levels: dict[str, int]


@dataclass
class TaskStudy:
    task: str
    spec: TaskSpec
    metric: str
    higher_is_better: bool
    policy: Policy
    dev_scores: dict[str, float]
    dev_n: int
    discovery: dict[str, Any]
    sizes: list[SizeResult] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ColdStartResult:
    config: ColdStartConfig
    tasks: list[TaskStudy]
    generated: int
    reused: int
    llm: dict[str, str]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": json.loads(self.config.model_dump_json()),
            "llm": self.llm,
            "cache": {"generated": self.generated, "reused": self.reused},
            "seconds": round(self.seconds, 1),
            "tasks": [_task_dict(t) for t in self.tasks],
        }


def _task_dict(task: TaskStudy) -> dict[str, Any]:
    return {
        "task": task.task,
        "metric": task.metric,
        "higher_is_better": task.higher_is_better,
        "router_policy": dataclasses.asdict(task.policy),
        "dev": {"n": task.dev_n, "policy_scores": task.dev_scores},
        "discovery": task.discovery,
        "sizes": [
            {
                "size": size_label(s.size),
                "n": s.n,
                "mean_items": s.mean_items,
                "arms": {arm: dataclasses.asdict(v) for arm, v in s.values.items()},
                "versus_none": {arm: dataclasses.asdict(c) for arm, c in s.versus_none.items()},
                "router_versus_user": (
                    dataclasses.asdict(s.router_versus_user) if s.router_versus_user else None
                ),
                "router_levels": s.router_levels,
            }
            for s in task.sizes
        ],
        "examples": task.examples,
    }


class ColdStartStudy:
    """Runs a ``ColdStartConfig`` with the benchmark runner's model, cache and scoring."""

    def __init__(self, config: ColdStartConfig, *, runner: BenchRunner | None = None) -> None:
        self.config = config
        self.runner = runner or BenchRunner(config.bench_config())

    def close(self) -> None:
        self.runner.close()

    @property
    def arms(self) -> tuple[str, ...]:
        """The fixed arms (the router is chosen from them): ``collab`` when configured."""
        return (*ARMS, COLLAB) if self.config.collaborative_members else ARMS

    def run(self) -> ColdStartResult:
        started = time.perf_counter()
        studies = []
        with self.runner.progress_bars() as progress:
            for task in self.config.tasks:
                studies.append(self._task(task, progress))
        llm = self.runner.llm
        return ColdStartResult(
            self.config,
            studies,
            self.runner.generator.generated,
            self.runner.generator.reused,
            {"backend": llm.backend, "model": llm.model},
            time.perf_counter() - started,
        )

    # -- one task -------------------------------------------------------------------------------

    def _task(self, task: str, progress: Progress) -> TaskStudy:
        folder = self.runner.task_folder(task)
        test = read_lamp_split(folder, "test")
        dev = read_lamp_split(folder, "dev")
        train = read_lamp_split(folder, "train")
        spec = test.spec
        limit = self.config.limits.get(task, self.config.limit)
        dev_limit = self.config.dev_limits.get(task, self.config.dev_limit)
        test_examples = _with_gold(test.examples)[:limit]
        dev_examples = _with_gold(dev.examples)[:dev_limit]
        evaluated = {e.user_id for e in test_examples + dev_examples if e.user_id is not None}
        population = _population(train.examples, evaluated, self.config.discovery_users)
        if not test_examples or not dev_examples or len(population) < 3:
            raise ConfigError(
                f"task {task!r}: the study needs test and dev examples with golds and 3+ "
                f"training users not among them (found {len(test_examples)} test, "
                f"{len(dev_examples)} dev, {len(population)} training users)"
            )
        sizes = [*self.config.sizes, ALL]
        groups = (
            _Group("train", train, population, [ALL]),
            _Group("dev", dev, dev_examples, sizes),
            _Group("test", test, test_examples, sizes),
        )
        store, discovery = self._store(task, folder, spec, groups, progress)
        try:
            max_new = self.config.max_new_tokens.get(task, default_max_new_tokens(spec))
            options = GenerationOptions(max_new_tokens=max_new, seed=self.config.seed)
            metrics = metrics_for_task(spec, self.runner.config, task)
            primary_name = "token-f1" if spec.template == "chat" else PRIMARY[spec.output_kind]
            primary = next((m for m in metrics if m.name == primary_name), metrics[0])
            loader = CorpusLoader(
                store, self.runner.encoder, sources=RetrieverConfig().sources, cache_size=4096
            )
            dev_cells = self._cells("dev", spec, dev_examples)
            arms = self.arms
            dev_records, _ = self._answer_arms(
                task, "dev", store, loader, spec, options, dev_cells, arms, progress
            )
            dev_scores = {
                arm: _per_example(primary, dev_records, arm) for arm in arms if arm != "none"
            }
            dev_items = [cell.items for cell in dev_cells]
            policy, policy_scores = choose_policy(
                dev_scores,
                dev_items,
                self.config.sizes,
                higher_is_better=primary.higher_is_better,
            )
            cells = self._cells("test", spec, test_examples)
            records, levels = self._answer_arms(
                task,
                "test",
                store,
                loader,
                spec,
                options,
                cells,
                (*arms, ROUTER),
                progress,
                policy=policy,
            )
        finally:
            store.close()
        study = TaskStudy(
            task=task,
            spec=spec,
            metric=primary.name,
            higher_is_better=primary.higher_is_better,
            policy=policy,
            dev_scores=policy_scores,
            dev_n=len(dev_examples),
            discovery=discovery,
        )
        self._score(study, cells, records, levels, spec, metrics, primary.name)
        return study

    def _cells(self, split: str, spec: TaskSpec, examples: Sequence[LampExample]) -> list[_Cell]:
        """Every (example, cut) pair, with the number of items the cut stores (items without
        text are not stored, so the router counts them as it would)."""
        return [
            _Cell(
                example,
                size,
                f"{split}.{example.id}@{size_label(size)}",
                sum(1 for item in _cut(example, size) if profile_text(item, spec).strip()),
            )
            for size in [*self.config.sizes, ALL]
            for example in examples
        ]

    def _answer_arms(
        self,
        task: str,
        split: str,
        store: Store,
        loader: CorpusLoader,
        spec: TaskSpec,
        options: GenerationOptions,
        cells: list[_Cell],
        arms: Sequence[str],
        progress: Progress,
        *,
        policy: Policy | None = None,
    ) -> tuple[list[ExampleRecord], list[dict[str, str]]]:
        """Every arm's answer to every cell, and the level each arm served each cell at."""
        levels: list[dict[str, str]] = [{} for _ in cells]
        records = [
            ExampleRecord(cell.user_id, cell.example.user_id, cell.example.output or "", cell.items)
            for cell in cells
        ]
        for arm in arms:
            started, before = time.perf_counter(), self.runner.generator.generated
            granularity = _granularity(arm, policy, self.config.collaborative_members)
            personalizer = Personalizer(
                store,
                PersonalizerConfig(
                    task=spec.template,
                    retriever=RetrieverConfig(name=self.config.retriever, k=self.config.k),
                    llm=self.config.llm,
                    generation=options,
                    max_prompt_tokens=self.config.max_prompt_tokens,
                    max_item_tokens=self.config.max_item_tokens,
                    encoder=self.config.encoder,
                    granularity=granularity,
                ),
                llm=self.runner.llm,
                encoder=self.runner.encoder,
                loader=loader,
            )
            bar = progress.add_task(f"{task} {split}: prompts, {arm}", total=len(cells))
            prepared = []
            for cell, served in zip(cells, levels, strict=True):
                prompt = personalizer.prepare(
                    cell.user_id, cell.example.input, personalize=arm != "none"
                )
                route = prompt.trace_fields.get("granularity")
                served[arm] = route.level if route is not None else "none"
                prepared.append(prompt)
                progress.advance(bar)
            progress.remove_task(bar)
            self.runner.answer(
                records,
                prepared,
                options,
                None,
                progress,
                f"{task} {split}: {arm}",
                Arm(arm, None),
            )
            self.runner.console.print(
                f"{task} {split}: {arm}: {len(cells)} prompts, "
                f"{self.runner.generator.generated - before} new answers, "
                f"{time.perf_counter() - started:.0f} s",
                highlight=False,
            )
        return records, levels

    def _score(
        self,
        study: TaskStudy,
        cells: list[_Cell],
        records: list[ExampleRecord],
        levels: list[dict[str, str]],
        spec: TaskSpec,
        metrics: Sequence[Any],
        primary: str,
    ) -> None:
        arms = [*self.arms, ROUTER]
        bench = self.runner.config
        for size in [*self.config.sizes, ALL]:
            rows = [i for i, cell in enumerate(cells) if cell.size == size]
            chosen = [(cells[i], records[i], levels[i]) for i in rows]
            result = TaskResult(
                task=study.task,
                split="test",
                spec=spec,
                arms=arms,
                examples=[r for _, r, _ in chosen],
                primary=primary,
            )
            score_task(result, [m for m in metrics if m.name == primary], bench)
            summary = result.metrics[primary]
            router = [r.outputs[ROUTER].scores.get(primary, math.nan) for _, r, _ in chosen]
            user = [r.outputs["user"].scores.get(primary, math.nan) for _, r, _ in chosen]
            comparison = paired_decomposable(
                router,
                user,
                higher_is_better=summary.higher_is_better,
                resamples=bench.resamples,
                seed=bench.seed,
            )
            counted: dict[str, int] = {}
            for _, _, served in chosen:
                counted[served[ROUTER]] = counted.get(served[ROUTER], 0) + 1
            study.sizes.append(
                SizeResult(
                    size=size,
                    n=len(chosen),
                    mean_items=round(float(np.mean([c.items for c, _, _ in chosen])), 2),
                    values=dict(summary.arms),
                    versus_none=dict(summary.versus_baseline),
                    router_versus_user=comparison,
                    router_levels=dict(sorted(counted.items())),
                )
            )
            study.examples += [
                {
                    "id": r.id,
                    "size": size_label(size),
                    "items": c.items,
                    "reference": r.reference,
                    "levels": served,
                    "outputs": {
                        arm: {"prediction": o.prediction, primary: o.scores.get(primary)}
                        for arm, o in r.outputs.items()
                    },
                }
                for c, r, served in chosen
            ]

    # -- the store: training users (full profiles) + every cut of every evaluated user ------------

    def _store(
        self,
        task: str,
        folder: Path,
        spec: TaskSpec,
        groups: Sequence[_Group],
        progress: Progress,
    ) -> tuple[Store, dict[str, Any]]:
        """The study's store, built once per content and kept in the cache: the training users
        with whole profiles (personas are discovered from them) and every cut of every
        evaluated user."""
        config = self.config
        population = groups[0].examples
        discovery_config = DiscoveryConfig(
            n_personas=config.personas,
            max_personas=config.max_personas,
            seed=config.seed,
            users=[f"train.{e.id}@all" for e in population],
        )
        key = hashlib.sha256(
            json.dumps(
                [
                    STORE_FORMAT,
                    spec.to_dict(),
                    [questions_digest(folder, name) for name in ("train", "dev", "test")],
                    [
                        (g.name, size, [(e.id, len(e.profile), e.input) for e in g.examples])
                        for g in groups
                        for size in g.sizes
                    ],
                    self.runner.encoder.id,
                    discovery_config.model_dump_json(),
                    self.runner.llm.model,
                ],
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()[:20]
        path = self.runner.config.cache_path / "coldstart" / f"{task}-{key}.db"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial")
            partial.unlink(missing_ok=True)
            store = open_store(f"sqlite:///{partial}")
            records: list[Sourced] = []
            for g in groups:
                for size in g.sizes:
                    cut = [
                        dataclasses.replace(
                            e, id=f"{g.name}.{e.id}@{size_label(size)}", profile=_cut(e, size)
                        )
                        for e in g.examples
                    ]
                    part, _ = profile_records(g.split, cut)
                    records += part
            bar = progress.add_task(f"{task}: storing {len(records)} records", total=None)
            ingest(store, records, encoder=self.runner.encoder)
            progress.remove_task(bar)

            def report(stage: str, done: int, total: int) -> None:
                progress.update(bar, description=f"{task}: {stage}", completed=done, total=total)

            bar = progress.add_task(f"{task}: discovering personas", total=None)
            discover_personas(
                store, self.runner.encoder, self.runner.llm, discovery_config, progress=report
            )
            progress.remove_task(bar)
            store.close()
            partial.rename(path)
        store = open_store(f"sqlite:///{path}")
        return store, _discovery_summary(store)


@dataclass(frozen=True)
class _Group:
    """Users the study's store holds: a split's examples, stored at each of ``sizes``."""

    name: str
    split: LampSplit
    examples: list[LampExample]
    sizes: list[int]


@dataclass(frozen=True)
class _Cell:
    example: LampExample
    size: int
    user_id: str
    items: int


def _with_gold(examples: Sequence[LampExample]) -> list[LampExample]:
    return [e for e in examples if e.output is not None]


def _cut(example: LampExample, size: int) -> list[dict[str, Any]]:
    """The profile's first ``size`` items (its order: LaMP-format profiles of these tasks list
    persona facts and older items first)."""
    return list(example.profile) if size == ALL else list(example.profile[:size])


def _population(
    examples: Sequence[LampExample], evaluated: set[str], limit: int
) -> list[LampExample]:
    """Training users to discover personas from: one example per user, none of them evaluated."""
    seen: set[str] = set()
    chosen = []
    for example in examples:
        owner = example.user_id or example.id
        if owner in evaluated or owner in seen or not example.profile:
            continue
        seen.add(owner)
        chosen.append(example)
        if len(chosen) == limit:
            break
    return chosen


def _granularity(arm: str, policy: Policy | None, members: int) -> GranularityConfig:
    if arm == ROUTER:
        assert policy is not None
        return policy.granularity(members)
    if arm == COLLAB:
        return GranularityConfig(level="persona", collaborative_members=members)
    if arm == "blend":
        return GranularityConfig(level="user", blend=True)
    if arm in ("persona", "global"):
        return GranularityConfig(level=arm)
    return GranularityConfig(level="user")


def _per_example(metric: Any, records: list[ExampleRecord], arm: str) -> list[float]:
    predictions = [r.outputs[arm].prediction for r in records]
    references = [r.reference for r in records]
    computed = metric.compute(predictions, references)
    if computed.per_example is None:
        raise ConfigError(
            f"the cold-start study needs a per-example primary metric; {metric.name} is not"
        )
    return [float(v) for v in computed.per_example]


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


def _discovery_summary(store: Store) -> dict[str, Any]:
    """What discovery wrote into the study's store (read back, not rediscovered)."""
    found = PersonaSet.read(store)
    assert found.global_profile is not None  # written with the personas when the store was built
    everyone = found.global_profile.persona.metadata
    groups = sorted(
        (p for p in found.groups if p.source == "discovered"),
        key=lambda p: int(p.id.rpartition("-")[2]),  # discovered-1, -2, ...: largest first
    )
    return {
        "version": found.global_profile.version,
        "users": everyone.get("size"),
        "personas": [
            {"id": p.id, "members": len(p.persona.members), "description": p.description}
            for p in groups
        ],
        "global": found.global_profile.description,
        "fingerprint": everyone.get("fingerprint"),
    }


# -- reports ----------------------------------------------------------------------------------


def markdown(result: ColdStartResult) -> str:
    lines = [
        f"# Cold-start study: {result.config.name}",
        "",
        f"Model {result.llm['backend']}:{result.llm['model']}; retriever "
        f"{result.config.retriever} k={result.config.k}; {result.generated} answers generated, "
        f"{result.reused} from the cache; {result.seconds:.0f} s.",
        "",
    ]
    for task in result.tasks:
        arrow = "↑" if task.higher_is_better else "↓"
        p = task.policy
        arms = list(task.sizes[0].values)
        lines += [
            f"## {task.task} ({task.metric} {arrow})",
            "",
            f"Router chosen on {task.dev_n} dev users x {len(task.sizes)} cuts: global below "
            f"{p.persona_min} items, persona{' + members' if p.collaborative else ''} below "
            f"{p.user_min}, then user"
            f"{' + persona description' if p.blend else ''}. Personas: "
            f"{len(task.discovery['personas'])} from {task.discovery['users']} training users.",
            "",
            "| items | n | " + " | ".join(arms) + " | router - user (p) | router levels |",
            "|---|---:|" + "---:|" * len(arms) + "---|---|",
        ]
        for s in task.sizes:
            cells = []
            for arm in arms:
                value = s.values[arm].value
                mark = ""
                versus = s.versus_none.get(arm)
                if versus is not None and versus.p_value < 0.05:
                    mark = " †"
                cells.append(f"{value:.4f}{mark}")
            c = s.router_versus_user
            delta = f"{c.difference:+.4f} ({c.p_value:.2f})" if c else "-"
            levels = ", ".join(f"{k} {v}" for k, v in s.router_levels.items())
            lines.append(
                f"| {size_label(s.size)} (mean {s.mean_items:g}) | {s.n} | "
                + " | ".join(cells)
                + f" | {delta} | {levels} |"
            )
        lines += ["", "† paired randomization p < 0.05 against `none`.", ""]
        for persona in task.discovery["personas"]:
            lines.append(
                f"- `{persona['id']}` ({persona['members']} users): {persona['description']}"
            )
        lines += [f"- `global`: {task.discovery['global']}", ""]
    return "\n".join(lines)


def plot(result: ColdStartResult, path: Path) -> Path:
    """Per task: each arm's score against profile size (top), and the paired difference to the
    non-personalized prompt of user-only and the router, with 95% intervals (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = result.tasks
    figure, axes = plt.subplots(
        2, len(tasks), figsize=(5.5 * len(tasks), 7), squeeze=False, sharex="col"
    )
    styles = {
        "none": ("grey", "--"),
        "user": ("tab:blue", "-"),
        "persona": ("tab:orange", "-"),
        "global": ("tab:green", ":"),
        "blend": ("tab:purple", "-."),
        COLLAB: ("tab:brown", "-."),
        ROUTER: ("black", "-"),
    }
    for column, task in enumerate(tasks):
        top, bottom = axes[0][column], axes[1][column]
        x = np.arange(len(task.sizes))
        for arm, (colour, line) in styles.items():
            if arm not in task.sizes[0].values:
                continue
            values = [s.values[arm].value for s in task.sizes]
            width = 2.2 if arm == ROUTER else 1.4
            top.plot(x, values, line, color=colour, label=arm, linewidth=width, marker="o", ms=3)
        for offset, arm in ((-0.06, "user"), (0.06, ROUTER)):
            colour = styles[arm][0]
            diffs = [s.versus_none[arm] for s in task.sizes]
            middle = np.array([d.difference for d in diffs])
            errors = np.array(
                [[d.difference - d.low for d in diffs], [d.high - d.difference for d in diffs]]
            )
            bottom.errorbar(
                x + offset, middle, yerr=errors, fmt="o-", color=colour, label=arm, capsize=3
            )
        bottom.axhline(0, color="grey", linestyle="--", linewidth=1)
        arrow = "↑" if task.higher_is_better else "↓"
        top.set_title(task.task)
        top.set_ylabel(f"{task.metric} {arrow}")
        bottom.set_ylabel(f"{task.metric} minus none (95% CI)")
        bottom.set_xticks(x, [size_label(s.size) for s in task.sizes])
        bottom.set_xlabel("profile items kept")
        for axis in (top, bottom):
            axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, ncol=2)
    axes[1][0].legend(fontsize=8)
    figure.suptitle(f"Cold start: quality against profile size ({result.llm['model']})")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_outputs(result: ColdStartResult, out: Path) -> dict[str, Path]:
    """``results.json``, ``summary.md`` and ``coldstart.png`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "results.json",
        "summary": out / "summary.md",
        "plot": out / "coldstart.png",
    }
    paths["json"].write_text(
        json.dumps(result.to_dict(), indent=1, ensure_ascii=False, default=str) + "\n",
        encoding="utf-8",
    )
    paths["summary"].write_text(markdown(result) + "\n", encoding="utf-8")
    plot(result, paths["plot"])
    return paths
