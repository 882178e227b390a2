"""Where p13n keeps files it derives (exported encoders, dequantized models)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$P13N_CACHE_DIR``, else ``~/.cache/p13n``."""
    return Path(os.environ.get("P13N_CACHE_DIR", Path.home() / ".cache" / "p13n")).expanduser()


def recommenders_dir(tenant: str) -> Path:
    """Where ``p13n recommend`` keeps a tenant's fitted recommenders (they hold its users' ids)."""
    return cache_dir() / "recommenders" / tenant
