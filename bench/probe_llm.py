"""Prove that a change did not alter what the model sees, without waiting for the model.

Registers a stand-in LLM backend, ``probe``, that answers at once with a digest of the prompt
(and scores choices by a digest too), counts tokens with the embedded model's own tokenizer and
has its context window, so every prompt is built exactly as for the embedded model. Then runs the
``p13n`` command with the arguments given. Run a benchmark with it on the code before a change
and on the code after, with one generation cache: the second run must generate 0 new answers,
and its tables must equal the first's.

    python bench/probe_llm.py bench run bench/configs/lamp_suite.toml \\
        --backend probe --workers 1 --cache /tmp/probe-cache --out /tmp/probe-before
    # ... change the code ...
    python bench/probe_llm.py bench run bench/configs/lamp_suite.toml \\
        --backend probe --workers 1 --cache /tmp/probe-cache --out /tmp/probe-after
    diff /tmp/probe-before/summary.md /tmp/probe-after/summary.md   # only the cache line differs

(``--workers 1``: Ray's workers are other processes, where the probe is not registered.)
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator, Sequence
from typing import ClassVar

from p13n.cli import app
from p13n.llm import ChatMessage, Completion, GenerationOptions, backends
from p13n.llm.embedded import EMBEDDED_MODEL, embedded_model_dir
from p13n.llm.hf import HFTokenizer


def digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class ProbeLLM:
    """Answers instantly and deterministically; prompts are built as for the embedded model."""

    backend = "probe"
    model = f"probe-of-{EMBEDDED_MODEL}"
    context_window = 8192  # SmolLM2-135M-Instruct's max_position_embeddings
    supports_streaming: ClassVar[bool] = True

    def __init__(self) -> None:
        self.tokenizer = HFTokenizer.from_directory(embedded_model_dir(), EMBEDDED_MODEL)

    def generate(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Completion:
        text = "probe " + digest(list(messages), options.model_dump())[:12]
        return Completion(text, self.tokenizer.count_chat(messages), 2, "stop", self.model)

    def generate_batch(
        self, conversations: Sequence[Sequence[ChatMessage]], options: GenerationOptions
    ) -> list[Completion]:
        return [self.generate(messages, options) for messages in conversations]

    def stream(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Iterator[str]:
        yield self.generate(messages, options).text

    def score_choices(self, messages: Sequence[ChatMessage], choices: Sequence[str]) -> list[float]:
        return [-int(digest(list(messages), choice)[:6], 16) / 1e6 for choice in choices]


if __name__ == "__main__":
    backends.register("probe", lambda config: ProbeLLM())
    sys.argv = ["p13n", *sys.argv[1:]]
    app()
