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
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from p13n.benchmarks.coldstart_config import (
    ALL,
    ARMS,
    COLLAB,
    ROUTER,
    ColdStartConfig,
    Policy,
    choose_policy,
    size_label,
)
from p13n.benchmarks.coldstart_report import ColdStartResult, SizeResult, TaskStudy
from p13n.benchmarks.config import Arm
from p13n.benchmarks.results import ExampleRecord, TaskResult
from p13n.benchmarks.runner import BenchRunner
from p13n.benchmarks.scoring import metrics_for_task, primary_metric, score_task
from p13n.benchmarks.stores import (
    STORE_FORMAT,
    cached_store,
    fingerprint,
    profile_records,
    questions_digest,
)
from p13n.datasets import Sourced
from p13n.datasets.lamp import LampExample, LampSplit, TaskSpec, profile_text
from p13n.datasets.lamp import read_split as read_lamp_split
from p13n.errors import ConfigError
from p13n.evaluate.stats import paired_decomposable
from p13n.ingest import ingest
from p13n.llm import GenerationOptions
from p13n.personalize import Personalizer, PersonalizerConfig
from p13n.personalize.personas import DiscoveryConfig, PersonaSet, discover_personas
from p13n.personalize.router import GranularityConfig
from p13n.retrieve import CorpusLoader, RetrieverConfig
from p13n.store import Store


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


@dataclass(frozen=True)
class _TaskRun:
    """One task of the study being run: its store and what every arm shares."""

    task: str
    spec: TaskSpec
    store: Store
    loader: CorpusLoader
    options: GenerationOptions


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
        train, dev, test = self._groups(task, folder)
        spec = test.split.spec
        store, discovery = self._store(task, folder, spec, (train, dev, test), progress)
        try:
            max_new = self.config.max_new_tokens.get(task, spec.max_new_tokens)
            loader = CorpusLoader(
                store, self.runner.encoder, sources=RetrieverConfig().sources, cache_size=4096
            )
            run = _TaskRun(
                task,
                spec,
                store,
                loader,
                GenerationOptions(max_new_tokens=max_new, seed=self.config.seed),
            )
            metrics = metrics_for_task(spec, self.runner.config, task)
            primary = next((m for m in metrics if m.name == primary_metric(spec)), metrics[0])
            policy, policy_scores = self._choose_router(run, dev.examples, primary, progress)
            cells = self._cells("test", spec, test.examples)
            arms = (*self.arms, ROUTER)
            records, levels = self._answer_arms(run, "test", cells, arms, progress, policy=policy)
        finally:
            store.close()
        study = TaskStudy(
            task=task,
            spec=spec,
            metric=primary.name,
            higher_is_better=primary.higher_is_better,
            policy=policy,
            dev_scores=policy_scores,
            dev_n=len(dev.examples),
            discovery=discovery,
        )
        self._score(study, cells, records, levels, spec, metrics, primary.name)
        return study

    def _groups(self, task: str, folder: Path) -> tuple[_Group, _Group, _Group]:
        """The training users personas are discovered from (whole profiles), and the dev and
        test examples at every cut."""
        test = read_lamp_split(folder, "test")
        dev = read_lamp_split(folder, "dev")
        train = read_lamp_split(folder, "train")
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
        return (
            _Group("train", train, population, [ALL]),
            _Group("dev", dev, dev_examples, sizes),
            _Group("test", test, test_examples, sizes),
        )

    def _choose_router(
        self, run: _TaskRun, examples: Sequence[LampExample], primary: Any, progress: Progress
    ) -> tuple[Policy, dict[str, float]]:
        """The router policy that scores best on dev, and every policy's dev score."""
        cells = self._cells("dev", run.spec, examples)
        arms = self.arms
        records, _ = self._answer_arms(run, "dev", cells, arms, progress)
        scores = {arm: _per_example(primary, records, arm) for arm in arms if arm != "none"}
        return choose_policy(
            scores,
            [cell.items for cell in cells],
            self.config.sizes,
            higher_is_better=primary.higher_is_better,
        )

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

    def _personalizer(self, run: _TaskRun, arm: str, policy: Policy | None) -> Personalizer:
        """The arm's granularity over the study's store."""
        granularity = _granularity(arm, policy, self.config.collaborative_members)
        return Personalizer(
            run.store,
            PersonalizerConfig(
                task=run.spec.template,
                retriever=RetrieverConfig(
                    name=self.config.retriever,
                    k=self.config.k,
                    require_match=self.config.require_match,
                ),
                llm=self.config.llm,
                generation=run.options,
                max_prompt_tokens=self.config.max_prompt_tokens,
                max_item_tokens=self.config.max_item_tokens,
                encoder=self.config.encoder,
                granularity=granularity,
            ),
            llm=self.runner.llm,
            encoder=self.runner.encoder,
            loader=run.loader,
        )

    def _answer_arms(
        self,
        run: _TaskRun,
        split: str,
        cells: list[_Cell],
        arms: Sequence[str],
        progress: Progress,
        *,
        policy: Policy | None = None,
    ) -> tuple[list[ExampleRecord], list[dict[str, str]]]:
        """Every arm's answer to every cell, and the level each arm served each cell at."""
        task = run.task
        levels: list[dict[str, str]] = [{} for _ in cells]
        records = [
            ExampleRecord(cell.user_id, cell.example.user_id, cell.example.output or "", cell.items)
            for cell in cells
        ]
        for arm in arms:
            started, before = time.perf_counter(), self.runner.generator.generated
            personalizer = self._personalizer(run, arm, policy)
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
                run.options,
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
        key = fingerprint(
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
        )

        def build(store: Store) -> None:
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

        store = cached_store(
            self.runner.config.cache_path / "coldstart" / f"{task}-{key}.db", build
        )
        return store, _discovery_summary(store)


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
