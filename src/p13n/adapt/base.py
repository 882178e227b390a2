"""What every way of learning the user shares: the trainable base model, training examples cast
from a user's documents into the task's input → output format, and the language-model loss on
the answer tokens only."""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from p13n.data import Document
from p13n.errors import ConfigError, InsufficientDataError
from p13n.llm import LLMConfig, converted_weights, local_weights
from p13n.llm.base import ChatMessage, Tokenizer
from p13n.prompt import NON_PERSONALIZED, templates

T = TypeVar("T")

IGNORE = -100
"""Label of a token the loss skips (the prompt, the padding): PyTorch's cross-entropy default."""


@dataclass(frozen=True)
class BaseModelInfo:
    """The frozen model an adapter is trained on: its name, directory and weights' sha256."""

    name: str
    path: Path
    sha256: str


_hashes: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}
_hash_lock = threading.Lock()


def weights_sha256(directory: Path) -> str:
    """sha256 over a model directory's weight files (name and bytes), computed once per process
    while the files' sizes and modification times are unchanged."""
    files = sorted(
        p for p in directory.iterdir() if p.suffix in {".safetensors", ".bin"} and p.is_file()
    )
    if not files:
        raise ConfigError(f"{str(directory)!r} holds no model weights (*.safetensors, *.bin)")
    key = (
        str(directory.resolve()),
        tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files),
    )
    with _hash_lock:
        if key not in _hashes:
            digest = hashlib.sha256()
            for path in files:
                digest.update(path.name.encode())
                with path.open("rb") as handle:
                    while block := handle.read(1 << 22):
                        digest.update(block)
            _hashes[key] = digest.hexdigest()
        return _hashes[key]


def base_model(config: LLMConfig | None = None, *, torch: bool = True) -> BaseModelInfo:
    """The local model behind an LLM config. Answering in torch with adapters or soft tokens
    (``torch``) needs a backend that runs it in torch (``llm.local_weights``: ``embedded``,
    ``hf``). Training, which loads the folder's weights in torch itself, and serving LoRA
    adapters on a conversion (``torch=False``) also work on a backend that runs a conversion of
    it (``llm.converted_weights``: ``onnx``). A remote (``openai``) backend is refused."""
    config = config or LLMConfig()
    if config.backend in local_weights:
        weights = local_weights.get(config.backend)(config)
    elif config.backend in converted_weights and not torch:
        weights = converted_weights.get(config.backend)(config)
    elif config.backend in converted_weights:
        raise ConfigError(
            f"soft tokens need the model in torch, which the {config.backend!r} backend does "
            f"not run: use backend {torch_backends()}; LoRA adapters serve on "
            f"{config.backend!r} too"
        )
    else:
        raise ConfigError(
            f"learning the user needs a local model (backend {torch_backends()}), "
            f"not {config.backend!r}: adapters and soft prompts change the model's weights "
            "or inputs"
        )
    return BaseModelInfo(weights.name, weights.path, weights_sha256(weights.path))


def torch_backends() -> str:
    """The backends that run the model in torch, for messages: ``'embedded' or 'hf'``."""
    return " or ".join(repr(name) for name in local_weights.names())


def load_torch_model(path: Path) -> Any:
    """A fresh float32 copy of the model (not the one generation shares), in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(path), local_files_only=True, dtype=torch.float32
    )
    return model.eval()


def load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


@dataclass(frozen=True)
class TrainedWeights:
    """What a trainer returns: the weights as safetensors bytes, their config and metrics."""

    weights: bytes
    config: dict[str, Any]
    data_size: int
    metrics: dict[str, Any]


@dataclass(frozen=True)
class TrainingExample:
    """One input → output pair: the task's (non-personalized) prompt and the user's answer."""

    source_id: str
    prompt: tuple[ChatMessage, ...]
    answer: str


CONTINUE = "Continue this text in its author's own words: "
MIN_CONTINUATION_WORDS = 8
"""An untitled text shorter than this teaches too little to cut in two."""


def examples_from_documents(
    documents: Iterable[Document],
    task: str,
    tokenizer: Tokenizer,
    *,
    max_input_tokens: int = 192,
    untitled: bool = False,
) -> list[TrainingExample]:
    """The user's documents as the task's examples. A titled document's text is the input (cut
    to ``max_input_tokens``) and its title the output (LaMP profiles: an article and its
    headline, an email and its subject, a review and its score). With ``untitled``, an untitled
    one (a post, a note, a chat message) of ``MIN_CONTINUATION_WORDS`` words or more is cast as
    opening → continuation: its first third is the input (after ``CONTINUE``), the rest is the
    user's own writing to learn; otherwise untitled documents are skipped."""
    template = templates.get(task)
    examples = []
    for document in documents:
        if not document.text.strip():
            continue
        if document.title:
            text, answer = tokenizer.truncate(document.text, max_input_tokens), document.title
        elif untitled and len(words := document.text.split()) >= MIN_CONTINUATION_WORDS:
            cut = len(words) // 3
            opening = tokenizer.truncate(" ".join(words[:cut]), max_input_tokens)
            text, answer = CONTINUE + opening, " ".join(words[cut:])
        else:
            continue
        prompt = NON_PERSONALIZED.build(template, text, tokenizer, 1 << 30)
        examples.append(TrainingExample(document.id or "", prompt.messages, answer))
    return examples


def require_examples(
    examples: Sequence[Any], needed: int, *, owner: str, task: str, what: str
) -> None:
    if len(examples) < needed:
        raise InsufficientDataError(
            f"{owner} has {len(examples)} usable {what} for training on task {task!r}; "
            f"at least {needed} are needed"
        )


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    labels: list[int]
    """``IGNORE`` over the prompt: only the answer's tokens are learned."""


def encode_example(
    tokenizer: Any, example: TrainingExample, *, max_answer_tokens: int = 64
) -> EncodedExample:
    """Token ids of prompt + answer + end of turn, as the chat template renders them."""
    prompt_text = tokenizer.apply_chat_template(
        list(example.prompt), add_generation_prompt=True, tokenize=False
    )
    prompt_ids = list(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
    answer_ids = list(tokenizer(example.answer, add_special_tokens=False)["input_ids"])
    answer_ids = answer_ids[:max_answer_tokens] + _end_of_turn(tokenizer)
    return EncodedExample(prompt_ids + answer_ids, [IGNORE] * len(prompt_ids) + answer_ids)


def _end_of_turn(tokenizer: Any) -> list[int]:
    eos = tokenizer.eos_token_id
    return [] if eos is None else [int(eos)]


def padded_batch(batch: Sequence[EncodedExample], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors for a batch: input ids, attention mask, labels."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = [e.input_ids + [pad_id] * (width - len(e.input_ids)) for e in batch]
    mask = [[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in batch]
    labels = [e.labels + [IGNORE] * (width - len(e.labels)) for e in batch]
    return {
        "input_ids": torch.tensor(ids),
        "attention_mask": torch.tensor(mask),
        "labels": torch.tensor(labels),
    }


def pad_id(tokenizer: Any) -> int:
    value = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(value or 0)


@dataclass(frozen=True)
class LossCurve:
    """Per-step training losses and the mean loss of the first and the last epoch."""

    losses: list[float]
    steps_per_epoch: int

    @property
    def steps(self) -> int:
        return len(self.losses)

    def metrics(self) -> dict[str, float | int]:
        first = self.losses[: self.steps_per_epoch]
        last = self.losses[-self.steps_per_epoch :]
        return {
            "steps": self.steps,
            "loss_first_epoch": round(sum(first) / len(first), 4),
            "loss_last_epoch": round(sum(last) / len(last), 4),
        }


def optimise(
    items: Sequence[T],
    loss_of: Callable[[list[T]], Any],
    optimiser: Any,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
) -> LossCurve:
    """Minibatch training: each epoch shuffles ``items`` (seeded), and each batch's loss is
    back-propagated and stepped; ``progress(done, total)`` after each step."""
    steps_per_epoch = -(-len(items) // batch_size)
    total = steps_per_epoch * epochs
    order = random.Random(seed)
    losses: list[float] = []
    for _ in range(epochs):
        shuffled = list(items)
        order.shuffle(shuffled)
        for start in range(0, len(shuffled), batch_size):
            loss = loss_of(shuffled[start : start + batch_size])
            loss.backward()
            optimiser.step()
            optimiser.zero_grad(set_to_none=True)
            losses.append(loss.item())
            if progress is not None:
                progress(len(losses), total)
    return LossCurve(losses, steps_per_epoch)
