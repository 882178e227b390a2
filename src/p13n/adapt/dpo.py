"""Personalized preference optimisation: DPO (Rafailov et al. 2023) with TRL into a user's or a
persona's LoRA adapter, from their preference pairs, and its held-out evaluation.

Preference accuracy is DPO's own yardstick: the trained policy's implicit reward
β·(log π(y|x) - log π_ref(y|x)) ranks the chosen answer above the rejected one. The base model has
no implicit reward (it is the reference), so it is scored by its likelihood preference
log π_ref(chosen|x) > log π_ref(rejected|x); the adapter's likelihood preference is reported too.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from p13n.adapt.base import BaseModelInfo, TrainedWeights, load_tokenizer, load_torch_model
from p13n.adapt.lora import LoraSettings, LoraShape, deserialize, serialize
from p13n.errors import AdapterMismatchError
from p13n.llm.base import ChatMessage


class DpoSettings(LoraShape):
    """The LoRA shape DPO trains and its schedule (TRL's ``DPOConfig`` names)."""

    beta: float = Field(0.1, gt=0)
    epochs: int = Field(1, ge=1)
    learning_rate: float = Field(5e-4, gt=0)
    batch_size: int = Field(4, ge=1)
    max_length: int = Field(192, ge=16, description="prompt + answer tokens kept")
    min_pairs: int = Field(4, ge=1, description="fewer preference pairs: refused")
    seed: int = 0

    def lora(self) -> LoraSettings:
        return LoraSettings(
            rank=self.rank,
            alpha=self.alpha,
            dropout=self.dropout,
            target_modules=self.target_modules,
        )


@dataclass(frozen=True)
class Pair:
    """One preference: for ``prompt``, ``chosen`` is preferred over ``rejected``."""

    id: str
    prompt: str
    chosen: str
    rejected: str
    messages: tuple[ChatMessage, ...] = ()
    """The whole prompt as chat messages (e.g. a task's system + user turn); default: one user
    turn holding ``prompt``."""

    def conversation(self) -> list[ChatMessage]:
        return list(self.messages) or [{"role": "user", "content": self.prompt}]


def _dataset(pairs: Sequence[Pair]) -> Any:
    from datasets import Dataset

    return Dataset.from_list(
        [
            {
                "prompt": p.conversation(),
                "chosen": [{"role": "assistant", "content": p.chosen}],
                "rejected": [{"role": "assistant", "content": p.rejected}],
            }
            for p in pairs
        ]
    )


def train_dpo(
    base: BaseModelInfo,
    pairs: Sequence[Pair],
    settings: DpoSettings | None = None,
    *,
    init: bytes | None = None,
) -> TrainedWeights:
    """DPO with TRL's ``DPOTrainer`` into a fresh LoRA adapter (or one starting from ``init``'s
    weights, e.g. the owner's persona adapter); the reference is the base model itself (the
    adapter switched off), so no second copy of the model is held."""
    import torch
    from datasets.utils.logging import disable_progress_bar
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    from transformers import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    disable_progress_bar()

    settings = settings or DpoSettings()
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    model = get_peft_model(load_torch_model(base.path), settings.peft_config())
    if init is not None:
        result: Any = set_peft_model_state_dict(model, deserialize(init))
        if result.unexpected_keys:
            raise AdapterMismatchError("the starting adapter does not fit DPO's LoRA shape")
    with tempfile.TemporaryDirectory(prefix="p13n-dpo-") as scratch:
        config = DPOConfig(
            output_dir=scratch,
            beta=settings.beta,
            num_train_epochs=settings.epochs,
            learning_rate=settings.learning_rate,
            per_device_train_batch_size=settings.batch_size,
            max_length=settings.max_length,
            activation_checkpointing=False,  # TRL's default trades time for memory a 135M model has
            # TRL >= 1 autocasts to bf16 by default: ~6x slower on CPUs without native bf16 (AVX2),
            # and the LoRA trainer and every scorer work in float32.
            bf16=False,
            fp16=False,
            seed=settings.seed,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
        )
        trainer = DPOTrainer(
            model=model,
            args=config,
            train_dataset=_dataset(pairs),
            processing_class=load_tokenizer(base.path),
        )
        trainer.remove_callback(PrinterCallback)  # the metrics are returned, not printed
        trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    state = get_peft_model_state_dict(trainer.model)
    return TrainedWeights(
        weights=serialize(state),
        config={
            "peft": "lora",
            "objective": "dpo",
            **settings.model_dump(mode="json"),
            "init": "adapter" if init is not None else "seeded",
        },
        data_size=len(pairs),
        metrics={
            "train_seconds": round(time.perf_counter() - started, 2),
            "steps": trainer.state.global_step,
            "loss_first": float(logs[0]["loss"]) if logs else None,
            "loss_last": float(logs[-1]["loss"]) if logs else None,
            "reward_accuracy_last": (
                float(logs[-1].get("rewards/accuracies", float("nan"))) if logs else None
            ),
            "torch_threads": torch.get_num_threads(),
        },
    )


class PairScorer:
    """Summed log-probabilities of answers under the base model and under LoRA adapters."""

    def __init__(self, base: BaseModelInfo, settings: LoraShape, *, max_length: int) -> None:
        from peft import get_peft_model

        self.tokenizer = load_tokenizer(base.path)
        self.model = get_peft_model(load_torch_model(base.path), settings.peft_config()).eval()
        self.max_length = max_length

    def _encode(self, prompt: str | Sequence[ChatMessage], answer: str) -> tuple[list[int], int]:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        rendered = self.tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, tokenize=False
        )
        prompt_ids = list(self.tokenizer(rendered, add_special_tokens=False)["input_ids"])
        answer_ids = list(self.tokenizer(answer, add_special_tokens=False)["input_ids"])
        answer_ids = [*answer_ids, int(self.tokenizer.eos_token_id)]
        ids = (prompt_ids + answer_ids)[: self.max_length]  # as TRL truncates: keep the start
        return ids, len(prompt_ids)

    def logprobs(
        self, items: Sequence[tuple[str | Sequence[ChatMessage], str]], adapter: bytes | None
    ) -> np.ndarray[Any, np.dtype[np.float64]]:
        """log π(answer | prompt) for each (prompt, answer), with ``adapter`` (None: the base)."""
        import torch
        from peft import set_peft_model_state_dict

        scores = np.zeros(len(items))
        if adapter is not None:
            set_peft_model_state_dict(self.model, deserialize(adapter))
        with torch.inference_mode():
            for n, (prompt, answer) in enumerate(items):
                ids, start = self._encode(prompt, answer)
                tensor = torch.tensor([ids])
                if adapter is None:
                    with self.model.disable_adapter():
                        logits = self.model(input_ids=tensor).logits[0]
                else:
                    logits = self.model(input_ids=tensor).logits[0]
                logp = torch.log_softmax(logits[:-1].float(), dim=-1)
                targets = tensor[0, 1:]
                picked = logp[torch.arange(len(targets)), targets]
                scores[n] = float(picked[start - 1 :].sum())
        return scores


def reward_accuracy(
    policy_chosen: np.ndarray[Any, Any],
    policy_rejected: np.ndarray[Any, Any],
    reference_chosen: np.ndarray[Any, Any],
    reference_rejected: np.ndarray[Any, Any],
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Per pair: 1 when the implicit reward ranks chosen above rejected, 0.5 on a tie, else 0
    (β > 0 scales both rewards alike, so it does not change the ranking)."""
    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    return np.where(margin > 0, 1.0, np.where(margin == 0, 0.5, 0.0))


def likelihood_accuracy(
    chosen: np.ndarray[Any, Any], rejected: np.ndarray[Any, Any]
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Per pair: 1 when the model itself is likelier to say the chosen answer (0.5 on a tie)."""
    return np.where(chosen > rejected, 1.0, np.where(chosen == rejected, 0.5, 0.0))
