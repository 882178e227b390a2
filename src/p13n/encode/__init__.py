"""Encoders that turn user data into vectors; the default is the bundled all-MiniLM-L6-v2."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from p13n.encode.base import Encoder
from p13n.encode.minilm import MiniLMEncoder
from p13n.encode.onnx import OnnxMiniLMEncoder
from p13n.registry import Registry

encoders: Registry[Callable[[], Encoder]] = Registry("encoder")
encoders.register("minilm", OnnxMiniLMEncoder)
encoders.register("minilm-torch", MiniLMEncoder)
encoders.register("minilm-bf16", partial(MiniLMEncoder, precision="bfloat16"))

DEFAULT_ENCODER = "minilm"


def get_encoder(name: str = DEFAULT_ENCODER) -> Encoder:
    """A new encoder by registered name (the model itself is loaded once per process)."""
    return encoders.get(name)()


__all__ = [
    "DEFAULT_ENCODER",
    "Encoder",
    "MiniLMEncoder",
    "OnnxMiniLMEncoder",
    "encoders",
    "get_encoder",
]
