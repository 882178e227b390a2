"""Learning the user (survey §5.3, §5.4): per-user LoRA adapters (OPPU), user embeddings as soft
tokens (Persona-Plug / USER-LLM), and personalized DPO; the registry of these methods
(``methods``), adapters stored beside the user's data (``adapters``), and serving with them
(``runtime``)."""

from __future__ import annotations

from p13n.adapt import adapters, methods
from p13n.adapt.adapters import adapter_id
from p13n.adapt.base import (
    BaseModelInfo,
    TrainedWeights,
    TrainingExample,
    base_model,
)
from p13n.adapt.dpo import DpoSettings, Pair, train_dpo
from p13n.adapt.embedding import EmbeddingSettings, Projector, ProjectorTrainer, pool_history
from p13n.adapt.lora import LoraSettings, LoraShape, LoraTrainer
from p13n.adapt.methods import AdapterMethod
from p13n.errors import AdapterMismatchError, AdapterNotFoundError, InsufficientDataError

__all__ = [
    "AdapterMethod",
    "AdapterMismatchError",
    "AdapterNotFoundError",
    "BaseModelInfo",
    "DpoSettings",
    "EmbeddingSettings",
    "InsufficientDataError",
    "LoraSettings",
    "LoraShape",
    "LoraTrainer",
    "Pair",
    "Projector",
    "ProjectorTrainer",
    "TrainedWeights",
    "TrainingExample",
    "adapter_id",
    "adapters",
    "base_model",
    "methods",
    "pool_history",
    "train_dpo",
]
