"""Local transformers models: ``hf`` (any model directory; ``p13n.llm.embedded`` builds the
offline default on it). Each model directory loads once per process, and every ``HFLLM`` over it
(adapted ones too) shares that one copy."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from p13n.errors import ConfigError, LLMError
from p13n.llm.base import (
    ChatMessage,
    Completion,
    GenerationOptions,
    local_completion,
    refuse_adapter_steering,
    until_stop,
)


@dataclass
class LoadedModel:
    """One model directory's float32 transformers model and tokenizer, as loaded once per
    process; ``lock`` is held while the model runs (one forward pass or decode at a time)."""

    model: Any
    tokenizer: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


_loaded: dict[Path, LoadedModel] = {}
_load_lock = threading.Lock()


class HFTokenizer:
    """A transformers tokenizer with the model's chat template."""

    def __init__(self, tokenizer: Any, name: str) -> None:
        self._tokenizer = tokenizer
        self.name = name

    @classmethod
    def from_directory(cls, path: str | Path, name: str | None = None) -> HFTokenizer:
        """A tokenizer alone (tokenizer.json / tokenizer_config.json), without model weights."""
        from transformers import AutoTokenizer

        directory = Path(path).expanduser()
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"{str(directory)!r} holds no transformers tokenizer: {error}"
            ) from None
        return cls(tokenizer, name or directory.name)

    @property
    def hf(self) -> Any:
        """The underlying transformers tokenizer (token ids for local runtimes)."""
        return self._tokenizer

    def count(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix ending at a token boundary that counts at most ``max_tokens``."""
        if max_tokens <= 0:
            return ""
        encoded = self._tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        if len(offsets) <= max_tokens:
            return text
        # A character split over several byte-level tokens gives each of them the offsets of the
        # whole character, so a cut can keep more tokens than asked: step back until it fits.
        keep = max_tokens
        while keep > 0:
            prefix = text[: offsets[keep - 1][1]]
            if self.count(prefix) <= max_tokens:
                return prefix
            keep -= 1
        return ""

    def render(self, messages: Sequence[ChatMessage]) -> str:
        rendered = self._tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, tokenize=False
        )
        return str(rendered)

    def count_chat(self, messages: Sequence[ChatMessage]) -> int:
        return self.count(self.render(messages))


def load_model(directory: Path) -> LoadedModel:
    """The process's copy of the model in ``directory`` (loaded on first use)."""
    directory = directory.expanduser().resolve()
    with _load_lock:
        if directory not in _loaded:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
            if not (directory / "config.json").exists():
                raise ConfigError(f"{str(directory)!r} is not a transformers model directory")
            tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(
                str(directory), local_files_only=True, dtype=torch.float32
            ).eval()  # type: ignore[no-untyped-call]
            _loaded[directory] = LoadedModel(model, tokenizer)
        return _loaded[directory]


class HFLLM:
    """Any local transformers causal LM directory (config.json, weights, tokenizer)."""

    backend = "hf"
    supports_streaming: ClassVar[bool] = True

    def __init__(self, path: str | Path, *, model_name: str | None = None) -> None:
        self.path = Path(path).expanduser().resolve()
        self._loaded = load_model(self.path)
        self.model = model_name or self.path.name
        config = self._loaded.model.config
        self.context_window = int(getattr(config, "max_position_embeddings", 2048))
        self.tokenizer = HFTokenizer(self._loaded.tokenizer, self.model)

    @property
    def torch_model(self) -> Any:
        """The underlying ``transformers`` model (for adapters and training)."""
        return self._loaded.model

    @contextmanager
    def model_in_use(self) -> Iterator[Any]:
        """The model to run, held for one forward pass or decode (the shared model's lock)."""
        with self._loaded.lock:
            yield self._loaded.model

    def _inputs(self, messages: Sequence[ChatMessage]) -> Any:
        text = self.tokenizer.render(messages)
        return self._loaded.tokenizer(text, return_tensors="pt", add_special_tokens=False)

    def _generate_kwargs(self, options: GenerationOptions) -> dict[str, Any]:
        self._prepare_steering(options)
        tokenizer = self._loaded.tokenizer
        kwargs: dict[str, Any] = {
            "max_new_tokens": options.max_new_tokens,
            "pad_token_id": (
                tokenizer.pad_token_id
                if tokenizer.pad_token_id is not None
                else tokenizer.eos_token_id
            ),
        }
        if options.temperature > 0:
            kwargs.update(do_sample=True, temperature=options.temperature, top_p=options.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if options.stop:
            kwargs.update(stop_strings=list(options.stop), tokenizer=tokenizer)
        if options.contrast is not None and options.steering > 0:
            # Context steering is transformers' classifier-free guidance with the prompt
            # without the user's data as the negative prompt: scale 1 + λ gives
            # own + λ (own - without) over log-probs (p13n.llm.base.steered_log_probs).
            contrast = self._inputs(options.contrast)
            kwargs.update(
                guidance_scale=1.0 + options.steering,
                negative_prompt_ids=contrast["input_ids"],
                negative_prompt_attention_mask=contrast["attention_mask"],
            )
        return kwargs

    def _prepare_steering(self, options: GenerationOptions) -> None:
        """Arm what ``options`` steer by, or refuse what this model cannot (an adapter's
        contrast, a steering vector: an adapted model's)."""
        refuse_adapter_steering(options, self.model)

    def _prompt_kwargs(
        self, input_ids: Any, attention_mask: Any, options: GenerationOptions
    ) -> dict[str, Any]:
        """``generate`` arguments that depend on the prompts themselves (none here; an adapted
        model adds its contrastive logits processor)."""
        return {}

    def generate(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Completion:
        import torch

        inputs = self._inputs(messages)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        kwargs = self._generate_kwargs(options)
        kwargs.update(self._prompt_kwargs(inputs["input_ids"], inputs["attention_mask"], options))
        try:
            with self.model_in_use() as model, torch.inference_mode():
                torch.manual_seed(options.seed)
                output = model.generate(**inputs, **kwargs)
        except Exception as error:
            raise LLMError(f"{self.model} failed while generating: {error}") from error
        return self._completion(output[0, prompt_tokens:].tolist(), prompt_tokens, options)

    def _completion(
        self, new_tokens: list[int], prompt_tokens: int, options: GenerationOptions
    ) -> Completion:
        """The completion of ``new_tokens``: every token the model generated for one prompt."""
        tokenizer = self._loaded.tokenizer
        return local_completion(
            tokenizer.decode(new_tokens, skip_special_tokens=True),
            new_tokens,
            {tokenizer.eos_token_id},
            prompt_tokens=prompt_tokens,
            options=options,
            model=self.model,
        )

    def generate_batch(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        options: GenerationOptions,
        *,
        batch_size: int = 8,
    ) -> list[Completion]:
        """``generate`` for many conversations, ``batch_size`` prompts per forward pass.

        Prompts are left-padded to the longest of their batch (sorted by length first, so a batch
        holds prompts of similar length) and each answer is cut where ``generate`` would have
        stopped it: at its first end-of-sequence token or stop string. Answers come back in the
        order of ``conversations``. Greedy answers equal ``generate``'s up to float rounding
        of the padded batch, which can rarely turn a near-tie between two tokens the other way.
        """
        import torch
        from transformers import StoppingCriteriaList, StopStringCriteria

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        tokenizer = self._loaded.tokenizer
        prompts: list[list[int]] = [
            list(tokenizer(self.tokenizer.render(c), add_special_tokens=False)["input_ids"])
            for c in conversations
        ]
        kwargs = self._generate_kwargs(options)
        kwargs.pop("stop_strings", None)  # stop strings are watched by ``_FirstStop`` below
        kwargs.pop("tokenizer", None)
        pad: int = kwargs["pad_token_id"]
        eos = _eos_ids(self._loaded.model, tokenizer)
        watch = (
            _FirstStop(StopStringCriteria(tokenizer, list(options.stop))) if options.stop else None
        )
        order = sorted(range(len(prompts)), key=lambda n: -len(prompts[n]))
        results: dict[int, Completion] = {}
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            width = max(len(prompts[n]) for n in chunk)
            input_ids = torch.tensor(
                [[pad] * (width - len(prompts[n])) + prompts[n] for n in chunk]
            )
            attention_mask = torch.tensor(
                [[0] * (width - len(prompts[n])) + [1] * len(prompts[n]) for n in chunk]
            )
            if watch is not None:
                watch.reset(width)
                kwargs["stopping_criteria"] = StoppingCriteriaList([watch.criteria])
            extra = self._prompt_kwargs(input_ids, attention_mask, options)
            try:
                with self.model_in_use() as model, torch.inference_mode():
                    torch.manual_seed(options.seed)
                    output = model.generate(
                        input_ids=input_ids, attention_mask=attention_mask, **kwargs, **extra
                    )
            except Exception as error:
                raise LLMError(f"{self.model} failed while generating: {error}") from error
            for row, n in enumerate(chunk):
                generated: list[int] = output[row, width:].tolist()
                # A finished row is padded to the batch's length: keep what ``generate`` would.
                end = next((t + 1 for t, token in enumerate(generated) if token in eos), None)
                if end is None:
                    end = len(generated)
                if watch is not None and row in watch.stopped_after:
                    end = min(end, watch.stopped_after[row])
                results[n] = self._completion(generated[:end], len(prompts[n]), options)
        return [results[n] for n in range(len(prompts))]

    def score_choices(self, messages: Sequence[ChatMessage], choices: Sequence[str]) -> list[float]:
        """The log-probability of each choice as the assistant's whole answer, summed over its
        tokens (lm-evaluation-harness's multiple-choice "acc"): a label or rating chosen by the
        model's likelihood instead of parsed from free text."""
        import torch

        if not choices:
            raise LLMError("score_choices needs at least one choice")
        tokenizer = self._loaded.tokenizer
        prompt = tokenizer(self.tokenizer.render(messages), add_special_tokens=False)["input_ids"]
        encoded = [tokenizer(choice, add_special_tokens=False)["input_ids"] for choice in choices]
        if any(not ids for ids in encoded):
            raise LLMError("every choice must have at least one token")
        if all(len(ids) == 1 for ids in encoded):  # labels like 1-5: one pass over the prompt
            try:
                with self.model_in_use() as model, torch.inference_mode():
                    last = model(input_ids=torch.tensor([prompt])).logits[0, -1]
            except Exception as error:
                raise LLMError(f"{self.model} failed while scoring choices: {error}") from error
            logprobs = torch.log_softmax(last.float(), dim=-1)
            return [float(logprobs[ids[0]]) for ids in encoded]
        longest = max(len(ids) for ids in encoded)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # The prompt is run once and its key/value cache shared by every choice: scoring 20
        # titles after a 300-token prompt costs 20 short continuations, not 20 full prompts.
        rows = [ids + [pad] * (longest - len(ids)) for ids in encoded]
        mask = [[1] * (len(prompt) + len(ids)) + [0] * (longest - len(ids)) for ids in encoded]
        try:
            with self.model_in_use() as model, torch.inference_mode():
                head = model(input_ids=torch.tensor([prompt]), use_cache=True)
                cache = head.past_key_values
                cache.batch_repeat_interleave(len(encoded))
                tail = model(
                    input_ids=torch.tensor(rows),
                    attention_mask=torch.tensor(mask),
                    past_key_values=cache,
                ).logits
        except Exception as error:
            raise LLMError(f"{self.model} failed while scoring choices: {error}") from error
        first = torch.log_softmax(head.logits[0, -1].float(), dim=-1)
        # tail position t predicts the choice's token t + 1
        rest = torch.log_softmax(tail[:, :-1, :].float(), dim=-1)
        return [
            float(first[ids[0]] + sum(rest[row, t, token] for t, token in enumerate(ids[1:])))
            for row, ids in enumerate(encoded)
        ]

    def stream(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        inputs = self._inputs(messages)
        streamer = TextIteratorStreamer(
            self._loaded.tokenizer, skip_prompt=True, skip_special_tokens=True
        )
        failure: list[BaseException] = []
        abandoned = threading.Event()
        kwargs = self._generate_kwargs(options)
        kwargs.update(self._prompt_kwargs(inputs["input_ids"], inputs["attention_mask"], options))

        class Abandoned(StoppingCriteria):  # the consumer stopped reading: free the model
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return abandoned.is_set()

        def decode() -> None:
            try:
                with self.model_in_use() as model, torch.inference_mode():
                    torch.manual_seed(options.seed)
                    model.generate(
                        **inputs,
                        **kwargs,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([Abandoned()]),
                    )
            except BaseException as error:  # surfaced in the caller's thread below
                failure.append(error)
                streamer.end()  # type: ignore[no-untyped-call]

        finished = threading.Event()

        def pieces() -> Iterator[str]:
            yield from streamer
            finished.set()

        worker = threading.Thread(target=decode, daemon=True)
        worker.start()
        try:
            yield from until_stop(pieces(), options.stop)
        finally:
            abandoned.set()
            if not finished.is_set():  # read to the end marker, so the worker can finish
                for _ in streamer:
                    pass
            worker.join()
        if failure:
            raise LLMError(f"{self.model} failed while generating: {failure[0]}") from failure[0]


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every token id that ends generation: the generation config's and the tokenizer's."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(tokenizer.eos_token_id)
    return {int(token) for token in ids if token is not None}


class _FirstStop:
    """Wraps transformers' ``StopStringCriteria`` to record, for each row of a batch, how many
    tokens it had generated when a stop string first ended it (later tokens are padding)."""

    def __init__(self, criteria: Any) -> None:
        from transformers import StoppingCriteria

        self._criteria = criteria
        self._width = 0
        self.stopped_after: dict[int, int] = {}

        outer = self

        class Criteria(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                done = outer._criteria(input_ids, scores, **kwargs)
                generated = int(input_ids.shape[1]) - outer._width
                for row in done.nonzero().flatten().tolist():
                    outer.stopped_after.setdefault(int(row), generated)
                return done

        self.criteria = Criteria()

    def reset(self, width: int) -> None:
        """Start a batch whose padded prompts are ``width`` tokens long."""
        self._width = width
        self.stopped_after = {}
