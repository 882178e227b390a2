"""Personalized generation: the ``Personalizer`` and its configuration, results and trace."""

from __future__ import annotations

from p13n.personalize.personalizer import Personalizer, PersonalizerConfig
from p13n.personalize.trace import Generation, PartialTrace, PreparedPrompt, Timings, Trace

__all__ = [
    "Generation",
    "PartialTrace",
    "Personalizer",
    "PersonalizerConfig",
    "PreparedPrompt",
    "Timings",
    "Trace",
]
