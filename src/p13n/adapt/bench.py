"""Learned-user arms of the benchmark runner: per-user LoRA (alone and with retrieval) and the
user embedding, trained on demand, their training cost recorded beside the scores.

Adapters are registered in the runner's cached store of the split, stamped with the data version
and settings they were trained from: a rerun reuses current ones and retrains stale ones. The
projector is trained on the task's train split (other examples than those evaluated)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from rich.progress import Progress

from p13n.adapt.base import (
    BaseModelInfo,
    TrainingExample,
    base_model,
    examples_from_documents,
    require_examples,
)
from p13n.adapt.dpo import DpoSettings, Pair, train_dpo
from p13n.adapt.embedding import EmbeddingExample, EmbeddingSettings, Projector, ProjectorTrainer
from p13n.adapt.embedding import pool_history as pool
from p13n.adapt.lora import LoraSettings, LoraTrainer
from p13n.adapt.registry import find, is_current, register
from p13n.adapt.runtime import AdaptedLLM
from p13n.adapt.train import train_user_lora, user_history
from p13n.datasets.lamp import LampExample, TaskSpec, profile_text
from p13n.encode import Encoder
from p13n.errors import ConfigError
from p13n.evaluate.cache import CachedGeneration, GenerationCache, generation_key
from p13n.llm import GenerationOptions, LLMConfig
from p13n.prompt import NON_PERSONALIZED, templates
from p13n.store import Store, StoredAdapter


class AdaptSettings(BaseModel):
    """How the benchmark trains learned-user arms."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lora: LoraSettings = LoraSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    dpo: DpoSettings = DpoSettings(max_length=192)
    dpo_pairs: int = Field(
        16, ge=1, description="dpo: the user's newest documents made into preference pairs"
    )
    dpo_input_tokens: int = Field(96, ge=8, description="dpo: each document's text cut to this")
    projector_examples: int = Field(
        200, ge=1, description="train-split examples the projector is trained on"
    )


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

    def add(self, entry: StoredAdapter, *, fresh: bool) -> None:
        self.adapters += 1
        self.trained_now += int(fresh)
        self.train_seconds.append(float(entry.metrics.get("train_seconds", 0.0)))
        self.examples.append(entry.data_size)
        self.size_bytes.append(entry.size_bytes)

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
        }


Record = Callable[[int, CachedGeneration, bool], None]
"""Called with (example index, its answer, whether it was generated now)."""


class AdapterArms:
    """Trains and runs the learned-user arms; the base model is loaded on first use."""

    def __init__(self, llm: LLMConfig, encoder: Encoder, settings: AdaptSettings) -> None:
        self.llm_config, self.encoder, self.settings = llm, encoder, settings
        self._base: BaseModelInfo | None = None
        self._trainer: LoraTrainer | None = None
        self._llm: AdaptedLLM | None = None

    @property
    def base(self) -> BaseModelInfo:
        if self._base is None:
            self._base = base_model(self.llm_config)
        return self._base

    @property
    def llm(self) -> AdaptedLLM:
        if self._llm is None:
            self._llm = AdaptedLLM(self.base, backend=self.llm_config.backend)
        return self._llm

    def _per_user(
        self,
        method: Literal["lora", "dpo"],
        settings: BaseModel,
        store: Store,
        examples: Sequence[LampExample],
        spec: TaskSpec,
        progress: Progress,
        cost: TrainingCost,
        train: Callable[[str, str], StoredAdapter],
    ) -> list[StoredAdapter]:
        """Each example's user's adapter: the stored one when current, else ``train(user,
        data version)``'s."""
        bar = progress.add_task(f"{spec.name}: {method} adapters", total=len(examples))
        entries = []
        for example in examples:
            version = store.data_version(example.id)
            assert version is not None  # the runner stored every example's profile
            entry = find(store, "user", example.id, spec.template, method)
            fresh = not is_current(entry, version, settings)
            if fresh:
                entry = train(example.id, version)
            assert entry is not None
            cost.add(entry, fresh=fresh)
            entries.append(entry)
            progress.advance(bar)
        progress.remove_task(bar)
        return entries

    def user_adapters(
        self,
        store: Store,
        examples: Sequence[LampExample],
        spec: TaskSpec,
        progress: Progress,
        cost: TrainingCost,
    ) -> list[StoredAdapter]:
        """Each example's user's LoRA adapter, trained on their profile items."""

        def train(user_id: str, version: str) -> StoredAdapter:
            if self._trainer is None:
                self._trainer = LoraTrainer(self.base, self.settings.lora)
            return train_user_lora(store, user_id, spec.template, self._trainer)

        settings = self.settings.lora
        return self._per_user("lora", settings, store, examples, spec, progress, cost, train)

    def user_dpo_adapters(
        self,
        store: Store,
        examples: Sequence[LampExample],
        spec: TaskSpec,
        progress: Progress,
        cost: TrainingCost,
        cache: GenerationCache,
    ) -> list[StoredAdapter]:
        """Each example's user's DPO adapter. The user's preference pairs come from their own
        documents: for each, the output the user wrote (chosen) against the base model's
        answer to the same input (rejected); pairs where the two agree are dropped."""
        settings = self.settings.dpo

        def train(user_id: str, version: str) -> StoredAdapter:
            pairs = self._own_versus_base(store, user_id, spec, cache)
            require_examples(
                pairs,
                settings.min_pairs,
                owner=f"user {user_id!r}",
                task=spec.template,
                what="preference pairs (own output vs the base model's)",
            )
            return register(
                store,
                train_dpo(self.base, pairs, settings),
                data_version=version,
                settings=settings,
                kind="user",
                owner=user_id,
                task=spec.template,
                method="dpo",
                base=self.base,
            )

        return self._per_user("dpo", settings, store, examples, spec, progress, cost, train)

    def _own_versus_base(
        self, store: Store, user_id: str, spec: TaskSpec, cache: GenerationCache
    ) -> list[Pair]:
        from p13n.evaluate.runner import default_max_new_tokens

        llm = self.llm
        llm.deactivate()
        examples = examples_from_documents(
            store.documents(user_id, limit=self.settings.dpo_pairs),
            spec.template,
            llm.tokenizer,
            max_input_tokens=self.settings.dpo_input_tokens,
        )
        options = GenerationOptions(max_new_tokens=default_max_new_tokens(spec))
        keys = [generation_key(e.prompt, llm.backend, llm.model, options, None) for e in examples]
        missing = [n for n, key in enumerate(keys) if cache.get(key) is None]
        if missing:
            answers = llm.generate_batch([examples[n].prompt for n in missing], options)
            for n, answer in zip(missing, answers, strict=True):
                cache.put(keys[n], CachedGeneration.of(answer, 0.0))
        pairs = []
        for example, key in zip(examples, keys, strict=True):
            cached = cache.get(key)
            assert cached is not None
            if cached.text.strip().casefold() != example.answer.strip().casefold():
                pairs.append(
                    Pair(
                        example.source_id,
                        example.prompt[-1]["content"],
                        example.answer,
                        cached.text,
                        messages=example.prompt,
                    )
                )
        return pairs

    def projector(
        self,
        train_store: Store,
        train: Sequence[LampExample],
        spec: TaskSpec,
        progress: Progress,
        cost: TrainingCost,
    ) -> Projector:
        """The task's projector, trained on ``train`` examples (registered in the train store)."""
        settings = self.settings.embedding
        version = f"{len(train)}:{train[0].id}:{train[-1].id}" if train else ""
        entry = find(train_store, "tenant", train_store.tenant, spec.template, "embedding")
        fresh = not is_current(entry, version, settings)
        if fresh:
            examples = self._projector_examples(train, spec, progress)
            require_examples(
                examples,
                settings.min_examples,
                owner=f"task {spec.name!r} train split",
                task=spec.template,
                what="examples with a profile",
            )
            trainer = ProjectorTrainer(self.base, settings)
            bar = progress.add_task(f"{spec.name}: projector", total=None)
            _, trained = trainer.train(
                examples,
                encoder_id=self.encoder.id,
                progress=lambda done, total: progress.update(bar, completed=done, total=total),
            )
            progress.remove_task(bar)
            entry = register(
                train_store,
                trained,
                data_version=version,
                settings=settings,
                kind="tenant",
                owner=train_store.tenant,
                task=spec.template,
                method="embedding",
                base=self.base,
            )
        assert entry is not None
        cost.add(entry, fresh=fresh)
        blob = train_store.adapter_weights(entry.adapter_id)
        assert blob is not None
        return Projector.from_weights(blob, entry.config)

    def _projector_examples(
        self, train: Sequence[LampExample], spec: TaskSpec, progress: Progress
    ) -> list[EmbeddingExample]:
        settings = self.settings.embedding
        template = templates.get(spec.template)
        tokenizer = self.llm.tokenizer
        bar = progress.add_task(f"{spec.name}: projector examples", total=len(train))
        examples = []
        for example in train:
            texts = [t for t in (profile_text(item, spec) for item in example.profile) if t]
            if not texts or example.output is None:
                progress.advance(bar)
                continue
            history = np.asarray(self.encoder.encode(texts), dtype=np.float32)
            query = np.asarray(self.encoder.encode([example.input])[0], dtype=np.float32)
            text = tokenizer.truncate(example.input, settings.max_input_tokens)
            prompt = NON_PERSONALIZED.build(template, text, tokenizer, 1 << 30)
            examples.append(
                EmbeddingExample(
                    pool(history, query, settings.temperature),
                    TrainingExample(example.id, prompt.messages, example.output),
                )
            )
            progress.advance(bar)
        progress.remove_task(bar)
        return examples

    def answer_with_adapters(
        self,
        store: Store,
        adapters: Sequence[StoredAdapter],
        conversations: Sequence[Sequence[Any]],
        options: GenerationOptions,
        choices: tuple[str, ...] | None,
        cache: GenerationCache,
        cost: TrainingCost,
        record: Record,
    ) -> None:
        llm = self.llm
        for n, (entry, messages) in enumerate(zip(adapters, conversations, strict=True)):
            cost.swap_ms.append(llm.activate(store, entry))
            self._answer(n, messages, options, choices, cache, record)
        llm.deactivate()

    def answer_with_embeddings(
        self,
        store: Store,
        projector: Projector,
        examples: Sequence[LampExample],
        conversations: Sequence[Sequence[Any]],
        options: GenerationOptions,
        choices: tuple[str, ...] | None,
        cache: GenerationCache,
        record: Record,
    ) -> None:
        if choices is not None:
            raise ConfigError(
                "the embedding method generates from soft tokens; answer = 'likelihood' "
                "(choice scoring) is not supported for it"
            )
        llm = self.llm
        queries = self.encoder.encode([e.input for e in examples])
        for n, (example, messages) in enumerate(zip(examples, conversations, strict=True)):
            _, history = user_history(store, example.id, self.encoder)
            query = np.asarray(queries[n], dtype=np.float32)
            soft = projector.soft_tokens(pool(history, query, projector.settings.temperature))
            llm.use_prefix(soft)
            self._answer(n, messages, options, choices, cache, record)
        llm.deactivate()

    def _answer(
        self,
        n: int,
        messages: Sequence[Any],
        options: GenerationOptions,
        choices: tuple[str, ...] | None,
        cache: GenerationCache,
        record: Record,
    ) -> None:
        from p13n.evaluate.runner import _generate

        llm = self.llm
        key = generation_key(messages, llm.backend, llm.model, options, choices)
        cached = cache.get(key)
        fresh = cached is None
        if cached is None:
            cached = _generate(llm, messages, options, choices)
            cache.put(key, cached)
        record(n, cached, fresh)
