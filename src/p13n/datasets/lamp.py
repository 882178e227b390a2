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
from typing import Any

from p13n.datasets.spec import TaskSpec as TaskSpec  # the format's vocabulary, re-exported
from p13n.datasets.task_file import TASK_FILE, read_task_file
from p13n.errors import TaskFormatError

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class LampExample:
    """One question: the input, the user's profile of past items and (if known) the gold output."""

    id: str
    input: str
    profile: list[dict[str, Any]]
    output: str | None = None
    user_id: str | None = None


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

# LongLaMP's released tasks (Kumar et al., 2024), by the names of its subsets without the setting
# ("abstract_generation_user", "product_review_temporal" ...). Their profile fields as released:
# abstracts carry title + abstract, reviews reviewText + summary, reddit posts content + summary.
# Personalized email completion was never made public.
LONGLAMP_TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("abstract_generation", "longlamp-abstract", "text", "abstract", "title", None),
        TaskSpec("product_review", "longlamp-review", "text", "reviewText", "summary", None),
        TaskSpec("topic_writing", "longlamp-topic", "text", "content", "summary", None),
    )
}
LONGLAMP_SETTINGS = ("_user", "_temporal")


def known_task(name: str) -> TaskSpec | None:
    """The spec of an official task by its released name: a LaMP outputs label (``LaMP_4``) or
    a LongLaMP subset (``product_review_user``, also as ``LongLaMP_product_review``)."""
    if name in LAMP_TASKS:
        return LAMP_TASKS[name]
    base = name.lower().removeprefix("longlamp_").removeprefix("longlamp-")
    for setting in LONGLAMP_SETTINGS:
        base = base.removesuffix(setting)
    return LONGLAMP_TASKS.get(base)


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
    # LaMP's user_id; LongLaMP's name (abstracts), reviewerId (reviews), author (reddit)
    user = next(
        (raw[key] for key in ("user_id", "name", "reviewerId", "author") if key in raw), None
    )
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


def split_files(folder: Path, split: str) -> tuple[Path, Path]:
    """A split's questions and outputs files: in ``folder`` or LaMP's ``{split}/`` subfolder;
    LongLaMP names the dev split ``val``. Where none exists, the paths p13n writes."""
    for name in (split, "val") if split == "dev" else (split,):
        for base in (folder / name, folder):
            if (base / f"{name}_questions.json").exists():
                return base / f"{name}_questions.json", base / f"{name}_outputs.json"
    return folder / f"{split}_questions.json", folder / f"{split}_outputs.json"


def task_spec(folder: Path, outputs: Path | None = None) -> TaskSpec:
    """What the task in ``folder`` means: its ``task.toml``, else its ``recipe.json``, else the
    LaMP label of its outputs file, else a LongLaMP subset named by the folder."""
    if (folder / TASK_FILE).exists():
        return read_task_file(folder / TASK_FILE)
    if (folder / "recipe.json").exists():
        return TaskSpec.from_dict(_load_json(folder / "recipe.json")["spec"])
    label = read_task_name(outputs) if outputs is not None and outputs.exists() else None
    spec = known_task(label or "") or known_task(folder.name)
    if spec is None:
        raise TaskFormatError(
            f"{folder}: cannot tell which task this is: no {TASK_FILE}, no recipe.json and no "
            "known LaMP or LongLaMP task name; write one with `p13n tasks init "
            f"{folder}` (docs/DATASETS.md)"
        )
    return spec


def read_split(folder: Path, split: str, spec: TaskSpec | None = None) -> LampSplit:
    """One split of a task folder: ``{split}_questions.json`` (+ outputs), as p13n writes them or
    as LaMP and LongLaMP release them (also in a ``{split}/`` subfolder). The spec comes from the
    caller, else from the folder (``task_spec``)."""
    questions, outputs = split_files(folder, split)
    if not questions.exists():
        held = ", ".join(splits_in(folder)) or "none"
        raise TaskFormatError(f"{folder}: no {split} split ({questions.name}); splits here: {held}")
    recipe = _load_json(folder / "recipe.json") if (folder / "recipe.json").exists() else None
    spec = spec or task_spec(folder, outputs)
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
    return [split for split in SPLITS if split_files(folder, split)[0].exists()]
