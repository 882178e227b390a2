"""Personalized generation: the ``Personalizer`` and its configuration, results and trace."""

from __future__ import annotations

from p13n.personalize.personalizer import (
    Generation,
    Personalizer,
    PersonalizerConfig,
    PreparedPrompt,
    Timings,
    Trace,
)

__all__ = ["Generation", "Personalizer", "PersonalizerConfig", "PreparedPrompt", "Timings", "Trace"]
