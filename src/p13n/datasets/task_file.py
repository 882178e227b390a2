"""``task.toml``: what a folder of LaMP-format files means, so one's own task runs without a recipe.

A task folder holds ``{split}_questions.json`` and ``{split}_outputs.json`` (or golds inline) and
one small ``task.toml`` with a ``[task]`` table::

    [task]
    output = "text"                # text, label or rating
    instruction = "Write a title for this post: {input}"
    item = "{title} is the title of {text}"   # one quoted item of the user's data
    profile_text = "text"          # which profile field is an item's text
    profile_title = "title"        # ... and its title ("" when items have none)
    metrics = ["rouge-1", "rouge-l"]   # the first is the one the task is judged on
    max_new_tokens = 32

``template = "lamp4"`` names a registered template instead of writing one (``instruction`` and
``template`` are exclusive). ``p13n tasks init FOLDER`` writes a file like this from the folder's
own examples; every field is documented in docs/DATASETS.md. Names of templates and metrics are
checked by the layers that own them, which pass their names in (``read_task_file``).
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from p13n.datasets.spec import OutputKind, PromptSpec, TaskSpec
from p13n.errors import TaskFormatError

TASK_FILE = "task.toml"
RATING_LABELS = ("1", "2", "3", "4", "5")
"""A rating task's scale when its file names none: LaMP-3's 1-5 stars."""
ITEM_FIELDS = frozenset({"title", "text", "kind"})
TEMPLATE_NAME = re.compile(r"^[a-z][a-z0-9_\-]{0,63}$")
"""What a registered template may be called (``p13n.registry``): a task's own is named after it."""
# which metric kinds (p13n.evaluate.metrics) may score which output kind
METRIC_KINDS: dict[str, frozenset[str]] = {
    "text": frozenset({"text", "dialogue"}),
    "label": frozenset({"label"}),
    "rating": frozenset({"rating", "label"}),
}


def placeholders(template: str) -> list[str]:
    """The ``{name}`` fields of a format string, in order; anything but plain names is refused."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise ValueError(f"template {template!r}: {error}") from None
    for _, name, format_spec, conversion in parsed:
        if name is None:
            continue
        if not name.replace("_", "").isalnum() or format_spec or conversion:
            raise ValueError(
                f"template {template!r}: use plain {{field}} placeholders, not {name!r}"
            )
        names.append(name)
    return names


class TaskFile(BaseModel):
    """The ``[task]`` table of a ``task.toml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, description="the task's name; default: the folder's name")
    output: OutputKind = Field("text", description="text, label or rating")
    template: str | None = Field(None, description="a registered template, e.g. lamp4")
    instruction: str | None = Field(None, description="the task's own instruction, with {input}")
    item: str | None = Field(None, description="one item of the user's data: {title} {text}")
    item_untitled: str | None = Field(None, description="an item without a title: {text}")
    system: str | None = Field(None, description="the system prompt")
    profile_text: str = Field("text", min_length=1, description="the profile field of the text")
    profile_title: str = Field("title", description="the field of its title; '' for none")
    profile_date: str = Field("date", description="the field of its date; '' for none")
    labels: list[str] = Field(default_factory=list, description="a label task's classes")
    metrics: list[str] = Field(default_factory=list, description="first is primary")
    max_new_tokens: int | None = Field(None, ge=1, le=4096, description="room for the answer")

    @field_validator("instruction")
    @classmethod
    def _frames_the_input(cls, value: str | None) -> str | None:
        if value is not None and placeholders(value) != ["input"]:
            raise ValueError("must contain {input} once and no other {field}")
        return value

    @field_validator("item", "item_untitled")
    @classmethod
    def _item_fields(cls, value: str | None) -> str | None:
        unknown = sorted(set(placeholders(value or "")) - ITEM_FIELDS)
        if unknown:
            raise ValueError(f"knows {{title}}, {{text}} and {{kind}}, not {unknown}")
        return value

    @field_validator("labels", "metrics")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if any(not entry.strip() for entry in value):
            raise ValueError("entries must not be empty")
        if len(set(value)) != len(value):
            raise ValueError(f"entries must be distinct: {value}")
        return value

    @model_validator(mode="after")
    def _one_prompt(self) -> TaskFile:
        if (self.template is None) == (self.instruction is None):
            raise ValueError("give either template (a registered one) or instruction (your own)")
        if self.template is not None:
            own = [f for f in ("item", "item_untitled", "system") if getattr(self, f) is not None]
            if own:
                raise ValueError(f"{', '.join(own)} belong to an instruction, not to a template")
        if self.output == "label" and len(self.labels) == 1:
            raise ValueError("a label task needs two labels or more (or none: free labels)")
        return self

    def spec(self, default_name: str) -> TaskSpec:
        """The task spec this file describes (named after the folder unless it names itself)."""
        name = self.name or default_name
        prompt = None
        if self.instruction is not None:
            prompt = PromptSpec(
                self.instruction,
                item=self.item or PromptSpec.item,
                item_untitled=self.item_untitled or PromptSpec.item_untitled,
                system=self.system or PromptSpec.system,
            )
        labels = tuple(self.labels) or (RATING_LABELS if self.output == "rating" else ())
        return TaskSpec(
            name=name,
            template=self.template or name,
            output_kind=self.output,
            profile_text=self.profile_text,
            profile_title=self.profile_title or None,
            profile_date=self.profile_date or None,
            labels=labels,
            prompt=prompt,
            metrics=tuple(self.metrics),
            max_new=self.max_new_tokens,
        )


def _problems(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'task'}: "
        f"{problem['msg'].removeprefix('Value error, ')}"
        for problem in error.errors()
    )


def read_task_file(
    path: Path,
    *,
    templates: Collection[str] | None = None,
    metrics: dict[str, str] | None = None,
) -> TaskSpec:
    """The spec of a ``task.toml``; errors name the file and the field. ``templates`` (the
    registered names) and ``metrics`` (name → metric kind) check the names the file uses."""
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaskFormatError(f"{path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise TaskFormatError(f"{path}: not valid TOML ({error})") from None
    extra = sorted(set(raw) - {"task"})
    if extra or not isinstance(raw.get("task"), dict):
        raise TaskFormatError(
            f"{path}: holds one [task] table" + (f", not {extra}" if extra else "")
        )
    try:
        task = TaskFile.model_validate(raw["task"])
    except ValidationError as error:
        raise TaskFormatError(f"{path}: [task] {_problems(error)}") from None
    spec = task.spec(path.parent.name)
    if spec.prompt is not None and not TEMPLATE_NAME.match(spec.name):
        where = "name" if task.name else "name (the folder's name, as none is given)"
        raise TaskFormatError(
            f"{path}: [task] {where}: {spec.name!r} cannot name the task's template: use "
            "lowercase letters, digits, '_' or '-', starting with a letter"
        )
    if templates is not None:
        _check_template(path, task, templates)
    if metrics is not None:
        _check_metrics(path, spec, metrics)
    return spec


def _check_template(path: Path, task: TaskFile, known: Collection[str]) -> None:
    if task.template is not None and task.template not in known:
        raise TaskFormatError(
            f"{path}: [task] template: unknown template {task.template!r}; known: "
            f"{', '.join(sorted(known))} (or write your own with instruction = ...)"
        )


def _check_metrics(path: Path, spec: TaskSpec, known: dict[str, str]) -> None:
    for name in spec.metrics:
        if name not in known:
            raise TaskFormatError(
                f"{path}: [task] metrics: unknown metric {name!r}; known: "
                f"{', '.join(sorted(known))}"
            )
        if known[name] not in METRIC_KINDS[spec.output_kind]:
            raise TaskFormatError(
                f"{path}: [task] metrics: {name!r} scores {known[name]} answers, and this "
                f"task's output is {spec.output_kind}"
            )
