"""Training one adapter per user across many users on Ray (local by default, a cluster address
when given).

Each worker is an actor holding one copy of the base model; it opens the store itself, trains a
user and registers the adapter in one transaction, so an interrupted run leaves every finished
user's adapter whole and no half-written one. A rerun skips users whose stored adapter is current
(same data version and settings): the run is resumable."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from p13n.adapt import methods
from p13n.adapt.adapters import find, is_current
from p13n.adapt.base import base_model
from p13n.adapt.dpo import DpoSettings
from p13n.adapt.lora import LoraSettings, LoraTrainer
from p13n.adapt.methods import MethodName
from p13n.adapt.train import train_owner_dpo, train_user_lora
from p13n.errors import InsufficientDataError, P13nError
from p13n.llm import LLMConfig
from p13n.store import Store, open_store


@dataclass
class BatchReport:
    """What a batch did for each user."""

    trained: dict[str, dict[str, Any]] = field(default_factory=dict)
    """user → the adapter's metrics."""
    current: list[str] = field(default_factory=list)
    """Users skipped: their stored adapter is current."""
    failed: dict[str, str] = field(default_factory=dict)
    """user → why (e.g. too little data)."""


def _settings_for(method: MethodName, raw: dict[str, Any]) -> BaseModel:
    return methods.get(method).settings.model_validate(raw)


class _Worker:
    """One Ray actor: a base model (for LoRA, a trainer) and a store connection."""

    def __init__(
        self,
        store_url: str,
        tenant: str,
        llm: str,
        method: MethodName,
        settings: str,
        threads: int,
    ) -> None:
        import json

        import torch

        torch.set_num_threads(threads)
        self.store = open_store(store_url, tenant=tenant)
        # torch trains on the folder's weights; a conversion of them (onnx) serves the adapter
        self.base = base_model(LLMConfig.model_validate_json(llm), torch=False)
        self.method = method
        self.settings = _settings_for(method, json.loads(settings))
        self.trainer: Any = None

    def train(self, user_id: str, task: str, from_persona: str | None) -> tuple[str, Any, str]:
        try:
            if self.method == "lora":
                if self.trainer is None:
                    assert isinstance(self.settings, LoraSettings)
                    self.trainer = LoraTrainer(self.base, self.settings)
                entry = train_user_lora(
                    self.store, user_id, task, self.trainer, from_persona=from_persona
                )
            else:
                assert isinstance(self.settings, DpoSettings)
                entry = train_owner_dpo(
                    self.store,
                    "user",
                    user_id,
                    task,
                    self.base,
                    self.settings,
                    from_persona=from_persona,
                )
        except (InsufficientDataError, P13nError) as error:
            return user_id, None, str(error)
        return user_id, dict(entry.metrics), ""


def pending_users(
    store: Store, users: Sequence[str], task: str, method: MethodName, settings: Any
) -> tuple[list[str], list[str]]:
    """(users to train, users whose stored adapter is current)."""
    todo, current = [], []
    for user_id in users:
        version = store.data_version(user_id)
        entry = find(store, "user", user_id, task, method)
        if version is not None and is_current(entry, version, settings):
            current.append(user_id)
        else:
            todo.append(user_id)
    return todo, current


def train_users(
    store_url: str,
    tenant: str,
    users: Sequence[str],
    *,
    method: MethodName,
    task: str,
    settings: LoraSettings | DpoSettings,
    llm: LLMConfig | None = None,
    workers: int = 1,
    ray_address: str | None = None,
    from_persona: str | None = None,
    force: bool = False,
    on_done: Callable[[str, str], None] | None = None,
) -> BatchReport:
    """Train ``method`` adapters (one that ``methods`` says can be batch-trained) for ``users``
    on a pool of Ray actors; ``on_done(user, outcome)`` is called as each finishes (for a
    progress display)."""
    import ray
    from ray.util import ActorPool

    methods.check(method, purpose="batch")
    report = BatchReport()
    store = open_store(store_url, tenant=tenant)
    try:
        if force:
            todo = list(users)
        else:
            todo, report.current = pending_users(store, users, task, method, settings)
    finally:
        store.close()
    for user_id in report.current:
        if on_done is not None:
            on_done(user_id, "current")
    if not todo:
        return report
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=ray_address,
            num_cpus=None if ray_address else workers,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    threads = 1 if workers > 1 else 2
    actor = ray.remote(num_cpus=1)(_Worker)
    actors: list[Any] = [
        actor.remote(
            store_url,
            tenant,
            (llm or LLMConfig()).model_dump_json(),
            method,
            settings.model_dump_json(),
            threads,
        )
        for _ in range(min(workers, len(todo)))
    ]
    try:
        jobs = [(user_id, task, from_persona) for user_id in todo]
        for user_id, metrics, problem in ActorPool(actors).map_unordered(
            lambda worker, job: worker.train.remote(*job), jobs
        ):
            if problem:
                report.failed[user_id] = problem
            else:
                report.trained[user_id] = metrics
            if on_done is not None:
                on_done(user_id, "failed" if problem else "trained")
    finally:
        for worker in actors:  # each holds a model copy: free it, and its CPU for others
            ray.kill(worker)
        if started_here:  # a local Ray sized for this batch must not outlive it
            ray.shutdown()
    return report
