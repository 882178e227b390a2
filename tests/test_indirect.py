"""Indirect personalization: rating and label predictors over the user's own embedded history."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from p13n.benchmarks.indirect import ArmOutput, TaskRun, run_lamp_label, run_lamp_rating
from p13n.benchmarks.indirect_scores import score_run
from p13n.cli import app
from p13n.datasets.lamp import LampExample, LampSplit, TaskSpec, read_split, write_split
from p13n.encode import Encoder
from p13n.errors import IndirectDataError
from p13n.predict import classify, rating
from p13n.predict.base import Case, History, Observations
from p13n.predict.classify import KnnPersonalLabel, Majority, UserMajority, VoteParams
from p13n.predict.data import (
    input_text,
    lamp_rating_cases,
    movielens_cases,
    movielens_observations,
    per_user_holdout,
    read_movielens_fold,
)
from p13n.predict.history import EmbeddingTable
from p13n.predict.rating import (
    BiasBaseline,
    GlobalMean,
    KnnParams,
    KnnPersonalRating,
    LLMExpectedRating,
    UserMean,
)

RATING_SPEC = TaskSpec(
    "stars", "lamp3", "rating", "text", "score", labels=("1", "2", "3", "4", "5")
)

# Three reviews of clearly different things, and a target that paraphrases exactly one of them.
BATTERY = "The battery died after two days and the charger broke."
SCARF = "Beautiful silk scarf, soft fabric and elegant colours."
MAGAZINE = "A decent magazine subscription; some articles were interesting."


def _history(pairs: Sequence[tuple[str, float]]) -> History[float]:
    return History(
        tuple(t for t, _ in pairs),
        tuple(v for _, v in pairs),
        tuple(str(n) for n in range(len(pairs))),
    )


def _obs(values: Sequence[float]) -> Observations[float]:
    n = len(values)
    return Observations(
        tuple(f"u{i}" for i in range(n)),
        tuple(f"i{i}" for i in range(n)),
        ("",) * n,
        tuple(values),
    )


@pytest.fixture(scope="module")
def table(encoder: Encoder) -> EmbeddingTable:
    return EmbeddingTable(encoder)


@pytest.fixture(scope="module")
def built_tasks(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """review-rating and news-category built from the real corpora (about a second)."""
    out = tmp_path_factory.mktemp("tasks")
    result = CliRunner().invoke(
        app,
        [
            "tasks",
            "build",
            "review-rating",
            "news-category",
            "--data",
            str(shared_data),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    return out


# --- Golden cases: the right answer is known by hand ----------------------------------------


@pytest.mark.parametrize(("target", "expected"), [(BATTERY, 1.0), (SCARF, 5.0), (MAGAZINE, 3.0)])
def test_knn_personal_predicts_the_rating_of_the_matching_own_item(
    table: EmbeddingTable, target: str, expected: float
) -> None:
    paraphrases = {
        BATTERY: "The battery stopped working after a couple of days; the charger broke too.",
        SCARF: "Lovely soft silk scarf with elegant colours.",
        MAGAZINE: "The magazine subscription is decent, a few interesting articles.",
    }
    history = _history([(BATTERY, 1.0), (SCARF, 5.0), (MAGAZINE, 3.0)])
    case: Case[float] = Case("c1", paraphrases[target], history, expected, "u", "x")
    knn = KnnPersonalRating(table, UserMean(), params=KnnParams(k=1, shrinkage=0.0, power=1.0))
    knn.base.fit(_obs([2.0, 4.0]))
    assert knn.predict([case]).values[0] == pytest.approx(expected)
    assert knn.neighbours(case, 1) == [list(paraphrases).index(target)]
    # every neighbour, unweighted, is the user's mean; a huge shrinkage pulls there too
    knn.params = KnnParams(k=None, shrinkage=0.0, power=0.0)
    assert knn.predict([case]).values[0] == pytest.approx(3.0)
    knn.params = KnnParams(k=1, shrinkage=1e9, power=1.0)
    assert knn.predict([case]).values[0] == pytest.approx(3.0)


def test_empty_history_falls_back_to_the_global_mean_and_is_counted(
    table: EmbeddingTable,
) -> None:
    train = _obs([1.0, 2.0, 4.0, 5.0, 5.0])  # global mean 3.4
    empty: History[float] = History((), (), ())
    cases = [
        Case("a", SCARF, empty, 5.0, "new-user", "x"),
        Case("b", SCARF, _history([(SCARF, 5.0), (BATTERY, 1.0)]), 5.0, "u", "y"),
    ]
    user_mean = UserMean()
    user_mean.fit(train, [])
    predicted = user_mean.predict(cases)
    assert predicted.values.tolist() == pytest.approx([3.4, 3.0])
    assert predicted.fallback.tolist() == [True, False]
    knn = KnnPersonalRating(table, UserMean(), params=KnnParams(k=1, shrinkage=0.0, power=1.0))
    knn.fit(train, [])
    predicted = knn.predict(cases)
    assert predicted.values.tolist() == pytest.approx([3.4, 5.0])
    assert int(predicted.fallback.sum()) == 1


def test_bias_baseline_on_a_tiny_matrix_matches_hand_computed_values() -> None:
    # ratings (u1,i1)=5, (u1,i2)=3, (u2,i1)=4; mu = 4; one alternating pass, both regs 1:
    # b_i1 = (1 + 0) / (1 + 2) = 1/3, b_i2 = -1 / (1 + 1) = -1/2
    # b_u1 = ((1 - 1/3) + (-1 + 1/2)) / (1 + 2) = 1/18, b_u2 = (0 - 1/3) / (1 + 1) = -1/6
    train = Observations(("u1", "u1", "u2"), ("i1", "i2", "i1"), ("", "", ""), (5.0, 3.0, 4.0))
    bias = BiasBaseline(reg_item=1.0, reg_user=1.0, iterations=1)
    bias.fit(train)
    assert bias.mean == pytest.approx(4.0)
    assert bias.item_bias == pytest.approx({"i1": 1 / 3, "i2": -1 / 2})
    assert bias.user_bias == pytest.approx({"u1": 1 / 18, "u2": -1 / 6})
    empty: History[float] = History((), (), ())
    cases = [
        Case("1", "", empty, None, "u2", "i2"),
        Case("2", "", empty, None, "u1", "unseen"),
    ]
    predicted = bias.predict(cases)
    assert predicted.values.tolist() == pytest.approx([4 - 1 / 6 - 1 / 2, 4 + 1 / 18])
    assert predicted.fallback.tolist() == [False, True]  # an unseen item has no bias


def test_label_predictors_on_a_hand_made_history(table: EmbeddingTable) -> None:
    labels = ("SPORTS", "STYLE", "TECH")
    history = History(
        (
            "The striker scored twice as the club won the championship final.",
            "New smartphone chips promise faster and cheaper AI on the device.",
            "A guide to the best laptops and graphics cards this year.",
        ),
        ("SPORTS", "TECH", "TECH"),
        ("1", "2", "3"),
    )
    target = "The goalkeeper saved a penalty and his team won the cup."
    train = Observations(("a", "b", "c"), ("1", "2", "3"), ("", "", ""), ("STYLE",) * 3)
    empty: History[str] = History((), (), ())
    cases = [Case("x", target, history, "SPORTS", "u"), Case("y", target, empty, "SPORTS", "v")]
    knn = KnnPersonalLabel(table, labels)
    knn.fit(train)
    knn.params = VoteParams(k=1, power=1.0)
    assert knn.predict(cases).labels == ["SPORTS", "STYLE"]
    user = UserMajority(labels)
    user.fit(train)
    predicted = user.predict(cases)
    assert predicted.labels == ["TECH", "STYLE"]
    assert predicted.fallback.tolist() == [False, True]
    majority = Majority(labels)
    majority.fit(train)
    assert majority.predict(cases).labels == ["STYLE", "STYLE"]


def test_lamp_instruction_is_stripped_before_embedding() -> None:
    built = "categories: [A, B]\narticle: Headline here\nA description."
    assert input_text(built) == "Headline here\nA description."
    official = (
        "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, "
        "3, 4, or 5 without further explanation. review: Great shoes."
    )
    assert input_text(official) == "Great shoes."
    assert input_text("A review that says review: inside") == "A review that says review: inside"


def test_llm_expected_rating_is_the_probability_weighted_mean() -> None:
    assert LLMExpectedRating.expected([0.0] * 5) == pytest.approx(3.0)
    assert LLMExpectedRating.expected([0.0, -50, -50, -50, -50]) == pytest.approx(1.0, abs=1e-9)
    assert LLMExpectedRating.expected([math.log(0.5), -60, -60, -60, math.log(0.5)]) == (
        pytest.approx(3.0)
    )


# --- Bad input ------------------------------------------------------------------------------


def test_malformed_ratings_raise_an_error_naming_the_example() -> None:
    good = {"id": "p1", "text": "fine", "score": "4"}
    split = LampSplit(
        RATING_SPEC, "test", [LampExample("ex-7", "review", [good], output="five stars")]
    )
    with pytest.raises(IndirectDataError, match=r"'ex-7'.*'five stars'.*1 to 5"):
        lamp_rating_cases(split)
    bad_item = {"id": "p2", "text": "meh", "score": "0"}
    split = LampSplit(RATING_SPEC, "test", [LampExample("ex-8", "review", [bad_item], "3")])
    with pytest.raises(IndirectDataError, match=r"'ex-8', profile item 'p2'.*'0'"):
        lamp_rating_cases(split)


def test_cli_reports_a_malformed_rating_by_example(tmp_path: Path) -> None:
    task = tmp_path / "tasks" / "stars"
    item = {"id": "p1", "text": "ok", "score": "4"}
    for split in ("train", "dev", "test"):
        output = "6" if split == "dev" else "4"
        examples = [LampExample(f"stars-{split}-0", "a review", [item], output, "u")]
        write_split(LampSplit(RATING_SPEC, split, examples), task)
    (task / "recipe.json").write_text(json.dumps({"spec": RATING_SPEC.to_dict()}))
    result = CliRunner().invoke(
        app,
        ["bench", "indirect", "--tasks-dir", str(tmp_path / "tasks"), "--task", "stars"],
    )
    assert result.exit_code == 1
    assert "stars-dev-0" in result.output
    assert "not a number from 1 to 5" in result.output


# --- Real data ------------------------------------------------------------------------------


def test_bias_baseline_beats_user_and_global_means_on_movielens_u1(shared_data: Path) -> None:
    fold = read_movielens_fold(shared_data / "movielens-100k")
    assert (len(fold.base), len(fold.test), len(fold.texts)) == (80_000, 20_000, 1682)
    assert fold.texts["1"] == "Toy Story (1995). Genres: Animation, Children's, Comedy."
    train = movielens_observations(fold.base, fold.texts)
    cases = movielens_cases(fold.test, fold.base, fold.texts)
    gold = np.array([case.gold for case in cases])
    scores = {}
    for predictor in (GlobalMean(), UserMean(), BiasBaseline()):
        predictor.fit(train, [])
        values = predictor.predict(cases).values
        scores[predictor.name] = float(np.sqrt(((values - gold) ** 2).mean()))
    # published on ML-100K: global mean ~1.15 RMSE, bias baselines ~0.94-0.96
    assert 1.10 < scores["global-mean"] < 1.20
    assert 0.93 < scores["bias"] < 0.97
    assert scores["bias"] < scores["user-mean"] < scores["global-mean"]


def test_per_user_holdout_is_seeded_disjoint_and_about_a_tenth_per_user() -> None:
    rows = [(str(u), str(i), 3.0) for u in range(5) for i in range(40)]
    fit, dev = per_user_holdout(rows, 0.1, seed=3)
    assert per_user_holdout(rows, 0.1, seed=3) == (fit, dev)
    assert per_user_holdout(rows, 0.1, seed=4) != (fit, dev)
    assert not set(fit) & set(dev)
    assert len(fit) + len(dev) == len(rows)
    assert all(sum(1 for r in dev if r[0] == str(u)) == 4 for u in range(5))


def test_k_is_chosen_on_dev_only(
    built_tasks: Path, table: EmbeddingTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    choose_rating, choose_label = rating.select_knn_rating, classify.select_knn_label

    def spy_rating(dev: Sequence[Case[Any]], *args: Any, **kwargs: Any) -> Any:
        seen.extend(case.id for case in dev)
        return choose_rating(dev, *args, **kwargs)

    def spy_label(dev: Sequence[Case[Any]], *args: Any, **kwargs: Any) -> Any:
        seen.extend(case.id for case in dev)
        return choose_label(dev, *args, **kwargs)

    monkeypatch.setattr(rating, "select_knn_rating", spy_rating)
    monkeypatch.setattr(classify, "select_knn_label", spy_label)
    folder = built_tasks / "review-rating"
    train, dev, test = (read_split(folder, s) for s in ("train", "dev", "test"))
    run = run_lamp_rating(train, dev, test, table, limit=6)
    assert len(seen) == 6
    assert all(i.startswith("review-rating-dev-") for i in seen)
    assert not set(seen) & set(run.ids)
    assert run.ids[0].startswith("review-rating-test-")
    seen.clear()
    folder = built_tasks / "news-category"
    train, dev, test = (read_split(folder, s) for s in ("train", "dev", "test"))
    label_run = run_lamp_label(train, dev, test, table, limit=4)
    assert seen and all(i.startswith("news-category-dev-") for i in seen)
    assert {arm.name for arm in label_run.arms} == {
        "majority",
        "user-majority",
        "knn-personal",
        "knn-global",
        "stacked",
    }


def test_the_reference_is_the_best_non_personalized_predictor_on_dev() -> None:
    references = ["4", "5", "3", "1"]

    def arm(name: str, personalized: bool, values: list[str]) -> ArmOutput:
        return ArmOutput(name, personalized, "", values, [False] * 4)

    run = TaskRun(
        "t",
        "rating",
        "test",
        "mae",
        ["a", "b", "c", "d"],
        references,
        [
            arm("global-mean", False, ["3"] * 4),
            arm("item-mean", False, ["4", "4", "3", "2"]),
            arm("user-mean", True, ["4", "5", "3", "1"]),
        ],
        {"global-mean": 0.9, "item-mean": 0.8, "user-mean": 0.1},
    )
    score = score_run(run, resamples=50)
    assert score.reference == "item-mean"
    by_name = {a.name: a for a in score.arms}
    assert by_name["item-mean"].paired is None
    user = by_name["user-mean"]
    assert user.metrics["mae"].value == 0.0
    assert user.paired is not None
    assert user.paired["mae"].difference == pytest.approx(-0.5)
    assert user.paired["rmse"].difference == pytest.approx(0 - math.sqrt(0.5))


def test_cli_runs_end_to_end_on_a_subset(
    built_tasks: Path, shared_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "indirect",
            "--tasks-dir",
            str(built_tasks),
            "--task",
            "review-rating,news-category",
            "--movielens",
            str(shared_data / "movielens-100k"),
            "--limit",
            "4",
            "--resamples",
            "50",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Δ vs global-mean" in result.output
    assert "Δ vs item-mean" in result.output
    results = json.loads((out / "results.json").read_text())
    tasks = {task["task"]: task for task in results["tasks"]}
    assert set(tasks) == {"review-rating", "news-category", "movielens-100k-u1"}
    for task in tasks.values():
        assert task["n"] == 4 == len(task["examples"])
        assert task["reference"] in task["predictors"]
        assert set(task["examples"][0]["predictions"]) == set(task["predictors"])
    assert tasks["review-rating"]["chosen_on"] == "dev"
    assert tasks["review-rating"]["chosen"]["knn-personal"]["k"] is not None
    assert (out / "indirect.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
