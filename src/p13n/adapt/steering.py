"""Per-user steering vectors (StyleVector, Zhang et al., ACL 2025): one activation vector per
user at a middle layer of the frozen model, the mean difference between the hidden state of the
user's own output and that of the base model's answer to the same input. Added with strength α
to that layer's output while decoding, it moves the model's answer toward the user's style.

Training costs a few forward passes per user and no gradient: the base model answers each of the
user's examples (one batched greedy pass), then each (input, output) pair is read once. The
vector is stored like an adapter (safetensors bytes in the registry, stamped with the user's data
version and these settings), so ``forget(user)`` deletes it with the user's other adapters."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from p13n.adapt.base import BaseModelInfo, TrainedWeights, TrainingExample
from p13n.errors import AdapterMismatchError, InsufficientDataError
from p13n.llm.base import GenerationOptions
from p13n.llm.hf import HFLLM

VECTOR = "vector"
"""The safetensors key of a stored steering vector."""


class SteeringVectorSettings(BaseModel):
    """Where the vector lives and what it is read from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layer: int | None = Field(
        None, ge=0, description="decoder layer whose output is steered (default: the middle one)"
    )
    max_examples: int = Field(16, ge=1, description="the user's newest documents read")
    min_examples: int = Field(2, ge=1, description="fewer usable documents: refused")
    max_input_tokens: int = Field(192, ge=8, description="each document's text is cut to this")
    max_new_tokens: int = Field(32, ge=1, description="length of the base model's answers")
    max_answer_tokens: int = Field(64, ge=1, description="the user's output is cut to this")
    untitled: bool = Field(
        True,
        description="untitled texts (posts, notes, chat messages) count too, cast as opening → "
        "continuation; false: titled documents only (input → title)",
    )


@dataclass(frozen=True)
class SteeringVector:
    """A user's vector and the decoder layer it is added to."""

    layer: int
    vector: np.ndarray

    def serialize(self) -> bytes:
        from safetensors.numpy import save

        return save({VECTOR: np.ascontiguousarray(self.vector, dtype=np.float32)})

    @classmethod
    def from_weights(cls, blob: bytes, config: dict[str, Any]) -> SteeringVector:
        from safetensors.numpy import load

        tensors = load(blob)
        if VECTOR not in tensors:
            raise AdapterMismatchError("stored steering vector has no 'vector' tensor")
        return cls(int(config["layer"]), tensors[VECTOR])


def decoder_layers(model: Any) -> Any:
    """The model's decoder layers (``model.model.layers`` in Llama-family causal LMs)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise AdapterMismatchError(
            f"{type(model).__name__} has no model.layers: steering vectors need a decoder-only "
            "transformers model of the Llama family"
        )
    return layers


def middle_layer(model: Any) -> int:
    return len(decoder_layers(model)) // 2


def train_steering_vector(
    llm: HFLLM,
    base: BaseModelInfo,
    examples: Sequence[TrainingExample],
    settings: SteeringVectorSettings,
) -> TrainedWeights:
    """The mean of h(input, user's output) - h(input, base model's answer) over ``examples``,
    where h is the hidden state after ``settings.layer`` at the last token of the answer (the
    sequence's summary, as in contrastive activation addition). Pairs where the base model's
    answer equals the user's are skipped: they carry no difference."""
    started = time.perf_counter()
    with llm.model_in_use() as model:
        layer = settings.layer if settings.layer is not None else middle_layer(model)
        count = len(decoder_layers(model))
    if layer >= count:
        raise AdapterMismatchError(f"layer {layer} does not exist: the model has {count} layers")
    options = GenerationOptions(max_new_tokens=settings.max_new_tokens)
    answers = llm.generate_batch([e.prompt for e in examples], options)
    differences = []
    for example, answer in zip(examples, answers, strict=True):
        if answer.text.strip().casefold() == example.answer.strip().casefold():
            continue
        own = _answer_state(llm, example, example.answer, layer, settings.max_answer_tokens)
        theirs = _answer_state(llm, example, answer.text, layer, settings.max_answer_tokens)
        differences.append(own - theirs)
    if not differences:
        raise InsufficientDataError(
            f"the base model answers all {len(examples)} examples as the user wrote them: no "
            "difference to steer toward; the user needs examples the base model gets wrong"
        )
    vector = np.mean(differences, axis=0).astype(np.float32)
    seconds = time.perf_counter() - started
    return TrainedWeights(
        weights=SteeringVector(layer, vector).serialize(),
        config={"layer": layer, "hidden": int(vector.shape[0])},
        data_size=len(examples),
        metrics={
            "pairs": len(differences),
            "norm": round(float(np.linalg.norm(vector)), 4),
            "train_seconds": round(seconds, 2),
        },
    )


def _answer_state(
    llm: HFLLM, example: TrainingExample, answer: str, layer: int, max_answer_tokens: int
) -> np.ndarray:
    """The hidden state after decoder ``layer`` at the last token of ``answer``, read after the
    example's prompt as the chat template renders it."""
    import torch

    tokenizer = llm.tokenizer.hf
    prompt = tokenizer(llm.tokenizer.render(example.prompt), add_special_tokens=False)["input_ids"]
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"][:max_answer_tokens]
    with llm.model_in_use() as model, torch.inference_mode():
        states = model(torch.tensor([prompt + ids]), output_hidden_states=True).hidden_states
    # hidden_states[0] is the embeddings: layer L's output is hidden_states[L + 1].
    return np.asarray(states[layer + 1][0, -1].double().numpy())


class SteeringHook:
    """Adds ``strength * vector`` to a decoder layer's output while installed (``with``)."""

    def __init__(self, model: Any, steering: SteeringVector, strength: float) -> None:
        import torch

        self._layer = decoder_layers(model)[steering.layer]
        self._shift = torch.from_numpy(steering.vector).to(dtype=model.dtype) * strength
        self._handle: Any = None

    def _add(self, module: Any, inputs: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (output[0] + self._shift, *output[1:])
        return output + self._shift

    def __enter__(self) -> SteeringHook:
        self._handle = self._layer.register_forward_hook(self._add)
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()
