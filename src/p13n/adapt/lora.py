"""One PEFT per user (OPPU, Tan et al. 2024): a LoRA adapter trained on the user's own documents
cast into the task's input → output format, on a frozen base model.

One ``LoraTrainer`` holds one copy of the base model with a single LoRA slot; each user's
training resets the slot to the same seeded initialisation (or to a persona adapter's weights,
the starting point OPPU's persona stage gives a member) and exports the learned weights as
safetensors bytes for the registry."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from p13n.adapt.base import (
    BaseModelInfo,
    TrainedWeights,
    TrainingExample,
    encode_example,
    load_tokenizer,
    load_torch_model,
    optimise,
    pad_id,
    padded_batch,
)
from p13n.errors import AdapterMismatchError

Progress = Callable[[int, int], None]
"""Called with (steps done, steps in all) after each optimiser step."""


class LoraShape(BaseModel):
    """A LoRA adapter's shape: what LoRA and DPO settings share, and what a slot is built from.

    The settings *extend* it rather than nest it, so their fields (and so the settings JSON and
    digest stamped on every stored adapter) stay flat, as adapters already in stores have them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rank: int = Field(8, ge=1, le=256)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")

    def shape(self) -> dict[str, Any]:
        """What must match for one adapter's weights to load into another's slot."""
        return {
            "rank": self.rank,
            "alpha": self.alpha,
            "target_modules": sorted(self.target_modules),
        }

    def peft_config(self) -> Any:
        """PEFT's ``LoraConfig`` for a causal LM of this shape."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            task_type="CAUSAL_LM",
        )

    @classmethod
    def of(cls, config: dict[str, Any]) -> LoraShape:
        """The shape a stored adapter's config records (its flat settings)."""
        return cls.model_validate({k: v for k, v in config.items() if k in cls.model_fields})


class LoraSettings(LoraShape):
    """The adapter's shape and its training schedule."""

    epochs: int = Field(2, ge=1)
    learning_rate: float = Field(5e-4, gt=0)
    batch_size: int = Field(8, ge=1)
    max_input_tokens: int = Field(192, ge=8, description="each document's text is cut to this")
    max_answer_tokens: int = Field(64, ge=1)
    max_examples: int = Field(100, ge=1, description="the user's newest documents trained on")
    min_examples: int = Field(4, ge=1, description="fewer usable documents: refused")
    untitled: bool = Field(
        True,
        description="untitled texts (posts, notes, chat messages) train too, cast as opening → "
        "continuation; false: titled documents only (input → title)",
    )
    seed: int = 0


def serialize(state: dict[str, Any]) -> bytes:
    from safetensors.torch import save

    return save({name: tensor.detach().contiguous().cpu() for name, tensor in state.items()})


def deserialize(blob: bytes) -> dict[str, Any]:
    from safetensors.torch import load

    return load(blob)


class LoraTrainer:
    """Trains LoRA adapters on one base model, one owner at a time."""

    def __init__(self, base: BaseModelInfo, settings: LoraSettings | None = None) -> None:
        from peft import get_peft_model

        self.base = base
        self.settings = settings = settings or LoraSettings()
        self.tokenizer = load_tokenizer(base.path)
        self.model = get_peft_model(load_torch_model(base.path), settings.peft_config())

    def _reset(self, init: dict[str, Any] | None) -> None:
        import torch
        from peft import set_peft_model_state_dict
        from peft.tuners.lora import LoraLayer

        torch.manual_seed(self.settings.seed)
        for module in self.model.modules():
            if isinstance(module, LoraLayer):
                layer: Any = module
                layer.reset_lora_parameters("default", True)
        if init is not None:
            result: Any = set_peft_model_state_dict(self.model, init)
            if result.unexpected_keys:
                raise AdapterMismatchError(
                    f"the starting adapter does not fit this LoRA shape {self.settings.shape()}: "
                    f"unexpected {result.unexpected_keys[:3]}"
                )

    def train(
        self,
        examples: Sequence[TrainingExample],
        *,
        init: bytes | None = None,
        progress: Progress | None = None,
    ) -> TrainedWeights:
        """Train the slot on ``examples`` (from ``init``'s weights when given) and export it."""
        import torch
        from peft import get_peft_model_state_dict

        settings = self.settings
        started = time.perf_counter()
        self._reset(deserialize(init) if init is not None else None)
        encoded = [
            encode_example(self.tokenizer, e, max_answer_tokens=settings.max_answer_tokens)
            for e in examples
        ]
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.0)
        pad = pad_id(self.tokenizer)
        self.model.train()
        try:
            curve = optimise(
                encoded,
                lambda batch: self.model(**padded_batch(batch, pad)).loss,
                optimiser,
                epochs=settings.epochs,
                batch_size=settings.batch_size,
                seed=settings.seed,
                progress=progress,
            )
        finally:
            self.model.eval()
        state = get_peft_model_state_dict(self.model)
        blob = serialize(state)
        tokens = sum(sum(1 for t in e.labels if t >= 0) for e in encoded)
        return TrainedWeights(
            weights=blob,
            config={
                "peft": "lora",
                **settings.model_dump(mode="json"),
                "init": "adapter" if init is not None else "seeded",
            },
            data_size=len(examples),
            metrics={
                "train_seconds": round(time.perf_counter() - started, 2),
                **curve.metrics(),
                "answer_tokens": tokens,
                "torch_threads": torch.get_num_threads(),
            },
        )
