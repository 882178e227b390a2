"""Label answers beyond the model's argmax, for likelihood-answered tasks: calibration by the
prior content-free inputs get (``p13n.evaluate.calibration``) and fusion with the user's own
label history, applied to every arm's answers the same way (through the arm's own model)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
from rich.progress import Progress

from p13n.benchmarks.config import BASELINE, Arm, BenchConfig
from p13n.benchmarks.generation import Generator
from p13n.benchmarks.learned import AdapterArms, CachedAdaptedLLM
from p13n.benchmarks.results import SplitRun, TrainingCost
from p13n.evaluate.calibration import (
    CONTENT_FREE,
    contextual_calibration,
    fuse,
    user_label_prior,
)
from p13n.llm import ChatMessage
from p13n.llm.cache import CachedGeneration
from p13n.personalize import Personalizer, PreparedPrompt
from p13n.prompt import NON_PERSONALIZED, templates, with_input


class LabelAnswers:
    """Calibrates and fuses the label answers a ``BenchRunner`` recorded, as its config says."""

    def __init__(
        self, config: BenchConfig, generator: Generator, learned: Callable[[], AdapterArms]
    ) -> None:
        self.config, self.generator, self.learned = config, generator, learned

    def fusing(self, run: SplitRun, arm: Arm) -> bool:
        return run.choices is not None and arm.method != BASELINE and self.config.fusion_weight > 0

    def fuse(self, run: SplitRun, arm: Arm, *, swapped: bool = False) -> None:
        """Each answer's label distribution times the user's own label history (a swapped
        answer: the partner's, whose profile it was given) to the power ``fusion_weight``."""
        assert run.choices is not None
        field = run.spec.profile_title
        for i, record in enumerate(run.records):
            example = run.examples[run.partners[i] if swapped else i]
            output = (record.swapped if swapped else record.outputs)[arm.label]
            history = [str(item.get(field, "")) for item in example.profile] if field else []
            base = output.calibrated_scores or output.choice_scores
            assert base is not None
            prior = user_label_prior(history, run.choices)
            fused = fuse(base, prior, self.config.fusion_weight)
            output.fused_scores = [float(v) for v in fused]
            output.prediction = run.choices[int(np.argmax(fused))]

    def calibrating(self, run: SplitRun) -> bool:
        return run.choices is not None and self.config.calibration != "none"

    def calibrate(
        self,
        run: SplitRun,
        arm: Arm,
        personalizer: Personalizer,
        model: CachedAdaptedLLM | None,
        prepared: Sequence[PreparedPrompt],
        progress: Progress,
        *,
        swapped: bool = False,
    ) -> None:
        """Calibration of the arm's label answers: each content-free input scored in place of
        the example's, in the arm's own prompt (``contextual``: the same user data) or in the
        task's non-personalized one (``task``), by the same model and adapter; the prediction
        becomes the calibrated scores' argmax."""
        assert run.choices is not None
        template = templates.get(run.spec.template)

        tokenizer, budget = personalizer.llm.tokenizer, personalizer.budget
        task_blanks = {  # the same for every example: built once
            blank: NON_PERSONALIZED.build(template, blank, tokenizer, budget).messages
            for blank in CONTENT_FREE
            if self.config.calibration == "task"
        }

        def blank_prompt(p: PreparedPrompt, blank: str) -> tuple[ChatMessage, ...]:
            if self.config.calibration == "contextual":
                return with_input(p.prompt.messages, template, p.text, blank)
            return task_blanks[blank]

        free = [
            dataclasses.replace(
                p, prompt=dataclasses.replace(p.prompt, messages=blank_prompt(p, blank))
            )
            for p in prepared
            for blank in CONTENT_FREE
        ]
        label = f"{run.task}: calibrating {arm.label}"
        scores = self._choice_scores(run, arm, personalizer, model, free, progress, label)
        per = len(CONTENT_FREE)
        for i, record in enumerate(run.records):
            output = (record.swapped if swapped else record.outputs)[arm.label]
            assert output.choice_scores is not None
            calibrated = contextual_calibration(
                output.choice_scores, scores[i * per : (i + 1) * per]
            )
            output.calibrated_scores = [float(v) for v in calibrated]
            output.prediction = run.choices[int(np.argmax(calibrated))]

    def _choice_scores(
        self,
        run: SplitRun,
        arm: Arm,
        personalizer: Personalizer,
        model: CachedAdaptedLLM | None,
        prepared: Sequence[PreparedPrompt],
        progress: Progress,
        label: str,
    ) -> list[list[float]]:
        """The label scores of prepared prompts, through the arm's own path (a learned arm's
        adapters included), from the cache where it can."""
        if model is not None:
            cost = run.training.setdefault(arm.method, TrainingCost(arm.method))
            answers = self.learned().answer(personalizer, model, prepared, cost)
            self.generator.count(answers)
            found: list[CachedGeneration | None] = [answer.generation for answer in answers]
        else:
            jobs = [
                self.generator.job(p.prompt.messages, run.options, run.choices) for p in prepared
            ]
            self.generator.run(jobs, progress, label)
            found = [self.generator.llm.cached(job.key) for job in jobs]
        scores = []
        for generation in found:
            assert generation is not None and generation.choice_scores is not None
            scores.append(generation.choice_scores)
        return scores
