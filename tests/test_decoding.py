"""Decoding-time personalization: context steering on both local backends, checked against
independent recomputations, and through the Personalizer and the benchmark runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from p13n.encode import Encoder
from p13n.errors import ConfigError
from p13n.llm import LLM, ChatMessage, GenerationOptions, LLMConfig
from p13n.llm.base import steered_log_probs
from p13n.llm.hf import HFLLM
from p13n.llm.onnx import OnnxLLM
from p13n.llm.onnx_worker import genai_runtime
from p13n.personalize import Personalizer, PersonalizerConfig
from p13n.prompt import NON_PERSONALIZED, templates
from p13n.retrieve import RetrieverConfig
from p13n.store import Store
from tests.helpers import run_bench
from tests.test_bench import _config
from tests.test_bench import task_dir as task_dir  # the fixture
from tests.test_onnx import onnx_llm as onnx_llm  # the fixture

WITH: list[ChatMessage] = [
    {"role": "user", "content": "My notes: I only cook vegetarian food. Tofu curry is my "
     "favourite.\n\nWhat should I cook tonight? Answer in one sentence."}
]  # fmt: skip
WITHOUT: list[ChatMessage] = [
    {"role": "user", "content": "What should I cook tonight? Answer in one sentence."}
]


def _steered(strength: float, tokens: int = 6) -> GenerationOptions:
    return GenerationOptions(max_new_tokens=tokens, contrast=tuple(WITHOUT), steering=strength)


def test_steered_scores_are_own_plus_strength_times_the_difference() -> None:
    own, without = np.log([0.7, 0.2, 0.1]), np.log([0.8, 0.1, 0.1])
    steered = steered_log_probs(own, without, 2.0)
    assert steered == pytest.approx(own + 2.0 * (own - without))
    shifted = steered_log_probs(own + 5.0, without - 3.0, 2.0)  # logits, not log-probs: same
    assert shifted == pytest.approx(steered)
    assert int(np.argmax(steered)) == 1  # the token the user's data made likelier wins


@pytest.mark.slow
def test_torch_steering_equals_a_step_by_step_recomputation(embedded_llm: LLM) -> None:
    import torch

    assert isinstance(embedded_llm, HFLLM)
    strength = 1.5
    answer = embedded_llm.generate(WITH, _steered(strength))
    plain = embedded_llm.generate(WITH, GenerationOptions(max_new_tokens=6))
    assert embedded_llm.generate(WITH, _steered(0.0)).text == plain.text
    # Full forward passes, no cache, no transformers generation utilities.
    tokenizer = embedded_llm._loaded.tokenizer
    own = tokenizer(embedded_llm.tokenizer.render(WITH), add_special_tokens=False)["input_ids"]
    other = tokenizer(embedded_llm.tokenizer.render(WITHOUT), add_special_tokens=False)["input_ids"]
    new: list[int] = []
    with embedded_llm.model_in_use() as model, torch.inference_mode():
        for _ in range(answer.completion_tokens):
            a = model(torch.tensor([own + new])).logits[0, -1].double().numpy()
            b = model(torch.tensor([other + new])).logits[0, -1].double().numpy()
            new.append(int(np.argmax(steered_log_probs(a, b, strength))))
    assert tokenizer.decode(new, skip_special_tokens=True).strip() == answer.text
    assert answer.text != plain.text  # the contrast changes this answer


@pytest.mark.slow
def test_onnx_steering_in_the_runtime_process_follows_the_formula(onnx_llm: OnnxLLM) -> None:
    plain = onnx_llm.generate(WITH, GenerationOptions(max_new_tokens=6))
    assert onnx_llm.generate(WITH, _steered(0.0)).text == plain.text
    strength = 1.5
    answer = onnx_llm.generate(WITH, _steered(strength, tokens=1))
    streamed = "".join(onnx_llm.stream(WITH, _steered(strength, tokens=1)))
    assert streamed.strip() == answer.text
    # The first token, recomputed from the runtime in this process: argmax of the formula.
    og = genai_runtime()
    model = og.Model(str(onnx_llm.folder))

    def first_logits(messages: list[ChatMessage]) -> np.ndarray:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=512)
        generator = og.Generator(model, params)
        generator.append_tokens(np.asarray(onnx_llm._prompt(messages), dtype=np.int32))
        return np.asarray(generator.get_logits(), dtype=np.float64).reshape(-1)

    expected = int(
        np.argmax(steered_log_probs(first_logits(WITH), first_logits(WITHOUT), strength))
    )
    assert answer.text == onnx_llm._text([expected]).strip()


def test_steering_needs_a_backend_with_logits() -> None:
    with pytest.raises(ValueError, match="needs the model's next-token logits"):
        PersonalizerConfig(
            decoding="context-steering",
            llm=LLMConfig(backend="openai", model="m", base_url="http://127.0.0.1:1/v1"),
        )
    with pytest.raises(ValueError, match="unknown decoding method 'nope'"):
        PersonalizerConfig(decoding="nope")


@pytest.mark.slow
def test_the_personalizer_steers_away_from_the_prompt_without_the_users_data(
    demo: Store, embedded_llm: LLM
) -> None:
    config = PersonalizerConfig(
        task="lamp4",
        retriever=RetrieverConfig(name="bm25", k=2, require_match=False),
        decoding="context-steering",
        steering=0.5,
        generation=GenerationOptions(max_new_tokens=8),
    )
    personalizer = Personalizer(demo, config, llm=embedded_llm)
    text = "Generate a headline for the following article: why caches go stale"
    prepared = personalizer.prepare("ada", text)
    baseline = NON_PERSONALIZED.build(
        templates.get("lamp4"), text, embedded_llm.tokenizer, personalizer.budget, user_id="ada"
    )
    assert prepared.contrast == baseline.messages and prepared.steering == 0.5
    generation = personalizer.complete(prepared)
    assert generation.trace.decoding == {"method": "context-steering", "strength": 0.5}
    direct = embedded_llm.generate(
        prepared.prompt.messages,
        GenerationOptions(max_new_tokens=8, contrast=baseline.messages, steering=0.5),
    )
    assert generation.text == direct.text
    unpersonalized = personalizer.prepare("ada", text, personalize=False)
    assert unpersonalized.contrast is None  # nothing to steer by
    off = Personalizer(demo, config.model_copy(update={"steering": 0.0}), llm=embedded_llm)
    assert off.prepare("ada", text).contrast is None


@pytest.mark.slow
def test_context_steering_arms_in_the_runner(
    task_dir: Path, tmp_path: Path, embedded_llm: LLM, encoder: Encoder
) -> None:
    config = _config(task_dir, tmp_path, methods=["none", "bm25", "cos"], steering=[0.5, 2.0])
    result = run_bench(config, embedded_llm, encoder)
    (task,) = result.tasks
    assert task.arms == ["none", "bm25 k=1", "cos k=1 λ=0.5", "cos k=1 λ=2"]
    for example in task.examples:  # the same prompt as bm25's, decoded another way
        cos = example.outputs["cos k=1 λ=0.5"]
        assert cos.retrieved == example.outputs["bm25 k=1"].retrieved and not cos.cached
    assert any(
        e.outputs["cos k=1 λ=2"].prediction != e.outputs["bm25 k=1"].prediction
        for e in task.examples
    )
    assert run_bench(config, embedded_llm, encoder).generated == 0
    ratings = config.model_copy(update={"answer": {"headlines": "likelihood"}})
    with pytest.raises(ConfigError, match="steers generated tokens"):
        run_bench(ratings, embedded_llm, encoder)
