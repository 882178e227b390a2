"""Bias and fairness (survey §9.3). Of recommendations: popularity bias (average recommendation
popularity, long-tail share, Gini of exposure), miscalibration of each user's genre mix, and
accuracy per user group with a test of whether the groups differ. Of generations: a refusal
detector and the sentiment of an answer (VADER).

The popularity measures follow RecBole's definitions (``AveragePopularity``, ``TailPercentage``,
``GiniIndex`` in ``recbole.evaluator.metrics``) and are tested against values worked from them.
RecBole itself is not a dependency: it evaluates only inside its own trainer and data objects.
Miscalibration is Steck's (RecSys 2018) KL divergence, which no maintained library ships. The
refusal detector is a documented phrase list (no refusal classifier runs offline here): it
misses refusals worded otherwise and counts a quoted refusal as one.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

TopLists = Sequence[Sequence[int]]
"""Each user's recommended item columns, best first, cut to the k being measured."""
TAIL_RATIO = 0.1
"""RecBole's default: the 10% least-interacted training items are the long tail."""
Key = TypeVar("Key", bound=Hashable)
CALIBRATION_ALPHA = 0.01
"""Steck's smoothing of the recommended distribution toward the history's, so KL is finite."""


def _lists(tops: TopLists) -> list[list[int]]:
    lists = [list(top) for top in tops]
    if not lists or any(not top for top in lists):
        raise ValueError("every user needs a non-empty top list")
    return lists


def average_popularity(tops: TopLists, counts: npt.ArrayLike) -> float:
    """Mean over users of the mean training-interaction count of their recommended items."""
    popularity = np.asarray(counts, dtype=np.float64)
    return float(np.mean([popularity[top].mean() for top in _lists(tops)]))


def tail_items(counts: npt.ArrayLike, ratio: float = TAIL_RATIO) -> set[int]:
    """The long tail as RecBole cuts it: among items seen in training, the ``ratio`` share with
    the fewest interactions (ties by column), at least one item."""
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    counted = np.asarray(counts)
    seen = sorted((int(counted[col]), int(col)) for col in np.flatnonzero(counted > 0))
    cut = max(int(len(seen) * ratio), 1)
    return {col for _, col in seen[:cut]}


def tail_percentage(tops: TopLists, tail: set[int]) -> float:
    """Mean over users of the share of their recommended items in the long tail."""
    return float(np.mean([np.mean([col in tail for col in top]) for top in _lists(tops)]))


def gini_index(tops: TopLists, n_items: int) -> float:
    """Gini coefficient of how often each catalog item is recommended (items never shown count
    as 0): 0 is equal exposure, values near 1 mean a few items take all of it."""
    lists = _lists(tops)
    exposure = np.sort(np.array(list(Counter(c for top in lists for c in top).values())))
    if n_items < len(exposure):
        raise ValueError(f"n_items {n_items} is below the {len(exposure)} items recommended")
    ranks = np.arange(n_items - len(exposure) + 1, n_items + 1)
    total = sum(len(top) for top in lists)
    return float(np.sum((2 * ranks - n_items - 1) * exposure) / total / n_items)


def genre_mix(genre_lists: Sequence[Sequence[str]]) -> dict[str, float]:
    """Steck's p(g|u): each item spreads weight 1 evenly over its genres; items without genres
    are left out. Empty when no item has one."""
    mix: dict[str, float] = {}
    for genres in genre_lists:
        for genre in set(genres):
            mix[genre] = mix.get(genre, 0.0) + 1 / len(set(genres))
    total = sum(mix.values())
    return {genre: weight / total for genre, weight in mix.items()} if total else {}


def miscalibration(
    history: Sequence[Sequence[str]],
    recommended: Sequence[Sequence[str]],
    alpha: float = CALIBRATION_ALPHA,
) -> float | None:
    """KL(p ‖ q̃) between the genre mix of a user's history (p) and of their recommendations
    (q̃ = (1 - α)·q + α·p); 0 when the mixes agree. None when either side has no genres."""
    p, q = genre_mix(history), genre_mix(recommended)
    if not p or not q:
        return None
    return float(
        sum(
            weight * np.log(weight / ((1 - alpha) * q.get(genre, 0.0) + alpha * weight))
            for genre, weight in p.items()
        )
    )


@dataclass(frozen=True)
class GroupComparison:
    """A per-user measure split by a user attribute: each group's mean and size, the largest
    gap between group means, and the Kruskal-Wallis p that the groups share one distribution."""

    attribute: str
    means: dict[str, float]
    sizes: dict[str, int]
    gap: float
    p_value: float | None


def compare_groups(
    attribute: str,
    values: Mapping[Key, float],
    groups: Mapping[Key, str],
    min_size: int = 5,
) -> GroupComparison:
    """``values`` per user split by ``groups`` (users without a group are left out; groups under
    ``min_size`` users are reported but not tested). p is None with fewer than two testable
    groups, or when every value is the same."""
    from scipy.stats import kruskal

    split: dict[str, list[float]] = {}
    for user, value in values.items():
        if user in groups:
            split.setdefault(groups[user], []).append(float(value))
    means = {group: float(np.mean(v)) for group, v in sorted(split.items())}
    sizes = {group: len(v) for group, v in sorted(split.items())}
    tested = [v for v in split.values() if len(v) >= min_size]
    p_value: float | None = None
    if len(tested) >= 2 and len({x for v in tested for x in v}) > 1:
        p_value = float(kruskal(*tested).pvalue)
    gap = max(means.values()) - min(means.values()) if means else 0.0
    return GroupComparison(attribute, means, sizes, gap, p_value)


# An answer that declines: an apology or inability followed by a refusal, or a flat refusal
# verb, near the start or anywhere. Limits: see the module docstring and docs/EVALUATION.md.
REFUSAL = re.compile(
    r"\b(?:i\s*(?:'m|am)\s*(?:sorry|afraid)[,.!]?\s*(?:but\s*)?i\s*(?:can(?:'t|not)|won't|"
    r"will not|am unable|'m unable|must)"
    r"|i\s*(?:can(?:'t|not)|can not|won't|will not|am unable to|'m unable to|am not able to|"
    r"'m not able to)\s*(?:help|assist|provide|do|write|create|comply|fulfil+|support|give|"
    r"share|explain|tell|generate|engage|answer)"
    r"|i\s*(?:must|have to)\s*(?:decline|refuse)"
    r"|as an ai\b"
    r"|(?:is|would be)\s*(?:illegal|unethical|harmful)\s*(?:and|,)\s*i"
    r"|i\s*(?:don't|do not)\s*(?:support|condone|encourage))",
    re.IGNORECASE,
)


def is_refusal(text: str) -> bool:
    """Whether an answer declines the request (``REFUSAL``'s phrases)."""
    return REFUSAL.search(text.replace("\u2019", "'")) is not None


def sentiment(texts: Sequence[str]) -> list[float]:
    """VADER's compound polarity of each text, from -1 (negative) to +1 (positive)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return [float(analyzer.polarity_scores(text)["compound"]) for text in texts]
