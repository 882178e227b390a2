"""The LaMP / LongLaMP benchmark format (Salemi et al. 2023; Kumar et al. 2024), read and written.

A task split is two JSON files. ``*_questions.json`` is a list of examples, each
``{"id", "input", "profile": [{"id", <fields>...}]}`` where the profile holds the user's own past
items; ``*_outputs.json`` is ``{"task": "LaMP_4", "golds": [{"id", "output"}]}``. LongLaMP's
released files put ``output`` (and a ``user_id`` or ``name``) inline in each example; both shapes
read the same. p13n writes the LaMP shape (two files per split) plus ``recipe.json`` when the task
was built from a corpus, so anyone holding the official files can run them unchanged.

Profile items carry task-specific fields (LaMP-4: ``text`` + ``title``; LaMP-3: ``text`` +
``score``; LaMP-5: ``abstract`` + ``title`` ...). ``TaskSpec`` names which field is the item's
text and which its label/title, so prompts render them as the LaMP prompts do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from p13n.errors import TaskFormatError

OutputKind = Literal["text", "label", "rating"]
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class LampExample:
    """One question: the input, the user's profile of past items and (if known) the gold output."""

    id: str
    input: str
    profile: list[dict[str, Any]]
    output: str | None = None
    user_id: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    """What a task's examples mean: the prompt template, the kind of output, and which profile
    fields are an item's text and its title (the label, headline, score ... the user gave it)."""

    name: str
    template: str
    output_kind: OutputKind = "text"
    profile_text: str = "text"
    profile_title: str | None = "title"
    profile_date: str | None = "date"
    labels: tuple[str, ...] = ()
    lamp_name: str = ""  # the "task" value of outputs files, e.g. "LaMP_4"

    @property
    def max_new_tokens(self) -> int:
        """Room for the answer, by output kind: a label or a rating is short, a review is long."""
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
        return {
            "name": self.name,
            "template": self.template,
            "output_kind": self.output_kind,
            "profile_text": self.profile_text,
            "profile_title": self.profile_title,
            "profile_date": self.profile_date,
            "labels": list(self.labels),
            "lamp_name": self.lamp_name,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TaskSpec:
        return cls(**{**raw, "labels": tuple(raw.get("labels", ()))})


# The official LaMP tasks, so their files run as released (LaMP-6 was never made public).
LAMP_TASKS: dict[str, TaskSpec] = {
    spec.lamp_name: spec
    for spec in (
        TaskSpec(
            "lamp1",
            "lamp1",
            "label",
            "abstract",
            "title",
            labels=("[1]", "[2]"),
            lamp_name="LaMP_1",
        ),
        TaskSpec("lamp2", "lamp2", "label", "text", "category", lamp_name="LaMP_2"),
        TaskSpec(
            "lamp3",
            "lamp3",
            "rating",
            "text",
            "score",
            labels=("1", "2", "3", "4", "5"),
            lamp_name="LaMP_3",
        ),
        TaskSpec("lamp4", "lamp4", "text", "text", "title", lamp_name="LaMP_4"),
        TaskSpec("lamp5", "lamp5", "text", "abstract", "title", lamp_name="LaMP_5"),
        TaskSpec("lamp6", "lamp6", "text", "text", "title", lamp_name="LaMP_6"),
        TaskSpec("lamp7", "lamp7", "text", "text", None, lamp_name="LaMP_7"),
    )
}


@dataclass
class LampSplit:
    """The examples of one split of a task, with what they mean."""

    spec: TaskSpec
    split: str
    examples: list[LampExample]
    recipe: dict[str, Any] | None = field(default=None)


def _dump(value: object) -> str:
    # One canonical serialization: rebuilding a task from its recipe gives byte-identical files.
    return json.dumps(value, ensure_ascii=False, indent=1, sort_keys=False) + "\n"


def write_split(split: LampSplit, folder: Path) -> tuple[Path, Path]:
    """Write ``{split}_questions.json`` and ``{split}_outputs.json`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    questions = [
        {
            "id": example.id,
            **({"user_id": example.user_id} if example.user_id is not None else {}),
            "input": example.input,
            "profile": example.profile,
        }
        for example in split.examples
    ]
    golds = [
        {"id": example.id, "output": example.output}
        for example in split.examples
        if example.output is not None
    ]
    questions_path = folder / f"{split.split}_questions.json"
    outputs_path = folder / f"{split.split}_outputs.json"
    questions_path.write_text(_dump(questions), encoding="utf-8")
    outputs_path.write_text(
        _dump({"task": split.spec.lamp_name or split.spec.name, "golds": golds}), encoding="utf-8"
    )
    return questions_path, outputs_path


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaskFormatError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TaskFormatError(f"{path}: not valid JSON ({error})") from None


def _example(raw: object, path: Path, index: int) -> LampExample:
    where = f"{path}: example {index}"
    if not isinstance(raw, dict):
        raise TaskFormatError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    if "id" not in raw:
        raise TaskFormatError(f"{where}: missing 'id'")
    where = f"{path}: example {raw['id']!r}"
    if not isinstance(raw.get("input"), str):
        raise TaskFormatError(f"{where}: 'input' must be a string")
    profile = raw.get("profile", [])
    if not isinstance(profile, list) or not all(isinstance(item, dict) for item in profile):
        raise TaskFormatError(f"{where}: 'profile' must be a list of objects")
    output = raw.get("output")
    if output is not None and not isinstance(output, str):
        output = str(output)
    user = raw.get("user_id", raw.get("name"))
    return LampExample(
        id=str(raw["id"]),
        input=raw["input"],
        profile=profile,
        output=output,
        user_id=None if user is None else str(user),
    )


def read_examples(questions: Path, outputs: Path | None = None) -> list[LampExample]:
    """Examples of a questions file, with golds from ``outputs`` (or inline ``output`` fields).

    Every gold must belong to a question and no question may appear twice."""
    raw = _load_json(questions)
    if isinstance(raw, dict) and isinstance(raw.get("data"), list):
        raw = raw["data"]  # some LongLaMP exports wrap the list
    if not isinstance(raw, list):
        raise TaskFormatError(f"{questions}: expected a JSON list of examples")
    examples = [_example(item, questions, n) for n, item in enumerate(raw)]
    seen: set[str] = set()
    for example in examples:
        if example.id in seen:
            raise TaskFormatError(f"{questions}: example {example.id!r} appears twice")
        seen.add(example.id)
    if outputs is None:
        return examples
    golds = read_outputs(outputs)
    unknown = sorted(set(golds) - seen)
    if unknown:
        raise TaskFormatError(f"{outputs}: gold for unknown example {unknown[0]!r}")
    return [
        LampExample(e.id, e.input, e.profile, golds.get(e.id, e.output), e.user_id)
        for e in examples
    ]


def read_outputs(path: Path) -> dict[str, str]:
    """``{id: output}`` of an outputs file (``{"task", "golds": [...]}`` or a bare list)."""
    raw = _load_json(path)
    golds = raw.get("golds") if isinstance(raw, dict) else raw
    if not isinstance(golds, list):
        raise TaskFormatError(f"{path}: expected {{'task': ..., 'golds': [...]}}")
    result: dict[str, str] = {}
    for index, gold in enumerate(golds):
        if not isinstance(gold, dict) or "id" not in gold or "output" not in gold:
            raise TaskFormatError(f"{path}: gold {index} needs 'id' and 'output'")
        key = str(gold["id"])
        if key in result:
            raise TaskFormatError(f"{path}: gold {key!r} appears twice")
        result[key] = str(gold["output"])
    return result


def read_task_name(outputs: Path) -> str | None:
    """The ``task`` label of an outputs file, e.g. ``LaMP_4``."""
    raw = _load_json(outputs)
    return raw.get("task") if isinstance(raw, dict) else None


def read_split(folder: Path, split: str, spec: TaskSpec | None = None) -> LampSplit:
    """One split of a task folder: ``{split}_questions.json`` (+ outputs), as p13n writes them or
    as LaMP releases them (also in a ``{split}/`` subfolder). The spec comes from ``recipe.json``,
    from the outputs' LaMP task label, or from the caller."""
    base = folder / split if (folder / split / f"{split}_questions.json").exists() else folder
    questions = base / f"{split}_questions.json"
    outputs = base / f"{split}_outputs.json"
    recipe = _load_json(folder / "recipe.json") if (folder / "recipe.json").exists() else None
    if spec is None and recipe is not None:
        spec = TaskSpec.from_dict(recipe["spec"])
    if spec is None and outputs.exists():
        label = read_task_name(outputs)
        spec = LAMP_TASKS.get(label or "")
    if spec is None:
        raise TaskFormatError(
            f"{folder}: cannot tell which task this is: no recipe.json and no known LaMP task "
            "label in the outputs file; pass the task spec"
        )
    examples = read_examples(questions, outputs if outputs.exists() else None)
    return LampSplit(spec, split, examples, recipe)


def write_recipe(folder: Path, recipe: Mapping[str, Any]) -> Path:
    """``recipe.json``: everything needed to rebuild the task byte for byte (includes ``spec``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "recipe.json"
    path.write_text(_dump(dict(recipe)), encoding="utf-8")
    return path


def profile_text(item: Mapping[str, Any], spec: TaskSpec) -> str:
    """An item's text under ``spec`` (falls back to ``text`` when the named field is missing)."""
    value = item.get(spec.profile_text, item.get("text"))
    return "" if value is None else str(value)


def profile_title(item: Mapping[str, Any], spec: TaskSpec) -> str | None:
    if spec.profile_title is None:
        return None
    value = item.get(spec.profile_title)
    return None if value is None else str(value)


def splits_in(folder: Path) -> Sequence[str]:
    """The splits present in a task folder, in train/dev/test order."""
    return [
        s
        for s in SPLITS
        if (folder / f"{s}_questions.json").exists()
        or (folder / s / f"{s}_questions.json").exists()
    ]
