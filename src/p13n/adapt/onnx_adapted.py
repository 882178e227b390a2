"""Users' LoRA adapters on the ``onnx`` fast path: ``OnnxAdaptedLLM``, the ``Adaptable`` that
serves them through ONNX Runtime GenAI's multi-LoRA (``p13n.llm.onnx_lora``)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from p13n.adapt import methods
from p13n.adapt.adapters import check_base, weights
from p13n.adapt.base import BaseModelInfo
from p13n.adapt.lora import LoraShape
from p13n.errors import AdapterMismatchError, ConfigError, LLMError
from p13n.llm import LLM, LLMConfig, Tokenizer, get_llm
from p13n.llm.base import ChatMessage, Completion, GenerationOptions
from p13n.store import Store, StoredAdapter

if TYPE_CHECKING:
    from p13n.llm.onnx import OnnxLLM
    from p13n.llm.onnx_lora import OnnxLoraLLM


class OnnxAdaptedLLM:
    """Users' LoRA adapters on the ``onnx`` fast path (``p13n.llm.onnx_lora``): each adapter is
    converted in memory to the runtime's format on first use and kept loaded (the newest
    ``cache_size``), and the active one is set on every generator, so swapping is a dictionary
    lookup. Plain answers run on the backend's plain model until an adapter is first activated;
    the LoRA-ready copy, built then for that adapter's target modules, computes exactly the base
    model when none is active. Soft tokens need torch and are refused."""

    backend = "onnx"
    supports_streaming: ClassVar[bool] = True

    def __init__(
        self,
        base: BaseModelInfo,
        config: LLMConfig,
        *,
        plain: LLM | None = None,
        cache_size: int = 8,
    ) -> None:
        from p13n.llm.onnx import OnnxLLM

        self.base = base
        self.config = config
        same = (
            isinstance(plain, OnnxLLM)
            and plain.source == base.path.expanduser().resolve()
            and plain.precision == config.precision
        )
        plain = plain if same else get_llm(config)
        if not isinstance(plain, OnnxLLM):
            raise ConfigError(f"backend {config.backend!r} does not run ONNX Runtime GenAI")
        self._plain = plain
        self._lora: OnnxLoraLLM | None = None
        self._cache_size = cache_size
        self._active: StoredAdapter | None = None
        self._lock = threading.RLock()

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    @property
    def active(self) -> StoredAdapter | None:
        return self._active

    @property
    def answering(self) -> OnnxLLM:
        """The model answering now: the LoRA-ready one while an adapter is active."""
        return self._lora if self._active is not None and self._lora is not None else self._plain

    @property
    def model(self) -> str:
        if self._active is not None:
            weights = self._active.weights_sha256[:12]
            return f"{self._plain.model}+{self._active.method}:{weights}"
        return self._plain.model

    @property
    def context_window(self) -> int:
        return self._plain.context_window

    @property
    def tokenizer(self) -> Tokenizer:
        return self._plain.tokenizer

    def activate(self, store: Store, entry: StoredAdapter) -> float:
        from safetensors.numpy import load

        from p13n.llm.onnx_lora import OnnxLoraLLM

        started = time.perf_counter()
        check_base(entry, self.base)
        if methods.get(entry.method).weights != "lora":
            raise LLMError(
                f"adapter {entry.adapter_id!r} is a {entry.method}, which needs the model's torch "
                "weights: the 'onnx' backend serves LoRA adapters only"
            )
        shape = LoraShape.of(entry.config)
        targets = tuple(sorted(shape.target_modules))
        with self._lock:
            if self._lora is None:
                self._lora = OnnxLoraLLM(
                    self.base.path,
                    targets=targets,
                    model_name=self.base.name,
                    precision=self.config.precision,
                    capacity=self._cache_size,
                )
            elif self._lora.targets != targets:
                raise AdapterMismatchError(
                    f"adapter {entry.adapter_id!r} targets {list(targets)}, the loaded LoRA-ready "
                    f"model {list(self._lora.targets)}: serve adapters of one shape per process"
                )
            key = entry.weights_sha256
            if not self._lora.holds(key):
                state = load(weights(store, entry))
                self._lora.load_adapter(key, state, shape.alpha / shape.rank)
            self._lora.use(key)
            self._active = entry
        return (time.perf_counter() - started) * 1000

    def use_prefix(self, prefix: Any) -> None:
        raise LLMError(
            "soft tokens need the model's torch weights: the 'onnx' backend serves LoRA "
            "adapters only; use backend 'embedded' for the user embedding"
        )

    def deactivate(self) -> None:
        with self._lock:
            self._active = None
            if self._lora is not None:
                self._lora.use(None)

    def unload(self, entry: StoredAdapter) -> bool:
        with self._lock:
            if self._active is not None and self._active.adapter_id == entry.adapter_id:
                self.deactivate()
            return self._lora is not None and self._lora.unload_adapter(entry.weights_sha256)

    def generate(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Completion:
        with self._lock:
            completion = self.answering.generate(messages, options)
            return dataclasses.replace(completion, model=self.model)

    def stream(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Iterator[str]:
        with self._lock:
            yield from self.answering.stream(messages, options)

    def generate_batch(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        options: GenerationOptions,
        *,
        batch_size: int = 8,
    ) -> list[Completion]:
        with self._lock:
            result: list[Completion] = self.answering.generate_batch(
                conversations, options, batch_size=batch_size
            )
            return [dataclasses.replace(c, model=self.model) for c in result]

    def score_choices(self, messages: Sequence[ChatMessage], choices: Sequence[str]) -> list[float]:
        with self._lock:
            scores: list[float] = self.answering.score_choices(messages, choices)
            return scores
