"""Decoding-time personalization by the learned user: contrastive decoding with the user's LoRA
adapter (CoPe) and per-user steering vectors (StyleVector), checked against independent
recomputations, through the Personalizer, forget and the benchmark runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from p13n.adapt import LoraSettings, LoraTrainer, TrainingExample, base_model
from p13n.adapt.runtime import AdaptedLLM
from p13n.adapt.steering import (
    SteeringHook,
    SteeringVector,
    SteeringVectorSettings,
    decoder_layers,
    train_steering_vector,
)
from p13n.adapt.train import train_user_lora, train_user_steering_vector, user_examples
from p13n.encode import Encoder
from p13n.errors import InsufficientDataError, LLMError
from p13n.llm import LLM, GenerationOptions
from p13n.llm.base import steered_log_probs
from p13n.llm.hf import HFLLM
from p13n.personalize import Personalizer, PersonalizerConfig
from p13n.prompt import NON_PERSONALIZED, templates
from p13n.store import Store
from tests.helpers import run_bench
from tests.test_bench import _config
from tests.test_bench import task_dir as task_dir  # the fixture

pytestmark = pytest.mark.slow

TINY = LoraSettings(epochs=2, batch_size=4, max_input_tokens=48, max_answer_tokens=16)
VECTOR = SteeringVectorSettings(max_examples=4, max_new_tokens=8, max_input_tokens=48)


@pytest.fixture(scope="module")
def adapted() -> AdaptedLLM:
    return AdaptedLLM(base_model())


@pytest.fixture(scope="module")
def trainer() -> LoraTrainer:
    return LoraTrainer(base_model(), TINY)


def _messages(llm: LLM, text: str) -> Any:
    return list(NON_PERSONALIZED.build(templates.get("chat"), text, llm.tokenizer, 4096).messages)


def _ids(llm: HFLLM, messages: Any) -> list[int]:
    tokenizer = llm.tokenizer.hf
    return list(tokenizer(llm.tokenizer.render(messages), add_special_tokens=False)["input_ids"])


def test_cope_answers_from_adapter_plus_beta_times_adapter_minus_base(
    demo: Store, trainer: LoraTrainer, adapted: AdaptedLLM, embedded_llm: LLM
) -> None:
    import torch

    assert isinstance(embedded_llm, HFLLM)
    entry = train_user_lora(demo, "ada", "chat", trainer)
    messages = _messages(embedded_llm, "Suggest a title for my note about the weekend.")
    adapted.activate(demo, entry)
    beta = 2.0
    cope = adapted.generate(messages, GenerationOptions(max_new_tokens=6, adapter_contrast=beta))
    lora = adapted.generate(messages, GenerationOptions(max_new_tokens=6))
    # Full forward passes, no cache, no transformers generation utilities: the adapter's
    # logits with the slot on, the base model's with it off.
    prompt, new = _ids(embedded_llm, messages), []
    slot = adapted._slot.peft
    with adapted.model_in_use() as model, torch.inference_mode():
        for _ in range(cope.completion_tokens):
            own = model(torch.tensor([prompt + new])).logits[0, -1].double().numpy()
            slot.base_model.disable_adapter_layers()
            base = model(torch.tensor([prompt + new])).logits[0, -1].double().numpy()
            slot.base_model.enable_adapter_layers()
            new.append(int(np.argmax(steered_log_probs(own, base, beta))))
    tokenizer = embedded_llm.tokenizer.hf
    assert tokenizer.decode(new, skip_special_tokens=True).strip() == cope.text
    assert cope.text != lora.text  # the contrast changes this answer
    assert cope.model == lora.model == f"SmolLM2-135M-Instruct+lora:{entry.weights_sha256[:12]}"

    # Batched (left-padded, so positions come from the mask) and streamed answers agree.
    short = _messages(embedded_llm, "Title my gym note.")
    options = GenerationOptions(max_new_tokens=6, adapter_contrast=beta)
    batched = adapted.generate_batch([messages, short], options, batch_size=2)
    assert [c.text for c in batched] == [cope.text, adapted.generate(short, options).text]
    assert "".join(adapted.stream(messages, options)).strip() == cope.text

    adapted.deactivate()
    with pytest.raises(LLMError, match="activate a LoRA adapter first"):
        adapted.generate(messages, options)
    with pytest.raises(LLMError, match="torch backends"):
        embedded_llm.generate(messages, options)  # no adapter: refused, not the plain model


def test_a_steering_vector_is_the_mean_difference_of_own_and_base_answer_states(
    demo: Store, embedded_llm: LLM, adapted: AdaptedLLM
) -> None:
    import torch

    assert isinstance(embedded_llm, HFLLM)
    base = base_model()
    entry = train_user_steering_vector(demo, "bruno", "chat", embedded_llm, base, VECTOR)
    assert entry.adapter_id == "user:bruno:chat:steering-vector" and entry.user_id == "bruno"
    assert entry.config["data_version"] == demo.data_version("bruno")
    layers = len(decoder_layers(embedded_llm.torch_model))
    assert entry.config["layer"] == layers // 2 and entry.config["hidden"] == 576
    assert entry.size_bytes < 4 * 576 + 200  # one float32 vector and its header
    vector = SteeringVector.from_weights(
        demo.adapter_weights(entry.adapter_id) or b"", entry.config
    )

    # Recomputed with a forward hook on the layer (not output_hidden_states).
    examples = user_examples(demo, "bruno", "chat", embedded_llm.tokenizer, VECTOR)
    answers = embedded_llm.generate_batch(
        [e.prompt for e in examples], GenerationOptions(max_new_tokens=8)
    )
    captured: list[Any] = []
    layer = decoder_layers(embedded_llm.torch_model)[vector.layer]

    def state(example: Any, answer: str) -> np.ndarray:
        ids = _ids(embedded_llm, example.prompt)
        ids += embedded_llm.tokenizer.hf(answer, add_special_tokens=False)["input_ids"][:64]
        handle = layer.register_forward_hook(lambda m, i, o: captured.append(o))
        try:
            with embedded_llm.model_in_use() as model, torch.inference_mode():
                model(torch.tensor([ids]))
        finally:
            handle.remove()
        out = captured.pop()
        return np.asarray((out[0] if isinstance(out, tuple) else out)[0, -1].double().numpy())

    differences = [
        state(e, e.answer) - state(e, a.text)
        for e, a in zip(examples, answers, strict=True)
        if a.text.strip().casefold() != e.answer.strip().casefold()
    ]
    assert entry.metrics["pairs"] == len(differences) > 0
    assert vector.vector == pytest.approx(np.mean(differences, axis=0), abs=1e-4)

    # Decoding: α = 0 is the base model; the hook adds α·v to the layer's output.
    messages = _messages(embedded_llm, "What should I do this weekend?")
    plain = embedded_llm.generate(messages, GenerationOptions(max_new_tokens=8))
    adapted.activate(demo, entry)
    assert adapted.model == f"SmolLM2-135M-Instruct+steering-vector:{entry.weights_sha256[:12]}"
    unsteered = adapted.generate(messages, GenerationOptions(max_new_tokens=8))
    assert unsteered.text == plain.text
    steered = adapted.generate(messages, GenerationOptions(max_new_tokens=8, vector_strength=4))
    assert steered.text != plain.text
    # What the next layer reads moves by exactly α·v at every position.
    ids = torch.tensor([_ids(embedded_llm, messages)])
    following = decoder_layers(embedded_llm.torch_model)[vector.layer + 1]
    read: list[Any] = []
    handle = following.register_forward_pre_hook(lambda m, args: read.append(args[0].clone()))
    try:
        with embedded_llm.model_in_use() as model, torch.inference_mode():
            model(ids)
            with SteeringHook(model, vector, 4.0):
                model(ids)
    finally:
        handle.remove()
    shift = (read[1] - read[0])[0].double().numpy()
    assert shift == pytest.approx(np.tile(4.0 * vector.vector, (shift.shape[0], 1)), abs=1e-3)
    with pytest.raises(LLMError, match="choices are not scored"):
        adapted.score_choices(messages, ["yes", "no"])
    adapted.deactivate()


def test_the_personalizer_serves_both_and_forget_deletes_the_vector(
    demo: Store, trainer: LoraTrainer, embedded_llm: LLM, adapted: AdaptedLLM
) -> None:
    assert isinstance(embedded_llm, HFLLM)
    lora = train_user_lora(demo, "chloe", "chat", trainer)
    vector = train_user_steering_vector(demo, "chloe", "chat", embedded_llm, base_model(), VECTOR)
    short = GenerationOptions(max_new_tokens=6)
    for decoding, adapter, entry in (
        ("adapter-contrast", "lora", lora),
        ("steering-vector", "steering-vector", vector),
    ):
        config = PersonalizerConfig(
            adapter=adapter, decoding=decoding, steering=1.5, prompt="none", generation=short
        )
        personalizer = Personalizer(demo, config, llm=embedded_llm, adapted=adapted)
        baseline, personal = personalizer.compare("chloe", "Plan my Saturday.")
        assert personal.trace.decoding == {"method": decoding, "strength": 1.5}
        assert personal.trace.adapter is not None
        assert personal.trace.adapter["adapter_id"] == entry.adapter_id
        assert baseline.trace.decoding is None and baseline.trace.adapter is None
        pieces = list(personalizer.stream("chloe", "Plan my Saturday."))
        assert "".join(pieces).strip() == personal.text

    deleted = demo.forget("chloe")
    assert deleted["adapters"] == 2
    assert demo.get_adapter(vector.adapter_id) is None and demo.adapters(user_id="chloe") == []


def test_decoding_by_the_learned_user_is_validated() -> None:
    with pytest.raises(ValidationError, match="set adapter to one of"):
        PersonalizerConfig(decoding="adapter-contrast")
    with pytest.raises(ValidationError, match="set adapter to one of \\['steering-vector'\\]"):
        PersonalizerConfig(decoding="steering-vector", adapter="lora")
    with pytest.raises(ValidationError, match="serves through decoding 'steering-vector'"):
        PersonalizerConfig(adapter="steering-vector")
    with pytest.raises(ValidationError, match="torch weights"):
        PersonalizerConfig(decoding="adapter-contrast", adapter="lora", llm={"backend": "onnx"})
    from p13n.server.state import ServerConfig

    with pytest.raises(ValidationError, match="serves only through decoding 'steering-vector'"):
        ServerConfig(chat_adapter="steering-vector")


def test_a_user_whose_base_answers_match_has_nothing_to_steer_by(
    demo: Store, embedded_llm: LLM
) -> None:
    assert isinstance(embedded_llm, HFLLM)
    (example,) = user_examples(demo, "dmitri", "chat", embedded_llm.tokenizer, VECTOR)[:1]
    answer = embedded_llm.generate(example.prompt, GenerationOptions(max_new_tokens=8)).text
    same = TrainingExample(example.source_id, example.prompt, answer)
    with pytest.raises(InsufficientDataError, match="no difference to steer toward"):
        train_steering_vector(embedded_llm, base_model(), [same], VECTOR)


def test_a_user_who_writes_only_untitled_texts_gets_a_steering_vector(
    demo: Store, embedded_llm: LLM
) -> None:
    from p13n.data import Document
    from p13n.datasets import Sourced
    from p13n.ingest import ingest

    assert isinstance(embedded_llm, HFLLM)
    posts = [
        "Rode forty miles along the coast today and my legs are jelly, but the view paid for it.",
        "Swapped the old chain for a new one tonight; the drivetrain finally sounds quiet again.",
        "Rain all weekend, so I trued both wheels in the kitchen while the soup was cooking.",
    ]
    ingest(demo, [Sourced(Document(user_id="rider", text=t), "test") for t in posts], encoder=None)
    entry = train_user_steering_vector(demo, "rider", "chat", embedded_llm, base_model(), VECTOR)
    assert entry.data_size == 3 and entry.metrics["pairs"] >= 1
    titled_only = VECTOR.model_copy(update={"untitled": False})
    with pytest.raises(InsufficientDataError, match="has 0 usable titled documents"):
        train_user_steering_vector(demo, "rider", "chat", embedded_llm, base_model(), titled_only)


def test_cope_and_style_vector_arms_in_the_runner(
    task_dir: Path, tmp_path: Path, embedded_llm: LLM, encoder: Encoder
) -> None:
    config = _config(
        task_dir,
        tmp_path,
        methods=["none", "cope", "style-vector"],
        steering=[1.0],
        max_new_tokens={"headlines": 6},
        adapt={
            "lora": {"epochs": 1, "min_examples": 2, "batch_size": 4, "max_input_tokens": 32},
            "steering_vector": {"max_examples": 3, "max_new_tokens": 6, "max_input_tokens": 32},
        },
    )
    (task,) = run_bench(config, embedded_llm, encoder).tasks
    assert task.arms == ["none", "cope β=1", "style-vector α=1"]
    assert task.training["style-vector"]["trained_now"] == len(task.examples)
    assert task.training["style-vector"]["size_bytes_mean"] < 4_000
    for example in task.examples:
        assert example.outputs["cope β=1"].items_in_prompt == 0
    assert any(
        e.outputs["cope β=1"].prediction != e.outputs["none"].prediction for e in task.examples
    )
    again = run_bench(config, embedded_llm, encoder)
    assert again.generated == 0
    assert all(cost["trained_now"] == 0 for cost in again.tasks[0].training.values())
    for first, second in zip(task.examples, again.tasks[0].examples, strict=True):
        assert {a: o.prediction for a, o in first.outputs.items()} == {
            a: o.prediction for a, o in second.outputs.items()
        }


def test_steering_vectors_from_the_command_line(demo: Store) -> None:
    from typer.testing import CliRunner

    from p13n.cli import app

    runner, url = CliRunner(), str(demo.engine.url)  # type: ignore[attr-defined]
    train = ["--store", url, "adapt", "train", "--method", "steering-vector", "--task", "chat"]
    result = runner.invoke(app, [*train, "--users", "emi", "--max-examples", "4"])
    assert result.exit_code == 0, result.output
    assert "1 trained, 0 already current, 0 failed" in result.output
    again = runner.invoke(app, [*train, "--users", "emi", "--max-examples", "4"])
    assert "0 trained, 1 already current" in again.output
    refused = runner.invoke(app, [*train, "--users", "emi", "--epochs", "2"])
    assert refused.exit_code == 1 and "--epochs does not apply" in refused.output
    answer = ["--store", url, "generate", "--user", "emi", "Plan my Saturday.", "--prompt", "none",
              "--adapter", "steering-vector", "--decoding", "steering-vector", "--steering", "2",
              "--max-new-tokens", "6"]  # fmt: skip
    on_onnx = runner.invoke(app, answer)  # the default backend runs a conversion
    assert on_onnx.exit_code == 1 and "use backend 'embedded' or 'hf'" in on_onnx.output
    generated = runner.invoke(app, [*answer, "--backend", "embedded"])
    assert generated.exit_code == 0, generated.output
    assert "decoded with steering-vector at strength 2" in generated.output
    assert "adapter user:emi:chat:steering-vector" in generated.output
