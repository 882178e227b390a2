"""Evaluation splits: temporal leave-last-out and per-user random, and simulated cold start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from p13n.errors import RecDataError
from p13n.recommend.data import RecData

COLD_START_MAX = 5
"""A user with at most this many training interactions counts as cold-start (the issue's rule)."""


@dataclass(frozen=True)
class Split:
    """Training interactions and, per user row, the held-out item columns to find.

    ``valid`` selects hyperparameters and learns hybrid weights; ``test`` is read once, at the end.
    At test time the validation items count as seen (the user revealed them), so they are
    excluded from the ranking like the training items.
    """

    name: str
    train: RecData
    valid: Mapping[int, tuple[int, ...]]
    test: Mapping[int, tuple[int, ...]]
    simulated_cold: frozenset[int] = field(default_factory=frozenset)

    def cold_users(self) -> set[int]:
        """Rows with at most ``COLD_START_MAX`` training interactions."""
        counts = self.train.counts
        return {row for row in range(self.train.n_users) if counts[row] <= COLD_START_MAX}


def leave_last_out(data: RecData) -> Split:
    """Per user, ordered by time: the last interaction is the test item, the one before it the
    validation item, the rest train. Users with fewer than 3 interactions are not evaluated."""
    keep = np.ones(len(data), dtype=bool)
    valid: dict[int, tuple[int, ...]] = {}
    test: dict[int, tuple[int, ...]] = {}
    for row in range(data.n_users):
        history = data.history(row)
        if len(history) < 3:
            continue
        test[row] = (int(data.cols[history[-1]]),)
        valid[row] = (int(data.cols[history[-2]]),)
        keep[history[-2:]] = False
    return _checked(Split("temporal leave-last-out", data.subset(keep), valid, test))


def random_split(data: RecData, *, valid: float = 0.1, test: float = 0.1, seed: int = 0) -> Split:
    """Per user, a seeded random ``valid`` and ``test`` fraction of their interactions (at least
    one each) held out, RecBole's "RO" split grouped by user (8:1:1 by default)."""
    if not (0 < valid < 1 and 0 < test < 1 and valid + test < 1):
        raise RecDataError(f"valid={valid} and test={test} must be fractions summing below 1")
    rng = np.random.default_rng(seed)
    keep = np.ones(len(data), dtype=bool)
    held_valid: dict[int, tuple[int, ...]] = {}
    held_test: dict[int, tuple[int, ...]] = {}
    for row in range(data.n_users):
        history = data.history(row)
        if len(history) < 3:
            continue
        shuffled = rng.permutation(history)
        n_test = max(1, round(test * len(history)))
        n_valid = max(1, round(valid * len(history)))
        held_test[row] = tuple(sorted(int(c) for c in data.cols[shuffled[:n_test]]))
        held_valid[row] = tuple(
            sorted(int(c) for c in data.cols[shuffled[n_test : n_test + n_valid]])
        )
        keep[shuffled[: n_test + n_valid]] = False
    name = f"random {1 - valid - test:.0%}/{valid:.0%}/{test:.0%}"
    return _checked(Split(name, data.subset(keep), held_valid, held_test))


def simulate_cold_start(
    split: Split,
    *,
    fraction: float = 0.2,
    seed: int = 0,
    keep: Literal["earliest", "random"] = "earliest",
) -> Split:
    """Truncate a seeded ``fraction`` of the evaluated users to 1-5 training interactions.

    MovieLens guarantees every user at least 20 ratings, so it has no cold-start users of its own;
    this makes some, the usual way: the user's held-out items stay, their training history is cut
    to its first n items (n uniform in 1..5), as if they had just joined.
    """
    if not 0 < fraction < 1:
        raise RecDataError(f"fraction={fraction} must be between 0 and 1")
    rng = np.random.default_rng(seed)
    evaluated = np.array(sorted(split.test), dtype=np.int64)
    chosen = rng.choice(evaluated, size=round(fraction * len(evaluated)), replace=False)
    train = split.train
    drop = np.zeros(len(train), dtype=bool)
    for row in sorted(int(r) for r in chosen):
        history = train.history(row)
        if keep == "random":
            history = rng.permutation(history)
        n = int(rng.integers(1, COLD_START_MAX + 1))
        drop[history[n:]] = True
    return replace(
        split,
        name=f"{split.name}, {fraction:.0%} of users cut to 1-{COLD_START_MAX} training items",
        train=train.subset(~drop),
        simulated_cold=frozenset(int(r) for r in chosen),
    )


def _checked(split: Split) -> Split:
    if not split.test:
        raise RecDataError(
            "no user has the 3 interactions a split needs (1 train, 1 valid, 1 test)"
        )
    return split
