"""``onnx``: a local transformers model decoded by ONNX Runtime GenAI.

The model folder is converted once by the runtime's own model builder (int4 by default; int8 and
fp32 selectable) into ``$P13N_CACHE_DIR/onnx-genai``. A manifest written last records the
source's sha256, the precision, the library's version and the sha256 of every file written; a
conversion whose manifest is missing, stale or does not match its files is converted again, so a
half-written or corrupted one is never used. Prompts are tokenized by the source folder's own
tokenizer and chat template, so the runtime sees exactly the token ids the torch model sees.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from p13n.errors import ConfigError, LLMError
from p13n.llm.base import (
    ChatMessage,
    Completion,
    GenerationOptions,
    cut_at_stop,
    local_completion,
    refuse_adapter_steering,
    until_stop,
)
from p13n.llm.hf import HFTokenizer
from p13n.llm.onnx_worker import runtime_worker
from p13n.paths import cache_dir

Precision = Literal["int4", "int8", "fp32"]
PRECISIONS: tuple[Precision, ...] = ("int4", "int8", "fp32")
MANIFEST = "p13n-conversion.json"
MANIFEST_FORMAT = 1

log = logging.getLogger(__name__)


def runtime_version() -> str:
    from importlib.metadata import version

    return version("onnxruntime-genai")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


@functools.cache
def _source_sha256(folder: Path, stats: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in stats:
        digest.update(name.encode() + b"\0" + file_sha256(folder / name).encode())
    return digest.hexdigest()


def source_sha256(folder: Path) -> str:
    """One sha256 over every file of a model folder (names and contents); computed once per
    process for a folder whose files keep their sizes and modification times."""
    stats = tuple(
        (str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in _files(folder)
    )
    return _source_sha256(folder, stats)


def _problem(target: Path, expected: dict[str, Any]) -> str | None:
    """Why the conversion in ``target`` cannot be used, or None when it can."""
    try:
        manifest = json.loads((target / MANIFEST).read_text())
    except FileNotFoundError:
        return "it has no manifest (unfinished)"
    except (OSError, ValueError) as error:
        return f"its manifest is unreadable ({error})"
    for key, value in expected.items():
        if manifest.get(key) != value:
            return f"its {key} is {manifest.get(key)!r}, not {value!r}"
    for name, recorded in manifest.get("files", {}).items():
        path = target / name
        if not path.is_file() or path.stat().st_size != recorded["size"]:
            return f"{name} is missing or has the wrong size"
        if file_sha256(path) != recorded["sha256"]:
            return f"{name} does not match its recorded sha256"
    if not manifest.get("files"):
        return "its manifest lists no files"
    return None


def converted_model(source: Path, precision: Precision = "int4") -> Path:
    """The runtime's copy of the transformers model folder ``source`` at ``precision``:
    converted on first use (tens of seconds), then reused by every process until the source,
    the precision or the runtime's version changes."""
    if precision not in PRECISIONS:
        raise ConfigError(
            f"onnx precision must be one of {', '.join(PRECISIONS)}, not {precision!r}"
        )
    source = source.expanduser().resolve()
    if not (source / "config.json").exists():
        raise ConfigError(f"{str(source)!r} is not a transformers model directory")
    digest = source_sha256(source)
    expected = {
        "format": MANIFEST_FORMAT,
        "source_sha256": digest,
        "precision": precision,
        "onnxruntime_genai": runtime_version(),
    }
    target = cache_dir() / "onnx-genai" / f"{source.name}-{precision}-{digest[:16]}"

    def convert(built: Path, scratch: Path) -> None:
        _convert(source, precision, built, scratch)

    return built_once(target, expected, convert, extra={"source": str(source)})


def built_once(
    target: Path,
    expected: dict[str, Any],
    build: Callable[[Path, Path], None],
    *,
    extra: dict[str, Any] | None = None,
) -> Path:
    """``target``, built by ``build(folder, scratch)`` unless a complete build matching
    ``expected`` is there: under a file lock (one builder at a time, across processes), into a
    scratch folder renamed into place after the manifest (``expected``, ``extra`` and every
    file's size and sha256) is written last."""
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        problem = _problem(target, expected)
        if problem is None:
            return target
        if target.exists():
            log.warning("building %s again: %s", target, problem)
            shutil.rmtree(target)
        scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            built = scratch / "model"
            build(built, scratch)
            files = {
                str(p.relative_to(built)): {"size": p.stat().st_size, "sha256": file_sha256(p)}
                for p in _files(built)
            }
            manifest = {**expected, **(extra or {}), "files": files}
            (built / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            os.replace(built, target)  # atomic: another process sees all of it or none
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def _convert(source: Path, precision: Precision, built: Path, scratch: Path) -> None:
    log.info("converting %s to ONNX Runtime GenAI (%s), once", source, precision)
    command = [
        sys.executable, "-m", "onnxruntime_genai.models.builder",
        "-i", str(source), "-o", str(built), "-p", precision, "-e", "cpu",
        "-c", str(scratch / "builder-cache"),
    ]  # fmt: skip
    offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ORT_DISABLE_TELEMETRY": "1"}
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **offline}, check=False
    )
    if done.returncode != 0 or not (built / "genai_config.json").exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise LLMError(
            f"converting {source} to ONNX Runtime GenAI ({precision}) failed: " + " | ".join(tail)
        )


class OnnxLLM:
    """A local transformers model folder, decoded by ONNX Runtime GenAI at ``precision`` in a
    process of its own (``onnx_worker``), shared by every ``OnnxLLM`` of this process on the
    same conversion."""

    backend = "onnx"
    supports_streaming: ClassVar[bool] = True

    def __init__(
        self, source: str | Path, *, model_name: str | None = None, precision: Precision = "int4"
    ) -> None:
        self.source = Path(source).expanduser().resolve()
        self.precision = precision
        self.folder = self._model_folder(converted_model(self.source, precision))
        self.runtime = runtime_worker(self.folder)
        self.model = f"{model_name or self.source.name}-onnx-{precision}"
        self.tokenizer = HFTokenizer.from_directory(self.source, self.model)
        self._hf = self.tokenizer.hf
        settings = json.loads((self.folder / "genai_config.json").read_text())["model"]
        self.context_window = int(settings["context_length"])
        eos = settings["eos_token_id"]
        self._eos = {int(t) for t in (eos if isinstance(eos, list) else [eos])}

    def _model_folder(self, converted: Path) -> Path:
        """The folder the runtime loads: the conversion itself here."""
        return converted

    def _adapter(self) -> str | None:
        """The runtime's key of the adapter to answer with (none here)."""
        return None

    def _prompt(self, messages: Sequence[ChatMessage]) -> list[int]:
        ids = self._hf(self.tokenizer.render(messages), add_special_tokens=False)["input_ids"]
        return [int(t) for t in ids]

    def _search(self, prompt: list[int], options: GenerationOptions) -> dict[str, Any]:
        """The runtime's search options for ``prompt``."""
        if len(prompt) >= self.context_window:
            raise LLMError(
                f"{self.model}: the prompt has {len(prompt)} tokens; "
                f"the context holds {self.context_window}"
            )
        search: dict[str, Any] = {
            "max_length": min(self.context_window, len(prompt) + options.max_new_tokens),
            "do_sample": options.temperature > 0,
        }
        if options.temperature > 0:
            # transformers' sampling defaults (top_k 50), so both backends sample alike
            search.update(
                temperature=options.temperature,
                top_p=options.top_p,
                top_k=50,
                random_seed=options.seed,
            )
        return search

    def _decode(self, prompt: list[int], options: GenerationOptions) -> Iterator[int]:
        """The new token ids, one by one, as the runtime decodes them (the end token included)."""
        refuse_adapter_steering(options, self.model)
        contrast = None
        if options.contrast is not None and options.steering > 0:
            contrast = (self._prompt(options.contrast), options.steering)
        search = self._search(prompt, options)
        for token in self.runtime.decode(prompt, search, self._adapter(), contrast):
            yield token
            if token in self._eos:
                return

    def generate(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Completion:
        prompt = self._prompt(messages)
        tokens: list[int] = []
        try:
            for token in self._decode(prompt, options):
                tokens.append(token)
                if options.stop and cut_at_stop(self._text(tokens), options.stop)[1]:
                    break
        except LLMError:
            raise
        except Exception as error:
            raise LLMError(f"{self.model} failed while generating: {error}") from error
        return local_completion(
            self._text(tokens),
            tokens,
            self._eos,
            prompt_tokens=len(prompt),
            options=options,
            model=self.model,
        )

    def _text(self, tokens: list[int]) -> str:
        return str(self._hf.decode(tokens, skip_special_tokens=True))

    def generate_batch(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        options: GenerationOptions,
        *,
        batch_size: int = 8,
    ) -> list[Completion]:
        """``generate`` for each conversation in turn. The runtime's continuous-batching
        ``Engine`` was measured slower than this on 2 cores (docs/BENCHMARKS.md), and its greedy
        answers differ from one-at-a-time decoding by float rounding; one at a time, a batch's
        answers equal ``generate``'s exactly."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        return [self.generate(messages, options) for messages in conversations]

    def stream(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Iterator[str]:
        prompt = self._prompt(messages)

        def pieces() -> Iterator[str]:
            tokens: list[int] = []
            shown = ""
            for token in self._decode(prompt, options):
                tokens.append(token)
                text = self._text(tokens)
                # a piece ending in an incomplete UTF-8 character waits for the next token
                if text.endswith("\ufffd"):
                    continue
                if len(text) > len(shown):
                    yield text[len(shown) :]
                    shown = text

        try:
            yield from until_stop(pieces(), options.stop)
        except LLMError:
            raise
        except Exception as error:
            raise LLMError(f"{self.model} failed while generating: {error}") from error

    def score_choices(self, messages: Sequence[ChatMessage], choices: Sequence[str]) -> list[float]:
        """The log-probability of each choice as the assistant's whole answer, summed over its
        tokens, as ``HFLLM.score_choices``: the prompt is decoded once, and the runtime rewinds
        to its end before each choice."""
        if not choices:
            raise LLMError("score_choices needs at least one choice")
        prompt = self._prompt(messages)
        encoded = [
            [int(t) for t in self._hf(c, add_special_tokens=False)["input_ids"]] for c in choices
        ]
        if any(not ids for ids in encoded):
            raise LLMError("every choice must have at least one token")
        longest = max(len(ids) for ids in encoded)
        search = self._search(prompt, GenerationOptions(max_new_tokens=longest + 1))
        try:
            return self.runtime.score(prompt, search, self._adapter(), encoded)
        except Exception as error:
            raise LLMError(f"{self.model} failed while scoring choices: {error}") from error
