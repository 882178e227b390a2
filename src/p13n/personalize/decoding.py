"""Decoding-time personalization: how the model's next-token choice uses the user's data beyond
reading it in the prompt. One registry entry per method; ``PersonalizerConfig.decoding`` names
one, ``PersonalizerConfig.steering`` gives its strength, and the trace records both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from p13n.registry import Registry

STANDARD = "standard"
CONTEXT_STEERING = "context-steering"
ADAPTER_CONTRAST = "adapter-contrast"
STEERING_VECTOR = "steering-vector"


@dataclass(frozen=True)
class DecodingMethod:
    name: str
    description: str
    contrast: bool = False
    """Decodes against the same request's prompt without the user's data."""
    adapter: Literal["lora", "vector"] | None = None
    """The kind of learned user it steers by (``AdapterMethod.weights``): the user's LoRA
    adapter, contrasted with the base model, or their steering vector."""
    option: str | None = None
    """The ``GenerationOptions`` field that carries the strength."""


decoding_methods: Registry[DecodingMethod] = Registry("decoding method")
decoding_methods.register(STANDARD, DecodingMethod(STANDARD, "the model's own next-token choice"))
decoding_methods.register(
    CONTEXT_STEERING,
    DecodingMethod(
        CONTEXT_STEERING,
        "context steering (CoS, He et al., ICLR 2025): next-token log-probabilities with the "
        "user's data and without, answered from with + λ (with - without)",
        contrast=True,
        option="steering",
    ),
)
decoding_methods.register(
    ADAPTER_CONTRAST,
    DecodingMethod(
        ADAPTER_CONTRAST,
        "contrastive decoding with the user's adapter (CoPe, EMNLP 2025): next-token "
        "log-probabilities of the user's LoRA adapter and of the base model, answered from "
        "adapter + β (adapter - base)",
        adapter="lora",
        option="adapter_contrast",
    ),
)
decoding_methods.register(
    STEERING_VECTOR,
    DecodingMethod(
        STEERING_VECTOR,
        "per-user steering vector (StyleVector, ACL 2025): the user's activation vector added "
        "with strength α to a middle layer's output while decoding",
        adapter="vector",
        option="vector_strength",
    ),
)
