"""Decoding-time personalization: how the model's next-token choice uses the user's data beyond
reading it in the prompt. One registry entry per method; ``PersonalizerConfig.decoding`` names
one, and the trace records it with its strength."""

from __future__ import annotations

from dataclasses import dataclass

from p13n.registry import Registry

STANDARD = "standard"
CONTEXT_STEERING = "context-steering"


@dataclass(frozen=True)
class DecodingMethod:
    name: str
    description: str
    contrast: bool
    """Decodes against the same request's prompt without the user's data."""


decoding_methods: Registry[DecodingMethod] = Registry("decoding method")
decoding_methods.register(
    STANDARD, DecodingMethod(STANDARD, "the model's own next-token choice", contrast=False)
)
decoding_methods.register(
    CONTEXT_STEERING,
    DecodingMethod(
        CONTEXT_STEERING,
        "context steering (CoS, He et al., ICLR 2025): next-token log-probabilities with the "
        "user's data and without, answered from with + λ (with - without)",
        contrast=True,
    ),
)
