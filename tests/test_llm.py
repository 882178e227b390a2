"""LLM backends: the real embedded model offline, configuration, and the openai backend against a
real loopback server (p13n's own OpenAI-compatible app serving the embedded model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from pydantic import ValidationError

from p13n.errors import ConfigError, LLMError, LLMTimeoutError, LLMUnavailableError
from p13n.llm import ChatMessage, Completion, GenerationOptions, LLMConfig, backends, get_llm
from p13n.llm.embedded import EMBEDDED_MODEL, EmbeddedLLM
from p13n.llm.openai import OpenAILLM
from p13n.server.llm_api import create_llm_app
from tests.llm_server import free_port, serve

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# Any attempt to reach the network goes through a proxy where nothing listens, and fails.
DEAD_PROXY = "http://127.0.0.1:9"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")

QUESTION: list[ChatMessage] = [{"role": "user", "content": "What is the capital of France?"}]
STORY: list[ChatMessage] = [
    {"role": "user", "content": "Write a long story about a dragon who learns to read."}
]
CONVERSATION: list[ChatMessage] = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "Name a fruit."},
    {"role": "assistant", "content": "An apple."},
    {"role": "user", "content": "Name two more, and say which colour each one is."},
]
GREEDY = GenerationOptions(max_new_tokens=32)


def wire(messages: Sequence[ChatMessage]) -> list[ChatCompletionMessageParam]:
    """Messages as the official client's request type (the same dicts)."""
    return cast("list[ChatCompletionMessageParam]", list(messages))


def no_network_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    return {**env, **OFFLINE, **dict.fromkeys(PROXY_VARS, DEAD_PROXY)}


@pytest.fixture(scope="module")
def embedded() -> Iterator[EmbeddedLLM]:
    """One embedded model for the module, loaded with the Hugging Face hub switched off."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in OFFLINE.items():
            patch.setenv(name, value)
        yield EmbeddedLLM()


Generate = Callable[[Sequence[ChatMessage], GenerationOptions], Completion]


@pytest.fixture(scope="module")
def reference(embedded: EmbeddedLLM) -> Generate:
    """``embedded.generate``, remembered: greedy answers are the reference many tests compare
    with (determinism itself is tested on the uncached model)."""
    answers: dict[str, Completion] = {}

    def generate(messages: Sequence[ChatMessage], options: GenerationOptions) -> Completion:
        key = json.dumps([list(messages), options.model_dump()])
        if key not in answers:
            answers[key] = embedded.generate(messages, options)
        return answers[key]

    return generate


@pytest.fixture(scope="module")
def server_url(embedded: EmbeddedLLM) -> Iterator[str]:
    with serve(create_llm_app(embedded)) as url:
        yield url


@pytest.fixture(scope="module")
def remote(embedded: EmbeddedLLM, server_url: str) -> OpenAILLM:
    return OpenAILLM(
        model=embedded.model, base_url=server_url, tokenizer=embedded.tokenizer, max_retries=0
    )


@pytest.fixture(scope="module")
def client(server_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server_url, api_key="test", max_retries=0, timeout=60)


# --- the embedded backend -------------------------------------------------------------------


@pytest.mark.slow
def test_embedded_runs_in_a_fresh_process_without_network() -> None:
    """The first run of a new install: dequantize (if not cached yet), load and answer, with the
    hub switched off and every proxied connection failing."""
    code = (
        "import json\n"
        "from p13n.llm import GenerationOptions, get_llm\n"
        "llm = get_llm()\n"
        "c = llm.generate([{'role': 'user', 'content': 'Say hello.'}],"
        " GenerationOptions(max_new_tokens=16))\n"
        "print(json.dumps({'backend': llm.backend, 'model': c.model, 'text': c.text,"
        " 'tokens': c.completion_tokens}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=no_network_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "embedded" and result["model"] == EMBEDDED_MODEL
    assert result["text"].strip() and 0 < result["tokens"] <= 16


@pytest.mark.slow
def test_embedded_generates_real_text_deterministically(embedded: EmbeddedLLM) -> None:
    assert embedded.backend == "embedded" and embedded.model == EMBEDDED_MODEL
    first = embedded.generate(QUESTION, GREEDY)
    assert "Paris" in first.text
    assert first.finish_reason == "stop" and 0 < first.completion_tokens < GREEDY.max_new_tokens
    assert first.model == EMBEDDED_MODEL
    assert embedded.generate(QUESTION, GREEDY) == first
    story = embedded.generate(STORY, GREEDY)
    assert story.text and story.text != first.text
    assert embedded.generate(STORY, GREEDY) == story


@pytest.mark.slow
def test_max_new_tokens_is_respected(embedded: EmbeddedLLM) -> None:
    for limit in (1, 12):
        completion = embedded.generate(STORY, GenerationOptions(max_new_tokens=limit))
        assert completion.completion_tokens == limit
        assert completion.finish_reason == "length"
        assert completion.text
    longer = embedded.generate(STORY, GenerationOptions(max_new_tokens=24))
    assert longer.text.startswith(completion.text)  # greedy: the shorter one is a prefix


@pytest.mark.slow
def test_stop_string_cuts_the_text(reference: Generate) -> None:
    full = reference(STORY, GREEDY).text
    words = full.split()
    assert len(words) > 8, full
    stop = words[6]
    expected = full[: full.index(stop)].strip()
    stopped = reference(STORY, GenerationOptions(max_new_tokens=32, stop=(stop,)))
    assert stopped.text == expected
    assert stop not in stopped.text
    assert stopped.finish_reason == "stop"
    assert stopped.completion_tokens < GREEDY.max_new_tokens
    # a stop string that never appears changes nothing
    unseen = reference(STORY, GenerationOptions(max_new_tokens=32, stop=("@@@",)))
    assert unseen.text == full and unseen.finish_reason == "length"


@pytest.mark.slow
@pytest.mark.parametrize("messages", [QUESTION, STORY, CONVERSATION])
def test_stream_matches_generate(
    reference: Generate, embedded: EmbeddedLLM, messages: list[ChatMessage]
) -> None:
    completion = reference(messages, GREEDY)
    pieces = list(embedded.stream(messages, GREEDY))
    assert len(pieces) > 1 and all(pieces)
    assert "".join(pieces).strip() == completion.text


@pytest.mark.slow
def test_stream_honours_a_stop_string_inside_one_piece(
    reference: Generate, embedded: EmbeddedLLM
) -> None:
    pieces = list(embedded.stream(STORY, GREEDY))
    full = "".join(pieces)
    # a word that first occurs inside one streamed piece
    k = next(
        k
        for k in range(3, len(pieces))
        if pieces[k].strip() and full.find(pieces[k].strip()) == len("".join(pieces[:k]))
    )
    options = GenerationOptions(max_new_tokens=32, stop=(pieces[k].strip(),))
    streamed = "".join(embedded.stream(STORY, options))
    assert streamed.strip() == "".join(pieces[:k]).strip()
    assert streamed.strip() == reference(STORY, options).text


@pytest.mark.slow
def test_stream_honours_a_stop_string_across_pieces(
    reference: Generate, embedded: EmbeddedLLM
) -> None:
    pieces = list(embedded.stream(STORY, GREEDY))
    stop = pieces[3] + pieces[4].strip()  # starts at piece 3 and ends inside piece 4
    before = "".join(pieces[:3])
    if "".join(pieces).find(stop) != len(before):
        pytest.fail(f"precondition: {stop!r} occurs before piece 3 in {pieces!r}")
    options = GenerationOptions(max_new_tokens=32, stop=(stop,))
    generated = reference(STORY, options)
    if generated.text != before.strip():
        pytest.fail(f"precondition: generate() gave {generated.text!r}")
    assert "".join(embedded.stream(STORY, options)).strip() == generated.text


@pytest.mark.slow
def test_count_chat_is_the_prompt_the_model_reads(
    reference: Generate, embedded: EmbeddedLLM
) -> None:
    for messages in (QUESTION, STORY, CONVERSATION):
        completion = reference(messages, GenerationOptions(max_new_tokens=2))
        assert embedded.tokenizer.count_chat(messages) == completion.prompt_tokens
    # the chat template counts: more than the bare contents
    contents = sum(embedded.tokenizer.count(m["content"]) for m in CONVERSATION)
    assert embedded.tokenizer.count_chat(CONVERSATION) > contents


@pytest.mark.slow
def test_truncate_gives_the_prefix_that_fits(embedded: EmbeddedLLM) -> None:
    tokenizer = embedded.tokenizer
    text = "Personalization starts with the user's own words, read in full,\n\nthen trimmed."
    total = tokenizer.count(text)
    assert total > 10
    assert tokenizer.truncate(text, 0) == ""
    previous = ""
    for limit in range(1, total):
        prefix = tokenizer.truncate(text, limit)
        assert text.startswith(prefix) and prefix != text
        assert tokenizer.count(prefix) <= limit
        assert prefix.startswith(previous)  # a larger budget never keeps less
        previous = prefix
    assert len(tokenizer.truncate(text, total - 1)) > len(text) // 2
    for limit in (total, total + 1, 10_000):
        assert tokenizer.truncate(text, limit) == text


@pytest.mark.slow
def test_truncate_never_exceeds_the_budget_on_non_ascii_text(embedded: EmbeddedLLM) -> None:
    tokenizer = embedded.tokenizer
    text = "naïve café — 東京 🐉 dragons"
    over = {}
    for limit in range(tokenizer.count(text) + 1):
        prefix = tokenizer.truncate(text, limit)
        assert text.startswith(prefix)
        if tokenizer.count(prefix) > limit:
            over[limit] = (prefix, tokenizer.count(prefix))
    assert over == {}


# --- configuration --------------------------------------------------------------------------


@pytest.mark.slow
def test_default_config_gives_the_embedded_backend(
    reference: Generate, embedded: EmbeddedLLM
) -> None:
    llm = get_llm(LLMConfig())
    assert isinstance(llm, EmbeddedLLM)
    assert llm.backend == "embedded" and llm.model == EMBEDDED_MODEL
    assert llm.torch_model is embedded.torch_model  # loaded once per process
    assert llm.generate(QUESTION, GREEDY) == reference(QUESTION, GREEDY)
    assert get_llm().backend == "embedded"


def test_config_is_validated() -> None:
    with pytest.raises(ValidationError, match="extra"):
        LLMConfig(backend="embedded", temprature=0.5)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="hf backend needs path"):
        LLMConfig(backend="hf")
    with pytest.raises(ValidationError, match="openai backend needs model"):
        LLMConfig(backend="openai")
    with pytest.raises(ValidationError, match="timeout"):
        LLMConfig(timeout=0)
    assert LLMConfig(backend="hf", path="/models/x").path == "/models/x"
    assert LLMConfig(backend="openai", model="m").model == "m"


def test_unknown_backend_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown llm backend 'nope'") as raised:
        get_llm(LLMConfig(backend="nope"))
    assert set(backends.names()) >= {"embedded", "hf", "openai"}
    for name in backends.names():
        assert name in str(raised.value)


def test_hf_backend_refuses_a_directory_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a transformers model directory"):
        get_llm(LLMConfig(backend="hf", path=str(tmp_path)))


# --- the openai backend against a live loopback server --------------------------------------


def test_server_down_is_unavailable_quickly() -> None:
    with free_port() as sock:  # bound, never listening: connections are refused
        host, port = sock.getsockname()[:2]
        base_url = f"http://{host}:{port}/v1"
        llm = OpenAILLM("any-model", base_url=base_url, max_retries=1, timeout=2.0)
        started = time.monotonic()
        with pytest.raises(LLMUnavailableError) as raised:
            llm.generate(QUESTION, GREEDY)
        assert time.monotonic() - started < 5
        assert base_url in str(raised.value)
        assert isinstance(raised.value, ConnectionError)
        with pytest.raises(LLMUnavailableError, match=base_url):
            list(llm.stream(QUESTION, GREEDY))


@pytest.mark.slow
@pytest.mark.parametrize("messages", [QUESTION, STORY, CONVERSATION])
def test_openai_backend_matches_the_embedded_model(
    reference: Generate, remote: OpenAILLM, messages: list[ChatMessage]
) -> None:
    local = reference(messages, GREEDY)
    served = remote.generate(messages, GREEDY)
    assert served == local
    assert served.prompt_tokens == remote.tokenizer.count_chat(messages)
    pieces = list(remote.stream(messages, GREEDY))
    assert len(pieces) > 1
    assert "".join(pieces).strip() == local.text


@pytest.mark.slow
def test_openai_backend_passes_limits_and_stops(reference: Generate, remote: OpenAILLM) -> None:
    short = GenerationOptions(max_new_tokens=5)
    cut = remote.generate(STORY, short)
    assert cut == reference(STORY, short)
    assert cut.finish_reason == "length" and cut.completion_tokens == 5
    full = reference(STORY, GREEDY).text
    stop = full.split()[6]
    options = GenerationOptions(max_new_tokens=32, stop=(stop, "@@@"))
    served = remote.generate(STORY, options)
    assert served == reference(STORY, options)
    assert served.finish_reason == "stop" and stop not in served.text


@pytest.mark.slow
def test_openai_backend_from_config(
    reference: Generate, embedded: EmbeddedLLM, server_url: str
) -> None:
    config = LLMConfig(
        backend="openai",
        model=embedded.model,
        base_url=server_url,
        tokenizer="embedded",
        max_retries=0,
    )
    llm = get_llm(config)
    assert isinstance(llm, OpenAILLM) and llm.backend == "openai"
    assert llm.tokenizer.count_chat(QUESTION) == embedded.tokenizer.count_chat(QUESTION)
    assert llm.generate(QUESTION, GREEDY) == reference(QUESTION, GREEDY)


@pytest.mark.slow
def test_official_client_against_the_server(
    reference: Generate, embedded: EmbeddedLLM, client: openai.OpenAI
) -> None:
    assert [m.id for m in client.models.list()] == [embedded.model]
    local = reference(CONVERSATION, GREEDY)
    response = client.chat.completions.create(
        model=embedded.model,
        messages=wire(CONVERSATION),
        max_tokens=GREEDY.max_new_tokens,
        temperature=0,
    )
    assert response.object == "chat.completion" and response.model == embedded.model
    assert response.choices[0].message.role == "assistant"
    assert response.choices[0].message.content == local.text
    assert response.choices[0].finish_reason == local.finish_reason
    assert response.usage is not None
    assert response.usage.prompt_tokens == local.prompt_tokens
    assert response.usage.completion_tokens == local.completion_tokens
    assert response.usage.total_tokens == local.prompt_tokens + local.completion_tokens

    chunks = list(
        client.chat.completions.create(
            model=embedded.model,
            messages=wire(CONVERSATION),
            max_tokens=GREEDY.max_new_tokens,
            temperature=0,
            stream=True,
        )
    )
    assert {c.id for c in chunks} == {chunks[0].id}
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    contents = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert len(contents) > 1
    assert "".join(contents).strip() == local.text
    assert chunks[-1].choices[0].finish_reason is not None


@pytest.mark.slow
def test_streamed_finish_reason_says_length(embedded: EmbeddedLLM, client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=embedded.model,
            messages=wire(STORY),
            max_tokens=5,
            stream=True,
        )
    )
    assert chunks[-1].choices[0].finish_reason == "length"


@pytest.mark.slow
def test_unknown_model_is_404(client: openai.OpenAI, server_url: str) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(
            model="gpt-nonexistent",
            messages=wire(QUESTION),
        )
    assert raised.value.status_code == 404
    assert "'gpt-nonexistent' is not served here" in raised.value.response.text
    wrong = OpenAILLM(model="gpt-nonexistent", base_url=server_url, max_retries=0)
    with pytest.raises(LLMError, match="answered 404") as translated:
        wrong.generate(QUESTION, GREEDY)
    assert not isinstance(translated.value, LLMUnavailableError | LLMTimeoutError)
    with pytest.raises(LLMError, match="answered 404"):
        list(wrong.stream(QUESTION, GREEDY))


@pytest.mark.slow
def test_server_errors_reach_the_caller_with_their_reason(server_url: str) -> None:
    wrong = OpenAILLM(model="gpt-nonexistent", base_url=server_url, max_retries=0)
    with pytest.raises(LLMError) as raised:
        wrong.generate(QUESTION, GREEDY)
    assert "not served here" in str(raised.value)


@pytest.mark.slow
def test_invalid_request_is_422(embedded: EmbeddedLLM, client: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model=embedded.model, messages=[])
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(
            model=embedded.model,
            messages=wire(QUESTION),
            max_tokens=0,
        )


@pytest.mark.slow
def test_a_request_beyond_the_context_is_refused_with_its_reason(
    embedded: EmbeddedLLM, client: openai.OpenAI
) -> None:
    with pytest.raises(openai.BadRequestError, match="context of 8192 tokens"):
        client.chat.completions.create(
            model=embedded.model, messages=wire(QUESTION), max_tokens=8192
        )


@pytest.mark.slow
def test_a_tokenizer_directory_without_weights_is_enough(
    embedded: EmbeddedLLM, tmp_path: Path
) -> None:
    from p13n.llm.embedded import embedded_model_dir
    from p13n.llm.hf import HFTokenizer

    folder = tmp_path / "tokenizer-only"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (folder / name).write_bytes((embedded_model_dir() / name).read_bytes())
    alone = HFTokenizer.from_directory(folder)
    assert alone.count_chat(QUESTION) == embedded.tokenizer.count_chat(QUESTION)
    with pytest.raises(ConfigError, match="holds no transformers tokenizer"):
        HFTokenizer.from_directory(tmp_path / "missing")


def test_the_byte_estimate_is_conservative_for_english_and_cjk() -> None:
    from p13n.llm import CharTokenizer

    estimate = CharTokenizer()
    assert estimate.count("a" * 30) == 10 and estimate.count("東京" * 5) == 10
    assert estimate.truncate("東京タワー", 2) == "東京"  # never half a character


@pytest.mark.slow
def test_slow_answer_times_out(embedded: EmbeddedLLM, server_url: str) -> None:
    """Last on purpose: the server finishes the abandoned request (seconds of decoding, against a
    50 ms timeout) in the background, holding the model meanwhile."""
    impatient = OpenAILLM(
        model=embedded.model,
        base_url=server_url,
        tokenizer=embedded.tokenizer,
        timeout=0.05,
        max_retries=0,
    )
    started = time.monotonic()
    with pytest.raises(LLMTimeoutError, match=r"did not answer within 0\.05 s") as raised:
        impatient.generate(STORY, GenerationOptions(max_new_tokens=100))
    assert time.monotonic() - started < 2
    assert server_url in str(raised.value)
    assert isinstance(raised.value, TimeoutError)


@pytest.mark.slow
def test_choice_scores_are_the_log_probabilities_of_each_whole_answer(
    embedded: EmbeddedLLM,
) -> None:
    import torch

    from p13n.llm import ChoiceScorer

    assert isinstance(embedded, ChoiceScorer)
    messages: list[ChatMessage] = [
        {"role": "user", "content": "Which sport uses a racket? Answer with one word."}
    ]
    choices = ["tennis", "swimming with dolphins", "5"]
    scores = embedded.score_choices(messages, choices)
    # Independently: score each answer alone, unpadded, token by token.
    tokenizer = embedded._loaded.tokenizer
    prompt = tokenizer(embedded.tokenizer.render(messages), add_special_tokens=False)["input_ids"]
    for choice, score in zip(choices, scores, strict=True):
        answer = tokenizer(choice, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = embedded.torch_model(input_ids=torch.tensor([prompt + answer])).logits[0]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        expected = sum(float(logprobs[len(prompt) - 1 + t, tok]) for t, tok in enumerate(answer))
        assert score == pytest.approx(expected, abs=1e-3)
    assert scores[0] > scores[1]  # a one-word answer that fits beats a long one that does not
    (single,) = embedded.score_choices(messages, ["5"])  # one-token choices: one prompt pass
    assert single == pytest.approx(scores[2], abs=1e-3)
    with pytest.raises(LLMError, match="at least one choice"):
        embedded.score_choices(messages, [])


# --- bringing one's own LLM in one command line ---------------------------------------------
def test_llm_flags_name_the_whole_llm() -> None:
    from p13n.cli.common import llm_config
    from p13n.config import Settings

    served = llm_config(
        Settings(), "openai", model="llama3", base_url="http://h:1/v1", api_key_env="MY_KEY"
    )
    assert (served.model, served.base_url, served.api_key_env) == (
        "llama3",
        "http://h:1/v1",
        "MY_KEY",
    )
    assert llm_config(Settings(), "hf", model="/models/mine").path == "/models/mine"
    assert llm_config(Settings(), "onnx", model="/models/mine").path == "/models/mine"
    assert llm_config(Settings(), None).api_key_env == "OPENAI_API_KEY"
    with pytest.raises(ConfigError, match="--model names the model of backend hf, onnx or openai"):
        llm_config(Settings(), "embedded", model="llama3")


def test_every_command_that_answers_takes_the_llm_flags(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from p13n.cli import app

    def options(*path: str) -> set[str]:
        command: Any = typer.main.get_command(app)
        for name in path:
            command = command.commands[name]
        return {param.name for param in command.params if param.name}

    flags = {"backend", "model", "base_url", "api_key_env"}
    answering = [("generate",), ("chat",), ("demo",), ("serve",), ("serve-llm",),
                 ("bench", "run"), ("bench", "coldstart")]  # fmt: skip
    for path in answering:
        assert flags <= options(*path), path
    # Training picks the local model it trains; a backend with no local weights is refused first.
    assert {"backend", "model"} <= options("adapt", "train")
    store = f"sqlite:///{tmp_path / 'p13n.db'}"
    remote = ["--backend", "openai", "--model", "llama3"]
    result = CliRunner().invoke(app, ["--store", store, "adapt", "train", *remote])
    assert result.exit_code != 0
    assert "learning the user needs a local model" in result.output


@pytest.mark.slow
def test_generate_answers_from_any_openai_compatible_server_in_one_command(
    server_url: str, demo_url: str
) -> None:
    from typer.testing import CliRunner

    from p13n.cli import app

    command = [
        "--store", demo_url, "generate", "Suggest a film.", "--user", "ada", "--json",
        "--backend", "openai", "--model", EMBEDDED_MODEL, "--base-url", server_url,
        "--api-key-env", "P13N_TEST_SERVER_KEY", "--max-new-tokens", "8",
    ]  # fmt: skip
    result = CliRunner().invoke(app, command, env={"P13N_TEST_SERVER_KEY": "secret"})
    assert result.exit_code == 0, result.output
    trace = json.loads(result.output)["trace"]
    assert trace["backend"] == "openai" and trace["model"] == EMBEDDED_MODEL
