"""Personalized generation: the ``Personalizer`` and its configuration, results and trace."""

from __future__ import annotations

from p13n.personalize.config import PersonalizerConfig
from p13n.personalize.labels import LabelChoice
from p13n.personalize.personalizer import Personalizer
from p13n.personalize.policy import LabelPolicy, Policy, PolicyEvidence, load_policy, save_policy
from p13n.personalize.trace import Generation, PartialTrace, PreparedPrompt, Timings, Trace

__all__ = [
    "Generation",
    "LabelChoice",
    "LabelPolicy",
    "PartialTrace",
    "Personalizer",
    "PersonalizerConfig",
    "Policy",
    "PolicyEvidence",
    "PreparedPrompt",
    "Timings",
    "Trace",
    "load_policy",
    "save_policy",
]
