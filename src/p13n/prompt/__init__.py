"""Prompt construction φ_p: task templates and builders that fit the user's data into a budget."""

from __future__ import annotations

from p13n.prompt.builders import NON_PERSONALIZED, Prompt, PromptBuilder, PromptItem, builders
from p13n.prompt.profile import ProfileResult, ProfileWriter
from p13n.prompt.templates import TaskTemplate, quote, templates

__all__ = [
    "NON_PERSONALIZED",
    "ProfileResult",
    "ProfileWriter",
    "Prompt",
    "PromptBuilder",
    "PromptItem",
    "TaskTemplate",
    "builders",
    "quote",
    "templates",
]
