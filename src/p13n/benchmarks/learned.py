"""Learned-user arms of the benchmark runner: per-user LoRA (alone and with retrieval), per-user
DPO and the user embedding, trained on demand, their training cost recorded beside the scores.

Adapters are registered in the runner's cached store of the split, stamped with the data version
and settings they were trained from: a rerun reuses current ones and retrains stale ones. The
projector is trained on the task's train split (other examples than those evaluated) and then
registered in the split's store as the tenant's, where the ``Personalizer`` looks for it: every
learned arm answers through ``Personalizer.complete``, as the service does."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel
from rich.progress import Progress

from p13n.adapt.adapters import find, is_current, register, weights
from p13n.adapt.base import (
    BaseModelInfo,
    TrainingExample,
    base_model,
    examples_from_documents,
    require_examples,
)
from p13n.adapt.dpo import Pair, train_dpo
from p13n.adapt.embedding import EmbeddingExample, ProjectorTrainer
from p13n.adapt.embedding import pool_history as pool
from p13n.adapt.lora import LoraTrainer
from p13n.adapt.methods import FINETUNE, STEERING_VECTOR
from p13n.adapt.methods import get as get_method
from p13n.adapt.runtime import Adaptable, adapted_llm
from p13n.adapt.train import train_task_finetune, train_user_lora, train_user_steering_vector
from p13n.benchmarks.config import AdaptSettings
from p13n.benchmarks.results import SplitRun, TrainingCost
from p13n.benchmarks.stores import split_store
from p13n.datasets.lamp import LampExample, TaskSpec, profile_text
from p13n.datasets.lamp import read_split as read_lamp_split
from p13n.encode import Encoder
from p13n.errors import ConfigError, InsufficientDataError
from p13n.llm import GenerationOptions, LLMConfig
from p13n.llm.cache import CachedAnswer, CachedLLM, GenerationCache
from p13n.llm.hf import HFLLM
from p13n.personalize import Personalizer, PreparedPrompt
from p13n.prompt import NON_PERSONALIZED, templates
from p13n.store import Store, StoredAdapter


class CachedAdaptedLLM(CachedLLM):
    """The adapted model answering through the generation cache. The ``Personalizer`` is given
    it as its adapted model: it swaps a user's adapter (or soft tokens) in, and the answer comes
    from the cache when this prompt was answered with those weights before (the model's name,
    in the key, names the active adapter or soft prompt)."""

    def __init__(
        self, adapted: Adaptable, cache: GenerationCache, *, choices: Sequence[str] | None
    ) -> None:
        super().__init__(adapted, cache, choices=choices)
        self.adapted = adapted

    @property
    def base(self) -> BaseModelInfo:
        return self.adapted.base

    @property
    def lock(self) -> threading.RLock:
        return self.adapted.lock

    def activate(self, store: Store, entry: StoredAdapter) -> float:
        return self.adapted.activate(store, entry)

    def use_prefix(self, prefix: Any) -> None:
        self.adapted.use_prefix(prefix)

    def deactivate(self) -> None:
        self.adapted.deactivate()

    def unload(self, entry: StoredAdapter) -> bool:
        return self.adapted.unload(entry)


class AdapterArms:
    """Trains and runs the learned-user arms; the base model is loaded on first use."""

    def __init__(
        self, llm: LLMConfig, encoder: Encoder, settings: AdaptSettings, cache: GenerationCache
    ) -> None:
        self.llm_config, self.encoder, self.settings = llm, encoder, settings
        self.cache = cache
        self._base: BaseModelInfo | None = None
        self._trainer: LoraTrainer | None = None
        self._llm: Adaptable | None = None
        self._finetuned: Adaptable | None = None

    @property
    def base(self) -> BaseModelInfo:
        if self._base is None:
            # Adapters train in torch on the local weights the backend runs (the source folder
            # of an onnx conversion); the learned arms then answer on the backend itself.
            self._base = base_model(self.llm_config, torch=False)
        return self._base

    @property
    def llm(self) -> Adaptable:
        if self._llm is None:
            self._llm = adapted_llm(self.llm_config)
        return self._llm

    def answering(self, choices: Sequence[str] | None, method: str) -> CachedAdaptedLLM:
        """The model ``method`` answers with through the cache (a choice when ``choices``): the
        base model's adapter slot, or the fine-tuned model an entry names."""
        if get_method(method).weights != "model":
            return CachedAdaptedLLM(self.llm, self.cache, choices=choices)
        if self._finetuned is None:
            self._finetuned = adapted_llm(self.llm_config, method=method)
        return CachedAdaptedLLM(self._finetuned, self.cache, choices=choices)

    # -- training --------------------------------------------------------------------------------

    def train(
        self,
        run: SplitRun,
        method: str,
        progress: Progress,
        cost: TrainingCost,
        *,
        cache_path: Path,
        tolerant: bool,
    ) -> None:
        """What a learned arm answers with: each user's adapter, or the task's projector or
        fine-tuned model (trained on the train split, registered in this split's store as the
        tenant's). ``tolerant``: a user with too little data gets none (auto serves them its
        fallback)."""
        if method not in ("embedding", FINETUNE):
            self.user_adapters(
                method, run.store, run.examples, run.spec, progress, cost, tolerant=tolerant
            )
            return
        train_split = read_lamp_split(run.folder, "train")
        if method == FINETUNE:
            self.task_model(train_split.examples, run.spec, progress, cost, serve_from=run.store)
            return
        limit = self.settings.projector_examples
        train = [e for e in train_split.examples if e.output is not None][:limit]
        train_store, _ = split_store(
            cache_path, run.folder, train_split, train, self.encoder, progress
        )
        try:
            self.projector(train_store, train, run.spec, progress, cost, serve_from=run.store)
        finally:
            train_store.close()

    def task_model(
        self,
        train: Sequence[LampExample],
        spec: TaskSpec,
        progress: Progress,
        cost: TrainingCost,
        *,
        serve_from: Store,
    ) -> StoredAdapter:
        """The task's fully fine-tuned model (built once per recipe, in the cache), registered
        in ``serve_from`` as its tenant's."""
        bar = progress.add_task(f"{spec.name}: fine-tuning every weight", total=None)
        before = find(serve_from, "tenant", serve_from.tenant, spec.template, FINETUNE)
        entry = train_task_finetune(
            serve_from,
            train,
            spec.template,
            self.base,
            self.settings.finetune,
            progress=lambda done, total: progress.update(bar, completed=done, total=total),
        )
        progress.remove_task(bar)
        registered_now = before is None or before.created_at != entry.created_at
        cost.add(entry, fresh=registered_now and not entry.metrics.get("reused", False))
        return entry

    def user_adapters(
        self,
        method: str,
        store: Store,
        examples: Sequence[LampExample],
        spec: TaskSpec,
        progress: Progress,
        cost: TrainingCost,
        *,
        tolerant: bool = False,
    ) -> list[StoredAdapter]:
        """Each example's user's LoRA or DPO adapter or steering vector: the stored one when
        current, else one trained now. ``tolerant``: users with too little data to train one
        are left without (else that is an error)."""
        settings: BaseModel
        if method == "lora":
            settings, train = self.settings.lora, self._lora(store, spec)
        elif method == "dpo":
            settings, train = self.settings.dpo, self._dpo(store, spec)
        elif method == STEERING_VECTOR:
            settings, train = self.settings.steering_vector, self._vector(store, spec)
        else:
            raise ConfigError(f"no per-user {method!r} adapters: lora, dpo or {STEERING_VECTOR}")
        return self._per_user(
            method, settings, store, examples, spec, progress, cost, train, tolerant
        )

    def _per_user(
        self,
        method: str,
        settings: BaseModel,
        store: Store,
        examples: Sequence[LampExample],
        spec: TaskSpec,
        progress: Progress,
        cost: TrainingCost,
        train: Callable[[str, str], StoredAdapter],
        tolerant: bool,
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
                try:
                    entry = train(example.id, version)
                except InsufficientDataError:
                    if not tolerant:
                        raise
                    cost.untrained.append(example.id)
                    progress.advance(bar)
                    continue
            assert entry is not None
            cost.add(entry, fresh=fresh)
            entries.append(entry)
            progress.advance(bar)
        progress.remove_task(bar)
        return entries

    def _lora(self, store: Store, spec: TaskSpec) -> Callable[[str, str], StoredAdapter]:
        """Trains a user's LoRA adapter on their profile items."""

        def train(user_id: str, version: str) -> StoredAdapter:
            if self._trainer is None:
                self._trainer = LoraTrainer(self.base, self.settings.lora)
            return train_user_lora(store, user_id, spec.template, self._trainer)

        return train

    def _vector(self, store: Store, spec: TaskSpec) -> Callable[[str, str], StoredAdapter]:
        """Computes a user's steering vector on the adapted model's torch weights."""

        def train(user_id: str, version: str) -> StoredAdapter:
            llm = self.llm
            if not isinstance(llm, HFLLM):
                raise ConfigError(
                    f"{STEERING_VECTOR} needs the model's torch weights: set [bench.llm] "
                    "backend = 'embedded' (or 'hf')"
                )
            llm.deactivate()
            settings = self.settings.steering_vector
            return train_user_steering_vector(
                store, user_id, spec.template, llm, self.base, settings
            )

        return train

    def _dpo(self, store: Store, spec: TaskSpec) -> Callable[[str, str], StoredAdapter]:
        """Trains a user's DPO adapter. The user's preference pairs come from their own
        documents: for each, the output the user wrote (chosen) against the base model's
        answer to the same input (rejected); pairs where the two agree are dropped."""
        settings = self.settings.dpo

        def train(user_id: str, version: str) -> StoredAdapter:
            pairs = self._own_versus_base(store, user_id, spec)
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

        return train

    def _own_versus_base(self, store: Store, user_id: str, spec: TaskSpec) -> list[Pair]:
        llm = self.llm
        llm.deactivate()
        examples = examples_from_documents(
            store.documents(user_id, limit=self.settings.dpo_pairs),
            spec.template,
            llm.tokenizer,
            max_input_tokens=self.settings.dpo_input_tokens,
        )
        options = GenerationOptions(max_new_tokens=spec.max_new_tokens)
        answers = CachedLLM(llm, self.cache).generate_batch([e.prompt for e in examples], options)
        return [
            Pair(
                example.source_id,
                example.prompt[-1]["content"],
                example.answer,
                answer.text,
                messages=example.prompt,
            )
            for example, answer in zip(examples, answers, strict=True)
            if answer.text.strip().casefold() != example.answer.strip().casefold()
        ]

    def projector(
        self,
        train_store: Store,
        train: Sequence[LampExample],
        spec: TaskSpec,
        progress: Progress,
        cost: TrainingCost,
        *,
        serve_from: Store,
    ) -> StoredAdapter:
        """The task's projector, trained on ``train`` examples (registered in the train store
        when trained), then registered in ``serve_from`` as its tenant's, for the
        ``Personalizer`` to find."""
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
        served = serve_from.get_adapter(entry.adapter_id)
        if served is None or served.weights_sha256 != entry.weights_sha256:
            assert serve_from.tenant == train_store.tenant  # the adapter id names the tenant
            serve_from.put_adapter(entry, weights(train_store, entry))
        return entry

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

    # -- answering -------------------------------------------------------------------------------

    def answer(
        self,
        personalizer: Personalizer,
        model: CachedAdaptedLLM,
        prepared: Sequence[PreparedPrompt],
        cost: TrainingCost,
    ) -> list[CachedAnswer]:
        """Each prepared prompt answered by ``personalizer`` (configured with a learned method
        and given ``model`` as its adapted model), from the cache where it can; an adapter's
        swap time is added to ``cost``."""
        method = personalizer.config.adapter
        if method == "embedding" and model.choices is not None:
            raise ConfigError(
                "the embedding method generates from soft tokens; answer = 'likelihood' "
                "(choice scoring) is not supported for it"
            )
        fallback = personalizer.llm  # what answers users served the policy's fallback
        if not isinstance(fallback, CachedLLM):
            raise ConfigError("a learned arm's Personalizer answers through the generation cache")
        answers = []
        for prompt in prepared:
            generation = personalizer.complete(prompt)
            answered = fallback if prompt.trace.fallback is not None else model
            assert answered.last is not None  # complete() asked it once
            answers.append(answered.last)
            adapter = generation.trace.adapter
            if method != "embedding" and adapter is not None:
                cost.swap_ms.append(float(adapter["swap_ms"]))
        model.deactivate()
        return answers
