"""Full fine-tuning (survey §5.3.1): every weight of the base model trained on a task's examples
(global level: one model for all users of a task) or on a persona's members' documents (one
model per persona, beside the persona's LoRA adapter).

Unlike an adapter, the result is a whole model. It is written as a transformers folder under
``$P13N_CACHE_DIR/finetuned``, named by the digest of its recipe (base model, settings, examples)
and built atomically: into a scratch folder renamed into place once its manifest is written, so
a half-written model is never served. Training checkpoints every ``checkpoint_steps`` steps
beside it, and a run stopped midway resumes from the last checkpoint with the same result. The
store registers the model like an adapter (owner: the tenant for a task's model, or a persona);
its entry's weights are a small manifest naming the folder and the sha256 of its weights, checked
whenever it is served (``p13n.adapt.finetuned``)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from p13n.adapt.base import (
    BaseModelInfo,
    LossCurve,
    TrainedWeights,
    TrainingExample,
    encode_example,
    load_tokenizer,
    load_torch_model,
    pad_id,
    padded_batch,
    weights_sha256,
)
from p13n.paths import cache_dir

Progress = Callable[[int, int], None]
RECIPE = "p13n-finetune.json"
MANIFEST_FORMAT = "p13n-finetuned/1"


class FinetuneSettings(BaseModel):
    """What full fine-tuning trains on and how: every weight, AdamW, one seeded schedule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(1, ge=1)
    learning_rate: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(8, ge=1)
    max_input_tokens: int = Field(192, ge=8, description="each input is cut to this")
    max_answer_tokens: int = Field(64, ge=1)
    max_examples: int = Field(256, ge=1, description="the first N examples are trained on")
    min_examples: int = Field(32, ge=1, description="fewer usable examples: refused")
    checkpoint_steps: int = Field(
        16, ge=1, description="steps between checkpoints a stopped run resumes from"
    )
    seed: int = 0


def recipe_of(
    base: BaseModelInfo, examples: Sequence[TrainingExample], settings: FinetuneSettings
) -> dict[str, Any]:
    """Everything the model's weights follow from: a different recipe is a different model."""
    data = hashlib.sha256()
    for example in examples:
        data.update(json.dumps([example.source_id, example.prompt, example.answer]).encode())
    return {
        "base": base.name,
        "base_sha256": base.sha256,
        "settings": settings.model_dump(mode="json"),
        "examples": len(examples),
        "examples_sha256": data.hexdigest(),
    }


def recipe_digest(recipe: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def model_folder(base: BaseModelInfo, digest: str) -> Path:
    return cache_dir() / "finetuned" / f"{base.name}-ft-{digest[:16]}"


def finetune(
    base: BaseModelInfo,
    examples: Sequence[TrainingExample],
    settings: FinetuneSettings,
    *,
    progress: Progress | None = None,
) -> TrainedWeights:
    """The fine-tuned model for these examples: the folder built before when its recipe is the
    same (its ``metrics`` say ``reused``), else trained now (resuming a stopped run). Returns
    the store's manifest as the ``weights`` to register."""
    from p13n.llm.onnx import built_once

    recipe = recipe_of(base, examples, settings)
    digest = recipe_digest(recipe)
    target = model_folder(base, digest)
    checkpoint = target.parent / f".{target.name}.checkpoint.pt"
    trained_now = False

    def build(built: Path, scratch: Path) -> None:
        nonlocal trained_now
        trained_now = True
        metrics = _train(base, examples, settings, checkpoint, digest, built, progress)
        recipe_file = {"recipe": recipe, "recipe_sha256": digest, "metrics": metrics}
        (built / RECIPE).write_text(json.dumps(recipe_file, indent=2) + "\n", encoding="utf-8")

    folder = built_once(target, {"format": MANIFEST_FORMAT, "recipe_sha256": digest}, build)
    checkpoint.unlink(missing_ok=True)
    metrics = json.loads((folder / RECIPE).read_text(encoding="utf-8"))["metrics"]
    model_bytes = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    manifest = {
        "format": MANIFEST_FORMAT,
        "path": str(folder),
        "weights_sha256": weights_sha256(folder),
        "recipe_sha256": digest,
    }
    return TrainedWeights(
        weights=json.dumps(manifest, sort_keys=True).encode(),
        config={"full": True, **settings.model_dump(mode="json"), "path": str(folder)},
        data_size=len(examples),
        metrics={**metrics, "model_bytes": model_bytes, "reused": not trained_now},
    )


def _schedule(count: int, settings: FinetuneSettings) -> list[list[int]]:
    """Every step's batch of example indices, all epochs, fixed by the seed (so a resumed run
    takes exactly the steps a whole one would)."""
    import random

    order = random.Random(settings.seed)
    steps: list[list[int]] = []
    for _ in range(settings.epochs):
        indices = list(range(count))
        order.shuffle(indices)
        size = settings.batch_size
        steps += [indices[i : i + size] for i in range(0, count, size)]
    return steps


def _train(
    base: BaseModelInfo,
    examples: Sequence[TrainingExample],
    settings: FinetuneSettings,
    checkpoint: Path,
    digest: str,
    out: Path,
    progress: Progress | None,
) -> dict[str, Any]:
    """Train every weight and save the model and tokenizer into ``out``. ``adapt.base.optimise``
    is not used: it cannot start from a checkpoint's step."""
    import torch

    torch.manual_seed(settings.seed)
    tokenizer = load_tokenizer(base.path)
    model = load_torch_model(base.path)
    encoded = [
        encode_example(tokenizer, e, max_answer_tokens=settings.max_answer_tokens) for e in examples
    ]
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    steps = _schedule(len(encoded), settings)
    losses: list[float] = []
    seconds, resumed = 0.0, 0
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        if state.get("recipe_sha256") == digest:
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            losses, seconds = list(state["losses"]), float(state["seconds"])
            resumed = len(losses)
    pad = pad_id(tokenizer)
    model.train()
    started = time.perf_counter()
    for step in range(len(losses), len(steps)):
        torch.manual_seed(settings.seed + step)
        loss = model(**padded_batch([encoded[i] for i in steps[step]], pad)).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        losses.append(loss.item())
        done = step + 1
        if done % settings.checkpoint_steps == 0 and done < len(steps):
            elapsed = seconds + time.perf_counter() - started
            _save_checkpoint(checkpoint, model, optimiser, losses, elapsed, digest)
        if progress is not None:
            progress(done, len(steps))
    model.eval()
    seconds += time.perf_counter() - started
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    per_epoch = -(-len(encoded) // settings.batch_size)
    return {
        "train_seconds": round(seconds, 2),
        **LossCurve(losses, per_epoch).metrics(),
        "resumed_from_step": resumed,
        "answer_tokens": sum(sum(1 for t in e.labels if t >= 0) for e in encoded),
        "torch_threads": torch.get_num_threads(),
    }


def _save_checkpoint(
    path: Path, model: Any, optimiser: Any, losses: list[float], seconds: float, digest: str
) -> None:
    import torch

    state = {
        "recipe_sha256": digest,
        "model": model.state_dict(),
        "optimiser": optimiser.state_dict(),
        "losses": losses,
        "seconds": seconds,
    }
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)  # a checkpoint is whole or absent
