"""Learning the user (survey §5.3, §5.4): per-user LoRA adapters (OPPU), user embeddings as soft
tokens (Persona-Plug / USER-LLM), and personalized DPO, with an adapter registry in the store."""

from __future__ import annotations

from p13n.adapt.base import BaseModelInfo, InsufficientDataError, TrainingExample, base_model
from p13n.adapt.dpo import DpoSettings, Pair, train_dpo
from p13n.adapt.embedding import EmbeddingSettings, Projector, ProjectorTrainer, pool_history
from p13n.adapt.lora import LoraSettings, LoraTrainer
from p13n.adapt.registry import (
    METHODS,
    AdapterMismatchError,
    AdapterNotFoundError,
    TrainedWeights,
    adapter_id,
)

__all__ = [
    "METHODS",
    "AdapterMismatchError",
    "AdapterNotFoundError",
    "BaseModelInfo",
    "DpoSettings",
    "EmbeddingSettings",
    "InsufficientDataError",
    "LoraSettings",
    "LoraTrainer",
    "Pair",
    "Projector",
    "ProjectorTrainer",
    "TrainedWeights",
    "TrainingExample",
    "adapter_id",
    "base_model",
    "pool_history",
    "train_dpo",
]
