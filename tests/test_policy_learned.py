"""Learned arms as a policy's choice: a policy that answers with the user's adapter serves its
fallback to users without one (never an error), through the Personalizer, the generation cache
the benchmark runner answers from, and the policy's own validation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from p13n.adapt import LoraSettings, LoraTrainer, base_model
from p13n.adapt.runtime import AdaptedLLM
from p13n.adapt.train import train_user_lora
from p13n.benchmarks.config import AdaptSettings
from p13n.benchmarks.learned import AdapterArms, CachedAdaptedLLM
from p13n.benchmarks.results import TrainingCost
from p13n.benchmarks.runner_report import policy_table
from p13n.datasets.lamp import LampSplit, write_split
from p13n.encode import Encoder
from p13n.errors import AdapterNotFoundError
from p13n.llm import LLM, LLMConfig
from p13n.llm.cache import CachedLLM, GenerationCache
from p13n.personalize import (
    Personalizer,
    PersonalizerConfig,
    Policy,
    load_policy,
    save_policy,
)
from p13n.personalize.policy import CandidateEvidence, ServedSettings
from p13n.retrieve import RetrieverConfig
from p13n.store import Store
from tests.helpers import run_bench
from tests.test_bench import SPEC, _config, _examples
from tests.test_bench import task_dir as task_dir  # the fixture
from tests.test_cli import invoke
from tests.test_policy import _policy, service_with_alice

pytestmark = pytest.mark.slow

TINY = LoraSettings(epochs=2, batch_size=4, max_input_tokens=48, max_answer_tokens=16)
QUESTION = "Suggest a title for my note about the weekend."
FALLBACK = ServedSettings(
    choice="bm25 k=2",
    prompt="contextual",
    retriever=RetrieverConfig(name="bm25", k=2, require_match=False),
    max_item_tokens=64,
)


@pytest.fixture(scope="module")
def adapted() -> AdaptedLLM:
    return AdaptedLLM(base_model())


def _lora_policy(**extra: object) -> Policy:
    """test_policy's policy, with the user's LoRA adapter as dev's clear best."""
    lora = CandidateEvidence(label="lora", mean=0.15, gap=0.0, standard_error=0.0)
    evidence = _policy().evidence
    others = [c.model_copy(update={"gap": 0.15 - c.mean}) for c in evidence.candidates]
    learned = evidence.model_copy(update={"best": "lora", "candidates": [*others, lora]})
    served = {"choice": "lora", "prompt": "none", "adapter": "lora", "fallback": FALLBACK}
    return _policy("chat", evidence=learned, **{**served, **extra})


def test_a_policy_that_needs_an_adapter_carries_a_fallback_without_one() -> None:
    with pytest.raises(ValidationError, match="needs a fallback for users without one"):
        _lora_policy(fallback=None)
    with pytest.raises(ValidationError, match="fallback 'lora' needs no adapter"):
        _lora_policy(fallback={"choice": "lora", "prompt": "none", "adapter": "lora"})
    with pytest.raises(ValidationError, match="fallback 'bm25 k=9' is not among"):
        _lora_policy(fallback=FALLBACK.model_copy(update={"choice": "bm25 k=9"}))
    summary = _lora_policy().summary()
    assert summary["adapter"] == "lora"
    assert summary["fallback"] == {"choice": "bm25 k=2", "dev_value": 0.13}


def test_policy_commands_name_the_fallback(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "policy-chat.json"
    path.write_text(json.dumps(_lora_policy().to_json()))
    code, out = invoke("--store", sqlite_url, "policy", "set", str(path))
    assert code == 0 and "serves 'lora' for task 'chat'" in out
    assert "users without a lora adapter get 'bm25 k=2'" in out
    code, out = invoke("--store", sqlite_url, "policy", "list")
    assert code == 0 and "lora (else bm25 k=2)" in out.replace("\n", "")
    users = tmp_path / "users.jsonl"
    users.write_text(json.dumps({"type": "user", "id": "ada"}) + "\n")
    assert invoke("--store", sqlite_url, "ingest", "jsonl", str(users))[0] == 0
    code, out = invoke("--store", sqlite_url, "show", "ada")
    assert code == 0 and "policy for chat: serves bm25 k=2 (its fallback: no lora adapter)" in out


def test_users_without_the_choices_adapter_get_the_fallback_never_an_error(
    demo: Store, embedded_llm: LLM, encoder: Encoder, adapted: AdaptedLLM, tmp_path: Path
) -> None:
    entry = train_user_lora(demo, "ada", "chat", LoraTrainer(base_model(), TINY))
    save_policy(demo, _lora_policy())
    assert load_policy(demo, "chat") == _lora_policy().model_copy(
        update={"learned_at": load_policy(demo, "chat").learned_at}  # type: ignore[union-attr]
    )
    auto = Personalizer(
        demo, PersonalizerConfig(task="chat", policy="auto"), llm=embedded_llm, adapted=adapted
    )
    assert auto.config.adapter == "lora" and auto.config.prompt == "none"
    lora = Personalizer(
        demo,
        PersonalizerConfig(task="chat", prompt="none", adapter="lora"),
        llm=embedded_llm,
        adapted=adapted,
    )
    fallback = Personalizer(
        demo, PersonalizerConfig(task="chat").serving(FALLBACK, "fallback"), llm=embedded_llm
    )
    # ada has an adapter: the policy's choice answers, exactly as the fixed LoRA config does.
    own = auto.generate("ada", QUESTION)
    assert own.trace.fallback is None and own.trace.adapter is not None
    assert own.trace.adapter["weights_sha256"] == entry.weights_sha256
    assert own.text == lora.generate("ada", QUESTION).text
    # bruno has none: the fixed LoRA config refuses him, the policy serves its fallback.
    with pytest.raises(AdapterNotFoundError, match="'bruno' has no lora adapter"):
        lora.generate("bruno", QUESTION)
    served = auto.generate("bruno", QUESTION)
    expected = fallback.generate("bruno", QUESTION)
    assert served.trace.fallback == (
        "user 'bruno' has no lora adapter for task 'chat': served the policy's fallback 'bm25 k=2'"
    )
    assert served.trace.adapter is None and served.trace.prompt == expected.trace.prompt
    assert len(served.trace.prompt.items) == 2 and served.text == expected.text
    assert served.trace.policy is not None and served.trace.policy["choice"] == "lora"
    streamed = list(auto.complete_stream(auto.prepare("bruno", QUESTION)))
    assert "".join(p for p in streamed if isinstance(p, str)).strip() == expected.text
    assert auto.prepare("bruno", QUESTION, personalize=False).trace.fallback is None

    # The runner's learned path: the adapter's answers from the adapted model through the
    # cache, the fallback's from the base model through the cache, each keyed apart.
    cache = GenerationCache(tmp_path / "generations.sqlite")
    try:
        model = CachedAdaptedLLM(adapted, cache, choices=None)
        cached = Personalizer(
            demo,
            PersonalizerConfig(task="chat", policy="auto"),
            llm=CachedLLM(embedded_llm, cache),
            adapted=model,
        )
        arms = AdapterArms(LLMConfig(), encoder, AdaptSettings(), cache)
        prepared = [cached.prepare(user, QUESTION) for user in ("ada", "bruno")]
        cost = TrainingCost("auto")
        first = arms.answer(cached, model, prepared, cost)
        assert [a.generation.text for a in first] == [own.text, expected.text]
        assert first[0].generation.model != first[1].generation.model == embedded_llm.model
        assert len(cost.swap_ms) == 1  # only ada's adapter was swapped in
        again = arms.answer(cached, model, prepared, TrainingCost("auto"))
        assert not any(a.fresh for a in again)
        assert [a.generation.text for a in again] == [own.text, expected.text]
    finally:
        cache.close()


def test_the_runner_serves_a_learned_choice_as_its_arm_answered(
    task_dir: Path, tmp_path: Path, embedded_llm: LLM, encoder: Encoder
) -> None:
    # A high learning rate: the few steps move the answers (the test needs them moved).
    lora_settings = {"epochs": 3, "learning_rate": 1e-2, "min_examples": 2, "batch_size": 4}
    adapt = {"lora": {**lora_settings, "max_input_tokens": 32}}
    arms = ["none", "bm25", "lora"]
    dev = run_bench(_config(task_dir, tmp_path, methods=arms, adapt=adapt, split="dev"),
                    embedded_llm, encoder).tasks[0]  # fmt: skip
    lora = {e.id: e.outputs["lora"].prediction for e in dev.examples}
    assert sum(lora[e.id] != e.outputs["none"].prediction for e in dev.examples) >= 3
    # Dev golds the adapters answer exactly: the learned arm is the dev split's clear best.
    written = [dataclasses.replace(e, output=lora[e.id]) for e in _examples("dev")]
    write_split(LampSplit(SPEC, "dev", written), task_dir)
    config = _config(task_dir, tmp_path, methods=[*arms, "auto"], adapt=adapt,
                     policy_dev_examples=4, swap=["auto"])  # fmt: skip
    (task,) = run_bench(config, embedded_llm, encoder).tasks
    policy = Policy.model_validate(task.policy)
    assert (policy.choice, policy.adapter, policy.prompt) == ("lora", "lora", "none")
    assert policy.fallback is not None and policy.fallback.choice in ("none", "bm25 k=1")
    assert policy.evidence.of("lora").mean == 1.0
    table = "\n".join(policy_table(task.policy or {}))
    assert f"get the fallback **{policy.fallback.choice}**" in table
    assert f"| {policy.fallback.choice} |" in table and "fallback |" in table
    # The test split's auto arm answers with each user's own adapter, as the lora arm did:
    # the same adapters (none trained again) and the same answers, from the cache.
    assert task.training["auto"]["adapters"] == 4 and task.training["auto"]["trained_now"] == 0
    for example in task.examples:
        auto, chosen = example.outputs["auto"], example.outputs["lora"]
        assert auto.prediction == chosen.prediction and auto.cached
        assert set(example.swapped) == {"auto"}  # answered with the partner's adapter
    again = run_bench(config, embedded_llm, encoder)
    assert again.generated == 0


def test_the_service_serves_the_fallback_to_a_user_without_an_adapter(sqlite_url: str) -> None:
    service, h, body = service_with_alice(sqlite_url)
    fixed = service.client.post("/v1/generate", json={**body, "adapter": "lora"}, headers=h)
    assert fixed.status_code == 409 and "has no lora adapter" in fixed.text
    save_policy(service.state.tenant_store("acme"), _lora_policy())
    served = service.client.post("/v1/generate", json=body, headers=h)
    assert served.status_code == 200, served.text
    trace = served.json()["trace"]
    assert trace["fallback"] == (
        "user 'alice' has no lora adapter for task 'chat': served the policy's fallback 'bm25 k=2'"
    )
    assert trace["adapter"] is None and len(trace["retrieved"]["items"]) == 2
    assert trace["policy"]["choice"] == "lora" and trace["policy"]["fallback"]["choice"] == (
        "bm25 k=2"
    )
