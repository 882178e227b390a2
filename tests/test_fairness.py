"""Bias and fairness measures against values worked by hand from their reference definitions
(RecBole's AveragePopularity, TailPercentage and GiniIndex; Steck's miscalibration)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from p13n.benchmarks.recsys_fairness import age_band
from p13n.evaluate.fairness import (
    average_popularity,
    compare_groups,
    genre_mix,
    gini_index,
    is_refusal,
    miscalibration,
    sentiment,
    tail_items,
    tail_percentage,
)

COUNTS = np.array([10, 4, 1, 0, 7])  # training interactions per item column
TOPS = [[0, 1], [0, 2], [0, 1]]  # three users' top 2


def test_popularity_bias_matches_recboles_definitions() -> None:
    # per user (10+4)/2, (10+1)/2, (10+4)/2; then the mean over users
    assert average_popularity(TOPS, COUNTS) == pytest.approx(6.5)
    # seen items by (count, column): (1, 2) (4, 1) (7, 4) (10, 0); unseen item 3 is no tail item
    assert tail_items(COUNTS) == {2}  # max(int(4 * 0.1), 1) = 1
    assert tail_items(COUNTS, 0.5) == {2, 1}
    assert tail_percentage(TOPS, {2}) == pytest.approx((0 + 0.5 + 0) / 3)
    # exposure 1, 2, 3 at ranks 3..5 of 5: ((0·1 + 2·2 + 4·3) / 6) / 5
    assert gini_index(TOPS, 5) == pytest.approx(16 / 6 / 5)
    assert gini_index([[0], [1]], 2) == 0.0  # equal exposure
    assert gini_index([[0], [0]], 1000) == pytest.approx(999 / 1000)  # one item takes it all
    with pytest.raises(ValueError, match="non-empty top list"):
        average_popularity([[0], []], COUNTS)
    with pytest.raises(ValueError, match="ratio must be in"):
        tail_items(COUNTS, 0)


def test_miscalibration_is_stecks_kl_with_smoothing() -> None:
    history = [["Drama"], ["Drama", "Comedy"]]  # p: Drama 0.75, Comedy 0.25
    assert genre_mix(history) == {"Drama": 0.75, "Comedy": 0.25}
    expected = 0.75 * math.log(0.75 / (0.99 + 0.0075)) + 0.25 * math.log(0.25 / 0.0025)
    assert miscalibration(history, [["Drama"]]) == pytest.approx(expected)
    assert miscalibration(history, [["Comedy", "Drama"], ["Drama"]]) == pytest.approx(0.0)
    assert miscalibration(history, [[]]) is None  # no genres: nothing to compare


def test_groups_are_compared_and_small_groups_left_untested() -> None:
    rng = np.random.default_rng(0)
    values = {user: float(rng.random()) for user in range(60)}
    apart = {user: value + (1.0 if user < 30 else 0.0) for user, value in values.items()}
    sides = {user: "F" if user < 30 else "M" for user in range(60)}
    split = compare_groups("gender", apart, sides)
    assert split.sizes == {"F": 30, "M": 30} and split.p_value is not None
    assert split.p_value < 0.001 and split.gap == pytest.approx(split.means["F"] - split.means["M"])
    same = compare_groups("gender", values, sides)
    assert same.p_value is not None and same.p_value > 0.05
    few = compare_groups("age", values, {0: "56+", 1: "56+", 2: "18-24", 3: "18-24"})
    assert few.p_value is None and few.sizes == {"18-24": 2, "56+": 2}


def test_ages_fall_into_movielens_1m_bands() -> None:
    assert [age_band(a) for a in (7, 18, 24, 25, 44, 55, 56, 73)] == [
        "under 18", "18-24", "18-24", "25-34", "35-44", "45-55", "56+", "56+",
    ]  # fmt: skip
    assert age_band("25-34") == "25-34" and age_band(None) is None and age_band(True) is None


@pytest.mark.parametrize(
    ("answer", "refused"),
    [
        ("I'm sorry, but I can't help with that.", True),
        ("I cannot provide instructions for making weapons.", True),
        ("I won't write that message.", True),
        ("As an AI, I must decline.", True),
        ("Stealing is illegal and I will not help you do it.", True),
        ("I\u2019m unable to assist with this request.", True),  # a typographic apostrophe
        ("I'm sorry to hear that! Here is a plan for your week.", False),
        ("Sure! Step 1: gather the materials.", False),
        ("You can't go wrong with a walk in the park.", False),
    ],
)
def test_the_refusal_detector_reads_refusals_not_apologies(answer: str, refused: bool) -> None:
    assert is_refusal(answer) is refused


def test_sentiment_is_vaders_compound_polarity() -> None:
    happy, sad, flat = sentiment(["I love this, it is wonderful!", "This is awful.", "It is 5."])
    assert happy > 0.5 and sad < -0.4 and flat == 0.0
