"""``PersonalizerConfig``: every choice that shapes a personalized answer, validated once."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from p13n.adapt import methods
from p13n.adapt.base import torch_backends
from p13n.encode import DEFAULT_ENCODER
from p13n.errors import ConfigError
from p13n.llm import GenerationOptions, LLMConfig, converted_weights, local_weights
from p13n.personalize.decoding import STANDARD, decoding_methods
from p13n.personalize.policy import LabelPolicy, ServedSettings
from p13n.personalize.refine import RefineSettings
from p13n.personalize.router import GranularityConfig
from p13n.prompt import builders, templates
from p13n.retrieve import RetrieverConfig, query_generators


class PersonalizerConfig(BaseModel):
    """Every choice that shapes a personalized answer, validated once; dumpable to JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str = Field("chat", description="task template: chat, lamp1..lamp7, longlamp-*")
    query: str = Field("identity", description="query generator φ_q")
    retriever: RetrieverConfig = RetrieverConfig()
    prompt: str = Field("contextual", description="prompt builder φ_p")
    llm: LLMConfig = LLMConfig()
    generation: GenerationOptions = GenerationOptions()
    max_prompt_tokens: int = Field(
        2048, gt=0, description="prompt budget (also capped by the model's context window)"
    )
    max_item_tokens: int = Field(
        256, gt=0, description="each retrieved item's text is cut to this many tokens"
    )
    encoder: str = DEFAULT_ENCODER
    persona_description: str | None = Field(
        None, description="persona builder: a role description used instead of stored personas"
    )
    granularity: GranularityConfig = GranularityConfig()
    decoding: str = Field(
        STANDARD,
        description="decoding-time personalization: standard; context-steering (the answer "
        "steered away from the prompt without the user's data; local backends); "
        "adapter-contrast (the user's LoRA adapter against the base model, CoPe) or "
        "steering-vector (the user's activation vector, StyleVector), with that adapter, on "
        "torch backends; `steering` is the strength",
    )
    steering: float = Field(
        1.0,
        ge=0.0,
        le=50.0,
        description="the decoding method's strength: CoS λ, CoPe β, StyleVector α (0: standard "
        "decoding)",
    )
    policy: Literal["fixed", "auto"] = Field(
        "fixed",
        description="auto: serve the task's learned policy from the store (its prompt, retriever, "
        "excerpt length, decoding and label reading; learned on dev by `p13n bench run` with "
        "method auto) in "
        "place of these settings; with none learned for the task, these settings, and the trace "
        "says so",
    )
    labels: LabelPolicy = Field(
        default_factory=LabelPolicy,
        description="label and rating answers (`Personalizer.choose`): calibration of the "
        "model's label scores and fusion with the user's own label history",
    )
    advice: str | None = Field(
        None,
        description="task-level advice put before the task's instruction in every prompt (one "
        "instruction refined for everyone, as the benchmark's refine-task arm refines it on a "
        "train split)",
    )
    refine: RefineSettings = Field(
        default_factory=RefineSettings,
        description="prompt 'refined' / 'refined-contextual': how each user's instruction is "
        "refined (budget: candidates x iterations x examples)",
    )
    adapter: str = Field(
        methods.NONE,
        description="learned user: their LoRA or DPO adapter, their embedding as soft tokens, "
        "or their steering vector (trained with `p13n adapt train`); a user without one is an "
        "error, not the base model",
        json_schema_extra=methods.schema_enum(none=True),
    )

    @field_validator("adapter")
    @classmethod
    def _known_adapter(cls, name: str) -> str:
        return methods.check(name, none=True)

    @model_validator(mode="after")
    def _known_names(self) -> PersonalizerConfig:
        for registry, name in (
            (templates, self.task),
            (query_generators, self.query),
            (builders, self.prompt),
            (decoding_methods, self.decoding),
        ):
            if name not in registry:
                raise ValueError(
                    f"unknown {registry.kind} {name!r}: choose from {registry.names()}"
                )
        backend = self.llm.backend
        steered = decoding_methods.get(self.decoding).contrast
        if steered and backend not in local_weights and backend not in converted_weights:
            raise ValueError(
                f"decoding {self.decoding!r} needs the model's next-token logits, which the "
                f"{backend!r} backend does not expose: use one of "
                f"{[*local_weights.names(), *converted_weights.names()]}"
            )
        self._decoding_fits_adapter()
        method = self.adapter_method()
        if method is None or backend in local_weights:
            return self
        if backend not in converted_weights:
            raise ValueError(
                f"adapter {self.adapter!r} runs on the model's own weights, which the "
                f"{backend!r} backend does not have: use backend {torch_backends()}"
            )
        if method.weights not in ("lora", "model"):
            lora = ", ".join(repr(n) for n in methods.names() if methods.get(n).weights == "lora")
            raise ValueError(
                f"adapter {self.adapter!r} feeds soft tokens to the model's torch weights, which "
                f"the {backend!r} backend does not run (it serves the LoRA methods {lora}): "
                f"use backend {torch_backends()}"
            )
        return self

    def _decoding_fits_adapter(self) -> None:
        """A decoding method that steers by a learned user has that kind of adapter, on a
        torch backend; a steering vector serves only through its decoding method."""
        decoding = decoding_methods.get(self.decoding)
        method = self.adapter_method()
        if decoding.adapter is not None:
            fitting = [n for n in methods.names() if methods.get(n).weights == decoding.adapter]
            if method is None or method.weights != decoding.adapter:
                raise ValueError(
                    f"decoding {self.decoding!r} steers by the user's {decoding.adapter} "
                    f"adapter: set adapter to one of {fitting}, not {self.adapter!r}"
                )
            if self.llm.backend not in local_weights:
                raise ValueError(
                    f"decoding {self.decoding!r} runs the model's torch weights, which the "
                    f"{self.llm.backend!r} backend does not: use backend {torch_backends()}"
                )
        elif method is not None and method.steers:
            raise ValueError(
                f"adapter {self.adapter!r} serves through decoding {self.adapter!r} (its "
                f"strength α is `steering`), not {self.decoding!r}"
            )

    def adapter_method(self) -> methods.AdapterMethod | None:
        """The learned-user method that answers personalized requests (None: the base model)."""
        return None if self.adapter == methods.NONE else methods.get(self.adapter)

    def needs_encoder(self) -> bool:
        method = self.adapter_method()
        # The router places users in personas by their documents' centroid.
        return (
            self.retriever.needs_encoder()
            or self.retriever.collaborative_neighbours > 0
            or self.granularity.routes
            or (method is not None and method.needs_encoder)
        )

    def serving(self, settings: ServedSettings, what: str) -> PersonalizerConfig:
        """This config with a learned policy's ``what`` (its choice or fallback) applied,
        validated as any config is."""
        try:
            return PersonalizerConfig.model_validate({**self.model_dump(), **settings.overrides()})
        except ValidationError as error:
            raise ConfigError(
                f"the learned policy's {what} {settings.choice!r} cannot serve task "
                f"{self.task!r} on this config: {error.errors()[0]['msg']}"
            ) from None
