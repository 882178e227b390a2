"""What a LaMP-format task's examples mean (``TaskSpec``): its prompt template, the kind of its
output and which profile fields are an item's text and title; read from ``recipe.json``,
``task.toml``, or a known LaMP / LongLaMP task name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

OutputKind = Literal["text", "label", "rating"]


@dataclass(frozen=True)
class PromptSpec:
    """A task's own prompt, as a ``task.toml`` writes it: ``instruction`` frames the input
    (``{input}``), ``item`` renders one quoted item of the user's data (``{title}``, ``{text}``,
    ``{kind}``), ``item_untitled`` one without a title. The prompt layer registers it as the
    task's template."""

    instruction: str
    item: str = "{title}: {text}"
    item_untitled: str = "{text}"
    system: str = "You are a helpful assistant."


@dataclass(frozen=True)
class TaskSpec:
    """What a task's examples mean: the prompt template, the kind of output, and which profile
    fields are an item's text and its title (the label, headline, score ... the user gave it).
    A ``task.toml`` may also give the task its own prompt, metrics and answer length."""

    name: str
    template: str
    output_kind: OutputKind = "text"
    profile_text: str = "text"
    profile_title: str | None = "title"
    profile_date: str | None = "date"
    labels: tuple[str, ...] = ()
    lamp_name: str = ""  # the "task" value of outputs files, e.g. "LaMP_4"
    prompt: PromptSpec | None = None  # the task's own template, named ``template``
    metrics: tuple[str, ...] = ()  # first is primary; empty: the output kind's defaults
    max_new: int | None = None  # room for the answer; None: by output kind

    @property
    def max_new_tokens(self) -> int:
        """Room for the answer: the task's own, else by output kind (a label or a rating is
        short, a review is long)."""
        if self.max_new is not None:
            return self.max_new
        if self.output_kind == "rating":
            return 8
        if self.output_kind == "label":
            return 16
        if self.template.startswith("longlamp"):
            return 160
        if self.template == "chat":
            return 48
        return 32

    def to_dict(self) -> dict[str, Any]:
        # the task.toml fields only when set: built tasks' recipe.json stay byte-identical
        extra: dict[str, Any] = {
            "prompt": None if self.prompt is None else asdict(self.prompt),
            "metrics": list(self.metrics) or None,
            "max_new": self.max_new,
        }
        return {
            "name": self.name,
            "template": self.template,
            "output_kind": self.output_kind,
            "profile_text": self.profile_text,
            "profile_title": self.profile_title,
            "profile_date": self.profile_date,
            "labels": list(self.labels),
            "lamp_name": self.lamp_name,
            **{key: value for key, value in extra.items() if value is not None},
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TaskSpec:
        prompt = raw.get("prompt")
        return cls(
            **{
                **raw,
                "labels": tuple(raw.get("labels", ())),
                "metrics": tuple(raw.get("metrics", ())),
                "prompt": None if prompt is None else PromptSpec(**prompt),
            }
        )
