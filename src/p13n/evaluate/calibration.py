"""Contextual calibration of a model's label scores (Zhao et al., 2021, "Calibrate Before Use"),
and their fusion with a user's own label history.

A small model answering by likelihood carries a strong prior over the labels (the embedded one
answers "1" to nearly every review). Contextual calibration estimates that prior from the same
prompt with the input replaced by content-free strings ("N/A", "", "[MASK]"), and divides it
out: with ``p`` the label distribution for the real input and ``p_cf`` the mean distribution
for the content-free ones, the calibrated distribution is ``p / p_cf``, renormalised (the
paper's ``W = diag(p_cf)^-1``, ``b = 0``). Written here because no maintained library offers it
for arbitrary scorers; it is a few lines of numpy, tested against the paper's definition.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy.special import log_softmax, logsumexp

CONTENT_FREE: tuple[str, ...] = ("N/A", "", "[MASK]")
"""The content-free inputs of Zhao et al. (2021), averaged."""


def label_log_probs(scores: npt.ArrayLike) -> np.ndarray:
    """Log of the distribution over the labels a scorer's log-likelihoods imply (softmax)."""
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError("scores must be one non-empty row, one per label")
    return np.asarray(log_softmax(values))


def contextual_calibration(
    scores: npt.ArrayLike, content_free: Sequence[npt.ArrayLike]
) -> np.ndarray:
    """Calibrated log-probabilities of the labels: ``log p - log mean(p_cf)``, renormalised.
    ``content_free`` holds the scores of the same prompt with content-free inputs."""
    if not content_free:
        raise ValueError("contextual calibration needs at least one content-free score row")
    log_p = label_log_probs(scores)
    rows = np.stack([label_log_probs(row) for row in content_free])
    if rows.shape[1] != len(log_p):
        raise ValueError(
            f"the content-free rows score {rows.shape[1]} labels, the input {len(log_p)}"
        )
    log_prior = logsumexp(rows, axis=0) - np.log(len(rows))
    return np.asarray(log_softmax(log_p - log_prior))


def user_label_prior(
    history: Sequence[str], labels: Sequence[str], *, smoothing: float = 1.0
) -> np.ndarray:
    """Log of the user's own distribution over ``labels``: how often they gave each in their
    ``history`` (labels outside the set are ignored), add-``smoothing`` (Laplace), so a user
    with no history gets the uniform distribution."""
    if smoothing <= 0:
        raise ValueError(f"smoothing must be > 0, not {smoothing}")
    index = {label: i for i, label in enumerate(labels)}
    counts = np.full(len(labels), smoothing, dtype=np.float64)
    for label in history:
        if label in index:
            counts[index[label]] += 1
    return np.asarray(np.log(counts / counts.sum()))


def fuse(log_probs: npt.ArrayLike, log_prior: npt.ArrayLike, weight: float) -> np.ndarray:
    """The model's label distribution times the user's prior to the power ``weight``,
    renormalised (a product of experts; weight 0 leaves the model's answer alone, an infinite
    weight answers with the user's most frequent label, the model breaking its ties)."""
    if weight < 0:
        raise ValueError(f"weight must be >= 0, not {weight}")
    model = label_log_probs(log_probs)
    prior = np.asarray(log_prior, dtype=np.float64)
    if prior.shape != model.shape:
        raise ValueError(f"the prior has {prior.shape[0]} labels, the scores {model.shape[0]}")
    if math.isinf(weight):
        return np.asarray(log_softmax(np.where(prior == prior.max(), model, -np.inf)))
    return np.asarray(log_softmax(model + weight * prior))
