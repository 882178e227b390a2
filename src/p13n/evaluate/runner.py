"""The benchmark runner: every method side by side on identical examples of LaMP-format tasks.

For each task split, each example's profile becomes one user in a SQLite store (built once and
kept in the cache), each method ("arm": a method and a k) prepares its prompt through the real
``Personalizer``, and the model answers every prompt not already in the generation cache. Scores
come from ``p13n.evaluate.metrics``; ``summarize`` adds bootstrap intervals and the paired test
against the non-personalized baseline.
"""

from __future__ import annotations

import hashlib
import json
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from p13n.adapt.bench import AdapterArms, AdaptSettings, TrainingCost
from p13n.data import Document, User
from p13n.datasets import Sourced
from p13n.datasets.lamp import LampExample, LampSplit, TaskSpec, profile_text, profile_title
from p13n.datasets.lamp import read_split as read_lamp_split
from p13n.encode import DEFAULT_ENCODER, Encoder, get_encoder
from p13n.errors import ConfigError
from p13n.evaluate.cache import CachedGeneration, GenerationCache, generation_key
from p13n.evaluate.stats import (
    Interval,
    PairedComparison,
    bootstrap_corpus,
    bootstrap_mean,
    paired_corpus,
    paired_decomposable,
)
from p13n.ingest import ingest
from p13n.llm import LLM, ChoiceScorer, GenerationOptions, LLMConfig, get_llm
from p13n.llm.hf import generate_many
from p13n.paths import cache_dir
from p13n.personalize import Personalizer, PersonalizerConfig, PreparedPrompt
from p13n.registry import Registry
from p13n.retrieve import CorpusLoader, RetrieverConfig
from p13n.store import Store, open_store

STORE_FORMAT = 1
BASELINE = "none"
ConfigModel = TypeVar("ConfigModel", bound=BaseModel)


@dataclass(frozen=True)
class Method:
    """A personalization method the runner can evaluate: prompt builder + retriever."""

    name: str
    prompt: str
    retriever: str | None
    description: str
    adapter: Literal["lora", "dpo", "embedding"] | None = None
    """A learned-user method: the user's LoRA or DPO adapter, or their embedding as soft
    tokens."""

    @property
    def uses_k(self) -> bool:
        return self.retriever is not None


methods: Registry[Method] = Registry("benchmark method")
methods.register(
    BASELINE, Method(BASELINE, "none", None, "non-personalized: same template, no data")
)
for _name, _what in (
    ("bm25", "BM25 over the user's profile (the LaMP recipe)"),
    ("tfidf", "TF-IDF cosine over the profile"),
    ("dense", "all-MiniLM-L6-v2 cosine over the profile"),
    ("hybrid", "reciprocal rank fusion of BM25 and dense"),
    ("recency", "BM25 with time decay from the user's newest item"),
):
    methods.register(_name, Method(_name, "contextual", _name, _what))
methods.register(
    "profile",
    Method("profile", "profile", "bm25", "LLM-written profile summary + BM25-retrieved items"),
)
methods.register(
    "lora",
    Method("lora", "none", None, "per-user LoRA adapter (OPPU), no data in the prompt", "lora"),
)
methods.register(
    "lora-rag",
    Method(
        "lora-rag", "contextual", "bm25", "per-user LoRA adapter + BM25 items (OPPU + RAG)", "lora"
    ),
)
methods.register(
    "dpo",
    Method(
        "dpo",
        "none",
        None,
        "per-user DPO adapter: the user's own outputs preferred over the base model's",
        "dpo",
    ),
)
methods.register(
    "embedding",
    Method(
        "embedding",
        "none",
        None,
        "user embedding as soft tokens (Persona-Plug): projector trained on the train split",
        "embedding",
    ),
)


@dataclass(frozen=True)
class Arm:
    """One column of the comparison: a method at one k (the baseline has no k)."""

    method: str
    k: int | None

    @property
    def label(self) -> str:
        return self.method if self.k is None else f"{self.method} k={self.k}"


class BenchConfig(BaseModel):
    """A benchmark run: tasks, methods, k values, model; everything a rerun needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "bench"
    tasks: list[str] = Field(min_length=1)
    tasks_dir: Path = Path("tasks")
    data: Path | None = Field(
        None, description="data root: tasks missing from tasks_dir are built from it first"
    )
    split: Literal["train", "dev", "test"] = "test"
    limit: int | None = Field(None, gt=0, description="first N examples of each task split")
    limits: dict[str, PositiveInt] = Field(
        default_factory=dict, description="per task, overrides limit"
    )
    methods: list[str] = ["none", "bm25", "dense", "hybrid"]
    k: list[int] = [1, 4]
    llm: LLMConfig = LLMConfig()
    encoder: str = DEFAULT_ENCODER
    max_new_tokens: dict[str, int] = Field(
        default_factory=dict, description="per task; default by output kind"
    )
    max_item_tokens: int = Field(256, gt=0)
    max_prompt_tokens: int = Field(2048, gt=0)
    metrics: dict[str, list[str]] = Field(default_factory=dict, description="per task override")
    answer: dict[str, Literal["generate", "likelihood"]] = Field(
        default_factory=dict,
        description="per task: 'likelihood' picks the label the model finds most likely among the "
        "task's labels (label and rating tasks) instead of parsing generated text",
    )
    min_profile: int | None = Field(
        None, gt=0, description="only examples whose profile has at least N items (every arm)"
    )
    adapt: AdaptSettings = Field(
        default_factory=AdaptSettings, description="training of the lora, dpo and embedding methods"
    )
    seed: int = 0
    resamples: int = Field(1000, ge=100, description="bootstrap / randomization resamples")
    corpus_resamples: int = Field(
        200, ge=50, description="resamples for metrics that must be recomputed (BLEU, F1, RMSE)"
    )
    swap: list[str] = Field(
        default_factory=list,
        description="methods (or arms, e.g. 'bm25 k=4') also run with another user's profile",
    )
    select_k_on: Literal["dev"] | None = Field(
        None, description="run every k on this split too and report the k it picks per method"
    )
    select_limit: int | None = Field(None, gt=0)
    select_limits: dict[str, PositiveInt] = Field(default_factory=dict, description="per task")
    workers: int = Field(1, ge=1, description="> 1: generate in parallel on Ray")
    batch_size: int = Field(
        1,
        ge=1,
        description="> 1 (one worker): generate this many prompts per forward pass (greedy "
        "answers equal one-at-a-time ones up to float rounding; ~7x throughput on 2 cores)",
    )
    ray_address: str | None = None
    out: Path = Path("bench/out/run")
    cache: Path | None = Field(None, description="default: $P13N_CACHE_DIR/bench")

    @field_validator("methods", "swap")
    @classmethod
    def _known_methods(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name.partition(" k=")[0] not in methods]
        if unknown:
            raise ValueError(f"unknown method {unknown[0]!r}; known: {', '.join(methods.names())}")
        return value

    @field_validator("swap")
    @classmethod
    def _swap_needs_a_prompt(cls, value: list[str]) -> list[str]:
        learned = [name for name in value if methods.get(name.partition(" k=")[0]).adapter]
        if learned:
            raise ValueError(
                f"swap {learned[0]!r}: the profile swap exchanges prompts, which a learned-user "
                "method does not carry; swap a retrieval method"
            )
        return value

    @field_validator("k")
    @classmethod
    def _positive_k(cls, value: list[int]) -> list[int]:
        if not value or any(k < 1 for k in value):
            raise ValueError(f"k must be a non-empty list of positive integers, got {value}")
        return sorted(set(value))

    @property
    def cache_path(self) -> Path:
        return self.cache or cache_dir() / "bench"

    def arms(self) -> list[Arm]:
        """The baseline first (every comparison is against it), then each method at each k."""
        arms = [Arm(BASELINE, None)]
        for name in self.methods:
            if name == BASELINE:
                continue
            arms += (
                [Arm(name, k) for k in self.k] if methods.get(name).uses_k else [Arm(name, None)]
            )
        return arms


def load_bench_config(path: Path | None, **overrides: Any) -> BenchConfig:
    """A ``BenchConfig`` from a TOML file (its ``[bench]`` table or top level) and overrides."""
    return load_config(BenchConfig, path, "bench", "benchmark config", **overrides)


def load_config(
    model: type[ConfigModel], path: Path | None, table: str, what: str, **overrides: Any
) -> ConfigModel:
    """A config model from a TOML file (its ``[table]`` or top level) and overrides (``None``
    means not given); paths in the file are relative to the file."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such {what}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: not valid TOML ({error})") from None
        raw = dict(document.get(table, document))
        for key in ("tasks_dir", "data", "out", "cache"):
            if isinstance(raw.get(key), str):  # relative paths are relative to the config file
                raw[key] = str((path.parent / raw[key]).resolve())
    raw.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{what} {where}: {first['msg']}") from None


def default_max_new_tokens(spec: TaskSpec) -> int:
    """Room for the answer, by output kind: a label or a rating is short, a review is long."""
    if spec.output_kind == "rating":
        return 8
    if spec.output_kind == "label":
        return 16
    if spec.template.startswith("longlamp"):
        return 160
    if spec.template == "chat":
        return 48
    return 32


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


@dataclass
class ExampleRecord:
    id: str
    user_id: str | None
    reference: str
    profile_size: int
    outputs: dict[str, ArmOutput] = field(default_factory=dict)
    swapped: dict[str, ArmOutput] = field(default_factory=dict)
    swapped_with: str | None = None


@dataclass
class MetricSummary:
    name: str
    higher_is_better: bool
    description: str
    unavailable: str | None = None
    arms: dict[str, Interval] = field(default_factory=dict)
    versus_baseline: dict[str, PairedComparison] = field(default_factory=dict)


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
            "tasks": [_task_dict(task) for task in self.tasks],
        }


def _task_dict(task: TaskResult) -> dict[str, Any]:
    return {
        "task": task.task,
        "split": task.split,
        "spec": task.spec.to_dict(),
        "arms": task.arms,
        "primary": task.primary,
        "n": len(task.examples),
        "skipped_profile_items": task.skipped_profile_items,
        "metrics": {
            name: {
                "higher_is_better": m.higher_is_better,
                "description": m.description,
                "unavailable": m.unavailable,
                "arms": {arm: asdict(value) for arm, value in m.arms.items()},
                "versus_baseline": {arm: asdict(c) for arm, c in m.versus_baseline.items()},
            }
            for name, m in task.metrics.items()
        },
        "swap": task.swap,
        "selected_k": task.selected_k,
        "training": task.training,
        "examples": [asdict(example) for example in task.examples],
    }


# --- metrics (imported lazily: bert-score and nltk are heavy) -------------------------------


def metrics_for_task(spec: TaskSpec, config: BenchConfig, task: str) -> list[Any]:
    """The metrics a task is scored with: the config's override, else by its output kind."""
    from p13n.evaluate.metrics import metrics as metric_registry
    from p13n.evaluate.metrics import metrics_for

    if task in config.metrics:
        return [metric_registry.get(name) for name in config.metrics[task]]
    if spec.template == "chat":  # next-utterance tasks: ConvAI2's token F1, then ROUGE
        return [*metrics_for("dialogue"), *metrics_for("text")]
    return list(metrics_for(spec.output_kind, labels=spec.labels))


PRIMARY = {"text": "rouge-1", "label": "accuracy", "rating": "mae"}


# --- stores: one user per example ----------------------------------------------------------


def profile_records(split: LampSplit, examples: Sequence[LampExample]) -> tuple[list[Sourced], int]:
    """Each example as one user whose documents are its profile items; also how many items
    were skipped for having no text."""
    records: list[Sourced] = []
    skipped = 0
    spec = split.spec
    for example in examples:
        source = f"{split.spec.name}/{split.split}/{example.id}"
        records.append(Sourced(User(id=example.id), source))
        for n, item in enumerate(example.profile):
            text = profile_text(item, spec).strip()
            if not text:
                skipped += 1  # counted and reported: an item with no text cannot be retrieved
                continue
            date = item.get(spec.profile_date) if spec.profile_date else None
            records.append(
                Sourced(
                    Document.model_validate(
                        {
                            "id": f"{example.id}.{n}",
                            "user_id": example.id,
                            "kind": "profile",
                            "text": text,
                            "title": profile_title(item, spec) or None,
                            "timestamp": date or None,
                        }
                    ),
                    source,
                    n,
                )
            )
    return records, skipped


def _fingerprint(*parts: object) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:20]


# --- generation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    key: str
    messages: tuple[Any, ...]
    options: GenerationOptions
    choices: tuple[str, ...] | None = None


class _Generator:
    """Runs the LLM on prompts not yet in the cache: here, or on a pool of Ray actors."""

    def __init__(self, llm: LLM, config: BenchConfig, cache: GenerationCache) -> None:
        self.llm, self.config, self.cache = llm, config, cache
        self._pool: Any = None
        self._actors: list[Any] = []
        self._started_ray = False
        self.generated = 0
        self.reused = 0

    def run(self, jobs: Sequence[_Job], progress: Progress, label: str) -> set[str]:
        """Answer the jobs not in the cache; returns the keys answered now."""
        todo: dict[str, _Job] = {}
        for job in jobs:
            if job.key in todo or self.cache.get(job.key) is not None:
                self.reused += 1
            else:
                todo[job.key] = job
        if not todo:
            return set()
        bar = progress.add_task(label, total=len(todo))
        if self.config.workers > 1:
            self._run_on_ray(list(todo.values()), progress, bar)
        elif self.config.batch_size > 1:
            self._run_batched(list(todo.values()), progress, bar)
        else:
            for job in todo.values():
                self.cache.put(job.key, _generate(self.llm, job.messages, job.options, job.choices))
                self.generated += 1
                progress.advance(bar)
        progress.remove_task(bar)
        return set(todo)

    def _run_batched(self, jobs: list[_Job], progress: Progress, bar: Any) -> None:
        """Free generation in batches (``generate_many``); choice scoring stays one by one."""
        size = self.config.batch_size
        for start in range(0, len(jobs), size * 4):  # a few batches per step: the bar moves
            group = jobs[start : start + size * 4]
            free = [job for job in group if job.choices is None]
            for job in group:
                if job.choices is not None:
                    self.cache.put(
                        job.key, _generate(self.llm, job.messages, job.options, job.choices)
                    )
            by_options: dict[str, list[_Job]] = {}
            for job in free:
                by_options.setdefault(job.options.model_dump_json(), []).append(job)
            for same in by_options.values():
                started = time.perf_counter()
                completions = generate_many(
                    self.llm, [job.messages for job in same], same[0].options, batch_size=size
                )
                each_ms = (time.perf_counter() - started) * 1000 / len(same)
                for job, completion in zip(same, completions, strict=True):
                    self.cache.put(job.key, CachedGeneration.of(completion, each_ms))
            self.generated += len(group)
            progress.advance(bar, len(group))

    def _run_on_ray(self, jobs: list[_Job], progress: Progress, bar: Any) -> None:
        pool = self._ray_pool()
        pending: list[Any] = [
            (job.key, job.messages, job.options.model_dump_json(), job.choices) for job in jobs
        ]
        for key, generation in pool.map_unordered(lambda a, job: a.generate.remote(*job), pending):
            self.cache.put(key, CachedGeneration(**generation))
            self.generated += 1
            progress.advance(bar)

    def _ray_pool(self) -> Any:
        """One pool of model-holding actors for the whole run (each loads the model once)."""
        if self._pool is None:
            import ray
            from ray.util import ActorPool

            if not ray.is_initialized():
                ray.init(
                    address=self.config.ray_address,
                    num_cpus=None if self.config.ray_address else self.config.workers,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
                self._started_ray = True
            actor = ray.remote(num_cpus=1)(_LLMActor)
            llm = self.config.llm.model_dump_json()
            self._actors = [actor.remote(llm) for _ in range(self.config.workers)]
            self._pool = ActorPool(self._actors)
        return self._pool

    def close(self) -> None:
        """Free the actors (each holds a model copy and a CPU) and a local Ray started here."""
        if self._pool is None:
            return
        import ray

        for worker in self._actors:
            ray.kill(worker)
        self._pool, self._actors = None, []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False


def _generate(
    llm: LLM,
    messages: Sequence[Any],
    options: GenerationOptions,
    choices: Sequence[str] | None = None,
) -> CachedGeneration:
    started = time.perf_counter()
    if choices is not None:
        assert isinstance(llm, ChoiceScorer)  # checked when the task starts
        scores = llm.score_choices(list(messages), choices)
        best = max(range(len(choices)), key=lambda i: scores[i])  # first of equal scores
        return CachedGeneration(
            text=choices[best],
            prompt_tokens=llm.tokenizer.count_chat(list(messages)),
            completion_tokens=0,
            finish_reason="choice",
            model=llm.model,
            generate_ms=(time.perf_counter() - started) * 1000,
            choice_scores=scores,
        )
    completion = llm.generate(list(messages), options)
    return CachedGeneration.of(completion, (time.perf_counter() - started) * 1000)


class _LLMActor:
    """A Ray worker holding one copy of the model (one torch thread: workers share the cores)."""

    def __init__(self, llm_config: str) -> None:
        import torch

        torch.set_num_threads(1)
        self.llm = get_llm(LLMConfig.model_validate_json(llm_config))

    def generate(
        self, key: str, messages: Sequence[Any], options: str, choices: Sequence[str] | None
    ) -> tuple[str, dict[str, Any]]:
        parsed = GenerationOptions.model_validate_json(options)
        result = _generate(self.llm, messages, parsed, choices)
        return key, asdict(result)


# --- the runner ----------------------------------------------------------------------------


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
        self.llm = llm or get_llm(config.llm)
        self._encoder = encoder
        self.cache = GenerationCache(config.cache_path / "generations.sqlite")
        self.generator = _Generator(self.llm, config, self.cache)
        self._learned: AdapterArms | None = None

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = get_encoder(self.config.encoder)
        return self._encoder

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
                limit = self.config.limits.get(task, self.config.limit)
                result = self._run_split(folder, task, self.config.split, limit, progress)
                result.selected_k = selected
                results.append(result)
        return BenchResult(
            self.config,
            results,
            self.generator.generated,
            self.generator.reused,
            {"backend": self.llm.backend, "model": self.llm.model},
        )

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
        write_task(recipe, self.config.data, folder)
        return folder

    def _run_split(
        self,
        folder: Path,
        task: str,
        split_name: str,
        limit: int | None,
        progress: Progress,
        *,
        selecting: bool = False,
    ) -> TaskResult:
        """Every arm on one split; ``selecting``: a validation run for k (primary metric only)."""
        split = read_lamp_split(folder, split_name)
        examples = [
            e
            for e in split.examples
            if e.output is not None and len(e.profile) >= (self.config.min_profile or 0)
        ][:limit]
        if not examples:
            raise ConfigError(f"task {task!r} split {split_name!r} has no examples with golds")
        spec = split.spec
        store, skipped = self._store(folder, split, examples, progress)
        try:
            max_new = self.config.max_new_tokens.get(task, default_max_new_tokens(spec))
            options = GenerationOptions(max_new_tokens=max_new, seed=self.config.seed)
            choices = self._choices(task, spec)
            loader = CorpusLoader(
                store,
                self.encoder,
                sources=RetrieverConfig().sources,
                cache_size=max(256, len(examples) + 1),
            )
            arms = self.config.arms()
            records = [
                ExampleRecord(e.id, e.user_id, e.output or "", len(e.profile)) for e in examples
            ]
            partners = _derangement(len(examples), self.config.seed)
            training: dict[str, TrainingCost] = {}
            for arm in arms:
                started, before = time.perf_counter(), self.generator.generated
                personalizer = self._personalizer(store, loader, spec, arm, options)
                prepared = [
                    personalizer.prepare(e.id, e.input, personalize=arm.method != BASELINE)
                    for e in _tracked(progress, examples, f"{task}: prompts, {arm.label}")
                ]
                adapter = methods.get(arm.method).adapter
                if adapter is not None:
                    self._answer_learned(
                        adapter,
                        folder,
                        split,
                        store,
                        examples,
                        records,
                        prepared,
                        options,
                        choices,
                        progress,
                        arm,
                        training,
                    )
                else:
                    self.answer(
                        records, prepared, options, choices, progress, f"{task}: {arm.label}", arm
                    )
                swap = arm.method in self.config.swap or arm.label in self.config.swap
                if swap and len(examples) > 1 and not selecting:
                    swapped = [
                        personalizer.prepare(examples[partners[i]].id, e.input)
                        for i, e in enumerate(examples)
                    ]
                    self.answer(
                        records,
                        swapped,
                        options,
                        choices,
                        progress,
                        f"{task}: swap {arm.label}",
                        arm,
                        swapped=True,
                    )
                    for i, record in enumerate(records):
                        record.swapped_with = examples[partners[i]].id
                self.console.print(
                    f"{task} {split_name}: {arm.label}: {len(examples)} examples, "
                    f"{self.generator.generated - before} new answers, "
                    f"{time.perf_counter() - started:.0f} s",
                    highlight=False,
                )
        finally:
            store.close()
        result = TaskResult(
            task=task,
            split=split_name,
            spec=spec,
            arms=[arm.label for arm in arms],
            examples=records,
            primary="token-f1" if spec.template == "chat" else PRIMARY[spec.output_kind],
            skipped_profile_items=skipped,
            training={name: cost.to_dict() for name, cost in training.items()},
        )
        task_metrics = metrics_for_task(spec, self.config, task)
        if selecting:
            task_metrics = [m for m in task_metrics if m.name == result.primary] or task_metrics[:1]
        score_task(result, task_metrics, self.config)
        return result

    @property
    def learned(self) -> AdapterArms:
        if self._learned is None:
            self._learned = AdapterArms(self.config.llm, self.encoder, self.config.adapt)
        return self._learned

    def _answer_learned(
        self,
        adapter: str,
        folder: Path,
        split: LampSplit,
        store: Store,
        examples: Sequence[LampExample],
        records: list[ExampleRecord],
        prepared: Sequence[PreparedPrompt],
        options: GenerationOptions,
        choices: tuple[str, ...] | None,
        progress: Progress,
        arm: Arm,
        training: dict[str, TrainingCost],
    ) -> None:
        """A learned-user arm: train what is missing, then answer one user at a time."""
        learned = self.learned
        fresh_keys: list[bool] = [False] * len(prepared)

        def record(n: int, answer: CachedGeneration, fresh: bool) -> None:
            fresh_keys[n] = fresh
            records[n].outputs[arm.label] = _arm_output(answer, prepared[n], cached=not fresh)

        conversations = [p.prompt.messages for p in prepared]
        if adapter in ("lora", "dpo"):
            cost = training.setdefault(arm.method, TrainingCost(arm.method))
            if adapter == "lora":
                entries = learned.user_adapters(store, examples, split.spec, progress, cost)
            else:
                entries = learned.user_dpo_adapters(
                    store, examples, split.spec, progress, cost, self.cache
                )
            learned.answer_with_adapters(
                store, entries, conversations, options, choices, self.cache, cost, record
            )
        else:
            cost = training.setdefault(arm.method, TrainingCost(arm.method))
            train_split = read_lamp_split(folder, "train")
            limit = self.config.adapt.projector_examples
            train = [e for e in train_split.examples if e.output is not None][:limit]
            train_store, _ = self._store(folder, train_split, train, progress)
            try:
                projector = learned.projector(train_store, train, split.spec, progress, cost)
            finally:
                train_store.close()
            learned.answer_with_embeddings(
                store, projector, examples, conversations, options, choices, self.cache, record
            )
        made = sum(fresh_keys)
        self.generator.generated += made
        self.generator.reused += len(prepared) - made

    def _choices(self, task: str, spec: TaskSpec) -> tuple[str, ...] | None:
        """The labels to choose among, when this task's answers are chosen by likelihood."""
        if self.config.answer.get(task, "generate") == "generate":
            return None
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
        self,
        store: Store,
        loader: CorpusLoader,
        spec: TaskSpec,
        arm: Arm,
        options: GenerationOptions,
    ) -> Personalizer:
        method = methods.get(arm.method)
        retriever = RetrieverConfig(name=method.retriever or "bm25", k=arm.k or 1)
        config = PersonalizerConfig(
            task=spec.template,
            retriever=retriever,
            prompt=method.prompt,
            llm=self.config.llm,
            generation=options,
            max_prompt_tokens=self.config.max_prompt_tokens,
            max_item_tokens=self.config.max_item_tokens,
            encoder=self.config.encoder,
        )
        return Personalizer(store, config, llm=self.llm, encoder=self.encoder, loader=loader)

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
        keys = [
            generation_key(p.prompt.messages, self.llm.backend, self.llm.model, options, choices)
            for p in prepared
        ]
        jobs = [
            _Job(key, p.prompt.messages, options, choices)
            for key, p in zip(keys, prepared, strict=True)
        ]
        fresh = self.generator.run(jobs, progress, label)
        for record, key, p in zip(records, keys, prepared, strict=True):
            cached = self.cache.get(key)
            assert cached is not None  # every job was just generated or found
            output = _arm_output(cached, p, cached=key not in fresh)
            (record.swapped if swapped else record.outputs)[arm.label] = output

    def _store(
        self, folder: Path, split: LampSplit, examples: Sequence[LampExample], progress: Progress
    ) -> tuple[Store, int]:
        digest = questions_digest(folder, split.split)
        key = _fingerprint(
            STORE_FORMAT, digest, split.spec.to_dict(), [e.id for e in examples], self.encoder.id
        )
        path = self.config.cache_path / "stores" / f"{split.spec.name}-{split.split}-{key}.db"
        records, skipped = profile_records(split, examples)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial")
            partial.unlink(missing_ok=True)
            store = open_store(f"sqlite:///{partial}")
            bar = progress.add_task(f"{split.spec.name}: storing profiles", total=None)
            ingest(store, records, encoder=self.encoder)
            progress.remove_task(bar)
            store.close()
            partial.rename(path)  # only a complete store is ever reused
        return open_store(f"sqlite:///{path}"), skipped


def _arm_output(answer: CachedGeneration, prepared: PreparedPrompt, *, cached: bool) -> ArmOutput:
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


def questions_digest(folder: Path, split: str) -> str:
    """sha256 of a split's questions file (profiles and inputs): what a cached store holds."""
    questions = folder / f"{split}_questions.json"
    if not questions.exists():
        questions = folder / split / f"{split}_questions.json"
    return hashlib.sha256(questions.read_bytes()).hexdigest()


def _tracked(progress: Progress, items: Sequence[LampExample], label: str) -> Iterator[LampExample]:
    bar = progress.add_task(label, total=len(items))
    for item in items:
        yield item
        progress.advance(bar)
    progress.remove_task(bar)


def _derangement(n: int, seed: int) -> list[int]:
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


# --- scoring -------------------------------------------------------------------------------


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
