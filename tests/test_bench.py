"""The benchmark runner on a small LaMP-format task written here, with the embedded model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p13n.benchmarks.coldstart_config import ColdStartConfig
from p13n.benchmarks.config import BenchConfig, load_bench_config
from p13n.benchmarks.results import derangement
from p13n.benchmarks.runner import BenchRunner
from p13n.benchmarks.runner_report import markdown, write_outputs
from p13n.datasets.lamp import LampExample, LampSplit, TaskSpec, write_recipe, write_split
from p13n.encode import Encoder
from p13n.errors import ConfigError
from p13n.evaluate.calibration import (
    CONTENT_FREE,
    contextual_calibration,
    fuse,
    user_label_prior,
)
from p13n.evaluate.stats import (
    bootstrap_corpus,
    bootstrap_mean,
    paired_corpus,
    paired_decomposable,
)
from p13n.llm import LLM, ChoiceScorer
from p13n.prompt import NON_PERSONALIZED, templates, with_input
from tests.helpers import run_bench

SPEC = TaskSpec("headlines", "lamp4", "text", "text", "title", lamp_name="p13n_headlines")
WRITERS = {
    "gardener": [
        ("Tomatoes love the heat", "How to grow tomatoes in a hot summer garden"),
        ("Roses need pruning", "When and how to prune your roses for more blooms"),
        ("Compost made simple", "Turn kitchen scraps into compost for the garden"),
    ],
    "cyclist": [
        ("Climbing the Alps", "A week of riding up mountain passes on a road bike"),
        ("Fixing a flat", "How to repair a bicycle tyre puncture at the roadside"),
        ("Winter training", "Keep cycling fit through the cold months indoors"),
    ],
    "baker": [
        ("Sourdough at home", "Baking a sourdough loaf with a homemade starter"),
        ("Perfect croissants", "Laminating butter into dough for flaky croissants"),
        ("Rye bread basics", "A dense rye bread recipe with caraway seeds"),
    ],
    "sailor": [
        ("Reading the wind", "How sailors read gusts and shifts on the water"),
        ("Knots every sailor needs", "The bowline, cleat hitch and reef knot explained"),
        ("Crossing the channel", "Planning a sailing passage across busy shipping lanes"),
    ],
}
HELD_OUT = {
    "gardener": ("Planting garlic", "Plant garlic cloves in autumn for a summer harvest"),
    "cyclist": ("Choosing tyres", "Wider tyres for comfort on rough country roads"),
    "baker": ("Baguettes at home", "Shaping and scoring baguettes in a home oven"),
    "sailor": ("Anchoring overnight", "Choosing a sheltered bay and setting the anchor"),
}


def _examples(prefix: str) -> list[LampExample]:
    return [
        LampExample(
            id=f"{prefix}-{user}",
            user_id=user,
            input=f"Generate a headline for the following article: {HELD_OUT[user][1]}",
            output=HELD_OUT[user][0],
            profile=[
                {"id": f"{user}-{n}", "title": title, "text": text, "date": f"2024-0{n + 1}-01"}
                for n, (title, text) in enumerate(items)
            ],
        )
        for user, items in WRITERS.items()
    ]


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tasks" / "headlines"
    write_recipe(folder, {"spec": SPEC.to_dict(), "name": "headlines", "note": "written by a test"})
    write_split(LampSplit(SPEC, "dev", _examples("dev")), folder)
    write_split(LampSplit(SPEC, "test", _examples("test")), folder)
    return folder


def _config(task_dir: Path, tmp_path: Path, **extra: Any) -> BenchConfig:
    base: dict[str, Any] = {
        "name": "test",
        "tasks": ["headlines"],
        "tasks_dir": task_dir.parent,
        "methods": ["none", "bm25", "tfidf"],
        "k": [1],
        "max_new_tokens": {"headlines": 8},
        "metrics": {"headlines": ["rouge-1", "bleu"]},
        "resamples": 200,
        "corpus_resamples": 50,
        "out": tmp_path / "out",
        "cache": tmp_path / "cache",
        "require_match": False,  # LaMP's top k: the counts below assume every arm quotes k
    }
    return BenchConfig.model_validate({**base, **extra})


@pytest.mark.slow
def test_methods_side_by_side_then_every_generation_reused(
    task_dir: Path, tmp_path: Path, embedded_llm: LLM, encoder: Encoder
) -> None:
    config = _config(task_dir, tmp_path)
    first = run_bench(config, embedded_llm, encoder)
    (task,) = first.tasks
    assert task.arms == ["none", "bm25 k=1", "tfidf k=1"]
    assert len(task.examples) == 4 and first.generated + first.reused == 12
    for example in task.examples:
        assert set(example.outputs) == set(task.arms)
        assert example.outputs["none"].retrieved == []
        assert len(example.outputs["bm25 k=1"].retrieved) == 1
        # each user's own profile is what gets retrieved, never another user's
        (item,) = example.outputs["bm25 k=1"].retrieved
        assert item.startswith(example.id + ".")
        assert 0.0 <= example.outputs["bm25 k=1"].scores["rouge-1"] <= 1.0
    rouge = task.metrics["rouge-1"]
    for arm in task.arms:
        interval = rouge.arms[arm]
        assert interval.low <= interval.value <= interval.high
    assert set(rouge.versus_baseline) == {"bm25 k=1", "tfidf k=1"}
    mean = np.mean([e.outputs["bm25 k=1"].scores["rouge-1"] for e in task.examples])
    assert rouge.arms["bm25 k=1"].value == pytest.approx(mean)
    assert "bleu" in task.metrics and task.metrics["bleu"].arms["none"].value >= 0.0

    again = run_bench(config, embedded_llm, encoder)
    assert again.generated == 0 and again.reused == 12
    assert all(o.cached for e in again.tasks[0].examples for o in e.outputs.values())
    before, after = first.to_dict()["tasks"][0], again.to_dict()["tasks"][0]
    assert before["metrics"] == after["metrics"]
    predictions = [
        {a: o["prediction"] for a, o in e["outputs"].items()} for e in before["examples"]
    ]
    assert predictions == [
        {a: o["prediction"] for a, o in e["outputs"].items()} for e in after["examples"]
    ]

    # A new k only generates what is new; the shared baseline and k=1 prompts are reused.
    wider = run_bench(_config(task_dir, tmp_path, k=[1, 2]), embedded_llm, encoder)
    assert wider.reused >= 12 and wider.generated <= 8
    assert wider.tasks[0].arms == ["none", "bm25 k=1", "bm25 k=2", "tfidf k=1", "tfidf k=2"]

    paths = write_outputs(first, config.out)
    saved = json.loads(paths["json"].read_text())
    assert saved["tasks"][0]["n"] == 4 and saved["cache"]["generated"] == first.generated
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = paths["html"].read_text()
    assert "<table" in report and "data:image/png;base64," in report
    summary = paths["markdown"].read_text()
    assert "| bm25 k=1 |" in summary and "Δ rouge-1 vs none" in summary


@pytest.mark.slow
def test_profile_swap_and_k_chosen_on_validation(
    task_dir: Path, tmp_path: Path, embedded_llm: LLM, encoder: Encoder
) -> None:
    config = _config(task_dir, tmp_path, swap=["bm25"], select_k_on="dev", k=[1, 2])
    result = run_bench(config, embedded_llm, encoder)
    (task,) = result.tasks
    swap = task.swap["bm25 k=1"]
    assert swap["metric"] == "rouge-1" and swap["n"] == 4
    assert swap["wins"] + swap["ties"] + swap["losses"] == 4
    for example in task.examples:
        assert example.swapped_with is not None and example.swapped_with != example.id
        (item,) = example.swapped["bm25 k=1"].retrieved
        assert item.startswith(example.swapped_with + ".")  # the other user's profile
    for method in ("bm25", "tfidf"):
        pick = task.selected_k[method]
        assert pick["k"] in (1, 2) and pick["dev_split"] == "dev" and pick["dev_n"] == 4
    assert "chosen on dev" in markdown(result)


@pytest.mark.slow
def test_parallel_on_ray_gives_the_same_answers(
    task_dir: Path, tmp_path: Path, embedded_llm: LLM, encoder: Encoder
) -> None:
    serial = run_bench(_config(task_dir, tmp_path, methods=["none"]), embedded_llm, encoder)
    parallel = run_bench(
        _config(task_dir, tmp_path, methods=["none"], workers=2, cache=tmp_path / "ray-cache"),
        embedded_llm,
        encoder,
    )
    assert parallel.generated == 4
    assert [e.outputs["none"].prediction for e in parallel.tasks[0].examples] == [
        e.outputs["none"].prediction for e in serial.tasks[0].examples
    ]


RATING = TaskSpec("ratings", "lamp3", "rating", "text", "score", labels=("1", "2", "3", "4", "5"))
REVIEWS = {
    "fan": [("Wonderful, I loved every page", "5"), ("Great value, works perfectly", "5")],
    "critic": [("Broke after a day, useless", "1"), ("Cheap and disappointing", "1")],
    "moderate": [("Fine, nothing special", "3"), ("Does the job, a bit flimsy", "3")],
}
INPUTS = {
    f"r-{user}": f"What is the score of this review? review: {items[0][0]}"
    for user, items in REVIEWS.items()
}


def rating_examples(prefix: str = "r") -> list[LampExample]:
    """Each reviewer's first review to rate, the rest as their profile."""
    return [
        LampExample(
            id=f"{prefix}-{user}",
            user_id=user,
            input=INPUTS[f"r-{user}"],
            output=items[0][1],
            profile=[{"id": str(n), "text": t, "score": r} for n, (t, r) in enumerate(items[1:])],
        )
        for user, items in REVIEWS.items()
    ]


def _ratings_task(tmp_path: Path) -> Path:
    """A likelihood-answered rating task of three reviewers: its folder."""
    folder = tmp_path / "tasks" / "ratings"
    write_recipe(folder, {"spec": RATING.to_dict()})
    write_split(LampSplit(RATING, "test", rating_examples()), folder)
    return folder


@pytest.mark.slow
def test_ratings_chosen_by_likelihood_are_labels_scored_as_lamp3(
    tmp_path: Path, embedded_llm: LLM, encoder: Encoder
) -> None:
    folder = _ratings_task(tmp_path)
    config = BenchConfig(
        tasks=["ratings"],
        tasks_dir=folder.parent,
        methods=["none", "bm25"],
        k=[1],
        answer={"ratings": "likelihood"},
        resamples=100,
        corpus_resamples=50,
        cache=tmp_path / "cache",
    )
    (task,) = run_bench(config, embedded_llm, encoder).tasks
    assert task.primary == "mae" and set(task.metrics) == {"mae", "rmse"}
    for example in task.examples:
        for output in example.outputs.values():
            assert output.prediction in RATING.labels and output.choice_scores is not None
            best = int(np.argmax(output.choice_scores))
            assert output.prediction == RATING.labels[best]
            error = abs(int(output.prediction) - int(example.reference))
            assert output.scores["mae"] == pytest.approx(error)

    no_labels = BenchConfig(
        tasks=["headlines"], answer={"headlines": "likelihood"}, cache=tmp_path / "cache"
    )
    headlines = tmp_path / "more" / "headlines"
    write_recipe(headlines, {"spec": SPEC.to_dict()})
    write_split(LampSplit(SPEC, "test", _examples("test")), headlines)
    no_labels = no_labels.model_copy(update={"tasks_dir": headlines.parent})
    with pytest.raises(ConfigError, match="needs a label or rating task"):
        run_bench(no_labels, embedded_llm, encoder)


@pytest.mark.slow
def test_contextual_calibration_divides_out_the_prompts_own_label_prior(
    tmp_path: Path, embedded_llm: LLM, encoder: Encoder
) -> None:
    """Every arm, the baseline and the profile swap included, is calibrated from the same
    prompt with content-free inputs; the model's own scores are kept beside."""
    folder = _ratings_task(tmp_path)
    config = BenchConfig(
        tasks=["ratings"], tasks_dir=folder.parent, methods=["none", "bm25"], k=[1],
        answer={"ratings": "likelihood"}, resamples=100, corpus_resamples=50,
        cache=tmp_path / "cache", swap=["bm25"],
    )  # fmt: skip
    (raw,) = run_bench(config, embedded_llm, encoder).tasks
    calibrated_config = config.model_copy(update={"calibration": "contextual"})
    calibrated = run_bench(calibrated_config, embedded_llm, encoder)
    (task,) = calibrated.tasks
    assert "Label answers are calibrated (contextual" in markdown(calibrated)
    template = templates.get("lamp3")
    task_priors: dict[str, list[list[float]]] = {}
    for before, example in zip(raw.examples, task.examples, strict=True):
        outputs = [
            *example.outputs.items(),
            *(("swap " + k, v) for k, v in example.swapped.items()),
        ]
        assert len(outputs) == 3
        for label, output in outputs:
            assert output.calibrated_scores is not None and output.choice_scores is not None
            kept = before.outputs.get(label) or before.swapped[label.removeprefix("swap ")]
            assert output.choice_scores == kept.choice_scores  # the model's own, from the cache
            assert output.prediction == RATING.labels[int(np.argmax(output.calibrated_scores))]
        baseline = example.outputs["none"]
        messages = NON_PERSONALIZED.build(
            template, INPUTS[example.id], embedded_llm.tokenizer, 1 << 20
        ).messages
        assert isinstance(embedded_llm, ChoiceScorer)
        blanks = [
            embedded_llm.score_choices(
                list(with_input(messages, template, INPUTS[example.id], blank)), RATING.labels
            )
            for blank in CONTENT_FREE
        ]
        expected = contextual_calibration(baseline.choice_scores or [], blanks)
        assert baseline.calibrated_scores == pytest.approx(expected.tolist(), abs=1e-6)
        task_priors[example.id] = blanks

    # Fusion: the personalized arms' calibrated distribution times the user's own ratings
    # (the partner's, for a swapped answer); the baseline is left alone.
    fused_config = calibrated_config.model_copy(update={"fusion_weight": 2.0})
    fused_result = run_bench(fused_config, embedded_llm, encoder)
    (fused,) = fused_result.tasks
    assert "fused with the user's own label history (weight 2)" in markdown(fused_result)
    profiles = {user: [r for _, r in items[1:]] for user, items in REVIEWS.items()}
    for before, example in zip(task.examples, fused.examples, strict=True):
        none = example.outputs["none"]
        assert none.fused_scores is None and none.prediction == before.outputs["none"].prediction
        for output, owner in (
            (example.outputs["bm25 k=1"], example.id),
            (example.swapped["bm25 k=1"], example.swapped_with),
        ):
            assert output.calibrated_scores is not None and owner is not None
            prior = user_label_prior(profiles[owner.removeprefix("r-")], RATING.labels)
            expected = fuse(output.calibrated_scores, prior, 2.0)
            assert output.fused_scores == pytest.approx(expected.tolist(), abs=1e-9)
            assert output.prediction == RATING.labels[int(np.argmax(expected))]

    # 'task': every arm divides by the non-personalized prompt's prior, the same for all users
    # (its blank prompts carry no user data: the baseline's three, answered once).
    task_config = config.model_copy(update={"calibration": "task"})
    (by_task,) = run_bench(task_config, embedded_llm, encoder).tasks
    for before, example in zip(task.examples, by_task.examples, strict=True):
        assert example.outputs["none"].calibrated_scores == before.outputs["none"].calibrated_scores
        retrieved = example.outputs["bm25 k=1"]
        expected = contextual_calibration(retrieved.choice_scores or [], task_priors[example.id])
        assert retrieved.calibrated_scores == pytest.approx(expected.tolist(), abs=1e-6)


@pytest.mark.slow
def test_official_lamp_files_run_as_released(
    tmp_path: Path, embedded_llm: LLM, encoder: Encoder
) -> None:
    """LaMP's layout (dev/dev_questions.json, golds labelled LaMP_4), no recipe: the task label
    says which profile fields are text and title."""
    folder = tmp_path / "lamp" / "LaMP_4" / "dev"
    folder.mkdir(parents=True)
    examples = _examples("dev")[:2]
    questions = [{"id": e.id, "input": e.input, "profile": e.profile} for e in examples]
    (folder / "dev_questions.json").write_text(json.dumps(questions))
    golds = {"task": "LaMP_4", "golds": [{"id": e.id, "output": e.output} for e in examples]}
    (folder / "dev_outputs.json").write_text(json.dumps(golds))
    config = BenchConfig(
        tasks=["LaMP_4"],
        tasks_dir=tmp_path / "lamp",
        split="dev",
        methods=["none", "bm25", "profile"],
        k=[1],
        require_match=False,  # as released: LaMP's top k
        max_new_tokens={"LaMP_4": 8},
        metrics={"LaMP_4": ["rouge-1"]},
        resamples=100,
        cache=tmp_path / "cache",
    )
    (task,) = run_bench(config, embedded_llm, encoder).tasks
    assert task.spec.template == "lamp4" and len(task.examples) == 2
    assert task.arms == ["none", "bm25 k=1", "profile k=1"]
    for example in task.examples:
        (item,) = example.outputs["bm25 k=1"].retrieved
        assert item.startswith(example.id + ".")
        # the profile arm's prompt carries the LLM-written summary on top of the same item
        profiled = example.outputs["profile k=1"]
        assert profiled.retrieved == [item]
        assert profiled.prompt_tokens > example.outputs["bm25 k=1"].prompt_tokens


def test_config_errors_name_the_problem(task_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="methods"):
        load_bench_config(None, tasks=["headlines"], methods=["none", "telepathy"])
    with pytest.raises(ConfigError, match="k must be"):
        load_bench_config(None, tasks=["headlines"], k=[0])
    with pytest.raises(ConfigError, match="no such benchmark config"):
        load_bench_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[bench]\ntasks = ['headlines']\ncolour = 'blue'\n")
    with pytest.raises(ConfigError, match="colour"):
        load_bench_config(bad)


def test_config_file_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    path = folder / "run.toml"
    path.write_text("[bench]\ntasks = ['headlines']\ntasks_dir = '../tasks'\nk = [4, 1, 4]\n")
    config = load_bench_config(path, limit=3)
    assert config.tasks_dir == (tmp_path / "tasks").resolve()
    assert config.k == [1, 4] and config.limit == 3
    assert [arm.label for arm in config.arms()][:3] == ["none", "bm25 k=1", "bm25 k=4"]


def test_benchmarks_default_to_onnx_and_the_runner_checks_the_model_it_is_given(
    tmp_path: Path, embedded_llm: LLM, encoder: Encoder
) -> None:
    assert BenchConfig(tasks=["headline"]).llm.backend == "onnx"
    assert ColdStartConfig(tasks=["headline"]).llm.backend == "onnx"
    config = BenchConfig(tasks=["headline"], cache=tmp_path / "c")
    with pytest.raises(ConfigError, match="given a 'embedded' model but its config names backe"):
        BenchRunner(config, llm=embedded_llm, encoder=encoder)


def test_a_task_that_is_not_built_says_how_to_build_it(
    tmp_path: Path, embedded_llm: LLM, encoder: Encoder
) -> None:
    config = BenchConfig(tasks=["headline"], tasks_dir=tmp_path, cache=tmp_path / "c")
    with pytest.raises(ConfigError, match="p13n tasks build headline"):
        run_bench(config, embedded_llm, encoder)


@pytest.mark.slow
def test_cli_runs_a_quick_benchmark(task_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "P13N_CACHE_DIR": str(tmp_path / "cache")}
    command = [
        str(Path(sys.executable).parent / "p13n"), "bench", "run",
        "--task", "headlines", "--tasks-dir", str(task_dir.parent), "--limit", "2",
        "--methods", "none,bm25", "--k", "1", "--out", str(tmp_path / "out"),
        "--no-require-match",  # LaMP's top k: every bm25 prompt differs from the baseline's
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "bm25 k=1" in done.stdout and "4 generated" in done.stdout
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["tasks"][0]["n"] == 2
    failed = subprocess.run(
        [*command[:3], "--task", "nowhere", "--tasks-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert failed.returncode == 1 and "p13n tasks build nowhere" in failed.stderr


# --- statistics ----------------------------------------------------------------------------


def test_bootstrap_interval_brackets_the_mean() -> None:
    values = np.random.default_rng(1).normal(0.3, 0.1, size=200)
    interval = bootstrap_mean(values.tolist(), resamples=500, seed=0)
    assert interval.low < interval.value < interval.high
    assert interval.value == pytest.approx(values.mean())
    assert interval.high - interval.low == pytest.approx(2 * 1.96 * 0.1 / np.sqrt(200), rel=0.25)


def test_paired_test_separates_a_real_gain_from_none() -> None:
    rng = np.random.default_rng(2)
    base = rng.uniform(0, 1, size=100)
    same = paired_decomposable(base, base, higher_is_better=True, resamples=500, seed=0)
    assert same.difference == 0.0 and same.p_value == 1.0 and same.ties == 100
    better = paired_decomposable(base + 0.05, base, higher_is_better=True, resamples=500, seed=0)
    assert better.p_value < 0.01 and better.wins == 100 and better.low > 0
    worse_mae = paired_decomposable(
        base + 0.05, base, higher_is_better=False, resamples=500, seed=0
    )
    assert worse_mae.losses == 100 and worse_mae.wins == 0


def _accuracy(predictions: Any, references: Any) -> float:
    return float(np.mean([p == r for p, r in zip(predictions, references, strict=True)]))


def test_corpus_paths_agree_with_the_decomposable_ones() -> None:
    rng = np.random.default_rng(3)
    references = [str(v) for v in rng.integers(0, 3, size=120)]
    system = [r if rng.random() < 0.7 else "x" for r in references]
    baseline = [r if rng.random() < 0.5 else "x" for r in references]
    corpus = bootstrap_corpus(_accuracy, system, references, resamples=300, seed=0)
    scores = [float(p == r) for p, r in zip(system, references, strict=True)]
    mean = bootstrap_mean(scores, resamples=300, seed=0)
    assert corpus.value == pytest.approx(mean.value)
    assert corpus.low == pytest.approx(mean.low, abs=0.03)
    paired = paired_corpus(
        _accuracy, system, baseline, references,
        per_example=None, higher_is_better=True, resamples=300, seed=0,
    )  # fmt: skip
    base_scores = [float(p == r) for p, r in zip(baseline, references, strict=True)]
    direct = paired_decomposable(scores, base_scores, higher_is_better=True, resamples=300, seed=0)
    assert paired.difference == pytest.approx(direct.difference)
    assert paired.p_value < 0.05 and direct.p_value < 0.05


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=2, max_value=60), st.integers(min_value=0, max_value=10_000))
def test_swap_partners_form_a_derangement(n: int, seed: int) -> None:
    partner = derangement(n, seed)
    assert sorted(partner) == list(range(n))
    assert all(partner[i] != i for i in range(n))
    assert partner == derangement(n, seed)
