"""Label answers beyond the model's argmax, for likelihood-answered tasks: calibration by the
prior content-free inputs get (``p13n.evaluate.calibration``) and fusion with the user's own
label history, applied to every arm's answers the same way (through the arm's own model)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
from rich.progress import Progress

from p13n.benchmarks.config import AUTO, BASELINE, Arm, BenchConfig
from p13n.benchmarks.generation import Generator
from p13n.benchmarks.learned import AdapterArms, CachedAdaptedLLM
from p13n.benchmarks.policy import Variant
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

    def reading(self, run: SplitRun, arm: Arm) -> tuple[str, float]:
        """How the arm's label answers are read: its calibration and fusion weight (``auto``:
        its policy's)."""
        if run.choices is None:
            return "none", 0.0
        if arm.method == AUTO:
            assert run.policy is not None
            return run.policy.labels.calibration, run.policy.labels.fusion_weight
        fusion = self.config.fusion_weight if self.fusing(run, arm) else 0.0
        return self.config.calibration, fusion

    def fuse(self, run: SplitRun, label: str, weight: float, *, swapped: bool = False) -> None:
        """Each answer's label distribution (under ``label``) times the user's own label
        history (a swapped answer: the partner's, whose profile it was given) to the power
        ``weight``."""
        assert run.choices is not None
        field = run.spec.profile_title
        for i, record in enumerate(run.records):
            example = run.examples[run.partners[i] if swapped else i]
            output = (record.swapped if swapped else record.outputs)[label]
            history = [str(item.get(field, "")) for item in example.profile] if field else []
            base = output.calibrated_scores or output.choice_scores
            assert base is not None
            prior = user_label_prior(history, run.choices)
            fused = fuse(base, prior, weight)
            output.fused_scores = [float(v) for v in fused]
            output.prediction = run.choices[int(np.argmax(fused))]

    def calibrate(
        self,
        run: SplitRun,
        arm: Arm,
        personalizer: Personalizer,
        model: CachedAdaptedLLM | None,
        prepared: Sequence[PreparedPrompt],
        progress: Progress,
        *,
        mode: str,
        label: str | None = None,
        swapped: bool = False,
    ) -> None:
        """The answers under ``label`` (default: the arm's) calibrated the ``mode`` way; the
        prediction becomes the calibrated scores' argmax."""
        assert run.choices is not None
        outputs = [(r.swapped if swapped else r.outputs)[label or arm.label] for r in run.records]
        raw = [output.choice_scores for output in outputs]
        calibrated = self.calibrated(run, arm, personalizer, model, prepared, raw, progress, mode)
        for output, scores in zip(outputs, calibrated, strict=True):
            output.calibrated_scores = scores
            output.prediction = run.choices[int(np.argmax(scores))]

    def variants(
        self,
        run: SplitRun,
        arm: Arm,
        personalizer: Personalizer,
        model: CachedAdaptedLLM | None,
        prepared: Sequence[PreparedPrompt],
        progress: Progress,
        variants: Sequence[Variant],
    ) -> None:
        """The arm's answers read each of the ``variants``' ways, each under its own label
        (calibrating once per mode, by the arm's own model and adapters, from the cache)."""
        assert run.choices is not None
        raw = [record.outputs[arm.label].choice_scores for record in run.records]
        by_mode: dict[str, list[list[float]]] = {}
        for variant in variants:
            mode = variant.calibration
            if mode != "none" and mode not in by_mode:
                by_mode[mode] = self.calibrated(
                    run, arm, personalizer, model, prepared, raw, progress, mode
                )
            for i, record in enumerate(run.records):
                base = record.outputs[arm.label]
                output = dataclasses.replace(base, scores={}, fused_scores=None)
                if mode != "none":
                    output.calibrated_scores = by_mode[mode][i]
                    output.prediction = run.choices[int(np.argmax(by_mode[mode][i]))]
                record.outputs[variant.label] = output
            if variant.fusion:
                self.fuse(run, variant.label, variant.fusion)

    def calibrated(
        self,
        run: SplitRun,
        arm: Arm,
        personalizer: Personalizer,
        model: CachedAdaptedLLM | None,
        prepared: Sequence[PreparedPrompt],
        raw: Sequence[list[float] | None],
        progress: Progress,
        mode: str,
    ) -> list[list[float]]:
        """Calibration of each prepared prompt's label scores: each content-free input scored
        in place of the example's, in the prompt itself (``contextual``: the same user data) or
        in the task's non-personalized one (``task``), by the same model and adapter."""
        assert run.choices is not None
        template = templates.get(run.spec.template)

        tokenizer, budget = personalizer.llm.tokenizer, personalizer.budget
        task_blanks = {  # the same for every example: built once
            blank: NON_PERSONALIZED.build(template, blank, tokenizer, budget).messages
            for blank in CONTENT_FREE
            if mode == "task"
        }

        def blank_prompt(p: PreparedPrompt, blank: str) -> tuple[ChatMessage, ...]:
            if mode == "contextual":
                return with_input(p.prompt.messages, template, p.text, blank)
            return task_blanks[blank]

        free = [
            dataclasses.replace(
                p, prompt=dataclasses.replace(p.prompt, messages=blank_prompt(p, blank))
            )
            for p in prepared
            for blank in CONTENT_FREE
        ]
        label = f"{run.task}: calibrating {arm.label} ({mode})"
        scores = self._choice_scores(run, arm, personalizer, model, free, progress, label)
        per = len(CONTENT_FREE)
        calibrated = []
        for i, own in enumerate(raw):
            assert own is not None
            free_scores = scores[i * per : (i + 1) * per]
            calibrated.append([float(v) for v in contextual_calibration(own, free_scores)])
        return calibrated

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
