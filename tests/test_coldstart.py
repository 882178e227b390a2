"""The cold-start study (``p13n.benchmarks.coldstart``) and the runner's batched generation, on a
small LaMP-format task written here, with the embedded model, the real encoder and SQLite."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from p13n.benchmarks.coldstart import ColdStartStudy
from p13n.benchmarks.coldstart_config import (
    ColdStartConfig,
    Policy,
    choose_policy,
    load_coldstart_config,
)
from p13n.benchmarks.coldstart_report import ColdStartResult, write_outputs
from p13n.benchmarks.config import BenchConfig
from p13n.benchmarks.runner import BenchRunner
from p13n.datasets.lamp import (
    LampExample,
    LampSplit,
    TaskSpec,
    read_split,
    write_recipe,
    write_split,
)
from p13n.encode import Encoder
from p13n.errors import ConfigError
from p13n.llm import LLM, BatchGenerator
from p13n.store import open_store
from tests.helpers import naming, run_bench

# --- a small LaMP-4-like task: two clearly different topics -------------------------------------

TASK = "topics"
SPEC = TaskSpec(TASK, "lamp4", "text", "text", "title", lamp_name="p13n_topics")
ITEMS = {
    "garden": [
        ("Tomatoes love the heat", "How to grow tomatoes in a hot summer vegetable garden"),
        ("Roses need pruning", "When and how to prune roses in the garden for more blooms"),
        ("Compost made simple", "Turn kitchen scraps into rich compost for the flower beds"),
        ("Slugs in the lettuce", "Keeping slugs away from young lettuce seedlings in the garden"),
        ("Sowing carrots", "Sow carrot seeds thinly in loose sandy garden soil in spring"),
        ("Mulching borders", "Spread bark mulch over garden borders to keep the weeds down"),
    ],
    "sailing": [
        ("Reading the wind", "How sailors read gusts and wind shifts on the open water"),
        ("Knots every sailor needs", "The bowline, cleat hitch and reef knot for sailing boats"),
        ("Crossing the channel", "Planning a sailing passage across busy shipping lanes"),
        ("Reefing the mainsail", "When to reef the mainsail of a yacht as the wind builds"),
        ("Anchoring overnight", "Choosing a sheltered bay and setting the boat's anchor"),
        ("Tides and harbours", "Timing a sailing boat's harbour entry with the tide"),
    ],
}
HELD_OUT = {
    "garden": [
        ("Planting garlic", "Plant garlic cloves in autumn for a summer harvest"),
        ("Pots on a balcony", "Growing herbs and strawberries in pots on a city balcony"),
        (
            "Raised beds for beginners",
            "Building raised wooden beds, filling them with compost and planting the first "
            "beans, peas and herbs of the season in a small back garden",
        ),
    ],
    "sailing": [
        (
            "Night watch at sea",
            "Keeping a safe night watch on a small sailing yacht: lights, radar, the log and "
            "staying awake",
        ),
        ("Sails for light winds", "A gennaker for light wind sailing"),
        ("Racing dinghies", "Tactics for the start line of a dinghy sailing race"),
    ],
}
# (split, user, topic, which profile items, which held-out article)
USERS = [
    ("train", "tess", "garden", 3, 0),  # a test user's older example: never a persona member
    ("train", "gwen", "garden", 0, 0),
    ("train", "sid", "sailing", 0, 0),
    ("train", "gus", "garden", 1, 1),
    ("train", "sol", "sailing", 1, 1),
    ("train", "gia", "garden", 2, 0),
    ("train", "sue", "sailing", 2, 1),
    ("dev", "dora", "garden", 3, 2),  # dev articles are not test articles
    ("dev", "dan", "sailing", 3, 2),
    ("test", "tess", "garden", 4, 1),
    ("test", "sam", "sailing", 4, 0),
    ("test", "gil", "garden", 5, 0),  # past the study's limit; the batching test uses it
]
TRAINING = ["gwen", "sid", "gus", "sol", "gia", "sue"]


def _example(split: str, user: str, topic: str, start: int, article: int) -> LampExample:
    pool = ITEMS[topic]
    items = [pool[(start + n) % len(pool)] for n in range(3)]
    title, text = HELD_OUT[topic][article]
    return LampExample(
        id=f"{split}-{user}",
        user_id=user,
        input=text,
        output=title,
        profile=[
            {"id": f"{user}-{n}", "title": t, "text": x, "date": f"2024-0{n + 1}-01"}
            for n, (t, x) in enumerate(items)
        ],
    )


def _write_task(tasks_dir: Path, users: list[tuple[str, str, str, int, int]]) -> Path:
    folder = tasks_dir / TASK
    write_recipe(folder, {"spec": SPEC.to_dict(), "name": TASK, "note": "written by a test"})
    for split in ("train", "dev", "test"):
        examples = [_example(*user) for user in users if user[0] == split]
        write_split(LampSplit(SPEC, split, examples), folder)
    return tasks_dir


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_task(tmp_path_factory.mktemp("coldstart-tasks"), USERS)


# --- choose_policy on hand-made dev scores ------------------------------------------------------

ITEM_COUNTS = [0, 0, 1, 1, 2, 2, 3, 3]
SIZES = [0, 1, 2, 5]
NO_COLLAB_POLICIES = 15 * 2  # cuts {0, 1, 2, 4 (= never), 5}: 15 (persona_min, user_min), x blend


def _scores(best: dict[str, Callable[[int], float]]) -> dict[str, list[float]]:
    return {arm: [value(n) for n in ITEM_COUNTS] for arm, value in best.items()}


def _key(policy: Policy) -> str:
    return (
        f"persona_min={policy.persona_min} user_min={policy.user_min} blend={policy.blend} "
        f"collaborative={policy.collaborative}"
    )


STAIRS = _scores(
    {
        "global": lambda n: 0.9 if n == 0 else 0.2,
        "persona": lambda n: 0.9 if n == 1 else 0.2,
        "user": lambda n: 0.9 if n >= 2 else 0.2,
        "blend": lambda n: 0.6 if n >= 2 else 0.2,
    }
)


def test_policy_follows_the_best_arm_at_each_item_count() -> None:
    policy, table = choose_policy(STAIRS, ITEM_COUNTS, SIZES, higher_is_better=True)
    assert policy == Policy(persona_min=1, user_min=2, blend=False, collaborative=False)
    assert [policy.arm(n) for n in (0, 1, 2, 3, 100)] == [
        "global",
        "persona",
        "user",
        "user",
        "user",
    ]
    assert len(table) == NO_COLLAB_POLICIES
    assert table[_key(policy)] == pytest.approx(0.9) == max(table.values())
    # every entry is that policy's mean over the examples
    user_only = Policy(0, 0, blend=False)
    assert table[_key(user_only)] == pytest.approx(np.mean(STAIRS["user"]))
    never_user = Policy(1, 4, blend=False)
    assert table[_key(never_user)] == pytest.approx(
        np.mean([0.9] * 4 + [0.2] * 4)  # global at 0, persona at 1, persona (0.2) from 2 on
    )
    # the arms a blending, collaborative policy serves, and its router settings
    other = Policy(1, 2, blend=True, collaborative=True)
    assert [other.arm(n) for n in (0, 1, 2)] == ["global", "collab", "blend"]
    routed = other.granularity(7)
    assert (routed.level, routed.persona_min_items, routed.user_min_items) == ("auto", 1, 2)
    assert routed.blend and routed.collaborative_members == 7
    assert policy.granularity(7).collaborative_members == 0


def test_policy_minimises_a_lower_is_better_metric() -> None:
    errors = {arm: [1.0 - v for v in values] for arm, values in STAIRS.items()}  # MAE-like
    policy, table = choose_policy(errors, ITEM_COUNTS, SIZES, higher_is_better=False)
    assert policy == Policy(1, 2, blend=False, collaborative=False)
    assert table[_key(policy)] == pytest.approx(0.1) == min(table.values())
    worst, _ = choose_policy(errors, ITEM_COUNTS, SIZES, higher_is_better=True)
    assert worst != policy and table[_key(worst)] == max(table.values())


def test_policy_ties_go_to_the_most_personal_setting() -> None:
    same = [0.1, 0.5, 0.3, 0.7, 0.2, 0.4, 0.6, 0.8]
    flat = {arm: list(same) for arm in ("user", "persona", "global", "blend", "collab")}
    policy, table = choose_policy(flat, ITEM_COUNTS, SIZES, higher_is_better=True)
    assert len(set(table.values())) == 1
    assert policy == Policy(0, 0, blend=False, collaborative=False)

    # At 1 item user ties persona, blend ties user, collab ties persona: user level from 1
    # item, no blending, no collaborative retrieval.
    tied = _scores(
        {
            "global": lambda n: 0.9 if n == 0 else 0.1,
            "persona": lambda n: 0.8 if n == 1 else 0.1,
            "user": lambda n: 0.8 if n >= 1 else 0.1,
            "blend": lambda n: 0.8 if n >= 1 else 0.1,
            "collab": lambda n: 0.8 if n == 1 else 0.1,
        }
    )
    for direction in (True, False):
        values = tied if direction else {a: [-v for v in s] for a, s in tied.items()}
        policy, table = choose_policy(values, ITEM_COUNTS, SIZES, higher_is_better=direction)
        assert policy == Policy(1, 1, blend=False, collaborative=False)
        best = max(table.values()) if direction else min(table.values())
        assert table[_key(policy)] == best
        assert table[_key(Policy(1, 2, blend=True, collaborative=True))] == best  # a tie


def test_collaborative_policies_are_tried_only_with_collab_scores() -> None:
    _, plain = choose_policy(STAIRS, ITEM_COUNTS, SIZES, higher_is_better=True)
    assert not any("collaborative=True" in key for key in plain)
    members_help = {**STAIRS, "collab": [1.0 if n == 1 else 0.0 for n in ITEM_COUNTS]}
    policy, table = choose_policy(members_help, ITEM_COUNTS, SIZES, higher_is_better=True)
    assert policy == Policy(1, 2, blend=False, collaborative=True)
    assert policy.arm(1) == "collab"
    assert len(table) == 2 * NO_COLLAB_POLICIES == len(set(table))
    assert sum("collaborative=True" in key for key in table) == NO_COLLAB_POLICIES
    assert table[_key(policy)] == pytest.approx((0.9 * 2 + 1.0 * 2 + 0.9 * 4) / 8)


# --- configuration -----------------------------------------------------------------------------


def test_config_file_paths_overrides_and_errors(tmp_path: Path) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    path = folder / "study.toml"
    path.write_text(
        "[coldstart]\ntasks = ['topics']\ntasks_dir = '../tasks'\ndata = 'data'\n"
        "out = '../out/study'\ncache = 'cache'\nsizes = [5, 0, 2, 2]\nlimit = 10\n"
        "batch_size = 8\n"
    )
    config = load_coldstart_config(path, limit=3, dev_limit=None, personas=4)
    assert config.tasks_dir == (tmp_path / "tasks").resolve()
    assert config.data == (folder / "data").resolve()
    assert config.out == (tmp_path / "out" / "study").resolve()
    assert config.cache == (folder / "cache").resolve()
    assert config.sizes == [0, 2, 5]
    assert config.limit == 3 and config.personas == 4  # overrides win
    assert config.dev_limit == 25  # None means "not given": the default stays
    assert config.batch_size == 8
    bench = config.bench_config()
    assert bench.batch_size == 8 and bench.cache == config.cache
    assert bench.tasks == ["topics"] and bench.tasks_dir == config.tasks_dir

    top_level = folder / "flat.toml"  # no [coldstart] table: the top level is the config
    top_level.write_text("tasks = ['topics']\nout = 'out'\n")
    assert load_coldstart_config(top_level).out == (folder / "out").resolve()

    bad = folder / "bad.toml"
    bad.write_text("[coldstart]\ntasks = ['topics']\ncolour = 'blue'\n")
    with pytest.raises(ConfigError, match="cold-start config colour"):
        load_coldstart_config(bad)
    with pytest.raises(ConfigError, match="cold-start config collaborative_members"):
        load_coldstart_config(path, collaborative_members=-1)
    with pytest.raises(ConfigError, match="no such cold-start config"):
        load_coldstart_config(folder / "missing.toml")


def test_sizes_must_be_non_negative() -> None:
    with pytest.raises(ConfigError, match=r"sizes: .*non-negative"):
        load_coldstart_config(None, tasks=[TASK], sizes=[2, -1])
    with pytest.raises(ValidationError, match="non-negative"):
        ColdStartConfig(tasks=[TASK], sizes=[-3])
    with pytest.raises(ValidationError, match="non-negative"):
        ColdStartConfig(tasks=[TASK], sizes=[])
    assert ColdStartConfig(tasks=[TASK], sizes=[0, 3, 0]).sizes == [0, 3]


# --- an end-to-end study -----------------------------------------------------------------------

ARMS = {"none", "user", "persona", "global", "blend", "collab", "router"}


@dataclass(frozen=True)
class StudyRun:
    config: ColdStartConfig
    first: ColdStartResult
    again: ColdStartResult
    paths: dict[str, Path]
    saved: dict[str, Any]


def _study(config: ColdStartConfig, llm: LLM, encoder: Encoder) -> ColdStartResult:
    config = naming(config, llm)
    runner = BenchRunner(config.bench_config(), llm=llm, encoder=encoder)
    study = ColdStartStudy(config, runner=runner)
    try:
        return study.run()
    finally:
        study.close()


@pytest.fixture(scope="module")
def study(
    tasks_dir: Path, tmp_path_factory: pytest.TempPathFactory, embedded_llm: LLM, encoder: Encoder
) -> StudyRun:
    root = tmp_path_factory.mktemp("coldstart-study")
    config = ColdStartConfig(
        name="tiny",
        tasks=[TASK],
        tasks_dir=tasks_dir,
        sizes=[0, 1],
        limit=2,
        dev_limit=2,
        k=2,
        personas=2,
        discovery_users=6,
        collaborative_members=2,
        max_new_tokens={TASK: 4},
        resamples=100,
        batch_size=4,
        out=root / "out",
        cache=root / "cache",
    )
    first = _study(config, llm=embedded_llm, encoder=encoder)
    paths = write_outputs(first, config.out)
    again = _study(config, llm=embedded_llm, encoder=encoder)
    return StudyRun(config, first, again, paths, json.loads(paths["json"].read_text()))


def _examples(saved: dict[str, Any], size: str) -> list[dict[str, Any]]:
    return [e for e in saved["tasks"][0]["examples"] if e["size"] == size]


@pytest.mark.slow
def test_study_writes_every_arm_at_every_cut(study: StudyRun) -> None:
    paths = study.paths
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = paths["summary"].read_text()
    assert "# Cold-start study: tiny" in summary and "## topics (rouge-1 ↑)" in summary
    (task,) = study.saved["tasks"]
    assert task["task"] == TASK and task["metric"] == "rouge-1" and task["higher_is_better"]
    assert [s["size"] for s in task["sizes"]] == ["0", "1", "all"]
    for size in task["sizes"]:
        assert set(size["arms"]) == ARMS and size["n"] == 2
        assert set(size["versus_none"]) == ARMS - {"none"}
        examples = _examples(study.saved, size["size"])
        assert [e["id"] for e in examples] == [
            f"test.test-{u}@{size['size']}" for u in ("tess", "sam")
        ]
        assert size["mean_items"] == pytest.approx(np.mean([e["items"] for e in examples]))
        for arm in ARMS:
            value = size["arms"][arm]["value"]
            assert value == pytest.approx(np.mean([e["outputs"][arm]["rouge-1"] for e in examples]))
            assert all(isinstance(e["outputs"][arm]["prediction"], str) for e in examples)
        counted: dict[str, int] = {}
        for example in examples:
            level = example["levels"]["router"]
            counted[level] = counted.get(level, 0) + 1
        assert size["router_levels"] == counted
    assert [e["items"] for e in task["examples"]] == [0, 0, 1, 1, 3, 3]
    cache = study.saved["cache"]
    assert cache["generated"] == study.first.generated > 0
    assert cache["generated"] + cache["reused"] == 6 * 6 + 6 * 7  # dev: 6 arms, test: 7


@pytest.mark.slow
def test_at_zero_items_user_is_none_and_persona_is_global(study: StudyRun) -> None:
    for example in _examples(study.saved, "0"):
        levels, outputs = example["levels"], example["outputs"]
        assert example["items"] == 0
        assert levels["none"] == "none" and levels["user"] == "user"
        assert outputs["user"]["prediction"] == outputs["none"]["prediction"]
        # no items place the user in a persona: persona (and collab) fall back to global
        assert levels["persona"] == levels["collab"] == levels["global"] == "global"
        assert outputs["persona"]["prediction"] == outputs["global"]["prediction"]
    for example in _examples(study.saved, "1") + _examples(study.saved, "all"):
        levels = example["levels"]
        assert levels["persona"] == levels["collab"] == "persona"  # nearest centroid
        assert levels["global"] == "global" and levels["user"] == levels["blend"] == "user"


@pytest.mark.slow
def test_router_serves_the_policy_chosen_on_dev(study: StudyRun) -> None:
    (task,) = study.saved["tasks"]
    policy = Policy(**task["router_policy"])
    assert policy == study.first.tasks[0].policy
    scores = task["dev"]["policy_scores"]
    assert task["dev"]["n"] == 2
    # dev items 0, 1, 3: cuts {0, 1, 4}: 6 (persona_min, user_min) x blend x collaborative
    assert len(scores) == 6 * 2 * 2
    assert scores[_key(policy)] == max(scores.values())
    for example in task["examples"]:
        arm = policy.arm(example["items"])
        assert example["levels"]["router"] == example["levels"][arm], example["id"]
        # the same prompt as the arm the policy picks, hence the same (cached) answer
        routed = example["outputs"]["router"]["prediction"]
        assert routed == example["outputs"][arm]["prediction"], example["id"]


@pytest.mark.slow
def test_personas_come_from_training_users_only(study: StudyRun) -> None:
    (task,) = study.saved["tasks"]
    discovery = task["discovery"]
    assert discovery["users"] == 6 and len(discovery["personas"]) == 2
    assert sum(p["members"] for p in discovery["personas"]) == 6
    assert all(p["description"] for p in discovery["personas"]) and discovery["global"]
    (path,) = study.config.bench_config().cache_path.glob("coldstart/*.db")
    store = open_store(f"sqlite:///{path}")
    try:
        personas = {p.id: p for p in store.personas()}
    finally:
        store.close()
    groups = [p for pid, p in personas.items() if pid != "global"]
    members = sorted(m for p in groups for m in p.members)
    assert members == sorted(f"train.train-{user}@all" for user in TRAINING)
    evaluated = {"tess", "sam", "dora", "dan"}
    assert not any(user in m for m in members for user in evaluated)
    # two clear topics, two personas: each persona is one topic's writers
    topics = {frozenset(p.members) for p in groups}
    garden = frozenset(f"train.train-{u}@all" for u in ("gwen", "gus", "gia"))
    sailing = frozenset(f"train.train-{u}@all" for u in ("sid", "sol", "sue"))
    assert topics == {garden, sailing}


@pytest.mark.slow
def test_rerun_reuses_every_answer_and_gives_the_same_numbers(study: StudyRun) -> None:
    first, again = study.first, study.again
    assert again.generated == 0
    assert again.reused == first.generated + first.reused
    before, after = first.to_dict(), again.to_dict()
    for part in (before, after):
        del part["seconds"], part["cache"]
    assert after == before


def test_study_needs_training_users_apart_from_evaluated_ones(
    tmp_path: Path, embedded_llm: LLM, encoder: Encoder
) -> None:
    # every training user but two is also evaluated: too few left to discover personas from
    users = [u for u in USERS if u[0] != "train"]
    users += [("train", u, t, 0, 0) for u, t in (("tess", "garden"), ("dan", "sailing"))]
    users += [("train", u, t, 1, 1) for u, t in (("gwen", "garden"), ("sid", "sailing"))]
    config = ColdStartConfig(
        tasks=[TASK], tasks_dir=_write_task(tmp_path / "tasks", users), limit=2, dev_limit=2,
        cache=tmp_path / "cache", out=tmp_path / "out",
    )  # fmt: skip
    with pytest.raises(ConfigError, match="found 2 test, 2 dev, 2 training users"):
        _study(config, embedded_llm, encoder)
    assert not (tmp_path / "cache" / "coldstart").exists()


# --- the benchmark runner's batch_size ---------------------------------------------------------


def _bench(tasks_dir: Path, cache: Path, batch_size: int, limit: int = 3) -> BenchConfig:
    return BenchConfig(
        name="batched",
        tasks=[TASK],
        tasks_dir=tasks_dir,
        methods=["none", "bm25"],
        k=[1],
        limit=limit,
        max_new_tokens={TASK: 8},
        metrics={TASK: ["rouge-1"]},
        resamples=100,
        batch_size=batch_size,
        require_match=False,  # LaMP's top k: every bm25 prompt differs from the baseline's
        out=cache.parent / "out",
        cache=cache,
    )


@pytest.mark.slow
def test_batched_generation_gives_the_one_at_a_time_answers(
    tasks_dir: Path, tmp_path: Path, embedded_llm: LLM, encoder: Encoder
) -> None:
    assert isinstance(embedded_llm, BatchGenerator)  # so batch_size > 1 batches for real
    two = run_bench(_bench(tasks_dir, tmp_path / "batched", 4, limit=2), embedded_llm, encoder)
    assert two.generated == 4 and two.reused == 0
    # the third example's two answers are new; the first two examples' four are reused
    batched = run_bench(_bench(tasks_dir, tmp_path / "batched", 4), embedded_llm, encoder)
    assert batched.generated == 2 and batched.reused == 4
    serial = run_bench(_bench(tasks_dir, tmp_path / "serial", 1), embedded_llm, encoder)
    assert serial.generated == 6 and serial.reused == 0
    (fast,), (slow,) = batched.tasks, serial.tasks
    assert fast.arms == slow.arms == ["none", "bm25 k=1"]
    assert [e.id for e in fast.examples] == ["test-tess", "test-sam", "test-gil"]
    assert [e.id for e in slow.examples] == [e.id for e in fast.examples]
    for arm in fast.arms:
        # prompts of different lengths share a batch (padding), answered in one forward pass
        first = two.tasks[0].examples
        assert first[0].outputs[arm].prompt_tokens != first[1].outputs[arm].prompt_tokens
        assert first[0].outputs[arm].generate_ms == first[1].outputs[arm].generate_ms
        assert [e.outputs[arm].cached for e in fast.examples] == [True, True, False]
        for quick, plain in zip(fast.examples, slow.examples, strict=True):
            ours, theirs = quick.outputs[arm], plain.outputs[arm]
            assert ours.prediction == theirs.prediction, (arm, quick.id)
            assert ours.prompt_tokens == theirs.prompt_tokens
            assert ours.completion_tokens == theirs.completion_tokens
    assert fast.metrics["rouge-1"].arms == slow.metrics["rouge-1"].arms

    again = run_bench(_bench(tasks_dir, tmp_path / "batched", 4), embedded_llm, encoder)
    assert again.generated == 0 and again.reused == 6


# --- known bug ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_edited_profiles_are_stored_anew(
    study: StudyRun, tmp_path: Path, embedded_llm: LLM, encoder: Encoder
) -> None:
    tasks = shutil.copytree(study.config.tasks_dir, tmp_path / "tasks")
    folder = tasks / TASK
    test = read_split(folder, "test")
    edited = [
        dataclasses.replace(
            e,
            profile=[
                {**item, "text": f"Jazz saxophone solo number {n}"}
                for n, item in enumerate(e.profile)
            ],
        )
        for e in test.examples
    ]  # same ids, same inputs, same number of items: only the items' texts change
    write_split(LampSplit(SPEC, "test", edited), folder)
    cache = shutil.copytree(study.config.bench_config().cache_path, tmp_path / "cache")
    config = study.config.model_copy(update={"tasks_dir": tasks, "cache": cache})
    _study(config, embedded_llm, encoder)
    stored: set[str] = set()
    for path in cache.glob("coldstart/*.db"):
        store = open_store(f"sqlite:///{path}")
        try:
            stored |= {d.text for d in store.documents("test.test-tess@all")}
        finally:
            store.close()
    assert "Jazz saxophone solo number 0" in stored
