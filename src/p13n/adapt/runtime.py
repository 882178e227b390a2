"""Generation with learned users: LoRA adapters swapped in and out of one copy of the base model,
and soft tokens (a projected user embedding) prepended to the prompt.

Adapters of one shape share one PEFT slot: swapping a user in copies their LoRA tensors into the
slot (a few MB), so no module is rebuilt. Deserialized adapters are kept in a small LRU cache;
``unload`` drops one, ``deactivate`` returns the model to the plain base."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from p13n.adapt.base import BaseModelInfo, load_torch_model
from p13n.adapt.lora import LoraSettings, _lora_config, deserialize
from p13n.adapt.registry import AdapterMismatchError, check_base, weights
from p13n.errors import LLMError
from p13n.llm.base import ChatMessage, Completion, GenerationOptions
from p13n.llm.hf import HFLLM, HFTokenizer, _Loaded
from p13n.store import Store, StoredAdapter


class AdaptedLLM(HFLLM):
    """The base model with a user's adapter or soft prompt, usable wherever an ``LLM`` is.

    ``model`` names the active adapter (``SmolLM2-135M-Instruct+lora:<sha256 prefix>``) so that
    caches keyed on the model never mix a user's answers with the base model's."""

    backend = "embedded"
    supports_streaming: ClassVar[bool] = True

    def __init__(self, base: BaseModelInfo, *, backend: str = "embedded", cache_size: int = 8):
        from peft import get_peft_model

        from p13n.adapt.base import load_tokenizer

        self.base = base
        self.backend = backend
        self.path = base.path
        tokenizer = load_tokenizer(base.path)
        self._plain = load_torch_model(base.path)
        self._peft: Any = None
        self._get_peft_model = get_peft_model
        self._loaded = _Loaded(self._plain, tokenizer)
        self.tokenizer = HFTokenizer(tokenizer, base.name)
        self.context_window = int(getattr(self._plain.config, "max_position_embeddings", 2048))
        self._shape: dict[str, Any] | None = None
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size
        self._active: StoredAdapter | None = None
        self._in_slot: str | None = None  # sha256 of the weights the LoRA slot holds
        self._prefix: Any = None
        self._prefix_id = ""
        self._lock = threading.RLock()

    @property
    def model(self) -> str:  # type: ignore[override]
        if self._active is not None:
            return f"{self.base.name}+{self._active.method}:{self._active.weights_sha256[:12]}"
        if self._prefix is not None:
            return f"{self.base.name}+soft:{self._prefix_id}"
        return self.base.name

    @property
    def lock(self) -> threading.RLock:
        """Held across a swap and the generation that uses it (re-entrant)."""
        return self._lock

    @property
    def active(self) -> StoredAdapter | None:
        return self._active

    def activate(self, store: Store, entry: StoredAdapter) -> float:
        """Swap ``entry``'s LoRA weights in (from the cache, or read from the store); returns
        the milliseconds the swap took."""
        import torch
        from peft import set_peft_model_state_dict

        started = time.perf_counter()
        check_base(entry, self.base)
        with self._lock:
            state = self._cache.get(entry.weights_sha256)
            if state is None:
                state = deserialize(weights(store, entry))
                self._cache[entry.weights_sha256] = state
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(entry.weights_sha256)
            self._ensure_slot(entry)
            with torch.no_grad():
                result: Any = set_peft_model_state_dict(self._peft, state)
            if result.unexpected_keys:
                raise AdapterMismatchError(
                    f"adapter {entry.adapter_id!r} does not fit the loaded LoRA slot: "
                    f"unexpected {result.unexpected_keys[:3]}"
                )
            self._active, self._prefix, self._prefix_id = entry, None, ""
            self._in_slot = entry.weights_sha256
            self._loaded = _Loaded(self._peft, self._loaded.tokenizer)
        return (time.perf_counter() - started) * 1000

    def _ensure_slot(self, entry: StoredAdapter) -> None:
        shape = LoraSettings.model_validate(
            {k: v for k, v in entry.config.items() if k in LoraSettings.model_fields}
        )
        wanted = shape.shape()
        if self._peft is None:
            self._peft = self._get_peft_model(self._plain, _lora_config(shape))
            self._peft.eval()
            self._shape = wanted
        elif wanted != self._shape:
            raise AdapterMismatchError(
                f"adapter {entry.adapter_id!r} has LoRA shape {wanted}, the loaded slot "
                f"{self._shape}: serve adapters of one shape per process"
            )

    def deactivate(self) -> None:
        """Back to the plain base model (no adapter, no soft prompt)."""
        with self._lock:
            self._active, self._prefix, self._prefix_id = None, None, ""
            self._loaded = _Loaded(self._plain, self._loaded.tokenizer)

    def unload(self, entry: StoredAdapter) -> bool:
        """Drop an adapter's weights from memory: from the cache and, when the LoRA slot still
        holds them, from the slot (zeroed). Returns whether anything was held."""
        import torch

        with self._lock:
            held = self._cache.pop(entry.weights_sha256, None) is not None
            if self._active is not None and self._active.adapter_id == entry.adapter_id:
                self.deactivate()
            if self._in_slot == entry.weights_sha256 and self._peft is not None:
                with torch.no_grad():
                    for name, parameter in self._peft.named_parameters():
                        if "lora_" in name:
                            parameter.zero_()
                self._in_slot, held = None, True
            return held

    def use_prefix(self, prefix: Any) -> None:
        """Prepend these soft tokens (a [tokens, hidden] tensor) to every prompt until changed."""
        with self._lock:
            self.deactivate()
            self._prefix = prefix.detach().to(dtype=self._plain.dtype)
            digest = hashlib.sha256(self._prefix.numpy().tobytes()).hexdigest()
            self._prefix_id = digest[:16]

    @contextmanager
    def _without_adapter(self) -> Iterator[None]:
        """The LoRA slot lives inside the base model's modules: switch it off for base answers."""
        if self._peft is None:
            yield
        else:
            with self._peft.disable_adapter():
                yield

    def generate(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Completion:
        with self._lock:
            if self._active is not None:
                return super().generate(messages, options)
            with self._without_adapter():
                if self._prefix is not None:
                    return self._generate_with_prefix(messages, options)
                return super().generate(messages, options)

    def _generate_with_prefix(
        self, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> Completion:
        import torch

        inputs = self._inputs(messages)
        model = self._plain
        kwargs = self._generate_kwargs(options)
        with torch.inference_mode():
            embedded = model.get_input_embeddings()(inputs["input_ids"])
            prefix = self._prefix.unsqueeze(0)
            joined = torch.cat([prefix, embedded], dim=1)
            mask = torch.ones(joined.shape[:2], dtype=torch.long)
            try:
                torch.manual_seed(options.seed)
                output = model.generate(inputs_embeds=joined, attention_mask=mask, **kwargs)
            except Exception as error:
                raise LLMError(f"{self.model} failed while generating: {error}") from error
        # Given only embeddings, generate returns the new tokens alone.
        return self._completion(output[0].tolist(), int(joined.shape[1]), options)

    def score_choices(self, messages: Sequence[ChatMessage], choices: Sequence[str]) -> list[float]:
        with self._lock:
            if self._prefix is not None:
                raise LLMError("choices cannot be scored with soft tokens; generate instead")
            if self._active is not None:
                return super().score_choices(messages, choices)
            with self._without_adapter():
                return super().score_choices(messages, choices)

    def generate_batch(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        options: GenerationOptions,
        *,
        batch_size: int = 8,
    ) -> list[Completion]:
        with self._lock:
            if self._prefix is not None:
                return [self.generate(c, options) for c in conversations]
            if self._active is not None:
                return super().generate_batch(conversations, options, batch_size=batch_size)
            with self._without_adapter():
                return super().generate_batch(conversations, options, batch_size=batch_size)

    def stream(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Iterator[str]:
        if self._active is None and (self._prefix is not None or self._peft is not None):
            # Decoding from embeddings, or with the slot switched off for the whole decode:
            # one piece.
            yield self.generate(messages, options).text
            return
        yield from super().stream(messages, options)
