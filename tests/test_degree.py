"""Personalization degree: EGISES on hand-computed cases and as properties, its distances against
the reference packages, and the profile-swap sign test."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer
from scipy.spatial.distance import jensenshannon  # type: ignore[import-untyped]
from scipy.stats import binomtest  # type: ignore[import-untyped]

from p13n.encode import Encoder
from p13n.evaluate.degree import (
    cosine_distance,
    egises,
    jsd_distance,
    profile_swap,
    rouge1_distance,
)


def numeric(a: str, b: str) -> float:
    """Texts that are numbers, at their absolute difference: small cases computable by hand."""
    return abs(float(a) - float(b))


GOLDS = [
    "The study finds a statistically significant effect of the treatment on outcomes.",
    "Cut costs now and the margin grows: three steps for your quarterly plan.",
    "Buckle up, folks, this is the wildest ride of the season so far!",
    "Like autumn leaves the numbers fall, each a whisper of change.",
]


# --- EGISES: hand-computed ------------------------------------------------------------------


def test_two_users_half_as_different_as_their_golds() -> None:
    result = egises([["0", "2"]], [["0", "4"]], distance=numeric)
    assert result.degree == pytest.approx(0.5)
    assert result.egises == pytest.approx(0.5)
    assert result.per_input == pytest.approx((0.5,))
    assert result.accuracy_distance == pytest.approx(1.0)  # |0-0| and |2-4|, averaged
    assert (result.n_inputs, result.n_outputs) == (1, 2)


def test_three_users_by_hand() -> None:
    # gold deviations: (0,1)=2 (0,2)=6 (1,2)=4; output deviations: (0,1)=2 (0,2)=3 (1,2)=1
    # psi: (0,1)=1, (0,2)=3/6, (1,2)=1/4; per user: (1+.5)/2, (1+.25)/2, (.5+.25)/2
    result = egises([["0", "2", "3"]], [["0", "2", "6"]], distance=numeric)
    assert result.per_input[0] == pytest.approx((0.75 + 0.625 + 0.375) / 3)


def test_inputs_are_averaged() -> None:
    result = egises([["0", "2"], ["1", "1"]], [["0", "4"], ["0", "8"]], distance=numeric)
    assert result.per_input == pytest.approx((0.5, 0.0))
    assert result.degree == pytest.approx(0.25)


def test_document_weighting_by_hand() -> None:
    """With a source document, each pair is weighted by the softmax (over the other users) of
    its deviation relative to the summary's distance from the document, as the paper does."""
    outputs, golds, document = ["0", "2", "3"], ["0", "2", "6"], "10"

    def weighted(texts: list[str]) -> dict[tuple[int, int], float]:
        values = [float(t) for t in texts]
        out = {}
        for j in range(3):
            others = [k for k in range(3) if k != j]
            ratio = {k: abs(values[j] - values[k]) / abs(values[j] - 10) for k in others}
            total = sum(math.exp(r) for r in ratio.values())
            for k in others:
                out[j, k] = math.exp(ratio[k]) / total * abs(values[j] - values[k])
        return out

    x, y = weighted(outputs), weighted(golds)
    psi = {pair: min(x[pair], y[pair]) / max(x[pair], y[pair]) for pair in x}
    expected = sum(psi.values()) / 6
    result = egises([outputs], [golds], distance=numeric, documents=[document])
    assert result.degree == pytest.approx(expected)
    assert result.degree != pytest.approx(egises([outputs], [golds], distance=numeric).degree)


# --- EGISES: properties ---------------------------------------------------------------------


def test_identical_outputs_for_different_golds_have_degree_zero() -> None:
    same = "Here is a short general answer to the question."
    result = egises([[same] * 4], [GOLDS])
    assert result.degree == 0.0 and result.egises == 1.0


def test_outputs_that_differ_as_the_golds_do_have_the_ideal_degree() -> None:
    assert egises([GOLDS], [GOLDS]).degree == pytest.approx(1.0)
    assert egises([GOLDS], [GOLDS], documents=["Summarize the news."]).degree == pytest.approx(1)


def test_identical_outputs_for_identical_golds_are_perfectly_responsive() -> None:
    assert egises([["x y", "x y"]], [["a b", "a b"]]).degree == 1.0


def test_over_personalization_is_penalised_too() -> None:
    """Outputs that differ where the users' golds agree are not responsive either."""
    assert egises([GOLDS[:2]], [[GOLDS[0]] * 2]).degree == 0.0


words = st.lists(st.sampled_from(["alpha", "beta", "gamma", "delta", "eps"]), max_size=6)
texts = words.map(" ".join)


@st.composite
def answered(draw: st.DrawFn) -> tuple[list[list[str]], list[list[str]]]:
    inputs = draw(st.integers(1, 3))
    outputs, golds = [], []
    for _ in range(inputs):
        users = draw(st.integers(2, 4))
        outputs.append(draw(st.lists(texts, min_size=users, max_size=users)))
        golds.append(draw(st.lists(texts, min_size=users, max_size=users)))
    return outputs, golds


@given(answered())
@settings(max_examples=60, deadline=None)
def test_degree_is_in_the_unit_interval_and_egises_its_complement(
    case: tuple[list[list[str]], list[list[str]]],
) -> None:
    outputs, golds = case
    result = egises(outputs, golds)
    assert 0.0 <= result.degree <= 1.0
    assert result.egises == pytest.approx(1.0 - result.degree)
    assert all(0.0 <= v <= 1.0 for v in result.per_input)
    assert result.degree == pytest.approx(sum(result.per_input) / len(result.per_input))


@given(answered(), st.randoms(use_true_random=False))
@settings(max_examples=60, deadline=None)
def test_degree_ignores_the_order_of_users_and_inputs(
    case: tuple[list[list[str]], list[list[str]]], rng: random.Random
) -> None:
    outputs, golds = case
    shuffled_outputs, shuffled_golds = [], []
    for ys, gs in zip(outputs, golds, strict=True):
        order = list(range(len(ys)))
        rng.shuffle(order)
        shuffled_outputs.append([ys[i] for i in order])
        shuffled_golds.append([gs[i] for i in order])
    expected = egises(outputs, golds).degree
    assert egises(shuffled_outputs, shuffled_golds).degree == pytest.approx(expected)
    assert egises(outputs[::-1], golds[::-1]).degree == pytest.approx(expected)


@given(answered())
@settings(max_examples=60, deadline=None)
def test_without_documents_outputs_and_golds_play_symmetric_roles(
    case: tuple[list[list[str]], list[list[str]]],
) -> None:
    outputs, golds = case
    assert egises(golds, outputs).degree == pytest.approx(egises(outputs, golds).degree)


@given(answered())
@settings(max_examples=40, deadline=None)
def test_answering_every_user_with_their_gold_is_ideal(
    case: tuple[list[list[str]], list[list[str]]],
) -> None:
    _, golds = case
    assert egises(golds, golds).degree == pytest.approx(1.0)
    assert egises(golds, golds, documents=["alpha beta"] * len(golds)).degree == pytest.approx(1)


@pytest.mark.parametrize(
    ("outputs", "golds", "message"),
    [
        ([], [], "no inputs"),
        ([["a", "b"]], [], "inputs"),
        ([["a"]], [["a"]], "2 or more"),
        ([["a", "b"]], [["a", "b", "c"]], "3 golds"),
    ],
)
def test_malformed_inputs_are_refused(
    outputs: list[list[str]], golds: list[list[str]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        egises(outputs, golds)


def test_documents_must_match_the_inputs() -> None:
    with pytest.raises(ValueError, match="documents"):
        egises([["a", "b"]], [["a", "b"]], documents=[])


# --- distances ------------------------------------------------------------------------------


@given(texts, texts)
@settings(max_examples=60, deadline=None)
def test_rouge1_distance_is_one_minus_rouge_score_f1(a: str, b: str) -> None:
    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=False)
    expected = 1.0 - scorer.score(a, b)["rouge1"].fmeasure
    if not a.strip() and not b.strip():
        expected = 0.0  # two empty texts are identical, where rouge-score says F1 0
    assert rouge1_distance(a, b) == pytest.approx(expected)
    assert rouge1_distance(a, b) == pytest.approx(rouge1_distance(b, a))


@given(texts, texts)
@settings(max_examples=60, deadline=None)
def test_jsd_distance_matches_scipy(a: str, b: str) -> None:
    distance = jsd_distance(a, b)
    assert 0.0 <= distance <= 1.0
    assert distance == pytest.approx(jsd_distance(b, a))
    left, right = a.split(), b.split()
    if left and right:
        vocabulary = sorted(set(left) | set(right))
        p = np.array([left.count(w) for w in vocabulary], dtype=float)
        q = np.array([right.count(w) for w in vocabulary], dtype=float)
        assert distance == pytest.approx(jensenshannon(p, q, base=2) ** 2, abs=1e-9)


def test_jsd_distance_extremes() -> None:
    assert jsd_distance("a b c", "c b a") == 0.0
    assert jsd_distance("a b", "c d") == pytest.approx(1.0)
    assert jsd_distance("", "") == 0.0 and jsd_distance("", "a") == 1.0


@pytest.mark.slow
def test_cosine_distance_with_the_bundled_encoder(encoder: Encoder) -> None:
    distance = cosine_distance(encoder)
    assert distance(GOLDS[0], GOLDS[0]) == 0.0
    related = distance("The cat sat on the mat.", "A cat is sitting on a rug.")
    unrelated = distance("The cat sat on the mat.", "Quarterly revenue rose by nine percent.")
    assert 0.0 <= related < unrelated <= 2.0
    result = egises([GOLDS], [GOLDS], distance=distance)
    assert result.degree == pytest.approx(1.0)


# --- profile swap ---------------------------------------------------------------------------


def test_profile_swap_by_hand() -> None:
    result = profile_swap([0.5, 0.4, 0.3, 0.2], [0.1, 0.4, 0.5, 0.1])
    assert (result.n, result.wins, result.ties, result.losses) == (4, 2, 1, 1)
    assert result.win_rate == 0.5
    assert result.decisive_win_rate == pytest.approx(2 / 3)
    assert result.mean_gain == pytest.approx((0.4 + 0 - 0.2 + 0.1) / 4)
    assert result.p_value == pytest.approx(binomtest(2, 3, 0.5).pvalue)


def test_profile_swap_sign_test() -> None:
    result = profile_swap([1.0] * 10, [0.0] * 10)
    assert result.p_value == pytest.approx(2 * 0.5**10)
    assert profile_swap([1.0] * 10, [0.0] * 10, alternative="greater").p_value == 0.5**10


def test_profile_swap_without_decisive_pairs() -> None:
    result = profile_swap([0.3, 0.3], [0.3, 0.3])
    assert (result.wins, result.ties, result.losses) == (0, 2, 0)
    assert result.p_value == 1.0 and result.decisive_win_rate is None and result.win_rate == 0.0


def test_profile_swap_tolerance() -> None:
    result = profile_swap([0.30, 0.50], [0.29, 0.30], tolerance=0.05)
    assert (result.wins, result.ties, result.losses) == (1, 1, 0)


@pytest.mark.parametrize(
    ("own", "swapped", "tolerance", "message"),
    [
        ([], [], 0.0, "no pairs"),
        ([0.1], [0.1, 0.2], 0.0, "1 own scores but 2"),
        ([0.1], [0.2], -1.0, "negative"),
    ],
)
def test_profile_swap_refuses_malformed_input(
    own: list[float], swapped: list[float], tolerance: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        profile_swap(own, swapped, tolerance=tolerance)
