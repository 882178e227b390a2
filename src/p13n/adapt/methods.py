"""The ways of learning the user, one registry entry each: what a method trains, whose it is,
and where it can serve. Every place that names an adapter method (configs, the server, the
benchmark, the CLI) validates against this registry instead of spelling the names out.

Importing this module loads no torch: pydantic validators can call ``check``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, JsonValue
from pydantic.config import JsonDict

from p13n.adapt.dpo import DpoSettings
from p13n.adapt.embedding import EmbeddingSettings
from p13n.adapt.finetune import FinetuneSettings
from p13n.adapt.lora import LoraSettings
from p13n.adapt.steering import SteeringVectorSettings
from p13n.errors import ConfigError
from p13n.registry import Registry

MethodName = str
"""A name registered in ``adapter_methods`` (checked at run time by ``check``)."""

NONE = "none"
STEERING_VECTOR = "steering-vector"
"""Not a method: the base model answers (valid where ``check(..., none=True)``)."""
FINETUNE = "finetune"

Purpose = Literal["serve", "per_user", "batch", "choices"]
"""What a caller needs of a method: ``serve`` any registered method; ``per_user`` one trained per
user (looked up by the user's id); ``batch`` one Ray can train for many users at once;
``choices`` one that can score fixed answers (not only generate)."""


@dataclass(frozen=True)
class AdapterMethod:
    """One way of learning the user, and what it needs."""

    settings: type[BaseModel]
    """Its settings model (validated, frozen; stamped on every adapter it trains)."""
    owner: Literal["user", "tenant"]
    """Whose adapter serves a request: the user's own (or their persona's, as a starting point),
    or one for the whole tenant (fed the user's data at serving time)."""
    weights: Literal["lora", "projector", "vector", "model"]
    """What is stored and how it serves: LoRA tensors swapped into the model, a projector
    whose output is prepended to the prompt as soft tokens, an activation vector added to a
    decoder layer's output while decoding, or a whole fine-tuned model (its folder's manifest)
    that answers in the base model's place."""
    needs_encoder: bool
    """Serving and training read the user's stored document vectors (the encoder's)."""
    choice_scoring: bool
    """Can score fixed answers (``ChoiceScorer``); soft tokens only generate."""
    batch: bool
    """Can be trained for many users at once on Ray (``p13n.adapt.batch``)."""

    @property
    def steers(self) -> bool:
        """Serves only through decoding-time steering (``decoding = "steering-vector"``)."""
        return self.weights == "vector"

    def fits(self, purpose: Purpose) -> bool:
        """Whether this method can do what ``purpose`` asks."""
        if purpose == "per_user":
            return self.owner == "user"
        if purpose == "batch":
            return self.batch
        if purpose == "choices":
            return self.choice_scoring
        return True


adapter_methods: Registry[AdapterMethod] = Registry("adapter method")
adapter_methods.register(
    "lora",
    AdapterMethod(
        LoraSettings,
        owner="user",
        weights="lora",
        needs_encoder=False,
        choice_scoring=True,
        batch=True,
    ),
)
adapter_methods.register(
    "dpo",
    AdapterMethod(
        DpoSettings,
        owner="user",
        weights="lora",
        needs_encoder=False,
        choice_scoring=True,
        batch=True,
    ),
)
adapter_methods.register(
    "embedding",
    AdapterMethod(
        EmbeddingSettings,
        owner="tenant",
        weights="projector",
        needs_encoder=True,
        choice_scoring=False,
        batch=False,
    ),
)
adapter_methods.register(
    STEERING_VECTOR,
    AdapterMethod(
        SteeringVectorSettings,
        owner="user",
        weights="vector",
        needs_encoder=False,
        choice_scoring=False,
        batch=False,
    ),
)
adapter_methods.register(
    FINETUNE,
    AdapterMethod(
        FinetuneSettings,
        owner="tenant",
        weights="model",
        needs_encoder=False,
        choice_scoring=True,
        batch=False,
    ),
)


def get(name: str) -> AdapterMethod:
    """The method registered as ``name`` (an ``UnknownNameError`` listing them otherwise)."""
    return adapter_methods.get(name)


def names(purpose: Purpose = "serve", *, none: bool = False) -> list[str]:
    """The registered methods fit for ``purpose`` (sorted), after ``"none"`` when ``none``."""
    fit = [name for name in adapter_methods.names() if adapter_methods.get(name).fits(purpose)]
    return [NONE, *fit] if none else fit


def check(name: str, *, purpose: Purpose = "serve", none: bool = False) -> str:
    """``name`` when it is a method fit for ``purpose`` (or ``"none"``, when ``none``); else a
    ``ConfigError`` (a ``ValueError``, so pydantic reports it as the field's problem) that lists
    the names that are."""
    allowed = names(purpose, none=none)
    if name in allowed:
        return name
    choose = f"choose from {', '.join(allowed)}"
    if name in adapter_methods:
        raise ConfigError(f"adapter method {name!r} {_CANNOT[purpose]}: {choose}")
    raise ConfigError(f"unknown adapter method {name!r}: {choose}")


_CANNOT: dict[Purpose, str] = {
    "serve": "cannot serve here",
    "per_user": "is not trained per user",
    "batch": "cannot be batch-trained",
    "choices": "cannot score choices",
}


def schema_enum(purpose: Purpose = "serve", *, none: bool = False) -> Callable[[JsonDict], None]:
    """A ``json_schema_extra`` for a ``str`` field checked by ``check``: the JSON schema lists the
    names as an ``enum``, as a ``Literal`` did."""

    def listed(schema: JsonDict) -> None:
        schema["enum"] = list[JsonValue](names(purpose, none=none))

    return listed


__all__ = [
    "FINETUNE",
    "NONE",
    "STEERING_VECTOR",
    "AdapterMethod",
    "MethodName",
    "Purpose",
    "adapter_methods",
    "check",
    "get",
    "names",
    "schema_enum",
]
