"""Prompt construction φ_p: task templates and builders that fit the user's data into a budget.
Pure: no I/O and no model calls (stored profiles are written in ``p13n.personalize.profile``)."""

from __future__ import annotations

from p13n.prompt.builders import (
    NON_PERSONALIZED,
    Prompt,
    PromptBuilder,
    PromptItem,
    builders,
    with_input,
)
from p13n.prompt.templates import TaskTemplate, quote, task_template, templates

__all__ = [
    "NON_PERSONALIZED",
    "Prompt",
    "PromptBuilder",
    "PromptItem",
    "TaskTemplate",
    "builders",
    "quote",
    "task_template",
    "templates",
    "with_input",
]
