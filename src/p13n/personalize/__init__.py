"""Personalized generation: the ``Personalizer`` and its configuration, results and trace."""

from __future__ import annotations

from p13n.personalize.personalizer import (
    Generation,
    Personalizer,
    PersonalizerConfig,
    Timings,
    Trace,
)

__all__ = ["Generation", "Personalizer", "PersonalizerConfig", "Timings", "Trace"]
