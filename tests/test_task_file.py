"""One's own task in one folder: questions, outputs and a ``task.toml`` (``p13n tasks init``),
and LongLaMP's released task names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from p13n.benchmarks.config import BenchConfig
from p13n.benchmarks.scoring import task_file_names
from p13n.cli import app
from p13n.datasets import TASK_FILE, read_split, read_task_file
from p13n.datasets.task_init import draft_task_file
from p13n.encode import Encoder
from p13n.errors import ConfigError, TaskFormatError
from p13n.evaluate.metrics import DEFAULT_METRICS
from p13n.llm import LLM, GenerationOptions
from p13n.prompt import NON_PERSONALIZED, task_template, templates
from tests.helpers import run_bench

POSTS = [  # (user, held-out post, its title, earlier posts and titles)
    ("ada", "Steep trails and a storm on the ridge", "Caught on the ridge",
     [("Sunrise from the summit", "We left at four to see the sun rise over the peaks"),
      ("Boots that last", "Three seasons of hiking in the same pair of boots")]),
    ("bruno", "Proofing dough overnight in the fridge", "Slow dough",
     [("Starter day one", "Flour and water and patience make a sourdough starter"),
      ("Crust secrets", "Steam in the oven gives bread a crackling crust")]),
    ("chen", "Tuning a guitar by ear without an app", "Ears over apps",
     [("First chords", "G, C and D are enough for a hundred songs"),
      ("Changing strings", "Old strings sound dull, so change them every month")]),
]  # fmt: skip
OWN_TOML = """[task]
instruction = "Give this blog post a short title: {input}"
item = "{title} was the title of {text}"
system = "You title blog posts."
profile_text = "body"
profile_title = "headline"
metrics = ["rouge-l", "rouge-1"]
max_new_tokens = 8
"""


def _task_folder(root: Path, name: str = "posts", toml: str | None = OWN_TOML) -> Path:
    """A task folder made only of dev questions, dev outputs and (optionally) a task.toml."""
    folder = root / name
    folder.mkdir(parents=True)
    questions = [
        {
            "id": f"q-{user}",
            "user_id": user,
            "input": post,
            "profile": [
                {"id": f"{user}-{n}", "headline": title, "body": body}
                for n, (title, body) in enumerate(history)
            ],
        }
        for user, post, _, history in POSTS
    ]
    golds = [{"id": f"q-{user}", "output": title} for user, _, title, _ in POSTS]
    (folder / "dev_questions.json").write_text(json.dumps(questions))
    (folder / "dev_outputs.json").write_text(json.dumps({"task": "mine", "golds": golds}))
    if toml is not None:
        (folder / TASK_FILE).write_text(toml)
    return folder


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("[task]\noutput = 'text'\n", "give either template"),
        ("[task]\ntemplate = 'lamp4'\ninstruction = '{input}'\n", "give either template"),
        ("[task]\ninstruction = 'Title this.'\n", r"instruction: must contain \{input\}"),
        ("[task]\ninstruction = '{input} {user}'\n", r"instruction: must contain \{input\}"),
        ("[task]\ninstruction = '{input}'\nitem = '{text} by {author}'\n", r"item: knows"),
        ("[task]\ntemplate = 'lamp4'\nitem = '{text}'\n", "item belong to an instruction"),
        ("[task]\ninstruction = '{input}'\ncolour = 'blue'\n", "colour: Extra inputs"),
        ("[task]\ninstruction = '{input}'\nmax_new_tokens = 0\n", "max_new_tokens: Input should"),
        ("[task]\ninstruction = '{input}'\noutput = 'label'\nlabels = ['a']\n", "two labels"),
        ("[task]\ninstruction = '{input}'\nmetrics = ['rouge-1', 'rouge-1']\n", "distinct"),
        ("[task]\ninstruction = '{input}'\noutput = 'poem'\n", "output: Input should be"),
        ("[task]\ninstruction = '{input}'\n[extra]\n", r"holds one \[task\] table"),
        ("task = 'lamp4'\n", r"holds one \[task\] table"),
        ("[task\n", "not valid TOML"),
        ("[task]\ntemplate = 'lamp44'\n", "template: unknown template 'lamp44'"),
        ("[task]\ninstruction = '{input}'\nmetrics = ['blue']\n", "unknown metric 'blue'"),
        ("[task]\ninstruction = '{input}'\nmetrics = ['mae']\n", "'mae' scores rating answers"),
        ("[task]\ninstruction = '{input}'\nname = 'My Task'\n", "name: 'My Task' cannot name"),
    ],
)
def test_a_bad_task_file_names_the_file_and_the_field(
    tmp_path: Path, body: str, problem: str
) -> None:
    path = tmp_path / "mine" / TASK_FILE
    path.parent.mkdir()
    path.write_text(body)
    with pytest.raises(TaskFormatError, match=problem) as raised:
        read_task_file(path, **task_file_names())
    assert str(path) in str(raised.value)


def test_task_file_fields_become_the_spec(tmp_path: Path) -> None:
    folder = _task_folder(tmp_path)
    spec = read_task_file(folder / TASK_FILE, **task_file_names())
    assert (spec.name, spec.template, spec.output_kind) == ("posts", "posts", "text")
    assert (spec.profile_text, spec.profile_title, spec.profile_date) == (
        "body",
        "headline",
        "date",
    )
    assert spec.metrics == ("rouge-l", "rouge-1") and spec.max_new_tokens == 8
    assert spec.prompt is not None and spec.prompt.system == "You title blog posts."
    assert spec.prompt.item_untitled == "{text}"  # the default where the file says nothing
    split = read_split(folder, "dev")
    assert split.spec == spec and [e.user_id for e in split.examples] == ["ada", "bruno", "chen"]
    with pytest.raises(TaskFormatError, match=r"no test split .* splits here: dev"):
        read_split(folder, "test")
    # a registered template by name; a rating scale defaults to LaMP-3's
    (folder / TASK_FILE).write_text("[task]\ntemplate = 'lamp3'\noutput = 'rating'\n")
    rated = read_task_file(folder / TASK_FILE, **task_file_names())
    assert rated.prompt is None and rated.labels == ("1", "2", "3", "4", "5")
    assert task_template(rated) is templates.get("lamp3")


def test_a_task_template_never_replaces_another_of_the_same_name(tmp_path: Path) -> None:
    folder = _task_folder(tmp_path, "lamp4")  # named like a built-in template
    with pytest.raises(ConfigError, match="template named 'lamp4' is already registered"):
        task_template(read_task_file(folder / TASK_FILE))
    renamed = _task_folder(tmp_path / "b", "lamp4", OWN_TOML.replace("[task]", "[task]\nname='x4'"))
    own = task_template(read_task_file(renamed / TASK_FILE))
    assert own.name == "x4" and templates.get("x4") is own
    assert task_template(read_task_file(renamed / TASK_FILE)) == own  # registered once, reused


def test_tasks_init_writes_a_task_file_from_the_folders_own_examples(tmp_path: Path) -> None:
    folder = _task_folder(tmp_path, toml=None)
    cli = CliRunner()
    done = cli.invoke(app, ["tasks", "init", str(folder)], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert "from 3 golds of dev" in done.output and "--task posts" in done.output
    spec = read_task_file(folder / TASK_FILE, **task_file_names())
    assert (spec.output_kind, spec.profile_text, spec.profile_title) == ("text", "body", "headline")
    assert spec.profile_date is None and spec.metrics[0] == "rouge-1"
    # the inputs open differently, so they carry no instruction: the file says to write one
    assert "EDIT THIS" in (folder / TASK_FILE).read_text()
    again = cli.invoke(app, ["tasks", "init", str(folder)])
    assert again.exit_code == 1 and "exists: edit it, or pass --force" in again.output
    assert cli.invoke(app, ["tasks", "init", str(folder), "--force"]).exit_code == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    failed = cli.invoke(app, ["tasks", "init", str(empty)])
    assert failed.exit_code == 1 and "nothing to describe" in failed.output


def _labelled(root: Path, golds: list[str], lead: str) -> Path:
    folder = root / "labelled"
    folder.mkdir(parents=True)
    questions = [
        {
            "id": str(n),
            "input": f"{lead} the following item: number {n}",
            "profile": [{"id": f"{n}-0", "text": "an earlier long review text", "score": gold}],
        }
        for n, gold in enumerate(golds)
    ]
    (folder / "test_questions.json").write_text(json.dumps(questions))
    outputs = {"golds": [{"id": str(n), "output": gold} for n, gold in enumerate(golds)]}
    (folder / "test_outputs.json").write_text(json.dumps(outputs))
    return folder


def test_tasks_init_tells_ratings_and_labels_from_text(tmp_path: Path) -> None:
    rated = _labelled(tmp_path / "r", ["1", "5", "4", "5", "2", "4"], "Score")
    rating = draft_task_file(rated, DEFAULT_METRICS)
    assert rating.output == "rating" and rating.labels == ("1", "2", "4", "5")
    assert (rating.profile_text, rating.profile_title) == ("text", "score")
    assert "labels =" not in rating.text  # within LaMP-3's 1-5: the default scale
    labelled = _labelled(tmp_path / "l", ["sport", "food", "sport", "food"], "Tag")
    label = draft_task_file(labelled, DEFAULT_METRICS)
    assert label.output == "label" and label.labels == ("food", "sport")
    assert 'labels = ["food", "sport"]' in label.text
    assert "{input}" in label.text and "EDIT THIS" not in label.text  # LaMP-like: alike openings
    spec = read_task_file(
        _write(tmp_path / "l" / "labelled" / TASK_FILE, label.text), **task_file_names()
    )
    assert spec.output_kind == "label" and spec.metrics == ("accuracy", "macro-f1")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_longlamp_subsets_are_known_by_their_released_names(tmp_path: Path) -> None:
    """LongLaMP's layout: golds inline, the dev split named val, users as reviewerId."""
    folder = tmp_path / "product_review_user"
    folder.mkdir()
    example: dict[str, Any] = {
        "reviewerId": "R1",
        "input": "Generate the review text written by a reviewer who rated it 5.0",
        "output": "Lovely kettle, boils fast.",
        "profile": [{"id": "p0", "reviewText": "A fine toaster.", "summary": "Fine"}],
    }
    (folder / "val_questions.json").write_text(json.dumps([{"id": "e0", **example}]))
    split = read_split(folder, "dev")
    assert split.spec.template == "longlamp-review" and split.spec.profile_text == "reviewText"
    (only,) = split.examples
    assert only.user_id == "R1" and only.output == "Lovely kettle, boils fast."
    unknown = tmp_path / "my_own_task"
    unknown.mkdir()
    (unknown / "test_questions.json").write_text(json.dumps([{"id": "e0", **example}]))
    with pytest.raises(TaskFormatError, match="p13n tasks init"):
        read_split(unknown, "test")


@pytest.mark.slow
def test_a_folder_of_questions_outputs_and_a_task_file_runs_as_a_benchmark(
    tmp_path: Path, embedded_llm: LLM, encoder: Encoder
) -> None:
    folder = _task_folder(tmp_path / "tasks")
    config = BenchConfig(
        tasks=["posts"],
        tasks_dir=folder.parent,
        split="dev",
        methods=["none", "bm25"],
        k=[1],
        require_match=False,
        resamples=100,
        cache=tmp_path / "cache",
    )
    (task,) = run_bench(config, embedded_llm, encoder).tasks
    assert task.spec.template == "posts" and task.primary == "rouge-l"
    assert list(task.metrics) == ["rouge-l", "rouge-1"]
    template = templates.get("posts")
    for (_, post, _, _), example in zip(POSTS, task.examples, strict=True):
        # the none arm asked exactly the task file's prompt, and answered in 8 tokens at most
        prompt = NON_PERSONALIZED.build(template, post, embedded_llm.tokenizer, 1 << 20)
        expected = embedded_llm.generate(
            prompt.messages, GenerationOptions(max_new_tokens=8, seed=0)
        )
        assert example.outputs["none"].prediction == expected.text.strip()
        assert example.outputs["none"].prompt_tokens == expected.prompt_tokens
        assert prompt.messages[0]["content"].startswith("You title blog posts.")
        bm25 = example.outputs["bm25 k=1"]
        assert bm25.completion_tokens <= 8 and bm25.retrieved[0].startswith(example.id + ".")
    (folder / TASK_FILE).write_text(OWN_TOML.replace("rouge-l", "rouge-9"))
    with pytest.raises(TaskFormatError, match=r"posts/task.toml: \[task\] metrics: unknown"):
        run_bench(config, embedded_llm, encoder)
