"""Refined prompts (FERMI-style): the refinement loop and its budget, the stored per-user
instruction (rewritten when the data changes, deleted by forget), the persona-level variant for
users with little data, and the errors for too little data. The LLM is the real embedded model."""

from __future__ import annotations

from pathlib import Path

import pytest

from p13n.data import Document, Persona, User
from p13n.datasets.lamp import LampSplit, write_split
from p13n.encode import Encoder
from p13n.errors import InsufficientDataError
from p13n.llm import LLM, GenerationOptions
from p13n.personalize import Personalizer, PersonalizerConfig
from p13n.personalize.refine import (
    InstructionRefiner,
    RefineExample,
    RefineSettings,
    refine_instruction,
    refined_template,
)
from p13n.prompt import templates
from p13n.store import Store, WriteSet, open_store
from tests.helpers import dump, run_bench
from tests.test_bench import SPEC, _config, _examples
from tests.test_bench import task_dir as task_dir  # the fixture
from tests.test_policy import service_with_alice

SMALL = RefineSettings(candidates=2, iterations=1, examples=2, min_examples=2, max_advice_tokens=16)
SHORT = GenerationOptions(max_new_tokens=8)
ARTICLES = [
    ("The city council voted to expand bike lanes across downtown.", "Bike Lanes Win Big"),
    ("A heatwave pushed power demand to a record high on Tuesday.", "Heat Breaks The Grid"),
    ("The local team won its first championship in forty years.", "Forty Years, One Title"),
]


def titled(user: str, pairs: list[tuple[str, str]]) -> list[Document]:
    return [Document(user_id=user, text=text, title=title, kind="article") for text, title in pairs]


@pytest.fixture
def newsroom(tmp_path: Path) -> Store:
    """rich: three titled articles; member: one, in a persona with rich; solo: one, alone."""
    store = open_store(f"sqlite:///{tmp_path / 'news.db'}")
    store.write(
        WriteSet(
            users=[User(id=name) for name in ("rich", "member", "solo")],
            documents=titled("rich", ARTICLES)
            + titled("member", ARTICLES[:1])
            + titled("solo", ARTICLES[1:2]),
            personas=[Persona(id="desk", description="news desk", members=["rich", "member"])],
        )
    )
    return store


def test_settings_refuse_a_metric_that_does_not_score_each_example() -> None:
    with pytest.raises(ValueError, match=r"'bleu' does not score text example by example.*rouge-1"):
        RefineSettings(metric="bleu")
    assert RefineSettings().max_calls() == 4 * (1 + 3 * 2) + 3 * 2


def test_advice_goes_before_the_instruction_with_braces_kept_literal() -> None:
    lamp4 = templates.get("lamp4")
    framed = refined_template(lamp4, "Use {short} titles.")
    assert framed.render_input("TEXT") == "Use {short} titles.\n" + lamp4.render_input("TEXT")
    assert refined_template(lamp4, "") is lamp4


def test_refinement_keeps_the_best_instruction_within_its_budget(embedded_llm: LLM) -> None:
    examples = [RefineExample(text, title) for text, title in ARTICLES]
    refined = refine_instruction(
        embedded_llm, templates.get("lamp4"), examples, SMALL,
        max_new_tokens=8, level="user", owner="rich",
    )  # fmt: skip
    assert refined.score >= refined.start_score  # the task's own instruction is a candidate
    assert refined.examples == 2
    assert 1 + SMALL.examples <= refined.llm_calls <= SMALL.max_calls() == 2 * 3 + 2
    too_few = r"has 1 usable examples.*at least 2 are needed"
    with pytest.raises(InsufficientDataError, match=too_few):
        refine_instruction(
            embedded_llm, templates.get("lamp4"), examples[:1], SMALL,
            max_new_tokens=8, level="user", owner="rich",
        )  # fmt: skip


@pytest.mark.slow
def test_personalizer_serves_stores_and_renews_the_users_refined_instruction(
    newsroom: Store, embedded_llm: LLM
) -> None:
    config = PersonalizerConfig(task="lamp4", prompt="refined", refine=SMALL, generation=SHORT)
    personalizer = Personalizer(newsroom, config, llm=embedded_llm)
    article = "Storms closed every school in the county for two days."
    first = personalizer.generate("rich", article)
    refined = first.trace.refined
    assert refined is not None and refined["level"] == "user" and refined["refreshed"] is True
    assert refined["llm_calls"] <= refined["max_calls"] == SMALL.max_calls()
    instruction = templates.get("lamp4").render_input(article)
    assert first.trace.prompt.messages[-1]["content"].endswith(instruction)
    if refined["advice"]:  # the advice frames the instruction, as quoted by the trace
        assert first.trace.prompt.messages[-1]["content"].startswith(refined["advice"])
    again = personalizer.generate("rich", article)
    assert again.trace.refined == {**refined, "refreshed": False}  # stored, not refined again
    assert again.text == first.text
    newsroom.write(WriteSet(documents=titled("rich", [("Rain at last.", "Finally, Rain")])))
    renewed = personalizer.generate("rich", article).trace.refined
    assert renewed is not None and renewed["refreshed"] is True  # the data changed


@pytest.mark.slow
def test_a_user_with_little_data_gets_their_personas_instruction_or_a_clear_reason(
    newsroom: Store, embedded_llm: LLM
) -> None:
    refiner = InstructionRefiner(
        newsroom, embedded_llm, templates.get("lamp4"), SMALL, max_new_tokens=8
    )
    persona_level, refreshed = refiner.refined("member", newsroom.data_version("member") or "")
    assert persona_level.level == "persona" and persona_level.owner == "desk" and refreshed
    assert persona_level.examples == 2  # the members' examples pooled, cut to the budget
    with pytest.raises(
        InsufficientDataError,
        match=r"user 'solo' has 1 usable examples .* at least 2 are needed, or membership",
    ):
        refiner.refined("solo", newsroom.data_version("solo") or "")
    config = PersonalizerConfig(task="lamp4", prompt="refined", refine=SMALL, generation=SHORT)
    served = Personalizer(newsroom, config, llm=embedded_llm).prepare("solo", "Snow in May.")
    assert served.trace.refined is not None and served.trace.refined["advice"] is None
    assert "at least 2 are needed" in served.trace.refined["reason"]
    bare = templates.get("lamp4").render_input("Snow in May.")
    assert served.prompt.messages[-1]["content"] == bare  # the task's own instruction


@pytest.mark.slow
def test_forget_leaves_no_refined_instruction_of_the_user(
    newsroom: Store, embedded_llm: LLM
) -> None:
    config = PersonalizerConfig(task="lamp4", prompt="refined", refine=SMALL, generation=SHORT)
    personalizer = Personalizer(newsroom, config, llm=embedded_llm)
    personalizer.prepare("rich", "A new bridge opened.")
    personalizer.prepare("member", "A new bridge opened.")
    rows = [row for row in dump(newsroom)["profiles"] if row[2].startswith("refine:")]
    assert {row[1] for row in rows} == {"rich", "member"}
    assert newsroom.forget("rich")["profiles"] == 1
    left = [row for row in dump(newsroom)["profiles"] if row[2].startswith("refine:")]
    assert {row[1] for row in left} == {"member"}
    for table, table_rows in dump(newsroom).items():  # nothing of rich, in any table
        assert not [r for r in table_rows if "rich" in r], table


@pytest.mark.slow
def test_the_service_traces_why_a_user_got_the_tasks_own_instruction(sqlite_url: str) -> None:
    service, h, body = service_with_alice(sqlite_url)  # alice wrote two untitled notes
    asked = {**body, "task": "lamp4", "prompt": "refined", "policy": "fixed"}
    served = service.client.post("/v1/generate", json=asked, headers=h)
    assert served.status_code == 200, served.text
    refined = served.json()["trace"]["refined"]
    assert refined["advice"] is None
    assert refined["reason"] == (
        "user 'alice' has 0 usable examples (titled documents) for refining the lamp4 "
        "instruction; at least 2 are needed, or membership of a persona"
    )


@pytest.mark.slow
def test_the_runner_refines_once_and_a_warm_rerun_generates_nothing(
    task_dir: Path, tmp_path: Path, embedded_llm: LLM, encoder: Encoder
) -> None:
    write_split(LampSplit(SPEC, "train", _examples("train")), task_dir)
    adapt = {"refine": SMALL.model_dump(), "refine_task_examples": 2}
    methods = ["none", "refine", "refine-rag", "refine-task"]
    config = _config(task_dir, tmp_path, methods=methods, adapt=adapt)
    (task,) = run_bench(config, embedded_llm, encoder).tasks
    user_level = task.training["refine"]
    assert user_level["adapters"] == 4 and user_level["trained_now"] == 4  # one per user
    assert user_level["llm_calls_mean"] <= SMALL.max_calls()
    assert task.training["refine-rag"]["trained_now"] == 0  # the stored instructions
    assert task.training["refine-task"]["adapters"] == 1
    again = run_bench(config, embedded_llm, encoder)
    assert again.generated == 0 and again.tasks[0].training["refine"]["trained_now"] == 0
    for before, after in zip(task.examples, again.tasks[0].examples, strict=True):
        assert {m: o.prediction for m, o in before.outputs.items()} == {
            m: o.prediction for m, o in after.outputs.items()
        }
