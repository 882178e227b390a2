"""Learning the user: per-user LoRA, the registry, swapping, user embeddings, DPO, batch training
on Ray, forget. Everything runs for real on the embedded SmolLM2-135M, with small settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from p13n.adapt import (
    AdapterNotFoundError,
    DpoSettings,
    EmbeddingSettings,
    InsufficientDataError,
    LoraSettings,
    LoraTrainer,
    TrainedWeights,
    adapters,
    base_model,
    methods,
    pool_history,
    train_dpo,
)
from p13n.adapt.base import CONTINUE
from p13n.adapt.dpo import Pair, PairScorer, likelihood_accuracy, reward_accuracy
from p13n.adapt.lora import deserialize, serialize
from p13n.adapt.runtime import AdaptedLLM
from p13n.adapt.train import (
    train_owner_dpo,
    train_persona_lora,
    train_projector,
    train_user_lora,
    user_examples,
)
from p13n.cli import app
from p13n.data import Document, Persona
from p13n.datasets import Sourced
from p13n.encode import Encoder
from p13n.errors import ConfigError, UnknownUserError
from p13n.ingest import ingest
from p13n.llm import LLM, GenerationOptions
from p13n.llm.hf import HFLLM, HFTokenizer
from p13n.personalize import Personalizer, PersonalizerConfig
from p13n.prompt import NON_PERSONALIZED, templates
from p13n.store import Store

pytestmark = pytest.mark.slow

TINY = LoraSettings(epochs=2, batch_size=4, max_input_tokens=48, max_answer_tokens=16)
SHORT = GenerationOptions(max_new_tokens=8)
runner = CliRunner()


@pytest.fixture(scope="module")
def trainer() -> LoraTrainer:
    return LoraTrainer(base_model(), TINY)


@pytest.fixture(scope="module")
def adapted() -> AdaptedLLM:
    return AdaptedLLM(base_model())


def _messages(text: str) -> Any:
    prompt = NON_PERSONALIZED.build(templates.get("chat"), text, _tokenizer(), 4096)
    return list(prompt.messages)


def _tokenizer() -> Any:
    from p13n.llm import get_llm

    return get_llm().tokenizer


def test_a_users_lora_adapter_is_trained_registered_and_swapped(
    demo: Store, trainer: LoraTrainer, adapted: AdaptedLLM, embedded_llm: LLM
) -> None:
    base = trainer.base
    entry = train_user_lora(demo, "ada", "chat", trainer)
    assert entry.adapter_id == "user:ada:chat:lora" and entry.user_id == "ada"
    assert entry.base_model == "SmolLM2-135M-Instruct" and entry.base_hash == base.sha256
    assert entry.data_size == sum(1 for d in demo.documents("ada") if d.title)
    assert entry.config["rank"] == 8 and entry.config["data_version"] == demo.data_version("ada")
    assert 0 < entry.size_bytes < 5_000_000
    # Learning happened: the second epoch's loss on the user's examples is below the first's.
    assert entry.metrics["loss_last_epoch"] < entry.metrics["loss_first_epoch"]
    assert demo.adapters(user_id="ada") == [entry]

    other = train_user_lora(demo, "bruno", "chat", trainer)
    messages = _messages("Suggest a title for my note about the weekend.")
    choices = ["Weekend plans", "Standup summary", "A lazy Sunday"]
    base_scores = embedded_llm.score_choices(messages, choices)  # type: ignore[attr-defined]
    adapted.deactivate()
    assert adapted.model == "SmolLM2-135M-Instruct"
    assert adapted.score_choices(messages, choices) == pytest.approx(base_scores, abs=1e-4)

    adapted.activate(demo, entry)
    assert adapted.model == f"SmolLM2-135M-Instruct+lora:{entry.weights_sha256[:12]}"
    ada_scores = adapted.score_choices(messages, choices)
    assert ada_scores != pytest.approx(base_scores, abs=1e-3)
    adapted.activate(demo, other)
    bruno_scores = adapted.score_choices(messages, choices)
    assert bruno_scores != pytest.approx(ada_scores, abs=1e-3)
    adapted.activate(demo, entry)  # swapping back gives ada's model exactly
    assert adapted.score_choices(messages, choices) == pytest.approx(ada_scores, abs=1e-5)

    # With the slot switched off, the adapted model answers exactly like the base model.
    adapted.unload(entry)
    assert adapted.active is None
    assert adapted.generate(messages, SHORT).text == embedded_llm.generate(messages, SHORT).text


def test_adapter_methods_are_named_once_in_their_registry() -> None:
    every = ["dpo", "embedding", "finetune", "lora", "steering-vector"]
    assert methods.names(none=True) == ["none", *every]
    assert methods.names("per_user") == ["dpo", "lora", "steering-vector"]
    assert methods.names("batch") == ["dpo", "lora"]
    assert methods.names("choices") == ["dpo", "finetune", "lora"]
    assert methods.get("finetune").weights == "model" and methods.get("finetune").owner == "tenant"
    assert methods.get("embedding").needs_encoder and methods.get("embedding").owner == "tenant"
    assert methods.check("dpo", purpose="batch") == "dpo"
    with pytest.raises(ConfigError, match="'embedding' cannot be batch-trained: choose from dpo"):
        methods.check("embedding", purpose="batch")
    with pytest.raises(ValidationError, match="unknown adapter method 'magic': choose from none"):
        PersonalizerConfig(adapter="magic")
    assert PersonalizerConfig(adapter="embedding").needs_encoder()
    assert not PersonalizerConfig(adapter="lora").needs_encoder()
    schema = PersonalizerConfig.model_json_schema()["properties"]["adapter"]
    assert schema["enum"] == ["none", *every]


def test_adapters_run_on_the_plain_models_weights_and_leave_its_answers_exactly_alone(
    demo: Store, trainer: LoraTrainer, adapted: AdaptedLLM, embedded_llm: LLM
) -> None:
    assert isinstance(embedded_llm, HFLLM)
    assert adapted.torch_model is embedded_llm.torch_model  # one copy of the weights
    messages = _messages("Suggest a title for my note about the weekend.")
    choices = ["Weekend plans", "Standup summary", "A lazy Sunday"]
    plain = embedded_llm.generate(messages, SHORT)
    plain_scores = embedded_llm.score_choices(messages, choices)

    entry = train_user_lora(demo, "ada", "chat", trainer)
    adapted.activate(demo, entry)
    ada_scores = adapted.score_choices(messages, choices)
    assert ada_scores != pytest.approx(plain_scores, abs=1e-3)
    # While ada's adapter is active, and after it answered, plain answers are bit for bit
    # the same: same tokens, same log-probabilities.
    assert embedded_llm.generate(messages, SHORT) == plain
    assert embedded_llm.score_choices(messages, choices) == plain_scores
    assert embedded_llm.generate_batch([messages], SHORT) == [plain]

    # A second adapted model over the same weights shares the LoRA slot; each answers with its
    # own adapter even when the other swapped in between.
    state = deserialize(adapters.weights(demo, entry))
    doubled = serialize({name: tensor * 2 for name, tensor in state.items()})
    other_weights = TrainedWeights(doubled, dict(entry.config), entry.data_size, {})
    other_entry = adapters.register(demo, other_weights, kind="user", owner="bruno",
                                    task="chat", method="lora", base=trainer.base,
                                    data_version="v", settings=TINY)  # fmt: skip
    other = AdaptedLLM(base_model())
    other.activate(demo, other_entry)
    other_scores = other.score_choices(messages, choices)
    assert other_scores != pytest.approx(ada_scores, abs=1e-3)
    assert adapted.score_choices(messages, choices) == pytest.approx(ada_scores, abs=1e-5)
    assert other.score_choices(messages, choices) == pytest.approx(other_scores, abs=1e-5)
    other.unload(other_entry)
    adapted.deactivate()
    assert adapted.generate(messages, SHORT) == plain
    assert embedded_llm.score_choices(messages, choices) == plain_scores


def test_a_user_who_writes_only_untitled_texts_gets_an_adapter(
    demo: Store, trainer: LoraTrainer
) -> None:
    posts = [
        "Rode forty miles along the coast today and my legs are jelly, but the view paid for it.",
        "Swapped the old chain for a new one tonight; the drivetrain finally sounds quiet again.",
        "Rain all weekend, so I trued both wheels in the kitchen while the soup was cooking.",
        "Found a 1982 steel frame at the flea market for twenty euros, rust and all. Mine now.",
        "Short.",  # too short to cut in two: left out
    ]
    ingest(demo, [Sourced(Document(user_id="rider", text=t), "test") for t in posts], encoder=None)
    tokenizer = HFTokenizer(trainer.tokenizer, trainer.base.name)
    examples = user_examples(demo, "rider", "chat", tokenizer, TINY)
    assert len(examples) == 4
    by_source = {e.source_id: e for e in examples}
    first = next(d for d in demo.documents("rider") if d.text == posts[0])
    words = posts[0].split()
    assert by_source[first.id or ""].answer == " ".join(words[len(words) // 3 :])
    opening = CONTINUE + " ".join(words[: len(words) // 3])
    assert by_source[first.id or ""].prompt[-1]["content"].endswith(opening)
    entry = train_user_lora(demo, "rider", "chat", trainer)
    assert entry.data_size == 4 and entry.user_id == "rider"
    titled_only = TINY.model_copy(update={"untitled": False})
    with pytest.raises(InsufficientDataError, match="has 0 usable titled documents"):
        user_examples(demo, "rider", "chat", tokenizer, titled_only)


def test_too_little_data_says_how_much_is_needed(demo: Store, trainer: LoraTrainer) -> None:
    ingest(
        demo,
        [Sourced(Document(user_id="newbie", text="One note.", title="Only"), "test")],
        encoder=None,
    )
    with pytest.raises(InsufficientDataError) as caught:
        train_user_lora(demo, "newbie", "chat", trainer)
    assert "user 'newbie' has 1 usable documents" in str(caught.value)
    assert "at least 4 are needed" in str(caught.value)
    assert demo.adapters(user_id="newbie") == []
    with pytest.raises(UnknownUserError):
        train_user_lora(demo, "ghost", "chat", trainer)


def test_a_persona_adapter_is_the_starting_point_of_a_members_adapter(
    demo: Store, trainer: LoraTrainer
) -> None:
    ingest(demo, [Sourced(Persona(id="devs", description="Engineers.", members=["ada", "bruno"]),
                          "test")], encoder=None)  # fmt: skip
    persona = train_persona_lora(demo, "devs", "chat", trainer)
    assert persona.persona_id == "devs" and persona.user_id is None
    assert persona.data_size == sum(
        1 for user in ("ada", "bruno") for d in demo.documents(user) if d.title
    )
    # With a vanishing learning rate the member's adapter stays at its starting point.
    still = LoraTrainer(trainer.base, TINY.model_copy(update={"learning_rate": 1e-12}))
    member = train_user_lora(demo, "ada", "chat", still, from_persona="devs")
    assert member.config["init"] == "adapter" and member.config["from_persona"] == "devs"
    start = deserialize(adapters.weights(demo, persona))
    end = deserialize(adapters.weights(demo, member))
    assert start.keys() == end.keys()
    assert all(np.allclose(start[k].numpy(), end[k].numpy(), atol=1e-6) for k in start)
    seeded = train_user_lora(demo, "ada", "chat", still)
    assert not np.allclose(
        deserialize(adapters.weights(demo, seeded))[next(iter(start))].numpy(),
        start[next(iter(start))].numpy(),
    )


def test_forget_deletes_the_users_adapters_and_embeddings(
    demo: Store, trainer: LoraTrainer, encoder: Encoder
) -> None:
    train_user_lora(demo, "chloe", "chat", trainer)
    train_user_lora(demo, "dmitri", "chat", trainer)
    assert demo.document_embeddings("chloe", encoder.id).vectors.shape[0] > 0
    deleted = demo.forget("chloe")
    assert deleted["adapters"] == 1 and deleted["document_embeddings"] > 0
    assert demo.adapters(user_id="chloe") == []
    assert demo.get_adapter("user:chloe:chat:lora") is None
    assert len(demo.document_embeddings("chloe", encoder.id)) == 0
    with pytest.raises(AdapterNotFoundError, match="train one with"):
        adapters.require(demo, "user", "chloe", "chat", "lora", trainer.base)
    assert [a.user_id for a in demo.adapters()] == ["dmitri"]  # others untouched
    config = PersonalizerConfig(adapter="lora", prompt="none", generation=SHORT)
    with pytest.raises(UnknownUserError):
        Personalizer(demo, config, encoder=encoder).generate("chloe", "hello")


def test_personalizer_answers_with_the_users_adapter_and_traces_it(
    demo: Store, trainer: LoraTrainer, encoder: Encoder, embedded_llm: LLM
) -> None:
    entry = train_user_lora(demo, "emi", "chat", trainer)
    config = PersonalizerConfig(adapter="lora", retriever={"k": 2}, generation=SHORT)
    personalizer = Personalizer(demo, config, llm=embedded_llm, encoder=encoder)
    baseline, personal = personalizer.compare("emi", "What should I cook tonight?")
    assert baseline.trace.adapter is None and baseline.trace.model == "SmolLM2-135M-Instruct"
    assert personal.trace.adapter is not None
    assert personal.trace.adapter["adapter_id"] == entry.adapter_id
    assert personal.trace.model == f"SmolLM2-135M-Instruct+lora:{entry.weights_sha256[:12]}"
    assert personal.trace.retrieved is not None  # LoRA + RAG: the items are in the prompt too
    assert personal.trace.to_dict()["adapter"]["weights_sha256"] == entry.weights_sha256
    with pytest.raises(AdapterNotFoundError, match="user 'ada' has no lora adapter"):
        personalizer.generate("ada", "hi")


def test_pooling_weights_history_by_similarity_to_the_input() -> None:
    history = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    query = np.array([1.0, 0.0], dtype=np.float32)
    pooled = pool_history(history, query, temperature=0.5)
    weights = np.exp([2.0, 0.0]) / np.exp([2.0, 0.0]).sum()
    expected = weights @ history
    assert pooled == pytest.approx(expected / np.linalg.norm(expected), abs=1e-6)
    flat = pool_history(history, query, temperature=1e6)  # a huge temperature: a plain mean
    assert flat == pytest.approx(np.array([1, 1]) / np.sqrt(2), abs=1e-4)


def test_user_embedding_projector_gives_each_user_their_own_soft_tokens(
    demo: Store, encoder: Encoder
) -> None:
    settings = EmbeddingSettings(tokens=2, hidden=32, max_input_tokens=48, max_answer_tokens=16,
                                 min_examples=8, max_examples_per_user=4)  # fmt: skip
    base = base_model()
    users = ["ada", "bruno", "chloe", "dmitri"]
    entry = train_projector(demo, users, "chat", base, encoder, settings)
    assert entry.adapter_id == f"tenant:{demo.tenant}:chat:embedding" and entry.user_id is None
    assert entry.data_size == 16 and entry.config["encoder"] == encoder.id
    config = PersonalizerConfig(adapter="embedding", prompt="none", generation=SHORT)
    personalizer = Personalizer(demo, config, encoder=encoder)
    first = personalizer.generate("ada", "Give my next note a title.")
    second = personalizer.generate("emi", "Give my next note a title.")
    for result in (first, second):
        assert result.trace.adapter is not None and result.trace.adapter["method"] == "embedding"
        assert "+soft:" in result.trace.model
    assert first.trace.model != second.trace.model  # different users, different soft tokens
    with pytest.raises(InsufficientDataError, match="at least 8 are needed"):
        train_projector(demo, ["ada"], "chat", base, encoder, settings)


def test_preference_accuracy_counts_ties_as_half() -> None:
    chosen, rejected = np.array([-1.0, -2.0, -3.0]), np.array([-2.0, -1.0, -3.0])
    assert likelihood_accuracy(chosen, rejected).tolist() == [1.0, 0.0, 0.5]
    reference = np.array([-1.5, -1.5, -1.5])
    # rewards: chosen - ref vs rejected - ref, i.e. the same ranking against a shared reference
    assert reward_accuracy(chosen, rejected, reference, reference).tolist() == [1.0, 0.0, 0.5]
    # The first pair's reference already preferred the chosen answer by more than the policy
    # does (the policy lost ground: reward 0); the third has equal margins: a tie.
    references = np.zeros(3), np.array([-5.0, 0.0, 0.0])
    assert reward_accuracy(chosen, rejected, *references).tolist() == [0.0, 0.0, 0.5]


def test_dpo_moves_the_implicit_reward_towards_the_chosen_answers(demo: Store) -> None:
    base = base_model()
    pairs = [
        Pair(f"p{n}", prompt, chosen, rejected)
        for n, (prompt, chosen, rejected) in enumerate(
            [
                ("Describe rain.", "Rain is a soft silver hymn on the roof.", "Rain is water."),
                ("Describe a cat.", "A cat is velvet dusk with emerald eyes.", "A cat is a pet."),
                ("Describe snow.", "Snow is the hush of a white cathedral.", "Snow is cold."),
                ("Describe the sea.", "The sea is a restless blue sonnet.", "The sea is big."),
            ]
        )
    ]
    settings = DpoSettings(epochs=2, batch_size=2, max_length=64, learning_rate=1e-3)
    trained = train_dpo(base, pairs, settings)
    assert trained.data_size == 4 and trained.config["objective"] == "dpo"
    scorer = PairScorer(base, settings.lora(), max_length=64)
    chosen = [(p.prompt, p.chosen) for p in pairs]
    rejected = [(p.prompt, p.rejected) for p in pairs]
    policy = scorer.logprobs(chosen, trained.weights), scorer.logprobs(rejected, trained.weights)
    reference = scorer.logprobs(chosen, None), scorer.logprobs(rejected, None)
    margins = (policy[0] - reference[0]) - (policy[1] - reference[1])
    assert margins.mean() > 0
    assert reward_accuracy(*policy, *reference).mean() >= 0.75

    # From the store: preference pairs of a user, via `p13n feedback`.
    url = str(demo.engine.url)  # type: ignore[attr-defined]
    before = len(demo.preferences("ada"))
    for p in pairs:
        args = ["--store", url, "feedback", "--user", "ada", "--prompt", p.prompt]
        result = runner.invoke(app, [*args, "--chosen", p.chosen, "--rejected", p.rejected])
        assert result.exit_code == 0, result.output
    assert f"ada has {before + 4} preference pairs" in result.output
    entry = train_owner_dpo(demo, "user", "ada", "chat", base, settings)
    assert entry.method == "dpo" and entry.data_size == before + 4
    result = runner.invoke(app, ["--store", url, "feedback", "--prompt", "x", "--chosen", "a",
                                 "--rejected", "b"])  # fmt: skip
    assert result.exit_code == 1 and "exactly one of --user or --persona" in result.output
    few = len(demo.preferences("bruno"))
    assert few < 4
    with pytest.raises(InsufficientDataError) as caught:
        train_owner_dpo(demo, "user", "bruno", "chat", base, settings)
    assert f"user 'bruno' has {few} usable preference pairs" in str(caught.value)
    assert "at least 4 are needed" in str(caught.value)


def test_batch_training_on_ray_is_resumable_and_reports_users_without_enough_data(
    demo: Store,
) -> None:
    url = str(demo.engine.url)  # type: ignore[attr-defined]
    ingest(
        demo,
        [Sourced(Document(user_id="newbie", text="One note.", title="Only"), "test")],
        encoder=None,
    )
    args = ["--store", url, "adapt", "train", "--method", "lora", "--task", "chat"]
    tiny = ["--epochs", "1", "--max-examples", "4"]
    result = runner.invoke(app, [*args, "--users", "ada,bruno", "--users", "newbie", *tiny])
    assert result.exit_code == 0, result.output
    assert "2 trained, 0 already current, 1 failed" in result.output
    refused = runner.invoke(app, ["--store", url, "adapt", "train", "--method", "embedding",
                                  "--persona", "devs"])  # fmt: skip
    assert refused.exit_code == 1 and "drop --persona" in refused.output
    assert "newbie" in result.output and "at least 4 are needed" in result.output
    assert {a.user_id for a in demo.adapters(method="lora")} == {"ada", "bruno"}
    first = {a.adapter_id: a.created_at for a in demo.adapters()}

    # A rerun skips the users whose adapter is current; new data makes one stale.
    ingest(demo, [Sourced(Document(user_id="bruno", text="Pasta night.", title="Dinner"), "t")],
           encoder=None)  # fmt: skip
    result = runner.invoke(app, [*args, "--users", "ada,bruno", *tiny])
    assert result.exit_code == 0, result.output
    assert "1 trained, 1 already current, 0 failed" in result.output
    again = {a.adapter_id: a.created_at for a in demo.adapters()}
    assert again["user:ada:chat:lora"] == first["user:ada:chat:lora"]
    assert again["user:bruno:chat:lora"] > first["user:bruno:chat:lora"]

    answer = ["--store", url, "generate", "--user", "ada", "Title my next note.",
              "--adapter", "lora", "--prompt", "none", "--max-new-tokens", "4"]  # fmt: skip
    generated = runner.invoke(app, answer)
    assert generated.exit_code == 0, generated.output
    assert "adapter user:ada:chat:lora" in generated.output
    shown = runner.invoke(app, ["--store", url, "show", "bruno"])
    assert "adapter user:bruno:chat:lora: lora on SmolLM2-135M-Instruct" in shown.output
    listed = runner.invoke(app, ["--store", url, "adapt", "list"])
    assert listed.exit_code == 0 and "user:bruno:chat:lora" in listed.output
    deleted = runner.invoke(app, ["--store", url, "adapt", "delete", "user:ada:chat:lora"])
    assert "deleted 1 adapters" in deleted.output
    assert [a.user_id for a in demo.adapters()] == ["bruno"]
    bad = runner.invoke(app, [*args, "--users", "ghost"])
    assert bad.exit_code == 1 and "unknown users" in bad.output


def test_the_runner_puts_learned_users_beside_retrieval(
    tmp_path: Path, embedded_llm: LLM, encoder: Encoder
) -> None:
    from p13n.benchmarks.config import AdaptSettings, BenchConfig
    from p13n.datasets.lamp import LampSplit, write_recipe, write_split
    from tests.helpers import run_bench
    from tests.test_bench import SPEC, _examples

    folder = tmp_path / "tasks" / "headlines"
    write_recipe(folder, {"spec": SPEC.to_dict(), "name": "headlines"})
    for split in ("train", "test"):
        write_split(LampSplit(SPEC, split, _examples(split)), folder)
    config = BenchConfig(
        tasks=["headlines"],
        tasks_dir=folder.parent,
        methods=["none", "bm25", "lora", "lora-rag", "dpo", "embedding"],
        k=[1],
        require_match=False,  # LaMP's top k: the retrieval arms below quote k items
        max_new_tokens={"headlines": 6},
        metrics={"headlines": ["rouge-1"]},
        resamples=100,
        cache=tmp_path / "cache",
        adapt=AdaptSettings(
            lora=LoraSettings(epochs=1, min_examples=2, batch_size=4, max_input_tokens=32,
                              max_answer_tokens=12),
            dpo=DpoSettings(min_pairs=2, batch_size=2, max_length=64),
            dpo_pairs=3,
            dpo_input_tokens=32,
            embedding=EmbeddingSettings(tokens=2, hidden=16, min_examples=4, max_input_tokens=32,
                                        max_answer_tokens=12),
        ),
    )  # fmt: skip
    (task,) = run_bench(config, embedded_llm, encoder).tasks
    assert task.arms == ["none", "bm25 k=1", "lora", "lora-rag k=1", "dpo", "embedding"]
    assert set(task.training) == {"lora", "lora-rag", "dpo", "embedding"}
    assert task.training["lora"]["adapters"] == 4 and task.training["lora"]["trained_now"] == 4
    assert task.training["lora-rag"]["trained_now"] == 0  # the same adapters, reused
    assert task.training["dpo"]["trained_now"] == 4
    embedding = task.training["embedding"]
    assert (embedding["adapters"], embedding["trained_now"]) == (1, 1)
    assert task.training["lora"]["size_bytes_mean"] < 5_000_000
    for example in task.examples:
        assert set(example.outputs) == set(task.arms)
        assert example.outputs["lora-rag k=1"].items_in_prompt == 1
        assert example.outputs["lora"].items_in_prompt == 0
    assert set(task.metrics["rouge-1"].versus_baseline) == set(task.arms[1:])

    again = run_bench(config, embedded_llm, encoder).tasks[0]
    assert all(cost["trained_now"] == 0 for cost in again.training.values())
    for first, second in zip(task.examples, again.examples, strict=True):
        for arm in task.arms:
            assert second.outputs[arm].cached
            assert second.outputs[arm].prediction == first.outputs[arm].prediction

    with pytest.raises(ValueError, match="swap a retrieval method"):
        BenchConfig(tasks=["headlines"], swap=["lora"])
