"""Contextual calibration (Zhao et al., 2021) and the content-free prompts it scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from p13n.evaluate.calibration import (
    CONTENT_FREE,
    contextual_calibration,
    fuse,
    label_log_probs,
    user_label_prior,
)
from p13n.llm import CharTokenizer
from p13n.prompt import NON_PERSONALIZED, builders, templates, with_input
from p13n.retrieve import RetrievedItem


def _zhao(probabilities: list[float], content_free: list[list[float]]) -> np.ndarray:
    """The paper's reference recipe, verbatim in numpy: normalise, average the content-free
    distributions, W = inverse(diag(p_cf)), b = 0, q = W p."""
    p = np.asarray(probabilities) / np.sum(probabilities)
    p_cf = np.mean([np.asarray(row) / np.sum(row) for row in content_free], axis=0)
    p_cf = p_cf / np.sum(p_cf)
    weights = np.linalg.inv(np.identity(len(p)) * p_cf)
    return np.asarray(np.matmul(weights, p))


def test_calibration_agrees_with_the_papers_recipe() -> None:
    p = [0.7, 0.2, 0.1]
    blanks = [[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.9, 0.05, 0.05]]
    calibrated = contextual_calibration(np.log(p), [np.log(row) for row in blanks])
    reference = _zhao(p, blanks)
    assert np.exp(calibrated) == pytest.approx(reference / reference.sum(), abs=1e-12)
    assert int(np.argmax(p)) == 0 and int(np.argmax(calibrated)) == 1  # the prior divided out
    # Log-likelihoods that are not normalised (a choice's summed token scores) give the same.
    shifted = contextual_calibration(np.log(p) - 7.5, [np.log(row) + 3 for row in blanks])
    assert shifted == pytest.approx(calibrated, abs=1e-12)


def test_a_flat_content_free_prior_changes_nothing_and_bad_rows_are_refused() -> None:
    scores = [-0.3, -2.0, -4.1, -1.2]
    flat = [[math.log(0.25)] * 4]
    assert contextual_calibration(scores, flat) == pytest.approx(label_log_probs(scores))
    with pytest.raises(ValueError, match="at least one content-free"):
        contextual_calibration(scores, [])
    with pytest.raises(ValueError, match="score 3 labels, the input 4"):
        contextual_calibration(scores, [[0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="one non-empty row"):
        label_log_probs([])
    assert CONTENT_FREE == ("N/A", "", "[MASK]")


def test_content_free_prompts_keep_everything_but_the_input() -> None:
    template = templates.get("lamp3")
    item = RetrievedItem("d1", "document", "review", "5", "Loved it", 1.0, None, "u")
    text = "What is the score of this review? review: Broke after a day."
    built = builders.get("contextual").build(
        template, text, CharTokenizer(), 4096, retrieved=[item]
    )
    blank = with_input(built.messages, template, text, "N/A")
    assert blank[:-1] == built.messages[:-1]
    data, _, asked = built.messages[-1]["content"].rpartition(template.render_input(text))
    assert not asked and blank[-1]["content"] == data + template.render_input("N/A")
    assert "Loved it" in blank[-1]["content"] and "Broke" not in blank[-1]["content"]
    plain = NON_PERSONALIZED.build(template, text, CharTokenizer(), 4096).messages
    assert with_input(plain, template, text, "")[-1]["content"] == template.render_input("")
    with pytest.raises(ValueError, match="does not end with the lamp3 input"):
        with_input(plain, template, "another review", "N/A")


def test_a_users_label_prior_counts_their_own_labels_smoothed() -> None:
    labels = ["1", "2", "3", "4", "5"]
    prior = np.exp(user_label_prior(["5", "5", "4", "five", "5"], labels))
    assert prior == pytest.approx([1 / 9, 1 / 9, 1 / 9, 2 / 9, 4 / 9])  # "five" is not a label
    assert np.exp(user_label_prior([], labels)) == pytest.approx([0.2] * 5)
    with pytest.raises(ValueError, match="smoothing must be > 0"):
        user_label_prior(["1"], labels, smoothing=0)


def test_fusion_weighs_the_users_prior_against_the_model() -> None:
    model = np.log([0.6, 0.3, 0.1])
    prior = np.log([0.1, 0.2, 0.7])
    assert fuse(model, prior, 0.0) == pytest.approx(label_log_probs(model))
    product = np.array([0.06, 0.06, 0.07])
    assert np.exp(fuse(model, prior, 1.0)) == pytest.approx(product / product.sum())
    assert int(np.argmax(fuse(model, prior, 5.0))) == 2  # a strong weight: the user's habit
    habit = np.log([0.4, 0.4, 0.2])  # an infinite one: the habit, the model breaking its tie
    assert np.exp(fuse(model, habit, math.inf)) == pytest.approx([2 / 3, 1 / 3, 0.0])
    with pytest.raises(ValueError, match="weight must be >= 0"):
        fuse(model, prior, -1.0)
    with pytest.raises(ValueError, match="the prior has 2 labels, the scores 3"):
        fuse(model, np.log([0.5, 0.5]), 1.0)
