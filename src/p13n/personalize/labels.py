"""Label and rating answers chosen by the model's likelihood, read as a ``LabelPolicy`` says:
the label scores calibrated by the prior that content-free inputs get (Zhao et al., 2021) and
fused with the user's own label history (``p13n.evaluate.calibration``). The benchmark's label
arms read their answers the same way, so a learned label policy serves what it measured."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from p13n.llm import Tokenizer
from p13n.llm.base import ChatMessage, ChoiceScorer
from p13n.personalize.policy import LabelPolicy
from p13n.personalize.trace import PreparedPrompt, Trace
from p13n.prompt import NON_PERSONALIZED, TaskTemplate, with_input
from p13n.store import Store


@dataclass(frozen=True)
class LabelChoice:
    """A label (or rating) chosen by likelihood, with the distribution it was chosen from."""

    label: str
    log_probs: list[float]
    """Over the labels, in their order: calibrated and fused as configured."""
    scores: list[float]
    """The model's own log-likelihood of each label."""
    trace: Trace


def label_history(store: Store, user_id: str, labels: Sequence[str]) -> list[str]:
    """The labels the user gave before: their documents' titles that are one of ``labels`` (a
    LaMP rating or category profile stores each item's label as its title)."""
    allowed = set(labels)
    return [d.title for d in store.documents(user_id) if d.title in allowed and d.title]


def read_labels(
    scorer: ChoiceScorer,
    prepared: PreparedPrompt,
    labels: Sequence[str],
    policy: LabelPolicy,
    *,
    template: TaskTemplate,
    tokenizer: Tokenizer,
    budget: int,
    history: Sequence[str] | None,
) -> tuple[list[float], np.ndarray]:
    """The model's label scores for the prepared prompt, and the log-distribution the policy
    reads from them: calibrated in the prompt itself (``contextual``) or in the task's
    non-personalized prompt (``task``), then fused with ``history`` (None: not fused)."""
    # scipy, under the calibration, loads on first use: importing p13n.personalize stays light.
    from p13n.evaluate.calibration import (
        CONTENT_FREE,
        contextual_calibration,
        fuse,
        label_log_probs,
        user_label_prior,
    )

    messages = prepared.prompt.messages
    raw = [float(v) for v in scorer.score_choices(messages, labels)]
    log_probs = label_log_probs(raw)
    if policy.calibration != "none":
        blanks: list[tuple[ChatMessage, ...]] = [
            with_input(messages, template, prepared.text, blank)
            if policy.calibration == "contextual"
            else NON_PERSONALIZED.build(template, blank, tokenizer, budget).messages
            for blank in CONTENT_FREE
        ]
        log_probs = contextual_calibration(raw, [scorer.score_choices(b, labels) for b in blanks])
    if history is not None and policy.fusion_weight > 0:
        log_probs = fuse(log_probs, user_label_prior(history, labels), policy.fusion_weight)
    return raw, log_probs
