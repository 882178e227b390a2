"""Answering a benchmark's prompts: those not yet in the generation cache are generated here (one
at a time or in batches) or on a pool of Ray actors, each holding its own copy of the model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rich.progress import Progress

from p13n.benchmarks.config import BenchConfig
from p13n.llm import ChatMessage, GenerationOptions, LLMConfig, get_llm
from p13n.llm.cache import CachedAnswer, CachedGeneration, CachedLLM, answer_one


@dataclass(frozen=True)
class Job:
    """One prompt to answer, under its cache key."""

    key: str
    messages: tuple[ChatMessage, ...]
    options: GenerationOptions
    choices: tuple[str, ...] | None = None


class Generator:
    """Runs the LLM on prompts not yet in the cache: here, or on a pool of Ray actors."""

    def __init__(self, llm: CachedLLM, config: BenchConfig) -> None:
        self.llm, self.config = llm, config
        self._pool: Any = None
        self._actors: list[Any] = []
        self._started_ray = False
        self.generated = 0
        self.reused = 0

    def count(self, answers: Sequence[CachedAnswer]) -> None:
        """Add answers made elsewhere (a learned arm's, through the Personalizer) to the tally."""
        made = sum(answer.fresh for answer in answers)
        self.generated += made
        self.reused += len(answers) - made

    def job(
        self,
        messages: Sequence[ChatMessage],
        options: GenerationOptions,
        choices: tuple[str, ...] | None,
    ) -> Job:
        return Job(self.llm.key(messages, options, choices), tuple(messages), options, choices)

    def run(self, jobs: Sequence[Job], progress: Progress, label: str) -> set[str]:
        """Answer the jobs not in the cache; returns the keys answered now."""
        todo: dict[str, Job] = {}
        for job in jobs:
            if job.key in todo or self.llm.cached(job.key) is not None:
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
                self.llm.answer(job.messages, job.options, job.choices)
                self.generated += 1
                progress.advance(bar)
        progress.remove_task(bar)
        return set(todo)

    def _run_batched(self, jobs: list[Job], progress: Progress, bar: Any) -> None:
        """Free generation in batches (``generate_many``); choice scoring stays one by one."""
        size = self.config.batch_size
        for start in range(0, len(jobs), size * 4):  # a few batches per step: the bar moves
            group = jobs[start : start + size * 4]
            free = [job for job in group if job.choices is None]
            for job in group:
                if job.choices is not None:
                    self.llm.answer(job.messages, job.options, job.choices)
            by_options: dict[str, list[Job]] = {}
            for job in free:
                by_options.setdefault(job.options.model_dump_json(), []).append(job)
            for same in by_options.values():
                self.llm.generate_batch(
                    [job.messages for job in same], same[0].options, batch_size=size
                )
            self.generated += len(group)
            progress.advance(bar, len(group))

    def _run_on_ray(self, jobs: list[Job], progress: Progress, bar: Any) -> None:
        pool = self._ray_pool()
        pending: list[Any] = [
            (job.key, job.messages, job.options.model_dump_json(), job.choices) for job in jobs
        ]
        for key, generation in pool.map_unordered(lambda a, job: a.generate.remote(*job), pending):
            self.llm.keep(key, CachedGeneration(**generation))
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
            actor = ray.remote(num_cpus=1)(LLMActor)
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


class LLMActor:
    """A Ray worker holding one copy of the model (one torch thread: workers share the cores)."""

    def __init__(self, llm_config: str) -> None:
        import torch

        torch.set_num_threads(1)
        self.llm = get_llm(LLMConfig.model_validate_json(llm_config))

    def generate(
        self, key: str, messages: Sequence[ChatMessage], options: str, choices: Sequence[str] | None
    ) -> tuple[str, dict[str, Any]]:
        parsed = GenerationOptions.model_validate_json(options)
        result = answer_one(self.llm, messages, parsed, choices)
        return key, asdict(result)
