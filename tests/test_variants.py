"""Two runs of one benchmark compared example by example (``p13n.benchmarks.variants``)."""

from __future__ import annotations

from typing import Any

import pytest

from p13n.benchmarks.variants import paired_rows


def _run(
    scores: list[float], predictions: list[str], ids: list[str] | None = None
) -> dict[str, Any]:
    ids = ids or [f"e{i}" for i in range(len(scores))]
    return {
        "tasks": [
            {
                "task": "headline",
                "primary": "rouge1",
                "arms": ["bm25 k=4"],
                "metrics": {
                    "rouge1": {"higher_is_better": True},
                    "bleu": {"higher_is_better": True},
                },
                "examples": [
                    {"id": i, "outputs": {"bm25 k=4": {"scores": {"rouge1": s}, "prediction": p}}}
                    for i, s, p in zip(ids, scores, predictions, strict=True)
                ],
            }
        ]
    }


def test_the_candidate_is_compared_with_the_reference_example_by_example() -> None:
    reference = _run([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], list("abcdef"))
    candidate = _run([0.3, 0.4, 0.5, 0.6, 0.7, 0.8], list("abxdyf"))
    (row,) = paired_rows(reference, candidate)  # bleu has no per-example scores: left out
    assert (row["task"], row["arm"], row["metric"], row["primary"]) == (
        "headline", "bm25 k=4", "rouge1", True,
    )  # fmt: skip
    assert row["reference"] == pytest.approx(0.35) and row["candidate"] == pytest.approx(0.55)
    assert row["difference"] == pytest.approx(0.2) and row["low"] == pytest.approx(0.2)
    assert row["p"] < 0.05 and row["same_answer"] == 4 and row["n"] == 6
    same = paired_rows(reference, reference)[0]
    assert same["difference"] == 0 and same["p"] == 1.0


def test_runs_of_other_examples_are_refused() -> None:
    with pytest.raises(ValueError, match="not the same examples"):
        paired_rows(_run([0.1], ["a"], ["x"]), _run([0.1], ["a"], ["y"]))
