"""The learned personalization policy: the one-standard-error rule, the store, the Personalizer
serving it, and the runner's ``auto`` arm learning it on dev and answering test with it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from p13n.benchmarks.config import BenchConfig
from p13n.benchmarks.policy import HISTORY, candidates
from p13n.benchmarks.runner_report import side_by_side
from p13n.datasets.lamp import LampSplit, write_split
from p13n.encode import Encoder
from p13n.errors import ConfigError
from p13n.evaluate.stats import one_standard_error_choice
from p13n.llm import LLM
from p13n.personalize import (
    LabelPolicy,
    Personalizer,
    PersonalizerConfig,
    Policy,
    PolicyEvidence,
    load_policy,
    save_policy,
)
from p13n.personalize.policy import CandidateEvidence
from p13n.retrieve import RetrieverConfig
from p13n.store import Store, StoredPolicy, open_store
from tests.helpers import run_bench
from tests.server_support import Service, make_service
from tests.test_bench import RATING, REVIEWS, _config, _ratings_task, rating_examples
from tests.test_bench import task_dir as task_dir  # the fixture
from tests.test_cli import invoke

SIMPLEST = [0.5, 0.5, 0.5, 0.5]
CLOSE = [0.9, 0.3, 0.8, 0.7]
BEST = [0.9, 0.5, 0.8, 0.6]


def test_one_standard_error_rule_takes_the_simplest_close_enough_candidate() -> None:
    choice = one_standard_error_choice(
        [("none", SIMPLEST), ("close", CLOSE), ("best", BEST)], higher_is_better=True
    )
    assert choice.best == "best" and choice.chosen == "close" and choice.n == 4
    none, close, best = choice.candidates
    # Worked by hand: none - best = (-.4, 0, -.3, -.1): mean -.2, sd .1826, se .0913.
    assert none.gap == pytest.approx(0.2) and none.standard_error == pytest.approx(0.09129, 1e-3)
    assert not none.within_one_se
    # close - best = (0, -.2, 0, .1): mean -.025, sd .1258, se .0629: within one error.
    assert close.gap == pytest.approx(0.025) and close.standard_error == pytest.approx(0.0629, 1e-3)
    assert best.gap == 0 and best.standard_error == 0
    # An error metric: the same choice on the negated scores, means reported as given.
    negated = [(label, [-v for v in values]) for label, values in
               (("none", SIMPLEST), ("close", CLOSE), ("best", BEST))]  # fmt: skip
    errors = one_standard_error_choice(negated, higher_is_better=False)
    assert errors.chosen == "close" and errors.candidates[2].mean == pytest.approx(-0.7)
    # A tie goes to the simpler; the baseline wins when nothing beats it by more than noise.
    assert (
        one_standard_error_choice([("a", BEST), ("b", BEST)], higher_is_better=True).chosen == "a"
    )
    noisy = one_standard_error_choice(
        [("none", SIMPLEST), ("noisy", [1.0, 0.0, 1.0, 0.3])], higher_is_better=True
    )
    assert noisy.best == "noisy" and noisy.chosen == "none"
    with pytest.raises(ValueError, match="same examples"):
        one_standard_error_choice([("a", [1.0]), ("b", [1.0, 2.0])], higher_is_better=True)


def _policy(task: str = "lamp4", **extra: object) -> Policy:
    evidence = PolicyEvidence(
        metric="rouge-1",
        higher_is_better=True,
        split="dev",
        examples=40,
        best="bm25 k=2",
        candidates=[
            CandidateEvidence(label="none", mean=0.10, gap=0.03, standard_error=0.01),
            CandidateEvidence(label="bm25 k=2", mean=0.13, gap=0.0, standard_error=0.0),
        ],
    )
    fields: dict[str, object] = {
        "task": task,
        "source": "a test",
        "choice": "bm25 k=2",
        "prompt": "contextual",
        "retriever": RetrieverConfig(name="bm25", k=2, require_match=False),
        "max_item_tokens": 64,
        "model": "m",
        "evidence": evidence,
        **extra,
    }
    return Policy.model_validate(fields)


def test_policies_are_stored_per_tenant_and_task(store: Store) -> None:
    assert store.get_policy("lamp4") is None and store.policies() == []
    save_policy(store, _policy())
    history = _policy(
        "lamp3", choice="none", prompt="none", labels=LabelPolicy(fusion_weight=float("inf"))
    )
    save_policy(store, history)
    assert [p.task for p in store.policies()] == ["lamp3", "lamp4"]
    assert load_policy(store, "lamp4") == _policy().model_copy(
        update={"learned_at": load_policy(store, "lamp4").learned_at}  # type: ignore[union-attr]
    )
    loaded = load_policy(store, "lamp3")
    assert loaded is not None and loaded.labels.fusion_weight == float("inf")  # JSON has no inf
    other = store.with_tenant("other")
    assert other.get_policy("lamp4") is None and other.policies() == []
    replaced = _policy(choice="none", prompt="none")
    save_policy(store, replaced)
    assert load_policy(store, "lamp4").choice == "none"  # type: ignore[union-attr]
    assert store.delete_policy("lamp4") and not store.delete_policy("lamp4")
    assert [p.task for p in store.policies()] == ["lamp3"]
    store.put_policy(StoredPolicy("lamp5", {"task": "lamp5", "choice": 3}, datetime.now(UTC)))
    with pytest.raises(ConfigError, match=r"stored policy of task 'lamp5'.*policy field choice"):
        load_policy(store, "lamp5")


def test_personalizer_serves_the_tasks_learned_policy(demo: Store, embedded_llm: LLM) -> None:
    config = PersonalizerConfig(
        task="lamp4", retriever=RetrieverConfig(name="bm25", k=4), policy="auto"
    )
    question = "Write a headline for: a new running shoe for marathons"
    unlearned = Personalizer(demo, config, llm=embedded_llm).prepare("ada", question)
    fixed = Personalizer(
        demo, config.model_copy(update={"policy": "fixed"}), llm=embedded_llm
    ).prepare("ada", question)
    assert unlearned.prompt == fixed.prompt and fixed.trace.policy is None
    assert unlearned.trace.policy == {
        "task": "lamp4",
        "learned": False,
        "served": "the configured settings: no policy is learned for this task",
    }
    save_policy(demo, _policy())
    served = Personalizer(demo, config, llm=embedded_llm)
    assert served.config.retriever.k == 2 and served.config.max_item_tokens == 64
    prepared = served.prepare("ada", question)
    assert len(prepared.prompt.items) == 2
    assert prepared.trace.policy is not None and prepared.trace.policy["choice"] == "bm25 k=2"
    assert (
        prepared.trace.policy["dev_value"] == 0.13 and prepared.trace.policy["dev_examples"] == 40
    )
    save_policy(demo, _policy(choice="none", prompt="none"))
    baseline = Personalizer(demo, config, llm=embedded_llm).prepare("ada", question)
    assert not baseline.trace.personalized and baseline.prompt.items == ()


@pytest.mark.slow
def test_auto_learns_on_dev_and_answers_test_as_the_chosen_candidate(
    tmp_path: Path, embedded_llm: LLM, encoder: Encoder
) -> None:
    folder = _ratings_task(tmp_path)
    write_split(LampSplit(RATING, "dev", rating_examples("d")), folder)  # other example ids
    config = BenchConfig(
        tasks=["ratings"], tasks_dir=folder.parent, methods=["none", "bm25", "auto"], k=[1],
        answer={"ratings": "likelihood"}, resamples=100, corpus_resamples=50,
        cache=tmp_path / "cache", out=tmp_path / "out", policy_dev_examples=3, swap=["auto"],
    )  # fmt: skip
    result = run_bench(config, embedded_llm, encoder)
    (task,) = result.tasks
    labels = [v.label for v in candidates(config, likelihood=True)]
    assert task.arms == [*labels, "auto"] and HISTORY in labels
    assert "bm25 k=1 +task-cal +fuse=1" in labels
    saved = json.loads((tmp_path / "out" / "policy-ratings.json").read_text())
    policy = Policy.model_validate(saved)
    assert policy.task == "lamp3" and policy.evidence.split == "dev"
    assert [c.label for c in policy.evidence.candidates] == labels
    assert not any(user in json.dumps(saved) for user in REVIEWS)  # aggregate: no user in it
    # The report's side-by-side shows the first example auto won, if it won one.
    better = 1 if task.metrics[task.primary].higher_is_better else -1
    wins = [
        e
        for e in task.examples
        if better
        * (e.outputs["auto"].scores[task.primary] - e.outputs["none"].scores[task.primary])
        > 0
    ]
    shown = side_by_side(task)
    assert bool(shown) == bool(wins)
    if wins:
        assert f"({len(wins)} of {len(task.examples)} did)" in shown[0]
        assert shown[3] == f"- the user's own answer: {wins[0].reference}"
    # The rule, recomputed from the evidence: the first candidate within one error of the best.
    first = next(c for c in policy.evidence.candidates if c.gap <= c.standard_error + 1e-12)
    assert policy.choice == first.label
    # History alone is right for every reviewer here (each rates as before).
    assert policy.evidence.of(HISTORY).mean == 0.0
    for example in task.examples:
        auto, chosen = example.outputs["auto"], example.outputs[policy.choice]
        assert auto.prediction == chosen.prediction and auto.scores == chosen.scores
        assert auto.choice_scores == chosen.choice_scores and auto.cached
        history = example.outputs[HISTORY]
        assert history.prediction == REVIEWS[example.user_id or ""][1][1]
    # The test split's store holds the policy the auto arm was served, and the Personalizer's
    # own likelihood path (choose) answers every example as the runner's arms did.
    (stored,) = (tmp_path / "cache" / "stores").glob("ratings-test-*.db")
    test_store = open_store(f"sqlite:///{stored}")
    retriever = RetrieverConfig(k=1, require_match=config.require_match)
    fused = LabelPolicy(calibration="task", fusion_weight=1.0)
    calibrated = LabelPolicy(calibration="task")
    served = {
        "auto": PersonalizerConfig(task="lamp3", policy="auto"),
        "none +task-cal": PersonalizerConfig(task="lamp3", prompt="none", labels=calibrated),
        "bm25 k=1 +task-cal +fuse=1": PersonalizerConfig(
            task="lamp3", retriever=retriever, labels=fused
        ),
        HISTORY: PersonalizerConfig(
            task="lamp3", prompt="none", labels=LabelPolicy(fusion_weight=float("inf"))
        ),
    }
    try:
        assert load_policy(test_store, "lamp3") == policy
        for label, served_config in served.items():
            personalizer = Personalizer(test_store, served_config, llm=embedded_llm)
            for example, given in zip(task.examples, rating_examples(), strict=True):
                assert example.id == given.id
                chosen = personalizer.choose(example.id, given.input, RATING.labels)
                output = example.outputs[label]
                assert chosen.label == output.prediction, (label, example.id)
                final = output.fused_scores or output.calibrated_scores or output.choice_scores
                assert chosen.log_probs == pytest.approx(
                    list(np.asarray(final) - np.logaddexp.reduce(final)), abs=1e-6
                )
                assert chosen.trace.policy is not None or label != "auto"
    finally:
        test_store.close()
    assert "auto" in task.swap
    again = run_bench(config, embedded_llm, encoder)
    assert again.generated == 0
    assert [e.outputs["auto"].prediction for e in again.tasks[0].examples] == [
        e.outputs["auto"].prediction for e in task.examples
    ]


@pytest.mark.slow
def test_auto_on_a_generation_task_prompts_exactly_as_its_choice(
    task_dir: Path, tmp_path: Path, embedded_llm: LLM, encoder: Encoder
) -> None:
    config = _config(
        task_dir, tmp_path, methods=["none", "bm25", "auto"], k=[1, 2], policy_dev_examples=4
    )
    (task,) = run_bench(config, embedded_llm, encoder).tasks
    assert task.arms == ["none", "bm25 k=1", "bm25 k=2", "auto"]
    assert task.policy is not None
    choice = task.policy["choice"]
    for example in task.examples:
        auto, chosen = example.outputs["auto"], example.outputs[choice]
        assert auto.prediction == chosen.prediction and auto.retrieved == chosen.retrieved
        assert auto.cached  # the same prompt as the chosen arm's: answered from the cache
    with pytest.raises(ConfigError, match="at least 40 dev examples"):
        run_bench(_config(task_dir, tmp_path, methods=["none", "auto"]), embedded_llm, encoder)


def test_auto_config_is_checked() -> None:
    learned = BenchConfig(tasks=["t"], methods=["none", "lora", "cope", "auto"], k=[1]).arms()
    assert [a.label for a in learned] == ["none", "lora", "cope β=1", "auto"]
    with pytest.raises(ValueError, match="auto chooses calibration and fusion itself"):
        BenchConfig(tasks=["t"], methods=["none", "auto"], calibration="task")
    arms = BenchConfig(tasks=["t"], methods=["auto", "bm25"], k=[1]).arms()
    assert [a.label for a in arms] == ["none", "bm25 k=1", "auto"]
    assert np.isinf(BenchConfig(tasks=["t"]).policy_fusion[-1])


def service_with_alice(sqlite_url: str) -> tuple[Service, dict[str, str], dict[str, Any]]:
    """The service with acme's user alice (two documents), acme's headers and a request body."""
    service = make_service(sqlite_url)
    h = service.headers("acme")
    records = [{"type": "user", "id": "alice"}] + [
        {"type": "document", "user_id": "alice", "text": t}
        for t in ("I only cook vegetarian food.", "Tofu curry is my favourite.")
    ]
    assert (
        service.client.post("/v1/ingest", json={"records": records}, headers=h).status_code == 201
    )
    return service, h, {"user": "alice", "input": "What should I cook with tofu?", "max_tokens": 8}


@pytest.mark.slow
def test_the_service_serves_the_learned_policy_by_default(sqlite_url: str) -> None:
    service, h, body = service_with_alice(sqlite_url)
    before = service.client.post("/v1/generate", json=body, headers=h).json()["trace"]
    assert before["policy"]["learned"] is False and before["retrieved"]["items"]
    save_policy(service.state.tenant_store("acme"), _policy("chat", choice="none", prompt="none"))
    served = service.client.post("/v1/generate", json=body, headers=h).json()["trace"]
    assert served["policy"]["choice"] == "none" and not served["personalized"]
    assert served["retrieved"] is None
    named = service.client.post("/v1/generate", json={**body, "k": 2}, headers=h).json()["trace"]
    assert named["policy"] is None and len(named["retrieved"]["items"]) == 2  # asked: fixed
    assert named["decoding"] is None
    steered = {**body, "k": 2, "decoding": "context-steering", "steering": 0.5}
    trace = service.client.post("/v1/generate", json=steered, headers=h).json()["trace"]
    assert trace["decoding"] == {"method": "context-steering", "strength": 0.5}
    other = service.client.post("/v1/generate", json=body, headers=service.headers("globex"))
    assert other.status_code == 404  # alice is acme's; globex has no policy either
    assert service.state.tenant_store("globex").policies() == []


@pytest.mark.slow
def test_the_service_chooses_labels_as_the_learned_policy_reads_them(sqlite_url: str) -> None:
    service = make_service(sqlite_url)
    h = service.headers("acme")
    reviews = [("Wonderful, I loved it", "5"), ("Great value", "5"), ("Fine", "3")]
    records = [{"type": "user", "id": "fan"}] + [
        {"type": "document", "user_id": "fan", "text": text, "title": score}
        for text, score in reviews
    ]
    assert (
        service.client.post("/v1/ingest", json={"records": records}, headers=h).status_code == 201
    )
    labels = ["1", "2", "3", "4", "5"]
    body = {"user": "fan", "input": "Score this review: it broke.", "labels": labels,
            "task": "lamp3"}  # fmt: skip
    plain = service.client.post("/v1/choose", json={**body, "prompt": "none"}, headers=h)
    assert plain.status_code == 200, plain.text
    raw = plain.json()
    assert raw["trace"]["policy"] is None and len(raw["scores"]) == 5
    assert raw["label"] == labels[int(np.argmax(raw["scores"]))]  # no calibration, no fusion
    save_policy(service.state.tenant_store("acme"), _history_policy())
    served = service.client.post("/v1/choose", json=body, headers=h).json()
    assert served["label"] == "5" and served["trace"]["policy"]["choice"] == "history"
    assert served["log_probs"][:4] == [None] * 4 and served["log_probs"][4] == 0.0
    assert served["scores"] == raw["scores"]  # the same prompt, read through the user's history
    baseline = service.client.post("/v1/choose", json={**body, "personalize": False}, headers=h)
    assert baseline.json()["label"] == raw["label"]  # the baseline is never fused
    unknown = service.client.post("/v1/choose", json={**body, "user": "nobody"}, headers=h)
    assert unknown.status_code == 404


def _history_policy() -> Policy:
    """A lamp3 policy that answers with the user's most frequent rating."""
    only = _policy().evidence.candidates[0].model_copy(update={"label": HISTORY})
    evidence = _policy().evidence.model_copy(update={"candidates": [only]})
    history = LabelPolicy(fusion_weight=float("inf"))
    return _policy("lamp3", choice=HISTORY, prompt="none", labels=history, evidence=evidence)


@pytest.mark.slow
def test_generate_chooses_labels_from_the_command_line(tmp_path: Path, sqlite_url: str) -> None:
    records = tmp_path / "fan.jsonl"
    rows = [{"type": "user", "id": "fan"}] + [
        {"type": "document", "user_id": "fan", "text": text, "title": score}
        for text, score in [("Loved it", "4"), ("Great", "4"), ("Fine", "2")]
    ]
    records.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    assert invoke("--store", sqlite_url, "ingest", "jsonl", str(records))[0] == 0
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(_history_policy().to_json()))
    assert invoke("--store", sqlite_url, "policy", "set", str(policy))[0] == 0
    ask = ["--store", sqlite_url, "generate", "--user", "fan", "Score this: it broke.",
           "--task", "lamp3", "--labels", "1,2,3,4,5"]  # fmt: skip
    code, out = invoke(*ask, "--policy", "auto")
    assert code == 0, out
    assert out.splitlines()[0] == "4" and "4 1.00" in out and "history" in out
    code, out = invoke(*ask, "--policy", "auto", "--json")
    assert code == 0 and json.loads(out)["log_probs"][:3] == [None, None, None]
    code, out = invoke(*ask, "--compare")
    assert code != 0 and "--labels chooses one answer" in out


def test_policy_commands_set_list_show_and_delete(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "policy-headline.json"
    path.write_text(json.dumps(_policy().to_json()))
    code, out = invoke("--store", sqlite_url, "policy", "list")
    assert code == 0 and "no policies in tenant 'default'" in out
    code, out = invoke("--store", sqlite_url, "policy", "set", str(path))
    assert code == 0 and "serves 'bm25 k=2' for task 'lamp4'" in out
    code, out = invoke("--store", sqlite_url, "policy", "list")
    assert code == 0 and "bm25 k=2" in out and "0.1300" in out and "0.1000" in out
    users = tmp_path / "users.jsonl"
    users.write_text(json.dumps({"type": "user", "id": "ada"}) + "\n")
    assert invoke("--store", sqlite_url, "ingest", "jsonl", str(users))[0] == 0
    code, out = invoke("--store", sqlite_url, "show", "ada")
    assert code == 0 and "policy for lamp4: serves bm25 k=2" in out
    path.write_text(json.dumps({"task": "lamp4"}))
    code, out = invoke("--store", sqlite_url, "policy", "set", str(path))
    assert code != 0 and "policy field choice: Field required" in out
    code, out = invoke("--store", sqlite_url, "policy", "delete", "lamp4")
    assert code == 0 and "deleted the policy of task 'lamp4'" in out
    code, out = invoke("--store", sqlite_url, "policy", "delete", "lamp4")
    assert code != 0 and "has no policy for task 'lamp4'" in out
