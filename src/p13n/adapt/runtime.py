"""Generation with learned users: LoRA adapters swapped in and out of the base model that plain
generation already holds (no second copy), soft tokens (a projected user embedding)
prepended to the prompt, and a user's steering vector added to one layer's output; an active
LoRA adapter can also be decoded against the base model (CoPe). The onnx fast path's
counterpart is ``p13n.adapt.onnx_adapted``.

The LoRA slot is built into the shared model's modules once per process and per model, and is
switched off except while an adapted answer runs, under the model's lock: a plain answer from the
same weights runs through the untouched base layers, whatever adapters were used before. Adapters
of one shape share the slot: swapping a user in copies their LoRA tensors into it (a few MB), so
no module is rebuilt. Deserialized adapters are kept in a small LRU cache; ``unload`` drops one,
``deactivate`` returns to the plain base."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from p13n.adapt import methods
from p13n.adapt.adapters import check_base, weights
from p13n.adapt.base import BaseModelInfo, base_model
from p13n.adapt.embedding import Projector, pool_history
from p13n.adapt.lora import LoraShape, deserialize
from p13n.adapt.steering import SteeringHook, SteeringVector
from p13n.encode import Encoder
from p13n.errors import AdapterMismatchError, LLMError, UnknownUserError
from p13n.llm import LLM, LLMConfig, local_weights
from p13n.llm.base import ChatMessage, Completion, GenerationOptions
from p13n.llm.hf import HFLLM, HFTokenizer, load_model
from p13n.store import Store, StoredAdapter


class Adaptable(LLM, Protocol):
    """A model that answers with a learned user swapped in: what the ``Personalizer`` needs of
    one (``AdaptedLLM`` on torch, ``OnnxAdaptedLLM`` on the onnx fast path)."""

    @property
    def base(self) -> BaseModelInfo: ...

    @property
    def lock(self) -> threading.RLock:
        """Held across a swap and the answers that use it."""
        ...

    def activate(self, store: Store, entry: StoredAdapter) -> float:
        """Swap ``entry``'s LoRA weights in; the milliseconds it took."""
        ...

    def use_prefix(self, prefix: Any) -> None:
        """Prepend these soft tokens to every prompt until changed."""
        ...

    def deactivate(self) -> None: ...

    def unload(self, entry: StoredAdapter) -> bool:
        """Drop ``entry``'s weights from memory; whether anything was held."""
        ...


def adapted_llm(
    config: LLMConfig, *, plain: LLM | None = None, method: str | None = None
) -> Adaptable:
    """The adapted model for ``config``'s backend: torch's LoRA slot and soft tokens on a torch
    backend, the runtime's multi-LoRA on ``onnx`` (LoRA adapters only). ``plain``: the model
    ``config`` already built, which onnx answers with while no adapter is active (another one
    is ignored). A ``method`` whose weights are a whole model (``finetune``) is served by the
    fine-tuned model itself, on the same backend."""
    from p13n.adapt.finetuned import FinetunedLLM
    from p13n.adapt.onnx_adapted import OnnxAdaptedLLM

    if method is not None and methods.get(method).weights == "model":
        return FinetunedLLM(base_model(config, torch=False), config)

    if config.backend in local_weights:
        return AdaptedLLM(base_model(config), backend=config.backend)
    return OnnxAdaptedLLM(base_model(config, torch=False), config, plain=plain)


@dataclass
class _Slot:
    """The LoRA slot of one shared model: built on first use, shared by every ``AdaptedLLM``
    over that model. ``lock`` is held across a swap and the answers that use it."""

    peft: Any = None
    shape: dict[str, Any] | None = None
    holds: str | None = None
    """sha256 of the weights in the slot."""
    lock: threading.RLock = field(default_factory=threading.RLock)


_slots: dict[Path, _Slot] = {}
_slots_lock = threading.Lock()


def _slot_for(path: Path) -> _Slot:
    with _slots_lock:
        return _slots.setdefault(path.expanduser().resolve(), _Slot())


class AdaptedLLM(HFLLM):
    """The base model with a user's adapter or soft prompt, usable wherever an ``LLM`` is.

    It runs on the process's one copy of the base model (the one ``get_llm`` answers with).
    ``model`` names the active adapter (``SmolLM2-135M-Instruct+lora:<sha256 prefix>``) so that
    caches keyed on the model never mix a user's answers with the base model's."""

    backend = "embedded"
    supports_streaming: ClassVar[bool] = True

    def __init__(self, base: BaseModelInfo, *, backend: str = "embedded", cache_size: int = 8):
        self.base = base
        self.backend = backend
        self.path = base.path
        self._loaded = load_model(base.path)
        self._slot = _slot_for(base.path)
        self.tokenizer = HFTokenizer(self._loaded.tokenizer, base.name)
        config = self._loaded.model.config
        self.context_window = int(getattr(config, "max_position_embeddings", 2048))
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size
        self._active: StoredAdapter | None = None
        self._active_state: dict[str, Any] | None = None
        self._prefix: Any = None
        self._prefix_id = ""
        self._vector: SteeringVector | None = None
        self._vector_strength = 0.0

    @property
    def model(self) -> str:  # type: ignore[override]
        if self._active is not None:
            return f"{self.base.name}+{self._active.method}:{self._active.weights_sha256[:12]}"
        if self._prefix is not None:
            return f"{self.base.name}+soft:{self._prefix_id}"
        return self.base.name

    @property
    def lock(self) -> threading.RLock:
        """Held across a swap and the generation that uses it (re-entrant; shared by every
        ``AdaptedLLM`` over the same base model, since they share its LoRA slot)."""
        return self._slot.lock

    @property
    def active(self) -> StoredAdapter | None:
        return self._active

    def activate(self, store: Store, entry: StoredAdapter) -> float:
        """Swap ``entry``'s LoRA weights in (from the cache, or read from the store); returns
        the milliseconds the swap took."""
        started = time.perf_counter()
        check_base(entry, self.base)
        if methods.get(entry.method).steers:
            vector = SteeringVector.from_weights(weights(store, entry), entry.config)
            with self.lock:
                self._active, self._active_state, self._vector = entry, None, vector
                self._prefix, self._prefix_id = None, ""
            return (time.perf_counter() - started) * 1000
        with self.lock:
            state = self._cache.get(entry.weights_sha256)
            if state is None:
                state = deserialize(weights(store, entry))
                self._cache[entry.weights_sha256] = state
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(entry.weights_sha256)
            self._ensure_slot(entry)
            self._fill_slot(entry, state)
            self._active, self._active_state, self._vector = entry, state, None
            self._prefix, self._prefix_id = None, ""
        return (time.perf_counter() - started) * 1000

    def _ensure_slot(self, entry: StoredAdapter) -> None:
        from peft import get_peft_model

        shape = LoraShape.of(entry.config)
        wanted = shape.shape()
        slot = self._slot
        if slot.peft is None:
            # Modules are replaced by LoRA wrappers: no forward pass may run meanwhile.
            with self._loaded.lock:
                peft = get_peft_model(self._loaded.model, shape.peft_config())
                peft.eval()
                peft.base_model.disable_adapter_layers()
            slot.peft, slot.shape = peft, wanted
        elif wanted != slot.shape:
            raise AdapterMismatchError(
                f"adapter {entry.adapter_id!r} has LoRA shape {wanted}, the loaded slot "
                f"{slot.shape}: serve adapters of one shape per process"
            )

    def _fill_slot(self, entry: StoredAdapter, state: dict[str, Any]) -> None:
        """Copy ``state`` into the slot. The slot is switched off for plain answers, which
        therefore never read it, so this needs the slot's lock only."""
        import torch
        from peft import set_peft_model_state_dict

        with torch.no_grad():
            result: Any = set_peft_model_state_dict(self._slot.peft, state)
        if result.unexpected_keys:
            raise AdapterMismatchError(
                f"adapter {entry.adapter_id!r} does not fit the loaded LoRA slot: "
                f"unexpected {result.unexpected_keys[:3]}"
            )
        self._slot.holds = entry.weights_sha256

    def _refill(self) -> None:
        """Put the active adapter back in the slot if another ``AdaptedLLM`` over the same
        model (or ``unload``) changed it since ``activate``. Called with the slot's lock held."""
        entry, state = self._active, self._active_state
        if entry is not None and state is not None and self._slot.holds != entry.weights_sha256:
            self._fill_slot(entry, state)

    @contextmanager
    def model_in_use(self) -> Iterator[Any]:
        """The shared model under its lock: with the LoRA slot switched on for the time of the
        call when an adapter is active, else the plain base model."""
        with self._loaded.lock:
            if self._vector is not None:
                if self._vector_strength == 0:
                    yield self._loaded.model
                    return
                with SteeringHook(self._loaded.model, self._vector, self._vector_strength):
                    yield self._loaded.model
                return
            peft = self._slot.peft
            if self._active is None or peft is None:
                yield self._loaded.model
                return
            peft.base_model.enable_adapter_layers()
            try:
                yield peft
            finally:
                peft.base_model.disable_adapter_layers()

    def deactivate(self) -> None:
        """Back to the plain base model (no adapter, no soft prompt)."""
        with self.lock:
            self._active, self._active_state, self._vector = None, None, None
            self._prefix, self._prefix_id = None, ""

    def unload(self, entry: StoredAdapter) -> bool:
        """Drop an adapter's weights from memory: from the cache and, when the LoRA slot still
        holds them, from the slot (zeroed). Returns whether anything was held."""
        import torch

        with self.lock:
            held = self._cache.pop(entry.weights_sha256, None) is not None
            if self._active is not None and self._active.adapter_id == entry.adapter_id:
                held = held or self._vector is not None  # a steering vector lives only here
                self.deactivate()
            slot = self._slot
            if slot.holds == entry.weights_sha256 and slot.peft is not None:
                with torch.no_grad():
                    for name, parameter in slot.peft.named_parameters():
                        if "lora_" in name:
                            parameter.zero_()
                slot.holds, held = None, True
            return held

    def _prepare_steering(self, options: GenerationOptions) -> None:
        if options.adapter_contrast > 0 and (self._active is None or self._vector is not None):
            raise LLMError(
                f"{self.model}: adapter_contrast (CoPe) contrasts the user's LoRA adapter with "
                "the base model: activate a LoRA adapter first"
            )
        if options.vector_strength != 0 and self._vector is None:
            raise LLMError(
                f"{self.model}: vector_strength needs the user's steering vector activated"
            )
        self._vector_strength = options.vector_strength

    def _prompt_kwargs(
        self, input_ids: Any, attention_mask: Any, options: GenerationOptions
    ) -> dict[str, Any]:
        if options.adapter_contrast <= 0:
            return {}
        from transformers import LogitsProcessorList, UnbatchedClassifierFreeGuidanceLogitsProcessor

        # CoPe is classifier-free guidance in which the unconditional model is the base model
        # (the adapter switched off) reading the same prompt: scale 1 + β over log-probs gives
        # adapter + β (adapter - base), as ``steered_log_probs`` computes.
        contrast = UnbatchedClassifierFreeGuidanceLogitsProcessor(
            1.0 + options.adapter_contrast,
            _AdapterOff(self),
            unconditional_ids=input_ids,
            unconditional_attention_mask=attention_mask,
        )
        return {"logits_processor": LogitsProcessorList([contrast])}

    def use_prefix(self, prefix: Any) -> None:
        """Prepend these soft tokens (a [tokens, hidden] tensor) to every prompt until changed."""
        with self.lock:
            self.deactivate()
            self._prefix = prefix.detach().to(dtype=self._loaded.model.dtype)
            digest = hashlib.sha256(self._prefix.numpy().tobytes()).hexdigest()
            self._prefix_id = digest[:16]

    def generate(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Completion:
        with self.lock:
            if self._prefix is not None:
                return self._generate_with_prefix(messages, options)
            self._refill()
            return super().generate(messages, options)

    def _generate_with_prefix(
        self, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> Completion:
        import torch

        inputs = self._inputs(messages)
        kwargs = self._generate_kwargs(options)
        with self.model_in_use() as model, torch.inference_mode():
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
        with self.lock:
            if self._prefix is not None:
                raise LLMError("choices cannot be scored with soft tokens; generate instead")
            if self._vector is not None:
                raise LLMError("a steering vector steers generated tokens; choices are not scored")
            self._refill()
            return super().score_choices(messages, choices)

    def generate_batch(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        options: GenerationOptions,
        *,
        batch_size: int = 8,
    ) -> list[Completion]:
        with self.lock:
            if self._prefix is not None:
                return [self.generate(c, options) for c in conversations]
            self._refill()
            return super().generate_batch(conversations, options, batch_size=batch_size)

    def stream(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Iterator[str]:
        if self._prefix is not None:  # decoding from embeddings: one piece
            yield self.generate(messages, options).text
            return
        with self.lock:
            self._refill()
        yield from super().stream(messages, options)


class _AdapterOff:
    """The shared model called with the LoRA slot switched off: the base model, for CoPe's
    contrast inside an adapted decode (which holds the model's lock and has the slot on)."""

    def __init__(self, adapted: AdaptedLLM) -> None:
        self._adapted = adapted

    def __call__(self, input_ids: Any, attention_mask: Any, **kwargs: Any) -> Any:
        peft = self._adapted._slot.peft
        # Positions from the mask, as generate computes them, so left-padded rows of a batch
        # read their prompt at the same positions as the adapted pass does.
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, -input_ids.shape[1] :]
        peft.base_model.disable_adapter_layers()
        try:
            return self._adapted._loaded.model(
                input_ids, attention_mask=attention_mask, position_ids=positions, **kwargs
            )
        finally:
            peft.base_model.enable_adapter_layers()


def user_history(store: Store, user_id: str, encoder: Encoder) -> tuple[list[str], np.ndarray]:
    """The user's document ids and stored vectors from ``encoder`` (L2-normalised rows)."""
    embedded = store.document_embeddings(user_id, encoder.id)
    return embedded.ids, np.asarray(embedded.vectors, dtype=np.float32)


def user_soft_tokens(
    store: Store, user_id: str, text: str, projector: Projector, encoder: Encoder
) -> Any:
    """The user's soft tokens for this input: their history pooled against it, projected."""
    if encoder.id != projector.encoder_id:
        raise ValueError(
            f"the projector was trained on {projector.encoder_id} vectors, not {encoder.id}"
        )
    _, vectors = user_history(store, user_id, encoder)
    if len(vectors) == 0:
        raise UnknownUserError(user_id, store.tenant)
    query = np.asarray(encoder.encode([text])[0], dtype=np.float32)
    return projector.soft_tokens(pool_history(vectors, query, projector.settings.temperature))
