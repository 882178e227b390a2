"""User embeddings as soft tokens (Persona-Plug, Liu et al. 2024; USER-LLM, Ning et al. 2024).

A user's history is encoded by the sentence encoder (the vectors the store already holds), pooled
into one vector with weights from each item's similarity to the input (Persona-Plug's input-aware
aggregation), and mapped by a small learned projector into the LLM's input-embedding space as a
few soft tokens prepended to the prompt. The projector is trained across users on their own
input → output examples; the LLM stays frozen."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from p13n.adapt.base import (
    IGNORE,
    BaseModelInfo,
    EncodedExample,
    TrainedWeights,
    TrainingExample,
    encode_example,
    load_tokenizer,
    load_torch_model,
    optimise,
    pad_id,
)
from p13n.adapt.lora import Progress, deserialize, serialize
from p13n.errors import AdapterMismatchError

Vectors = npt.NDArray[np.float32]


class EmbeddingSettings(BaseModel):
    """The projector's shape, the pooling and the training schedule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: int = Field(4, ge=1, le=64, description="soft tokens prepended to the prompt")
    hidden: int = Field(1024, ge=8)
    temperature: float = Field(0.1, gt=0, description="softmax temperature of the pooling")
    epochs: int = Field(1, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(8, ge=1)
    max_input_tokens: int = Field(192, ge=8)
    max_answer_tokens: int = Field(64, ge=1)
    max_examples_per_user: int = Field(8, ge=1)
    min_examples: int = Field(16, ge=1, description="fewer examples across all users: refused")
    seed: int = 0


def pool_history(history: Vectors, query: Vectors, temperature: float) -> Vectors:
    """One vector for the user: their items' vectors weighted by softmax(cosine to the input /
    temperature), L2-normalised. Vectors are expected L2-normalised (the store's are)."""
    if len(history) == 0:
        raise ValueError("a user embedding needs at least one history vector")
    scores = history @ query / temperature
    weights = np.exp(scores - scores.max())
    weights /= weights.sum()
    pooled = (weights[:, None] * history).sum(axis=0)
    norm = float(np.linalg.norm(pooled))
    return np.asarray(pooled / norm if norm > 0 else pooled, dtype=np.float32)


@dataclass(frozen=True)
class EmbeddingExample:
    """A training example with the user's pooled embedding (from their *other* items)."""

    user_vector: Vectors
    example: TrainingExample


def _projector(encoder_dim: int, model_dim: int, settings: EmbeddingSettings) -> Any:
    from torch import nn

    class Projector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(encoder_dim, settings.hidden),
                nn.GELU(),
                nn.Linear(settings.hidden, settings.tokens * model_dim),
            )

        def forward(self, vectors: Any) -> Any:
            return self.net(vectors).view(-1, settings.tokens, model_dim)

    return Projector()


class Projector:
    """A trained projector: user vector → [tokens, hidden] soft tokens."""

    def __init__(self, module: Any, settings: EmbeddingSettings, encoder_id: str) -> None:
        self.module = module.eval()
        self.settings = settings
        self.encoder_id = encoder_id

    @classmethod
    def from_weights(cls, blob: bytes, config: dict[str, Any]) -> Projector:
        settings = EmbeddingSettings.model_validate(
            {k: v for k, v in config.items() if k in EmbeddingSettings.model_fields}
        )
        module = _projector(int(config["encoder_dim"]), int(config["model_dim"]), settings)
        result = module.load_state_dict(deserialize(blob))
        if result.unexpected_keys or result.missing_keys:
            raise AdapterMismatchError("stored projector weights do not fit its config")
        return cls(module, settings, str(config["encoder"]))

    def soft_tokens(self, user_vector: Vectors) -> Any:
        import torch

        with torch.inference_mode():
            return self.module(torch.from_numpy(user_vector[None, :]))[0]


class ProjectorTrainer:
    """Trains a projector across users on a frozen base model."""

    def __init__(self, base: BaseModelInfo, settings: EmbeddingSettings | None = None) -> None:
        self.base = base
        self.settings = settings or EmbeddingSettings()
        self.tokenizer = load_tokenizer(base.path)
        self.model = load_torch_model(base.path)
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    def train(
        self,
        examples: Sequence[EmbeddingExample],
        *,
        encoder_id: str,
        progress: Progress | None = None,
    ) -> tuple[Projector, TrainedWeights]:
        import torch

        settings = self.settings
        started = time.perf_counter()
        torch.manual_seed(settings.seed)
        encoder_dim = int(examples[0].user_vector.shape[0])
        embeddings = self.model.get_input_embeddings()
        model_dim = int(embeddings.weight.shape[1])
        module = _projector(encoder_dim, model_dim, settings)
        optimiser = torch.optim.AdamW(module.parameters(), lr=settings.learning_rate)
        encoded = [
            (
                e.user_vector,
                encode_example(
                    self.tokenizer, e.example, max_answer_tokens=settings.max_answer_tokens
                ),
            )
            for e in examples
        ]
        pad = pad_id(self.tokenizer)

        def loss_of(batch: list[tuple[Vectors, EncodedExample]]) -> Any:
            soft = module(torch.from_numpy(np.stack([vector for vector, _ in batch])))
            return self._loss(soft, [example for _, example in batch], embeddings, pad)

        module.train()
        curve = optimise(
            encoded,
            loss_of,
            optimiser,
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            seed=settings.seed,
            progress=progress,
        )
        module.eval()
        config = {
            "projector": "mlp",
            **settings.model_dump(mode="json"),
            "encoder": encoder_id,
            "encoder_dim": encoder_dim,
            "model_dim": model_dim,
        }
        trained = TrainedWeights(
            weights=serialize(dict(module.state_dict())),
            config=config,
            data_size=len(examples),
            metrics={
                "train_seconds": round(time.perf_counter() - started, 2),
                **curve.metrics(),
                "torch_threads": torch.get_num_threads(),
            },
        )
        return Projector(module, settings, encoder_id), trained

    def _loss(self, soft: Any, batch: Sequence[EncodedExample], embeddings: Any, pad: int) -> Any:
        import torch

        tokens = soft.shape[1]
        width = max(len(e.input_ids) for e in batch)
        ids = torch.tensor([e.input_ids + [pad] * (width - len(e.input_ids)) for e in batch])
        embedded = torch.cat([soft, embeddings(ids)], dim=1)
        mask = torch.tensor(
            [[1] * (tokens + len(e.input_ids)) + [0] * (width - len(e.input_ids)) for e in batch]
        )
        labels = torch.tensor(
            [[IGNORE] * tokens + e.labels + [IGNORE] * (width - len(e.labels)) for e in batch]
        )
        return self.model(inputs_embeds=embedded, attention_mask=mask, labels=labels).loss
