"""The ``onnx`` backend: the embedded model converted by ONNX Runtime GenAI's own builder (once per
test session, into the session's cache) and decoded by the real runtime."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from p13n.adapt import adapters
from p13n.adapt.base import TrainedWeights, base_model, load_torch_model
from p13n.adapt.lora import LoraSettings, serialize
from p13n.adapt.onnx_adapted import OnnxAdaptedLLM
from p13n.adapt.runtime import AdaptedLLM
from p13n.errors import ConfigError, LLMError
from p13n.llm import ChatMessage, GenerationOptions, LLMConfig, get_llm
from p13n.llm.embedded import EMBEDDED_MODEL, embedded_model_dir
from p13n.llm.hf import HFLLM
from p13n.llm.onnx import MANIFEST, OnnxLLM, _problem, converted_model, runtime_version
from p13n.personalize import Personalizer, PersonalizerConfig
from p13n.store import Store, StoredAdapter
from tests.server_support import make_service
from tests.test_llm import CONVERSATION, QUESTION, STORY

pytestmark = pytest.mark.slow

BRIEF: list[ChatMessage] = [{"role": "user", "content": "What is 2+2? Answer briefly."}]
RATING: list[ChatMessage] = [
    {"role": "user", "content": "Rate this review from 1 to 5: 'Terrible, it broke in a day.'"}
]
GREEDY = GenerationOptions(max_new_tokens=32)
# The runtimes keep their telemetry quiet on CI machines that say so in one of these variables
# (the list is in libonnxruntime-genai.so), so the telemetry test runs without them.
CI_MARKERS = (
    "CI", "TF_BUILD", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TRAVIS", "JENKINS_URL",
    "CODEBUILD_BUILD_ID", "BUILDKITE", "TEAMCITY_VERSION",
)  # fmt: skip
# Scores of the fp32 conversion against torch float32: the same weights, another kernel library
# (summed over a choice's tokens); int4 weights move them by quantization, not by the code.
FP32_TOLERANCE = 0.02


@pytest.fixture(scope="module")
def onnx_llm() -> OnnxLLM:
    llm = get_llm(LLMConfig(backend="onnx"))
    assert isinstance(llm, OnnxLLM)
    return llm


def test_the_backend_converts_once_and_names_what_answered(onnx_llm: OnnxLLM) -> None:
    assert onnx_llm.backend == "onnx" and onnx_llm.model == f"{EMBEDDED_MODEL}-onnx-int4"
    manifest = json.loads((onnx_llm.folder / MANIFEST).read_text())
    assert manifest["precision"] == "int4"
    assert manifest["onnxruntime_genai"] == runtime_version()
    assert manifest["source"] == str(embedded_model_dir())
    assert {"model.onnx", "model.onnx.data", "genai_config.json"} <= set(manifest["files"])
    before = (onnx_llm.folder / MANIFEST).stat().st_mtime_ns
    assert converted_model(embedded_model_dir()) == onnx_llm.folder  # reused, not redone
    assert (onnx_llm.folder / MANIFEST).stat().st_mtime_ns == before
    # The runtime's int4 weights are a quarter of the float32 source's.
    size = sum(f["size"] for f in manifest["files"].values())
    source = sum(p.stat().st_size for p in embedded_model_dir().glob("*.safetensors"))
    assert size < source / 4


@pytest.mark.parametrize("messages", [QUESTION, STORY, CONVERSATION])
def test_answers_stream_and_equal_the_whole_answer(
    onnx_llm: OnnxLLM, messages: list[ChatMessage]
) -> None:
    completion = onnx_llm.generate(messages, GREEDY)
    assert completion.text and completion.model == onnx_llm.model
    assert completion.prompt_tokens == onnx_llm.tokenizer.count_chat(messages)
    pieces = list(onnx_llm.stream(messages, GREEDY))
    assert len(pieces) > 1 and all(pieces)
    assert "".join(pieces).strip() == completion.text


def test_finish_reasons_and_stop_strings(onnx_llm: OnnxLLM) -> None:
    short = onnx_llm.generate(BRIEF, GenerationOptions(max_new_tokens=64))
    assert short.finish_reason == "stop" and short.completion_tokens < 64
    cut = onnx_llm.generate(STORY, GenerationOptions(max_new_tokens=8))
    assert cut.finish_reason == "length" and cut.completion_tokens == 8
    full = onnx_llm.generate(STORY, GREEDY).text
    words = full.split()
    stop = words[len(words) // 2]
    expected = full[: full.index(stop)].strip()
    options = GenerationOptions(max_new_tokens=32, stop=(stop,))
    stopped = onnx_llm.generate(STORY, options)
    assert stopped.text == expected and stopped.finish_reason == "stop"
    assert stopped.completion_tokens < 32
    assert "".join(onnx_llm.stream(STORY, options)).strip() == expected


def test_greedy_batch_equals_one_at_a_time(onnx_llm: OnnxLLM) -> None:
    conversations = [QUESTION, STORY, CONVERSATION, QUESTION]
    one_by_one = [onnx_llm.generate(c, GREEDY) for c in conversations]
    assert onnx_llm.generate_batch(conversations, GREEDY, batch_size=4) == one_by_one


def test_the_runtime_gets_its_threads_said_and_they_do_not_change_answers(
    onnx_llm: OnnxLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    single = OnnxLLM(embedded_model_dir(), model_name=EMBEDDED_MODEL)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    double = OnnxLLM(embedded_model_dir(), model_name=EMBEDDED_MODEL)
    assert (single.runtime.threads, double.runtime.threads) == (1, 2)
    assert single.runtime is not double.runtime
    choices = ["1", "2", "3", "4", "5"]
    assert single.score_choices(RATING, choices) == double.score_choices(RATING, choices)
    assert single.generate(STORY, GREEDY) == double.generate(STORY, GREEDY)


def test_the_runtime_decodes_in_its_own_process_and_is_restarted_when_it_dies(
    onnx_llm: OnnxLLM,
) -> None:
    """Its Python binding holds the interpreter's lock while it computes, so it runs in a
    child process; a child that dies fails the request in flight, and the next one restarts it."""
    before = onnx_llm.generate(BRIEF, GREEDY)
    pid = onnx_llm.runtime.pid
    assert pid is not None and pid != os.getpid()
    stream = onnx_llm.stream(STORY, GREEDY)
    next(stream)  # a stream abandoned mid-answer frees the runtime for the next request
    stream.close()
    assert onnx_llm.generate(BRIEF, GREEDY) == before
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(LLMError, match=r"process for .* exited \(code -9\); the next request"):
        onnx_llm.generate(BRIEF, GREEDY)
    assert onnx_llm.generate(BRIEF, GREEDY) == before
    assert onnx_llm.runtime.pid not in (None, pid)
    onnx_llm.runtime.close()  # stopped on purpose: started again on the next request too
    assert onnx_llm.runtime.pid is None
    assert onnx_llm.generate(BRIEF, GREEDY) == before


def test_sampling_is_seeded(onnx_llm: OnnxLLM) -> None:
    sampled = GenerationOptions(max_new_tokens=16, temperature=1.0, seed=7)
    first = onnx_llm.generate(STORY, sampled).text
    assert onnx_llm.generate(STORY, sampled).text == first
    others = {onnx_llm.generate(STORY, sampled.model_copy(update={"seed": s})).text for s in (1, 2)}
    assert others != {first}


def test_choice_scores_agree_with_torch(onnx_llm: OnnxLLM, embedded_llm: HFLLM) -> None:
    labels = ["1", "2", "3", "4", "5"]
    titles = ["A broken promise", "Five stars for durability", "Terrible"]
    fp32 = get_llm(LLMConfig(backend="onnx", precision="fp32"))
    assert isinstance(fp32, OnnxLLM) and fp32.model.endswith("-onnx-fp32")
    for choices in (labels, titles):
        reference = embedded_llm.score_choices(RATING, choices)
        assert fp32.score_choices(RATING, choices) == pytest.approx(reference, abs=FP32_TOLERANCE)
        int4 = onnx_llm.score_choices(RATING, choices)
        assert max(range(len(choices)), key=int4.__getitem__) == max(
            range(len(choices)), key=reference.__getitem__
        )
    # choices sharing a first token are told apart by their later tokens
    assert len(set(onnx_llm.score_choices(RATING, ["Terrible", "Terrible.", "Terrible!"]))) == 3


def test_a_partial_or_corrupt_conversion_is_detected_and_redone(onnx_llm: OnnxLLM) -> None:
    folder = onnx_llm.folder
    manifest = json.loads((folder / MANIFEST).read_text())
    expected = {key: manifest[key] for key in ("format", "source_sha256", "precision")}
    expected["onnxruntime_genai"] = runtime_version()
    assert _problem(folder, expected) is None
    stale = {**expected, "onnxruntime_genai": "0.0.1"}
    assert "onnxruntime_genai is" in str(_problem(folder, stale))
    with (folder / "model.onnx.data").open("r+b") as data:  # one flipped byte, same size
        data.seek(1000)
        byte = data.read(1)
        data.seek(1000)
        data.write(bytes([byte[0] ^ 0xFF]))
    assert "model.onnx.data does not match its recorded sha256" in str(_problem(folder, expected))
    (folder / MANIFEST).unlink()  # as a conversion cut off before its manifest was written
    assert "no manifest" in str(_problem(folder, expected))
    assert converted_model(embedded_model_dir()) == folder  # converted again, in place
    assert _problem(folder, expected) is None


def test_telemetry_is_off_and_the_check_can_see_it(tmp_path: Path) -> None:
    """ONNX Runtime and ONNX Runtime GenAI write a device id and queued events under
    ~/.cache/Microsoft when their telemetry is on; under p13n (the onnx backend and the default
    encoder, which runs on ONNX Runtime) nothing is written there, and the control run shows
    that the check sees it when it is."""
    script = (
        "from p13n.encode import get_encoder\n"
        "get_encoder().encode(['Hi'])\n"
        "from p13n.llm import LLMConfig, GenerationOptions, get_llm\n"
        "llm = get_llm(LLMConfig(backend='onnx'))\n"
        "print(llm.generate([{'role': 'user', 'content': 'Hi'}], "
        "GenerationOptions(max_new_tokens=2)).completion_tokens)\n"
    )
    written = {}
    for label, switch in (("p13n", None), ("control", "0")):
        home = tmp_path / label
        home.mkdir()
        hidden = {"ORT_DISABLE_TELEMETRY", *CI_MARKERS}
        env = {k: v for k, v in os.environ.items() if k not in hidden}
        env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
        if switch is not None:
            env["ORT_DISABLE_TELEMETRY"] = switch  # a user who opts in
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        written[label] = sorted(p.name for p in home.rglob("*") if p.is_file())
    assert written["p13n"] == []
    assert {"deviceid", "onnxruntime.db", "onnxruntime-genai.db"} <= set(written["control"])


def test_methods_that_need_torch_are_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="adapter 'embedding' feeds soft tokens to the mod"):
        PersonalizerConfig(llm=LLMConfig(backend="onnx"), adapter="embedding")
    for method in ("lora", "dpo"):  # LoRA adapters serve on the fast path
        PersonalizerConfig(llm=LLMConfig(backend="onnx"), adapter=method)
    with pytest.raises(ConfigError, match="soft tokens need the model in torch, which the 'onnx'"):
        base_model(LLMConfig(backend="onnx"))
    assert base_model(LLMConfig(backend="onnx"), torch=False) == base_model()
    with pytest.raises(LLMError, match="soft tokens need the model's torch weights"):
        OnnxAdaptedLLM(base_model(), LLMConfig(backend="onnx")).use_prefix(None)
    with pytest.raises(ValidationError, match="precision"):
        LLMConfig(backend="onnx", precision="int3")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def lora_state() -> dict[str, Any]:
    """A LoRA adapter in PEFT's format for the embedded model, as training stores it: seeded,
    not trained, its B far enough from zero to move answers."""
    import torch
    from peft import get_peft_model, get_peft_model_state_dict

    torch.manual_seed(7)
    model = get_peft_model(load_torch_model(embedded_model_dir()), LoraSettings().peft_config())
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.03)
    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def _register(store: Store, user: str, state: dict[str, Any]) -> StoredAdapter:
    settings = LoraSettings()
    trained = TrainedWeights(serialize(state), {"peft": "lora", **settings.model_dump()}, 4, {})
    return adapters.register(store, trained, kind="user", owner=user, task="chat",
                             method="lora", base=base_model(), data_version="v",
                             settings=settings)  # fmt: skip


def test_a_users_lora_adapter_scores_on_onnx_as_on_torch(
    demo: Store, lora_state: dict[str, Any]
) -> None:
    """The same adapter on torch and on the fp32 conversion: the same scores within the
    backends' tolerance; the adapter moves them well beyond it, so the check can fail."""
    entry = _register(demo, "ada", lora_state)
    labels = ["1", "2", "3", "4", "5", "A broken promise"]
    torch_adapted = AdaptedLLM(base_model())
    torch_adapted.activate(demo, entry)
    reference = torch_adapted.score_choices(RATING, labels)
    torch_adapted.unload(entry)
    fp32 = LLMConfig(backend="onnx", precision="fp32")
    onnx_adapted = OnnxAdaptedLLM(base_model(fp32, torch=False), fp32)
    plain = onnx_adapted.score_choices(RATING, labels)
    assert max(abs(a - b) for a, b in zip(plain, reference, strict=True)) > 5 * FP32_TOLERANCE
    onnx_adapted.activate(demo, entry)
    assert onnx_adapted.score_choices(RATING, labels) == pytest.approx(
        reference, abs=FP32_TOLERANCE
    )
    onnx_adapted.deactivate()  # the LoRA-ready model with no adapter is the base model, exactly
    assert onnx_adapted.score_choices(RATING, labels) == plain


def test_lora_adapters_serve_on_onnx_through_the_personalizer(
    demo: Store, lora_state: dict[str, Any], onnx_llm: OnnxLLM
) -> None:
    ada = _register(demo, "ada", lora_state)
    bruno = _register(demo, "bruno", {k: v * 2 for k, v in lora_state.items()})
    config = PersonalizerConfig(llm=LLMConfig(backend="onnx"), adapter="lora")
    personalizer = Personalizer(demo, config, llm=onnx_llm)
    adapted = personalizer.adapted
    assert isinstance(adapted, OnnxAdaptedLLM)
    answer = personalizer.generate("ada", "What should I do this weekend?")
    trace = answer.trace
    assert trace.adapter is not None and trace.adapter["adapter_id"] == "user:ada:chat:lora"
    assert trace.backend == "onnx"
    assert trace.model == f"{onnx_llm.model}+lora:{ada.weights_sha256[:12]}"
    streamed = "".join(adapted.stream(BRIEF, GREEDY))
    assert streamed.strip() == adapted.generate(BRIEF, GREEDY).text

    choices = ["1", "2", "3", "4", "5"]
    plain = onnx_llm.score_choices(RATING, choices)
    adapted.activate(demo, ada)
    ada_scores = adapted.score_choices(RATING, choices)
    assert ada_scores != pytest.approx(plain, abs=1e-2)
    adapted.activate(demo, bruno)
    assert adapted.model.endswith(f"+lora:{bruno.weights_sha256[:12]}")
    assert adapted.score_choices(RATING, choices) != pytest.approx(ada_scores, abs=1e-2)
    adapted.activate(demo, ada)  # swapping back: ada's model exactly
    assert adapted.score_choices(RATING, choices) == ada_scores
    pid = adapted.answering.runtime.pid
    assert pid is not None and pid != onnx_llm.runtime.pid
    os.kill(pid, signal.SIGKILL)  # a new runtime process loads the adapters again
    with pytest.raises(LLMError, match="exited"):
        adapted.score_choices(RATING, choices)
    assert adapted.score_choices(RATING, choices) == ada_scores
    assert onnx_llm.score_choices(RATING, choices) == plain  # plain answers untouched meanwhile
    assert adapted.unload(ada) and adapted.active is None and not adapted.unload(ada)
    assert adapted.generate(BRIEF, GREEDY).text == onnx_llm.generate(BRIEF, GREEDY).text


def test_the_service_answers_on_onnx_and_says_so(sqlite_url: str, onnx_llm: OnnxLLM) -> None:
    service = make_service(sqlite_url, llm=LLMConfig(backend="onnx"))
    headers = service.headers("acme")
    records = [
        {"type": "document", "user_id": "alice", "text": text}
        for text in ("I only cook vegetarian food.", "Tofu curry is my favourite.")
    ]
    ingested = service.client.post("/v1/ingest", json={"records": records}, headers=headers)
    assert ingested.status_code == 201, ingested.text
    body = {"user": "alice", "input": "What should I cook?", "k": 2, "max_tokens": 12}
    answer = service.client.post("/v1/generate", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    trace = answer.json()["trace"]
    assert trace["backend"] == "onnx" and trace["model"] == onnx_llm.model
    assert trace["retrieved"]["items"]
    with service.client.stream(
        "POST", "/v1/generate", json={**body, "stream": True}, headers=headers
    ) as streamed:
        events = [line[6:] for line in streamed.iter_lines() if line.startswith("data: ")]
    pieces = [json.loads(e)["delta"] for e in events[:-2]]
    assert "".join(pieces).strip() == answer.json()["text"]
