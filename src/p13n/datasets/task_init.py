"""``p13n tasks init``: a first ``task.toml`` for a folder of LaMP-format files, guessed from its
own examples (the output kind from the golds, the profile fields from the items), every guess
written out with a comment so the user checks it rather than reads the source."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean, quantiles

from p13n.datasets.lamp import LampExample, read_examples, split_files, splits_in
from p13n.datasets.spec import OutputKind
from p13n.datasets.task_file import RATING_LABELS, TASK_FILE
from p13n.errors import TaskFormatError

MAX_LABELS = 20
"""More distinct golds than this reads as free text, not a label set."""
DATE_FIELDS = ("date", "time", "timestamp", "year")
Metrics = Mapping[str, Sequence[str]]
"""Each output kind's default metrics, from the evaluation layer (``p13n.evaluate.metrics``'s
``DEFAULT_METRICS``), which this one may not import."""
ITEM: dict[OutputKind, str] = {
    "text": "{title} is the output for {text}",
    "label": "the label for {text} is {title}",
    "rating": "{title} is the score for {text}",
}


@dataclass(frozen=True)
class TaskDraft:
    """What ``tasks init`` guessed, and the file text that says it."""

    split: str
    examples: int
    output: OutputKind
    labels: tuple[str, ...]
    profile_text: str
    profile_title: str
    profile_date: str
    max_new_tokens: int
    text: str


def _output_kind(golds: Sequence[str]) -> tuple[OutputKind, tuple[str, ...]]:
    distinct = sorted(set(golds))
    numeric = all(_is_number(gold) for gold in distinct)
    if numeric and len(distinct) <= 10:
        return "rating", tuple(sorted(distinct, key=float))
    few = len(distinct) <= MAX_LABELS and len(distinct) <= len(golds) / 2
    if few and all(len(gold.split()) <= 4 for gold in distinct):
        return "label", tuple(distinct)
    return "text", ()


def _is_number(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def _profile_fields(examples: Sequence[LampExample], output: OutputKind) -> tuple[str, str, str]:
    """(text, title, date) fields: the longest string field is the text; the title is the
    field holding labels (label and rating tasks) or the shortest other string field."""
    lengths: dict[str, list[int]] = {}
    for example in examples:
        for item in example.profile:
            for key, value in item.items():
                if key != "id" and isinstance(value, str | int | float):
                    lengths.setdefault(key, []).append(len(str(value)))
    if not lengths:
        raise TaskFormatError("no profile item has a field besides 'id': nothing to quote")
    date = next((key for key in DATE_FIELDS if key in lengths), "")
    candidates = {key: fmean(v) for key, v in lengths.items() if key != date}
    if not candidates:
        raise TaskFormatError("the profile items hold only dates: nothing to quote")
    text = max(candidates, key=lambda key: candidates[key])
    others = {key: mean for key, mean in candidates.items() if key != text}
    preferred = ("score", "rating", "label", "category", "tag") if output != "text" else ()
    title = next((key for key in preferred if key in others), "")
    if not title and others:
        title = min(others, key=lambda key: others[key])
    return text, title, date


def _inputs_instruct(examples: Sequence[LampExample]) -> bool:
    """Whether the inputs carry their own instruction, as LaMP's do ("Generate a headline for
    the following article: ..."): most of them open with the same four words."""
    openings = Counter(" ".join(e.input.split()[:4]) for e in examples)
    return openings.most_common(1)[0][1] >= 0.8 * len(examples)


def _max_new_tokens(golds: Sequence[str], output: OutputKind) -> int:
    if output == "rating":
        return 8
    if output == "label":
        return 16
    words = [len(gold.split()) for gold in golds]
    p90 = quantiles(words, n=10)[-1] if len(words) > 1 else float(words[0])
    # ~1.4 tokens per English word with SmolLM2's tokenizer, and half again for room
    return int(min(512, max(16, math.ceil(p90 * 1.4 * 1.5))))


def _toml(value: str | Sequence[str] | int) -> str:
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON's escapes are TOML's basic string's
    return "[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in value) + "]"


def draft_task_file(folder: Path, metrics: Metrics) -> TaskDraft:
    """A ``task.toml`` for ``folder`` from the examples of its first split with golds, scored
    with ``metrics[output kind]``."""
    present = splits_in(folder)
    if not present:
        raise TaskFormatError(
            f"{folder}: no train_questions.json, dev_questions.json or test_questions.json "
            "(nor LaMP's {split}/ subfolders): nothing to describe"
        )
    for split in present:
        questions, outputs = split_files(folder, split)
        examples = read_examples(questions, outputs if outputs.exists() else None)
        golds = [e.output for e in examples if e.output is not None]
        if golds:
            break
    else:
        raise TaskFormatError(
            f"{folder}: no split has golds ({{split}}_outputs.json, or 'output' in each "
            "question): the output kind and the metrics cannot be told"
        )
    output, labels = _output_kind(golds)
    text, title, date = _profile_fields(examples, output)
    max_new = _max_new_tokens(golds, output)
    written_labels = () if output == "rating" and set(labels) <= set(RATING_LABELS) else labels
    instruct = _inputs_instruct(examples)
    instruction = "{input}" if instruct else "Write the output for this input: {input}"
    if output != "text":
        instruction = _label_instruction(instruction, labels)
    lines = [
        f"# {TASK_FILE} for {folder.name}: written by `p13n tasks init` from the",
        f"# {len(golds)} golds of {split}; check each guess (docs/DATASETS.md lists every field).",
        "[task]",
        "# what the answer is: text, label (one of labels) or rating; the golds read as "
        + (", ".join(labels) if labels else "free text"),
        f"output = {_toml(output)}",
        "# the instruction around each question's input (or template = 'lamp4' to use a",
        "# registered one). "
        + (
            "The inputs open alike, as LaMP's carry their instruction, so {input} leads."
            if instruct
            else "EDIT THIS: the inputs carry no instruction (they open differently)."
        ),
        f"instruction = {_toml(instruction)}",
        "# one item of the user's data as the prompt quotes it: {title}, {text}, {kind}",
        f"item = {_toml(ITEM[output] if title else '{text}')}",
        'item_untitled = "{text}"',
        '# which field of a profile item is its text, its title ("" for none) and its date',
        f"profile_text = {_toml(text)}",
        f"profile_title = {_toml(title)}",
        f"profile_date = {_toml(date)}",
    ]
    if written_labels:
        lines += ["# the classes an answer is chosen among", f"labels = {_toml(written_labels)}"]
    lines += [
        "# scored with these, the first is the one the task is judged on",
        f"metrics = {_toml(metrics[output])}",
        "# room for the answer, in tokens (from the golds' 90th-percentile length)",
        f"max_new_tokens = {max_new}",
    ]
    return TaskDraft(
        split,
        len(golds),
        output,
        labels,
        text,
        title,
        date,
        max_new,
        "\n".join(lines) + "\n",
    )


def _label_instruction(instruction: str, labels: Sequence[str]) -> str:
    return f"{instruction}\nAnswer with one of: {', '.join(labels)}, and nothing else."


def write_task_file(folder: Path, metrics: Metrics, *, force: bool = False) -> TaskDraft:
    """Write ``folder/task.toml`` from ``draft_task_file``; an existing one is kept unless
    ``force``."""
    path = folder / TASK_FILE
    if path.exists() and not force:
        raise TaskFormatError(f"{path} exists: edit it, or pass --force to write it again")
    draft = draft_task_file(folder, metrics)
    path.write_text(draft.text, encoding="utf-8")
    return draft


__all__ = ["TaskDraft", "draft_task_file", "write_task_file"]
