"""Refined-instruction arms of the benchmark runner (``p13n.personalize.refine``): ``refine``
and ``refine-rag`` serve each user's own refined instruction through the ``Personalizer``,
which refines it on first use and stores it in the split's store; ``refine-task`` serves one
instruction refined on the task's train split (other users than those evaluated) to everyone.
What refining cost is recorded beside the scores, like an adapter's training."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from p13n.benchmarks.config import AdaptSettings
from p13n.benchmarks.results import SplitRun, TrainingCost
from p13n.datasets.lamp import read_split as read_lamp_split
from p13n.llm import LLM
from p13n.personalize import PreparedPrompt
from p13n.personalize.refine import (
    RefinedInstruction,
    RefineExample,
    RefineSettings,
    refine_instruction,
)
from p13n.prompt import templates


def task_advice(run: SplitRun, llm: LLM, settings: AdaptSettings) -> RefinedInstruction:
    """The instruction refined on the first ``refine_task_examples`` train-split examples."""
    train = read_lamp_split(run.folder, "train")
    examples = [
        RefineExample(e.input, e.output) for e in train.examples if e.output and e.output.strip()
    ][: settings.refine_task_examples]
    task_settings = RefineSettings.model_validate(
        {**settings.refine.model_dump(), "examples": settings.refine_task_examples}
    )
    return refine_instruction(
        llm,
        templates.get(run.spec.template),
        examples,
        task_settings,
        max_new_tokens=run.options.max_new_tokens,
        level="task",
        owner=run.task,
    )


def add_task_cost(cost: TrainingCost, refined: RefinedInstruction) -> None:
    _add(cost, refined.trace(refreshed=True))


def add_user_costs(cost: TrainingCost, prepared: Sequence[PreparedPrompt]) -> None:
    """Each user's refinement, as the traces of their prepared prompts state it: refined now
    or read from the store (its cost then is the stored one's), or none for too little data."""
    for prompt in prepared:
        refined = prompt.trace.refined
        if refined is None:
            continue
        if refined.get("advice") is None:
            cost.untrained.append(prompt.trace.user_id)
        else:
            _add(cost, refined)


def _add(cost: TrainingCost, refined: dict[str, Any]) -> None:
    """One refined instruction, from its trace entry (``RefinedInstruction.trace``)."""
    cost.adapters += 1
    cost.trained_now += int(refined["refreshed"])
    cost.train_seconds.append(float(refined["seconds"]))
    cost.examples.append(int(refined["examples"]))
    cost.size_bytes.append(len(str(refined["advice"]).encode()))
    cost.llm_calls.append(int(refined["llm_calls"]))
