"""The benchmark runner: every method side by side on identical examples of LaMP-format tasks.

For each task split, each example's profile becomes one user in a SQLite store (built once and
kept in the cache), each method ("arm": a method and a k) prepares its prompt through the real
``Personalizer``, and the model answers every prompt not already in the generation cache. Scores
come from ``p13n.evaluate.metrics``; ``score_task`` adds bootstrap intervals and the paired test
against the non-personalized baseline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from p13n.adapt.runtime import Adaptable
from p13n.benchmarks.config import AUTO, BASELINE, Arm, BenchConfig, methods
from p13n.benchmarks.generation import Generator
from p13n.benchmarks.label_answers import LabelAnswers
from p13n.benchmarks.learned import AdapterArms, CachedAdaptedLLM
from p13n.benchmarks.policy import candidates, label_variants, learn_policy
from p13n.benchmarks.refined import add_task_cost, add_user_costs, task_advice
from p13n.benchmarks.results import (
    BenchResult,
    ExampleRecord,
    SplitRun,
    TaskResult,
    TrainingCost,
    arm_output,
    derangement,
)
from p13n.benchmarks.scoring import (
    metrics_for_task,
    primary_metric,
    score_task,
    select_k,
    task_file_names,
)
from p13n.benchmarks.stores import split_store
from p13n.datasets.lamp import LampExample, LampSplit, TaskSpec
from p13n.datasets.lamp import read_split as read_lamp_split
from p13n.datasets.task_file import TASK_FILE, read_task_file
from p13n.encode import Encoder, get_encoder
from p13n.errors import ConfigError
from p13n.llm import LLM, ChoiceScorer, GenerationOptions, get_llm
from p13n.llm.cache import CachedLLM, GenerationCache
from p13n.personalize import Personalizer, PersonalizerConfig, Policy, PreparedPrompt, save_policy
from p13n.prompt import builders, task_template, templates
from p13n.retrieve import CorpusLoader, RetrieverConfig
from p13n.store import Store


class BenchRunner:
    """Runs a ``BenchConfig``; ``llm`` and ``encoder`` may be passed in to share them."""

    def __init__(
        self,
        config: BenchConfig,
        *,
        llm: LLM | None = None,
        encoder: Encoder | None = None,
        console: Console | None = None,
    ) -> None:
        self.config = config
        self.console = console or Console(stderr=True)
        if llm is not None and llm.backend != config.llm.backend:
            # Ray workers and the learned arms build their model from config.llm.
            raise ConfigError(
                f"the runner was given a {llm.backend!r} model but its config names backend "
                f"{config.llm.backend!r}: set [bench.llm] to the model given"
            )
        self.llm = llm or get_llm(config.llm)
        self._encoder = encoder
        self.cache = GenerationCache(config.cache_path / "generations.sqlite")
        self.generator = Generator(CachedLLM(self.llm, self.cache), config)
        self.labels = LabelAnswers(config, self.generator, lambda: self.learned)
        self._learned: AdapterArms | None = None

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = get_encoder(self.config.encoder)
        return self._encoder

    @property
    def learned(self) -> AdapterArms:
        if self._learned is None:
            self._learned = AdapterArms(
                self.config.llm, self.encoder, self.config.adapt, self.cache
            )
        return self._learned

    def run(self) -> BenchResult:
        results = []
        with self.progress_bars() as progress:
            for task in self.config.tasks:
                folder = self.task_folder(task)
                selected: dict[str, dict[str, Any]] = {}
                if self.config.select_k_on is not None:
                    dev = self._run_split(
                        folder,
                        task,
                        self.config.select_k_on,
                        self.config.select_limits.get(task, self.config.select_limit),
                        progress,
                        selecting=True,
                    )
                    selected = select_k(dev)
                policy = self._learn_policy(folder, task, progress)
                limit = self.config.limits.get(task, self.config.limit)
                result = self._run_split(
                    folder, task, self.config.split, limit, progress, policy=policy
                )
                result.selected_k = selected
                result.policy = policy.to_json() if policy else None
                results.append(result)
        return BenchResult(
            self.config,
            results,
            self.generator.generated,
            self.generator.reused,
            {"backend": self.llm.backend, "model": self.llm.model},
        )

    def _learn_policy(self, folder: Path, task: str, progress: Progress) -> Policy | None:
        """With ``auto``: every other candidate on dev, and the policy it supports."""
        if AUTO not in self.config.methods:
            return None
        limit = self.config.select_limits.get(task, self.config.select_limit)
        dev = self._run_split(folder, task, "dev", limit, progress, selecting=True)
        if len(dev.examples) < self.config.policy_dev_examples:
            raise ConfigError(
                f"task {task!r}: auto chooses on at least {self.config.policy_dev_examples} dev "
                f"examples (policy_dev_examples), and dev gives {len(dev.examples)}"
            )
        variants = candidates(self.config, self._choices(task, dev.spec) is not None)
        policy = learn_policy(dev, variants, self.config, self.llm.model)
        self.config.out.mkdir(parents=True, exist_ok=True)
        (self.config.out / f"policy-{task}.json").write_text(
            json.dumps(policy.to_json(), indent=2), encoding="utf-8"
        )
        self.console.print(f"{task}: auto chose {policy.choice!r} on dev", highlight=False)
        return policy

    def close(self) -> None:
        self.generator.close()
        self.cache.close()

    @contextmanager
    def progress_bars(self) -> Iterator[Progress]:
        """One transient rich progress display for a run's bars."""
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        ) as progress:
            yield progress

    def task_folder(self, task: str) -> Path:
        """The task's folder; a shipped task not built yet is built first when its sources are
        at hand (the data root, or the package for the demo task)."""
        from p13n.datasets.tasks import shipped_tasks, write_task

        folder = self.config.tasks_dir / task
        if (folder / TASK_FILE).exists():  # checked whole before any answer is generated
            task_template(read_task_file(folder / TASK_FILE, **task_file_names()))
        if (folder / "recipe.json").exists() or any(folder.glob("*_questions.json")):
            return folder
        if any(folder.glob("*/*_questions.json")):  # LaMP's release layout: dev/dev_questions.json
            return folder
        recipe = shipped_tasks.get(task) if task in shipped_tasks else None
        if recipe is None or (recipe.root == "data" and self.config.data is None):
            raise ConfigError(
                f"task {task!r} is not built in {self.config.tasks_dir}: run "
                f"`p13n tasks build {task} --data ../shared/data --out {self.config.tasks_dir}` "
                "or give the benchmark a data root"
            )
        self.console.print(f"building task {task} into {folder}")
        write_task(recipe, self.config.data, folder, templates=templates.names())
        return folder

    # -- one split --------------------------------------------------------------------------------

    def _run_split(
        self,
        folder: Path,
        task: str,
        split_name: str,
        limit: int | None,
        progress: Progress,
        *,
        selecting: bool = False,
        policy: Policy | None = None,
    ) -> TaskResult:
        """Every arm on one split; ``selecting``: a validation run for k or the policy (primary
        metric only); ``policy``: what the ``auto`` arm serves."""
        split = read_lamp_split(folder, split_name)
        examples = [
            e
            for e in split.examples
            if e.output is not None and len(e.profile) >= (self.config.min_profile or 0)
        ][:limit]
        if not examples:
            raise ConfigError(f"task {task!r} split {split_name!r} has no examples with golds")
        cache = self.config.cache_path
        store, skipped = split_store(cache, folder, split, examples, self.encoder, progress)
        arms = [arm for arm in self.config.arms() if not (selecting and arm.method == AUTO)]
        try:
            run = self._start(task, folder, split, examples, store, selecting=selecting)
            run.policy = policy
            for arm in arms:
                self._run_arm(run, arm, progress)
        finally:
            store.close()
        labels = [arm.label for arm in arms]
        if AUTO in self.config.methods:  # the label variants auto chose among, after their arm
            labels = [v.label for v in candidates(self.config, run.choices is not None)]
            labels += [] if selecting else [AUTO]
        result = TaskResult(
            task=task,
            split=split_name,
            spec=split.spec,
            arms=labels,
            examples=run.records,
            primary=primary_metric(split.spec),
            skipped_profile_items=skipped,
            training={name: cost.to_dict() for name, cost in run.training.items()},
        )
        task_metrics = metrics_for_task(split.spec, self.config, task)
        if selecting:
            task_metrics = [m for m in task_metrics if m.name == result.primary] or task_metrics[:1]
        score_task(result, task_metrics, self.config)
        return result

    def _start(
        self,
        task: str,
        folder: Path,
        split: LampSplit,
        examples: list[LampExample],
        store: Store,
        *,
        selecting: bool,
    ) -> SplitRun:
        """What every arm of the split shares."""
        spec = split.spec
        max_new = self.config.max_new_tokens.get(task, spec.max_new_tokens)
        loader = CorpusLoader(
            store,
            self.encoder,
            sources=RetrieverConfig().sources,
            cache_size=max(256, len(examples) + 1),
        )
        return SplitRun(
            task=task,
            folder=folder,
            split=split,
            examples=examples,
            store=store,
            loader=loader,
            options=GenerationOptions(max_new_tokens=max_new, seed=self.config.seed),
            choices=self._choices(task, spec),
            records=[
                ExampleRecord(e.id, e.user_id, e.output or "", len(e.profile), input=e.input)
                for e in examples
            ],
            partners=derangement(len(examples), self.config.seed),
            selecting=selecting,
        )

    def _run_arm(self, run: SplitRun, arm: Arm, progress: Progress) -> None:
        """One arm's prompts, answers (and profile-swap answers) for every example."""
        started, before = time.perf_counter(), self.generator.generated
        adapter: str | None = methods.get(arm.method).adapter
        if arm.method == AUTO:  # served from the store, as the service serves it
            assert run.policy is not None
            save_policy(run.store, run.policy)
            adapter = None if run.policy.adapter == "none" else run.policy.adapter
        model = self.learned.answering(run.choices, adapter) if adapter else None
        method = methods.get(arm.method)
        if method.task_advice and run.advice is None:
            refined = task_advice(run, CachedLLM(self.llm, self.cache), self.config.adapt)
            add_task_cost(run.training.setdefault(arm.method, TrainingCost(arm.method)), refined)
            run.advice = refined.advice
        personalizer = self._personalizer(run, arm, adapted=model)
        prepared = [
            personalizer.prepare(e.id, e.input, personalize=arm.method != BASELINE)
            for e in _tracked(progress, run.examples, f"{run.task}: prompts, {arm.label}")
        ]
        if builders.get(method.prompt).refined:
            add_user_costs(run.training.setdefault(arm.method, TrainingCost(arm.method)), prepared)
        if model is not None:
            assert adapter is not None
            cost = run.training.setdefault(arm.method, TrainingCost(arm.method))
            self.learned.train(
                run,
                adapter,
                progress,
                cost,
                cache_path=self.config.cache_path,
                tolerant=arm.method == AUTO,
            )
            self._answer_learned(run, arm, personalizer, model, prepared, cost)
        else:
            self.answer(
                run.records,
                prepared,
                run.options,
                run.choices,
                progress,
                f"{run.task}: {arm.label}",
                arm,
            )
        calibration, fusion = self.labels.reading(run, arm)
        if calibration != "none":
            self.labels.calibrate(
                run, arm, personalizer, model, prepared, progress, mode=calibration
            )
        if fusion:
            self.labels.fuse(run, arm.label, fusion)
        if run.choices is not None and AUTO in self.config.methods and arm.method != AUTO:
            variants = label_variants(self.config, arm)
            self.labels.variants(run, arm, personalizer, model, prepared, progress, variants)
        if self.config.swaps(arm) and len(run.examples) > 1 and not run.selecting:
            self._answer_swapped(run, arm, personalizer, model, progress)
        self.console.print(
            f"{run.task} {run.split.split}: {arm.label}: {len(run.examples)} examples, "
            f"{self.generator.generated - before} new answers, "
            f"{time.perf_counter() - started:.0f} s",
            highlight=False,
        )

    def _answer_learned(
        self,
        run: SplitRun,
        arm: Arm,
        personalizer: Personalizer,
        model: CachedAdaptedLLM,
        prepared: Sequence[PreparedPrompt],
        cost: TrainingCost,
        *,
        swapped: bool = False,
    ) -> None:
        """A learned arm's answers, one user at a time through the Personalizer (from the cache
        where it can); ``swapped``: as the profile-swap answers."""
        answers = self.learned.answer(personalizer, model, prepared, cost)
        for record, prompt, answer in zip(run.records, prepared, answers, strict=True):
            output = arm_output(answer.generation, prompt, cached=not answer.fresh)
            (record.swapped if swapped else record.outputs)[arm.label] = output
        self.generator.count(answers)

    def _answer_swapped(
        self,
        run: SplitRun,
        arm: Arm,
        personalizer: Personalizer,
        model: CachedAdaptedLLM | None,
        progress: Progress,
    ) -> None:
        """The arm again, each example answered with its partner's profile (and adapter)."""
        examples = run.examples
        swapped = [
            personalizer.prepare(examples[run.partners[i]].id, e.input)
            for i, e in enumerate(examples)
        ]
        if model is not None:
            cost = run.training.setdefault(arm.method, TrainingCost(arm.method))
            self._answer_learned(run, arm, personalizer, model, swapped, cost, swapped=True)
        else:
            label = f"{run.task}: swap {arm.label}"
            self.answer(
                run.records, swapped, run.options, run.choices, progress, label, arm, swapped=True
            )
        for i, record in enumerate(run.records):
            record.swapped_with = examples[run.partners[i]].id
        calibration, fusion = self.labels.reading(run, arm)
        if calibration != "none":
            self.labels.calibrate(
                run, arm, personalizer, model, swapped, progress, mode=calibration, swapped=True
            )
        if fusion:
            self.labels.fuse(run, arm.label, fusion, swapped=True)

    def _choices(self, task: str, spec: TaskSpec) -> tuple[str, ...] | None:
        """The labels to choose among, when this task's answers are chosen by likelihood."""
        if self.config.answer.get(task, "generate") == "generate":
            return None
        steered = [m for m in self.config.methods if methods.get(m).decoding != "standard"]
        if steered:
            raise ConfigError(
                f"task {task!r} is answered by likelihood, and {steered[0]!r} steers generated "
                "tokens: run decoding-time methods on generation tasks"
            )
        if not spec.labels:
            raise ConfigError(
                f"task {task!r}: answer = 'likelihood' needs a label or rating task with labels"
            )
        if not isinstance(self.llm, ChoiceScorer):
            raise ConfigError(
                f"task {task!r}: the {self.llm.backend} backend cannot score choices; "
                "use answer = 'generate'"
            )
        return spec.labels

    def _personalizer(
        self, run: SplitRun, arm: Arm, *, adapted: Adaptable | None = None
    ) -> Personalizer:
        """The arm's method over the split's store (a learned method: with ``adapted``)."""
        method = methods.get(arm.method)
        retriever = RetrieverConfig(
            name=method.retriever or "bm25",
            k=arm.k or 1,
            min_score=self.config.min_score,
            require_match=self.config.require_match,
        )
        config = PersonalizerConfig(
            task=run.spec.template,
            retriever=retriever,
            prompt=method.prompt,
            llm=self.config.llm,
            generation=run.options,
            max_prompt_tokens=self.config.max_prompt_tokens,
            max_item_tokens=self.config.max_item_tokens,
            encoder=self.config.encoder,
            adapter=method.adapter or "none",
            decoding=method.decoding,
            steering=arm.steering if arm.steering is not None else 1.0,
            policy="auto" if arm.method == AUTO else "fixed",
            refine=self.config.adapt.refine,
            advice=run.advice if method.task_advice else None,
        )
        # A learned arm answers through Personalizer.complete: its fallback answers (auto's,
        # for users without an adapter) come from the cache too.
        llm = self.llm if adapted is None else CachedLLM(self.llm, self.cache, choices=run.choices)
        return Personalizer(
            run.store,
            config,
            llm=llm,
            encoder=self.encoder,
            loader=run.loader,
            adapted=adapted,
        )

    def answer(
        self,
        records: list[ExampleRecord],
        prepared: Sequence[PreparedPrompt],
        options: GenerationOptions,
        choices: tuple[str, ...] | None,
        progress: Progress,
        label: str,
        arm: Arm,
        *,
        swapped: bool = False,
    ) -> None:
        """Answer the prepared prompts (from the cache where possible) and record each output
        under the arm's label (``swapped``: as the profile-swap answer)."""
        jobs = [
            self.generator.job(p.prompt.messages, p.options(options), choices) for p in prepared
        ]
        fresh = self.generator.run(jobs, progress, label)
        for record, job, p in zip(records, jobs, prepared, strict=True):
            cached = self.generator.llm.cached(job.key)
            assert cached is not None  # every job was just generated or found
            output = arm_output(cached, p, cached=job.key not in fresh)
            (record.swapped if swapped else record.outputs)[arm.label] = output


def _tracked(progress: Progress, items: Sequence[LampExample], label: str) -> Iterator[LampExample]:
    bar = progress.add_task(label, total=len(items))
    for item in items:
        yield item
        progress.advance(bar)
    progress.remove_task(bar)
