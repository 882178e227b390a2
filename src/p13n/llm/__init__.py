"""Language-model backends behind one ``LLM`` protocol: ``embedded`` (default, offline), ``hf``
(any local transformers model), ``onnx`` (a local model decoded by ONNX Runtime GenAI) and
``openai`` (any OpenAI-compatible server)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from p13n.errors import ConfigError
from p13n.llm.base import (
    LLM,
    BatchGenerator,
    CharTokenizer,
    ChatMessage,
    ChoiceScorer,
    Completion,
    GenerationOptions,
    Tokenizer,
    generate_many,
)
from p13n.registry import Registry


class LLMConfig(BaseModel):
    """Which model answers, and how to reach it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str = "embedded"
    path: str | None = Field(
        None,
        description="hf, onnx: a local transformers model directory (onnx: the embedded "
        "model when unset)",
    )
    precision: Literal["int4", "int8", "fp32"] = Field(
        "int4", description="onnx: the weights' precision in the runtime's conversion"
    )
    model: str | None = Field(None, description="openai: the model name the server serves")
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = Field("OPENAI_API_KEY", description="openai: env var holding the key")
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)
    context_window: int = Field(8192, gt=0, description="openai: the served model's context")
    tokenizer: Literal["embedded", "bytes"] | str = Field(
        "bytes",
        description="openai: 'embedded' (the server runs the embedded model), a local tokenizer "
        "directory (transformers format), or 'bytes' (an explicit conservative estimate)",
    )

    @model_validator(mode="after")
    def _backend_needs(self) -> LLMConfig:
        if self.backend == "hf" and not self.path:
            raise ValueError("the hf backend needs path: a local transformers model directory")
        if self.backend == "openai" and not self.model:
            raise ValueError("the openai backend needs model: the name the server serves")
        return self


backends: Registry[Callable[[LLMConfig], LLM]] = Registry("llm backend")


@dataclass(frozen=True)
class LocalWeights:
    """Where a backend's model lives on this machine: a transformers directory and its name."""

    name: str
    path: Path


local_weights: Registry[Callable[[LLMConfig], LocalWeights]] = Registry("local model backend")
"""Backends whose model runs here in torch, keyed like ``backends``: what adapters, soft prompts
and training need (a remote backend has no entry)."""

converted_weights: Registry[Callable[[LLMConfig], LocalWeights]] = Registry("converting backend")
"""Backends that run a conversion of a local transformers directory (``onnx``): the LoRA
adapters trained (in torch) on that directory's weights serve on them; soft tokens, which feed
the torch model's input embeddings, do not."""


@backends.decorator("embedded")
def _embedded(config: LLMConfig) -> LLM:
    from p13n.llm.embedded import EmbeddedLLM

    return EmbeddedLLM()


@local_weights.decorator("embedded")
def _embedded_weights(config: LLMConfig) -> LocalWeights:
    from p13n.llm.embedded import EMBEDDED_MODEL, embedded_model_dir

    return LocalWeights(EMBEDDED_MODEL, embedded_model_dir())


@backends.decorator("hf")
def _hf(config: LLMConfig) -> LLM:
    from p13n.llm.hf import HFLLM

    assert config.path is not None  # checked by LLMConfig
    return HFLLM(config.path)


@local_weights.decorator("hf")
def _hf_weights(config: LLMConfig) -> LocalWeights:
    assert config.path is not None  # checked by LLMConfig
    path = Path(config.path).expanduser().resolve()
    return LocalWeights(path.name, path)


@backends.decorator("onnx")
def _onnx(config: LLMConfig) -> LLM:
    from p13n.llm.onnx import OnnxLLM

    source = _onnx_weights(config)
    return OnnxLLM(source.path, model_name=source.name, precision=config.precision)


@converted_weights.decorator("onnx")
def _onnx_weights(config: LLMConfig) -> LocalWeights:
    """The folder the ``onnx`` backend converts: ``path``, or the embedded model's."""
    if config.path:
        path = Path(config.path).expanduser().resolve()
        return LocalWeights(path.name, path)
    from p13n.llm.embedded import EMBEDDED_MODEL, embedded_model_dir

    return LocalWeights(EMBEDDED_MODEL, embedded_model_dir())


def _tokenizer(name: str) -> Tokenizer:
    if name == "bytes":
        return CharTokenizer()
    from p13n.llm.hf import HFTokenizer

    if name == "embedded":
        from p13n.llm.embedded import EMBEDDED_MODEL, embedded_model_dir

        return HFTokenizer.from_directory(embedded_model_dir(), EMBEDDED_MODEL)
    return HFTokenizer.from_directory(name)


@backends.decorator("openai")
def _openai(config: LLMConfig) -> LLM:
    import os

    from p13n.llm.openai import OpenAILLM

    assert config.model is not None  # checked by LLMConfig
    return OpenAILLM(
        config.model,
        base_url=config.base_url,
        api_key=os.environ.get(config.api_key_env),
        timeout=config.timeout,
        max_retries=config.max_retries,
        context_window=config.context_window,
        tokenizer=_tokenizer(config.tokenizer),
    )


def get_llm(config: LLMConfig | None = None) -> LLM:
    """The backend ``config`` names (the embedded model by default)."""
    config = config or LLMConfig()
    try:
        factory = backends.get(config.backend)
    except KeyError as error:
        raise ConfigError(str(error)) from None
    return factory(config)


__all__ = [
    "LLM",
    "BatchGenerator",
    "CharTokenizer",
    "ChatMessage",
    "ChoiceScorer",
    "Completion",
    "GenerationOptions",
    "LLMConfig",
    "LocalWeights",
    "Tokenizer",
    "backends",
    "converted_weights",
    "generate_many",
    "get_llm",
    "local_weights",
]
