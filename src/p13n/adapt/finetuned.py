"""Serving a fully fine-tuned model (``p13n.adapt.finetune``) where the ``Personalizer`` serves
adapters: the store's entry names the model's folder, which answers on the configured backend."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from p13n.adapt.adapters import check_base, find, require, weights
from p13n.adapt.base import BaseModelInfo, load_tokenizer, weights_sha256
from p13n.adapt.methods import FINETUNE
from p13n.errors import AdapterNotFoundError, ConfigError, LLMError
from p13n.llm import LLM, LLMConfig, converted_weights, generate_many, get_llm, local_weights
from p13n.llm.base import ChatMessage, ChoiceScorer, Completion, GenerationOptions, Tokenizer
from p13n.llm.hf import HFTokenizer
from p13n.store import Store, StoredAdapter


def serving_config(config: LLMConfig, folder: Path) -> LLMConfig:
    """The LLM config that answers with the model in ``folder`` on ``config``'s backend: the
    onnx runtime converts it (at the same precision); a torch backend loads it as ``hf``."""
    if config.backend in converted_weights:
        return config.model_copy(update={"path": str(folder)})
    if config.backend in local_weights:
        return LLMConfig(backend="hf", path=str(folder))
    raise ConfigError(
        f"a fine-tuned model runs on a local backend, not {config.backend!r}: use one of "
        f"{[*local_weights.names(), *converted_weights.names()]}"
    )


class FinetunedLLM:
    """Answers with the fine-tuned model a store entry names, on the configured backend: what
    the ``Personalizer`` serves a ``finetune`` method with. ``activate`` loads the entry's model
    (the last two are kept loaded); the model's name is its folder's, so caches keyed on it
    never mix its answers with the base model's."""

    supports_streaming: ClassVar[bool] = True

    def __init__(self, base: BaseModelInfo, config: LLMConfig, *, keep: int = 2) -> None:
        self.base = base
        self._config = config
        self._lock = threading.RLock()
        self._loaded: OrderedDict[str, LLM] = OrderedDict()
        self._keep = keep
        self._active: LLM | None = None
        self._tokenizer: Tokenizer = HFTokenizer(load_tokenizer(base.path), base.name)

    @property
    def backend(self) -> str:
        return self._config.backend

    @property
    def model(self) -> str:
        return self._active.model if self._active is not None else self.base.name

    @property
    def context_window(self) -> int:
        return self._active.context_window if self._active is not None else 2048

    @property
    def tokenizer(self) -> Tokenizer:
        return self._active.tokenizer if self._active is not None else self._tokenizer

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def activate(self, store: Store, entry: StoredAdapter) -> float:
        """Make ``entry``'s model the one that answers; the milliseconds it took (loading it
        the first time, checked against the sha256 its manifest records)."""
        started = time.perf_counter()
        check_base(entry, self.base)
        manifest = json.loads(weights(store, entry))
        with self._lock:
            llm = self._loaded.get(entry.weights_sha256)
            if llm is None:
                llm = get_llm(serving_config(self._config, _checked_folder(entry, manifest)))
                self._loaded[entry.weights_sha256] = llm
                while len(self._loaded) > self._keep:
                    self._loaded.popitem(last=False)
            self._loaded.move_to_end(entry.weights_sha256)
            self._active = llm
        return (time.perf_counter() - started) * 1000

    def use_prefix(self, prefix: Any) -> None:
        raise ConfigError("a fine-tuned model takes no soft tokens")

    def deactivate(self) -> None:
        with self._lock:
            self._active = None

    def unload(self, entry: StoredAdapter) -> bool:
        with self._lock:
            return self._loaded.pop(entry.weights_sha256, None) is not None

    def _answering(self) -> LLM:
        if self._active is None:
            raise LLMError("no fine-tuned model is active: activate a store entry first")
        return self._active

    def generate(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Completion:
        return self._answering().generate(messages, options)

    def generate_batch(
        self, prompts: Sequence[Sequence[ChatMessage]], options: GenerationOptions
    ) -> list[Completion]:
        return generate_many(self._answering(), prompts, options)

    def stream(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Iterator[str]:
        return self._answering().stream(messages, options)

    def score_choices(self, messages: Sequence[ChatMessage], choices: Sequence[str]) -> list[float]:
        llm = self._answering()
        if not isinstance(llm, ChoiceScorer):
            raise LLMError(f"the {llm.backend} backend cannot score choices")
        return llm.score_choices(messages, choices)


def _checked_folder(entry: StoredAdapter, manifest: dict[str, Any]) -> Path:
    folder = Path(manifest["path"])
    if not (folder / "config.json").exists():
        raise AdapterNotFoundError(
            f"fine-tuned model {entry.adapter_id!r}: its folder {str(folder)!r} is gone; "
            "fine-tune it again"
        )
    if weights_sha256(folder) != manifest["weights_sha256"]:
        raise ConfigError(
            f"fine-tuned model {entry.adapter_id!r}: the weights in {str(folder)!r} are not "
            "the ones registered; fine-tune it again"
        )
    return folder


def finetuned_entry(store: Store, user_id: str, task: str, base: BaseModelInfo) -> StoredAdapter:
    """The fine-tuned model that serves ``user_id`` on ``task``: their persona's, when one of
    their personas has one, else the tenant's (an ``AdapterNotFoundError`` when neither has)."""
    for persona in store.personas_of(user_id):
        entry = find(store, "persona", persona, task, FINETUNE)
        if entry is not None:
            check_base(entry, base)
            return entry
    return require(store, "tenant", store.tenant, task, FINETUNE, base)
