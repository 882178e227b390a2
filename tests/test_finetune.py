"""Full fine-tuning of every weight of the embedded model: written atomically into the cache
with its recipe, reused for the same recipe, resumed after a stop with the same weights,
registered like an adapter and served through the Personalizer; too little data refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from p13n.adapt.base import TrainingExample, base_model, load_tokenizer
from p13n.adapt.finetune import RECIPE, FinetuneSettings, finetune
from p13n.adapt.train import task_examples, train_task_finetune
from p13n.cli import app
from p13n.datasets.lamp import LampExample, LampSplit, write_split
from p13n.encode import Encoder
from p13n.errors import AdapterNotFoundError, InsufficientDataError
from p13n.llm import LLM, GenerationOptions
from p13n.llm.hf import HFLLM, HFTokenizer
from p13n.personalize import Personalizer, PersonalizerConfig
from p13n.store import Store
from tests.helpers import run_bench
from tests.test_bench import SPEC, _config, _examples
from tests.test_bench import task_dir as task_dir  # the fixture

pytestmark = pytest.mark.slow
runner = CliRunner()

TINY = FinetuneSettings(
    max_examples=4, min_examples=4, batch_size=2, max_input_tokens=32, max_answer_tokens=8,
    checkpoint_steps=1, learning_rate=1e-4,
)  # fmt: skip
SHORT = GenerationOptions(max_new_tokens=8)
TRAIN = [
    LampExample(f"t{n}", f"Article {n}: the council met about {topic}.", [], f"{topic} news")
    for n, topic in enumerate(["bikes", "heat", "floods", "schools", "trains"])
]


class Stop(Exception):
    """Raised from the progress callback: a run stopped midway, as a killed process is."""


def examples() -> list[TrainingExample]:
    base = base_model()
    return task_examples(TRAIN, "lamp4", HFTokenizer(load_tokenizer(base.path), base.name), TINY)


def test_a_run_stopped_midway_resumes_to_the_same_weights(tmp_path: Path) -> None:
    base = base_model()
    cast = examples()
    assert len(cast) == 4  # max_examples cut the five

    def stop_after_first(done: int, total: int) -> None:
        if done == 1:
            raise Stop

    with pytest.raises(Stop):
        finetune(base, cast, TINY, progress=stop_after_first)
    resumed = finetune(base, cast, TINY)
    assert resumed.metrics["resumed_from_step"] == 1 and resumed.metrics["steps"] == 2
    manifest = json.loads(resumed.weights)
    folder = Path(manifest["path"])
    assert not list(folder.parent.glob(f".{folder.name}.checkpoint*"))  # removed when done
    recipe = json.loads((folder / RECIPE).read_text())
    assert recipe["recipe"]["base_sha256"] == base.sha256 and recipe["recipe"]["examples"] == 4
    resumed_weights = load_file(folder / "model.safetensors")

    again = finetune(base, cast, TINY)  # same recipe: the built model, not trained again
    assert again.metrics["reused"] is True and json.loads(again.weights) == manifest

    shutil.rmtree(folder)
    whole = finetune(base, cast, TINY)  # the same recipe trained without a stop
    assert whole.metrics["resumed_from_step"] == 0
    whole_weights = load_file(folder / "model.safetensors")
    base_weights = load_file(base.path / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not whole_weights[name].equal(base_weights[name])  # every weight trains
    assert all(whole_weights[k].equal(resumed_weights[k]) for k in whole_weights)


def test_too_little_data_says_how_much_is_needed(demo: Store) -> None:
    with pytest.raises(
        InsufficientDataError, match=r"the train split has 5 usable examples .* at least 32"
    ):
        train_task_finetune(demo, TRAIN, "lamp4", base_model(), FinetuneSettings())


def test_the_personalizer_answers_with_the_registered_model(demo: Store, embedded_llm: LLM) -> None:
    base = base_model()
    entry = train_task_finetune(demo, TRAIN, "lamp4", base, TINY)
    assert entry.adapter_id == f"tenant:{demo.tenant}:lamp4:finetune"
    assert entry.metrics["model_bytes"] > 100 * entry.size_bytes  # the entry holds a manifest
    assert train_task_finetune(demo, TRAIN, "lamp4", base, TINY) == entry  # current: kept
    config = PersonalizerConfig(task="lamp4", adapter="finetune", prompt="none", generation=SHORT)
    personalizer = Personalizer(demo, config, llm=embedded_llm)
    baseline, tuned = personalizer.compare("ada", "The mayor opened a new library.")
    assert baseline.trace.adapter is None and baseline.trace.model == base.name
    assert tuned.trace.adapter is not None and tuned.trace.adapter["method"] == "finetune"
    folder = Path(entry.config["path"])
    assert tuned.trace.model == folder.name
    direct = HFLLM(folder).generate(tuned.trace.prompt.messages, SHORT)
    assert tuned.text == direct.text  # exactly the fine-tuned model's answer to that prompt
    shutil.rmtree(folder)
    fresh = Personalizer(demo, config, llm=embedded_llm)
    with pytest.raises(AdapterNotFoundError, match=r"its folder .* is gone; fine-tune it again"):
        fresh.generate("ada", "The mayor opened a new library.")


def test_a_personas_model_serves_its_members_and_the_tenants_the_rest(
    demo: Store, embedded_llm: LLM
) -> None:
    url = str(demo.engine.url)  # type: ignore[attr-defined]
    tiny = ["--epochs", "1", "--max-examples", "4", "--min-examples", "4"]
    train = ["--store", url, "adapt", "train", "--method", "finetune", "--task", "lamp4"]
    neither = runner.invoke(app, [*train, *tiny])
    assert neither.exit_code == 1 and "on --task-folder DIR or on --persona ID" in neither.output
    trained = runner.invoke(app, [*train, "--persona", "concise-pragmatic", *tiny])
    assert trained.exit_code == 0, trained.output
    assert "registered persona:concise-pragmatic:lamp4:finetune: 4 examples" in trained.output
    persona = demo.get_adapter("persona:concise-pragmatic:lamp4:finetune")
    tenant = train_task_finetune(demo, TRAIN, "lamp4", base_model(), TINY)
    assert persona is not None and persona.config["path"] != tenant.config["path"]
    config = PersonalizerConfig(task="lamp4", adapter="finetune", prompt="none", generation=SHORT)
    personalizer = Personalizer(demo, config, llm=embedded_llm)
    member = personalizer.generate("ada", "The mayor opened a new library.").trace.adapter
    other = personalizer.generate("chloe", "The mayor opened a new library.").trace.adapter
    assert member is not None and member["adapter_id"] == persona.adapter_id
    assert other is not None and other["adapter_id"] == tenant.adapter_id


def test_the_runner_fine_tunes_once_and_answers_through_the_personalizer(
    task_dir: Path, tmp_path: Path, embedded_llm: LLM, encoder: Encoder
) -> None:
    write_split(LampSplit(SPEC, "train", _examples("train")), task_dir)
    adapt = {"finetune": TINY.model_dump()}
    config = _config(task_dir, tmp_path, methods=["none", "finetune", "finetune-rag"], adapt=adapt)
    (task,) = run_bench(config, embedded_llm, encoder).tasks
    assert task.training["finetune"]["trained_now"] == 1  # one model for the task's users
    assert task.training["finetune-rag"]["trained_now"] == 0  # the same model, with items
    assert task.training["finetune"]["size_bytes_mean"] > 100e6  # a whole model, not a manifest
    tuned = [e.outputs["finetune"].prediction for e in task.examples]
    assert tuned != [e.outputs["none"].prediction for e in task.examples]
    again = run_bench(config, embedded_llm, encoder)
    assert again.generated == 0 and again.tasks[0].training["finetune"]["trained_now"] == 0
    assert [e.outputs["finetune"].prediction for e in again.tasks[0].examples] == tuned
