"""How much a model personalizes, apart from how accurate it is (survey §6.1, §9.1).

``egises``: EGISES, the degree of insensitivity to users' expected outputs, of Vansh et al. (2023),
"Accuracy is not enough: Evaluating Personalization in Summarizers" (EMNLP Findings), as its
authors' reference code (github.com/KDM-LAB/EGISES-EMNLP23, ``egises/models.py``) computes it.
For input i answered for users j, k ∈ U_i (|U_i| ≥ 2), model outputs y_ij, gold outputs g_ij, an
optional source document x_i and a distance d:

    Δʸ_ijk = d(y_ij, y_ik)                      how differently the model answered j and k
    Δᵍ_ijk = d(g_ij, g_ik)                      how differently j and k wanted it answered
    wʸ_ijk = softmax over k of Δʸ_ijk / d(y_ij, x_i)     (with x_i; uniform without)
    wᵍ_ijk = softmax over k of Δᵍ_ijk / d(g_ij, x_i)
    X_ijk = wʸ_ijk Δʸ_ijk,   Y_ijk = wᵍ_ijk Δᵍ_ijk
    ψ_ijk = min(X_ijk, Y_ijk) / max(X_ijk, Y_ijk)     (1 when both are 0)
    DEGRESS_ij = mean over k ≠ j of ψ_ijk;   DEGRESS_i = mean over j of DEGRESS_ij
    degree = mean over i of DEGRESS_i;        EGISES = 1 - degree

``degree`` (PerSEval's DEGRESS, "degree of responsiveness", Dasgupta et al. 2024) is 1 when
outputs differ across users exactly as much as their golds do, and falls to 0 as the outputs
stop responding to the user (identical outputs for different golds) or differ where the golds
agree. Departures from the reference code: ψ is 1 (not 0) when both deviations are 0, since
identical outputs for identical golds are perfectly responsive, and X, Y are not rounded to 4
decimals. As there, a zero distance to the document makes the ratio 0. PerSEval's accuracy
penalty (EDP) is not applied; ``EgisesResult.accuracy_distance`` reports accuracy alongside
instead, as the reference code does.

``profile_swap``: for each user A, the score against A's gold of the output made with A's
profile versus with another user's, with a two-sided sign test on wins against losses.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from p13n.encode import Encoder

Distance = Callable[[str, str], float]
"""A distance between two texts: 0 for identical texts, larger for more different ones."""


def rouge1_distance(a: str, b: str) -> float:
    """1 - ROUGE-1 F1 as ``p13n.evaluate.metrics.rouge`` computes it (rouge-score, no stemming,
    as LaMP); 0 for two texts without tokens, which rouge-score gives F1 0."""
    from rouge_score import tokenize

    from p13n.evaluate.metrics import rouge

    if not tokenize.tokenize(a, None) and not tokenize.tokenize(b, None):
        return 0.0
    return 1.0 - rouge([a], [b], "rouge1").value


def jsd_distance(a: str, b: str) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of the two texts' lowercased word
    distributions: the divergence the EGISES paper uses."""
    left, right = Counter(_words(a)), Counter(_words(b))
    if not left or not right:
        return 0.0 if left == right else 1.0
    vocabulary = sorted(left.keys() | right.keys())
    p = np.array([left[w] for w in vocabulary], dtype=float) / sum(left.values())
    q = np.array([right[w] for w in vocabulary], dtype=float) / sum(right.values())
    m = (p + q) / 2
    return float(max(0.0, (_kl(p, m) + _kl(q, m)) / 2))


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0
    return float(np.sum(p[mask] * np.log2(p[mask] / q[mask])))


def cosine_distance(encoder: Encoder) -> Distance:
    """1 - cosine similarity of ``encoder``'s (L2-normalised) vectors, clipped to [0, 2];
    each distinct text is encoded once."""
    vectors: dict[str, np.ndarray] = {}

    def vector(text: str) -> np.ndarray:
        if text not in vectors:
            vectors[text] = np.asarray(encoder.encode([text])[0], dtype=float)
        return vectors[text]

    def distance(a: str, b: str) -> float:
        if a == b:
            return 0.0
        return float(min(2.0, max(0.0, 1.0 - float(vector(a) @ vector(b)))))

    return distance


@dataclass(frozen=True)
class EgisesResult:
    """``degree`` (mean DEGRESS, 1 = ideal) and ``egises`` = 1 - degree (lower is better), with
    DEGRESS per input, and the mean distance of each output to its own user's gold."""

    degree: float
    egises: float
    per_input: tuple[float, ...]
    accuracy_distance: float
    n_inputs: int
    n_outputs: int


def _weighted(texts: Sequence[str], distance: Distance, document: str | None) -> list[list[float]]:
    """X (or Y) for one input: row j, column k = w_jk Δ_jk (the diagonal is unused)."""
    n = len(texts)
    sigma = [[distance(texts[j], texts[k]) if j != k else 0.0 for k in range(n)] for j in range(n)]
    if document is None:
        return sigma  # uniform weights scale X and Y alike and cancel in min/max
    weighted = []
    for j in range(n):
        to_document = distance(texts[j], document)
        ratios = [sigma[j][k] / to_document if to_document > 0 else 0.0 for k in range(n)]
        top = max(ratios[k] for k in range(n) if k != j)
        exps = [math.exp(ratios[k] - top) if k != j else 0.0 for k in range(n)]
        total = sum(exps)
        weighted.append([exps[k] / total * sigma[j][k] for k in range(n)])
    return weighted


def _proportion(x: float, y: float) -> float:
    high = max(x, y)
    return 1.0 if high == 0 else min(x, y) / high


def egises(
    outputs: Sequence[Sequence[str]],
    golds: Sequence[Sequence[str]],
    *,
    distance: Distance = rouge1_distance,
    documents: Sequence[str] | None = None,
) -> EgisesResult:
    """EGISES over inputs i: ``outputs[i][j]`` is the model's output for input i made for user
    j, ``golds[i][j]`` that user's gold output; ``documents[i]`` (optional) is input i's source
    text, which weights each pair as in the paper. See the module docstring for the formula."""
    if len(outputs) != len(golds):
        raise ValueError(f"{len(outputs)} inputs of outputs but {len(golds)} of golds")
    if documents is not None and len(documents) != len(outputs):
        raise ValueError(f"{len(documents)} documents for {len(outputs)} inputs")
    if not outputs:
        raise ValueError("no inputs: EGISES needs at least one input answered for 2+ users")
    per_input: list[float] = []
    to_gold: list[float] = []
    for i, (ys, gs) in enumerate(zip(outputs, golds, strict=True)):
        if len(ys) != len(gs):
            raise ValueError(f"input {i}: {len(ys)} outputs but {len(gs)} golds")
        if len(ys) < 2:
            raise ValueError(f"input {i}: {len(ys)} user(s); EGISES compares 2 or more")
        document = documents[i] if documents is not None else None
        x, y = _weighted(ys, distance, document), _weighted(gs, distance, document)
        n = len(ys)
        per_user = [
            sum(_proportion(x[j][k], y[j][k]) for k in range(n) if k != j) / (n - 1)
            for j in range(n)
        ]
        per_input.append(sum(per_user) / n)
        to_gold += [distance(out, gold) for out, gold in zip(ys, gs, strict=True)]
    degree = sum(per_input) / len(per_input)
    return EgisesResult(
        degree=degree,
        egises=1.0 - degree,
        per_input=tuple(per_input),
        accuracy_distance=sum(to_gold) / len(to_gold),
        n_inputs=len(per_input),
        n_outputs=len(to_gold),
    )


@dataclass(frozen=True)
class SwapResult:
    """Own-profile against swapped-profile scores (higher is better): a win is the own-profile
    output scoring higher. ``p_value``: two-sided exact binomial (sign) test of wins against
    losses at 1/2, ties left out; 1.0 when there are no decisive pairs."""

    n: int
    wins: int
    ties: int
    losses: int
    win_rate: float
    decisive_win_rate: float | None
    mean_gain: float
    p_value: float


def profile_swap(
    own: Sequence[float],
    swapped: Sequence[float],
    *,
    tolerance: float = 0.0,
    alternative: Literal["two-sided", "greater", "less"] = "two-sided",
) -> SwapResult:
    """``own[n]``: user A's score (against A's gold) of the output made with A's profile;
    ``swapped[n]``: of the output made with another user's profile. Differences within
    ``tolerance`` are ties. ``win_rate`` = wins / n (ties are not wins)."""
    from scipy.stats import binomtest

    if len(own) != len(swapped):
        raise ValueError(f"{len(own)} own scores but {len(swapped)} swapped scores")
    if not own:
        raise ValueError("no pairs to compare")
    if tolerance < 0:
        raise ValueError(f"tolerance {tolerance} is negative")
    gains = [a - b for a, b in zip(own, swapped, strict=True)]
    wins = sum(g > tolerance for g in gains)
    losses = sum(g < -tolerance for g in gains)
    ties = len(gains) - wins - losses
    decisive = wins + losses
    p_value = binomtest(wins, decisive, 0.5, alternative=alternative).pvalue if decisive else 1.0
    return SwapResult(
        n=len(gains),
        wins=wins,
        ties=ties,
        losses=losses,
        win_rate=wins / len(gains),
        decisive_win_rate=wins / decisive if decisive else None,
        mean_gain=sum(gains) / len(gains),
        p_value=float(p_value),
    )
