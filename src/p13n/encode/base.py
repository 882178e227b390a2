"""The ``Encoder`` protocol: texts in, L2-normalised float32 vectors out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into vectors. ``id`` names the model exactly: stored vectors are keyed by it."""

    id: str
    dim: int

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """One L2-normalised row per text, shape (len(texts), dim)."""
        ...
