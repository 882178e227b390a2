"""The Personalizer end to end on the demo users: real store, encoder and embedded model."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from p13n.cli import app
from p13n.data import Document
from p13n.datasets import Sourced
from p13n.encode import Encoder
from p13n.errors import UnknownUserError
from p13n.ingest import ingest
from p13n.llm import LLM, GenerationOptions
from p13n.personalize import Personalizer, PersonalizerConfig
from p13n.prompt import builders
from p13n.retrieve import RetrieverConfig
from p13n.store import Store

pytestmark = pytest.mark.slow

SHORT = GenerationOptions(max_new_tokens=8)
QUESTION = "Which film should I watch tonight?"


def personalizer(store: Store, llm: LLM, encoder: Encoder, **config: object) -> Personalizer:
    return Personalizer(
        store, PersonalizerConfig(generation=SHORT, **config), llm=llm, encoder=encoder
    )


def test_generate_returns_the_output_and_its_trace(
    demo: Store, embedded_llm: LLM, encoder: Encoder
) -> None:
    p = personalizer(demo, embedded_llm, encoder, retriever=RetrieverConfig(name="hybrid", k=3))
    result = p.generate("ada", QUESTION)
    trace = result.trace
    assert result.text and trace.personalized and trace.user_id == "ada"
    assert trace.query == QUESTION and trace.retriever == "hybrid(bm25,dense)"
    assert trace.retrieved is not None and len(trace.retrieved) == 3
    ada_ids = {d.id for d in demo.documents("ada")} | {i.id for i in demo.interactions("ada")}
    ada_ids |= {f"attribute:{k}" for k in (demo.get_user("ada") or Document).attributes}  # type: ignore[union-attr]
    assert {item.id for item in trace.retrieved.items} <= ada_ids
    assert all(item.owner == "ada" for item in trace.retrieved.items)
    user_message = trace.prompt.messages[1]["content"]
    for item in trace.retrieved.items[: len(trace.prompt.items)]:
        assert item.text[:20].replace('"', '\\"') in user_message
    assert trace.backend == "embedded" and trace.model == embedded_llm.model
    assert trace.prompt_tokens == trace.prompt.tokens <= trace.prompt.budget
    assert 0 < trace.completion_tokens <= 8
    t = trace.timings
    assert 0 < t.generate_ms < t.total_ms and t.overhead_ms >= 0
    assert result.to_dict()["trace"]["retrieved"]["items"][0]["id"] == trace.retrieved.items[0].id


def test_the_baseline_uses_the_same_model_and_template_without_user_data(
    demo: Store, embedded_llm: LLM, encoder: Encoder
) -> None:
    p = personalizer(demo, embedded_llm, encoder, task="lamp4")
    baseline, personalized = p.compare("bruno", "Local sourdough bakery wins a national prize")
    assert not baseline.trace.personalized and baseline.trace.retrieved is None
    assert baseline.trace.prompt.builder == "none" and not baseline.trace.prompt.items
    assert baseline.trace.model == personalized.trace.model
    assert (
        baseline.trace.prompt.messages
        == builders.get("none")
        .build(
            p.template,
            "Local sourdough bakery wins a national prize",
            embedded_llm.tokenizer,
            p.budget,
        )
        .messages
    )
    assert personalized.trace.prompt.items


def test_unknown_user_is_a_clear_error(demo: Store, embedded_llm: LLM, encoder: Encoder) -> None:
    p = personalizer(demo, embedded_llm, encoder)
    for personalize in (True, False):
        with pytest.raises(UnknownUserError, match="no user 'nobody' in tenant 'default'"):
            p.generate("nobody", QUESTION, personalize=personalize)


def test_a_write_is_retrieved_on_the_next_call(
    demo: Store, embedded_llm: LLM, encoder: Encoder
) -> None:
    p = personalizer(demo, embedded_llm, encoder, retriever=RetrieverConfig(name="bm25", k=1))
    before = p.generate("chloe", "zeppelin restoration")
    note = Document(
        user_id="chloe",
        kind="note",
        text="Spent the day on the zeppelin restoration project.",
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
    )
    ingest(demo, [Sourced(note, "test")], encoder=encoder)
    after = p.generate("chloe", "zeppelin restoration")
    assert after.trace.data_version != before.trace.data_version
    assert after.trace.retrieved is not None
    assert after.trace.retrieved.items[0].id == note.id


def test_profile_is_written_once_and_refreshed_when_the_data_changes(
    demo: Store, embedded_llm: LLM, encoder: Encoder
) -> None:
    p = personalizer(demo, embedded_llm, encoder, prompt="profile")
    first = p.generate("emi", QUESTION)
    assert first.trace.profile_refreshed is True and first.trace.prompt.profile
    assert p.generate("emi", QUESTION).trace.profile_refreshed is False
    ingest(
        demo,
        [Sourced(Document(user_id="emi", kind="post", text="New hobby: pottery!"), "t")],
        encoder=encoder,
    )
    assert p.generate("emi", QUESTION).trace.profile_refreshed is True


def test_persona_builder_uses_the_users_stored_persona(
    demo: Store, embedded_llm: LLM, encoder: Encoder
) -> None:
    p = personalizer(demo, embedded_llm, encoder, prompt="persona")
    result = p.generate("chloe", QUESTION)
    assert result.trace.prompt.persona is not None
    assert result.trace.prompt.persona.startswith("Writes long, measured, formal sentences")
    explicit = personalizer(
        demo, embedded_llm, encoder, prompt="persona", persona_description="A pirate."
    )
    assert explicit.generate("chloe", QUESTION).trace.prompt.persona == "A pirate."


def test_config_rejects_unknown_names() -> None:
    with pytest.raises(ValidationError, match="unknown prompt builder 'fancy'"):
        PersonalizerConfig(prompt="fancy")
    with pytest.raises(ValidationError, match="unknown task template 'lamp9'"):
        PersonalizerConfig(task="lamp9")
    with pytest.raises(ValidationError, match="unknown retriever 'magic'"):
        PersonalizerConfig(retriever=RetrieverConfig(name="magic"))
    with pytest.raises(ValidationError):
        PersonalizerConfig(temperature=0.3)  # type: ignore[call-arg]


def test_the_encoder_is_loaded_exactly_when_some_retriever_needs_it() -> None:
    def needs(**retriever: object) -> bool:
        return PersonalizerConfig(retriever=RetrieverConfig(**retriever)).needs_encoder()

    assert needs(name="recency", inner="hybrid")  # the default components include dense
    assert needs(name="dense") and needs(name="bm25", collaborative_neighbours=2)
    assert not needs(name="bm25", inner="dense")  # inner only matters to recency
    assert not needs(name="hybrid", components=("bm25", "tfidf"))


def test_importing_the_personalizer_loads_no_model_library() -> None:
    heavy = ("torch", "transformers", "peft", "trl", "bm25s", "scipy")
    code = (
        "import sys, p13n.personalize, p13n.adapt, p13n.retrieve\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


runner = CliRunner()


def test_cli_generate_compare_and_json(demo: Store, demo_url: str) -> None:
    url = str(demo.engine.url)  # type: ignore[attr-defined]
    question = "Why did the edge cache go stale?"
    args = ["--store", url, "generate", "--user", "ada", question, "--max-new-tokens", "8"]
    result = runner.invoke(app, [*args, "--compare"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "non-personalized" in result.output and "retrieved by bm25" in result.output
    unrelated = ["--store", url, "generate", "--user", "ada", "xylophonequasar", "--max-new-tokens"]
    result = runner.invoke(app, [*unrelated, "4"], catch_exceptions=False)
    assert "not personalized: none of the 4 best items had a term shared" in " ".join(
        result.output.split()
    )
    result = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert '"personalized": true' in result.output
    ghost = ["--store", url, "generate", "--user", "ghost", "hi", "--max-new-tokens", "4"]
    result = runner.invoke(app, [*ghost, "--level", "user"])
    assert result.exit_code == 1 and "no user 'ghost'" in result.output
    # The default level is auto: the router serves an unknown user (non-personalized here,
    # as the demo store has no global profile).
    result = runner.invoke(app, ghost, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "served at none level: unknown user; no global profile" in result.output


def test_cli_chat_stores_each_turn_as_the_users_data(demo: Store) -> None:
    url = str(demo.engine.url)  # type: ignore[attr-defined]
    result = runner.invoke(
        app,
        ["--store", url, "chat", "--user", "dmitri", "--max-new-tokens", "8"],
        input="I restore old bicycles on weekends.\n\n",
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    chats = demo.documents("dmitri", kinds=["chat"])
    assert [d.text for d in chats] == ["I restore old bicycles on weekends."]
    assert chats[0].metadata["reply"]


def test_stream_yields_the_same_answer_as_generate(
    demo: Store, embedded_llm: LLM, encoder: Encoder
) -> None:
    p = personalizer(demo, embedded_llm, encoder)
    pieces = list(p.stream("ada", QUESTION))
    assert len(pieces) > 1
    assert "".join(pieces).strip() == p.generate("ada", QUESTION).text


def test_llm_query_expansion_keeps_the_input_and_adds_terms(
    demo: Store, embedded_llm: LLM, encoder: Encoder
) -> None:
    p = personalizer(demo, embedded_llm, encoder, query="llm-expansion")
    result = p.generate("ada", QUESTION)
    assert result.trace.query_generator == "llm-expansion"
    assert result.trace.query is not None and result.trace.query.startswith(QUESTION)
    assert len(result.trace.query) > len(QUESTION)


def test_serve_llm_answers_the_openai_client(tmp_path: Path) -> None:
    """`p13n serve-llm` in its own process, spoken to by the official client."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import openai

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "p13n"), "serve-llm", "--port", str(port)],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        deadline = time.monotonic() + 120
        while True:
            try:
                models = [m.id for m in client.models.list()]
                break
            except openai.APIConnectionError:
                assert server.poll() is None, server.communicate()[0]
                assert time.monotonic() < deadline, "serve-llm did not start in 120 s"
                time.sleep(0.5)
        assert models == ["SmolLM2-135M-Instruct-onnx-int4"]  # the default: onnx int4
        answer = client.chat.completions.create(
            model=models[0],
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=8,
        )
        assert answer.choices[0].message.content
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_max_item_tokens_shortens_the_excerpts(
    demo: Store, embedded_llm: LLM, encoder: Encoder
) -> None:
    short = personalizer(demo, embedded_llm, encoder, max_item_tokens=8)
    prompt = short.generate("chloe", QUESTION).trace.prompt
    assert prompt.items and any(item.truncated for item in prompt.items)
    full = personalizer(demo, embedded_llm, encoder).generate("chloe", QUESTION).trace.prompt
    assert prompt.tokens < full.tokens


def test_a_user_whose_data_has_nothing_relevant_gets_the_plain_prompt_and_is_told(
    demo: Store, embedded_llm: LLM, encoder: Encoder
) -> None:
    unrelated = "xylophonequasar zygomorphic"
    p = personalizer(demo, embedded_llm, encoder, retriever=RetrieverConfig(name="bm25", k=3))
    plain = p.prepare("ada", unrelated, personalize=False)
    prepared = p.prepare("ada", unrelated)
    assert prepared.prompt.messages == plain.prompt.messages and not prepared.prompt.items
    assert prepared.trace.retrieved is not None and prepared.trace.retrieved.unmatched == 3
    assert prepared.trace.abstained == (
        "none of the 3 best items had a term shared with the input (bm25): the prompt carries "
        "no user data"
    )
    related = p.prepare("ada", "Why did the edge cache go stale?")
    assert related.prompt.items and related.trace.abstained is None
    quoting = RetrieverConfig(name="bm25", k=3, require_match=False)  # LaMP's protocol
    every = personalizer(demo, embedded_llm, encoder, retriever=quoting).prepare("ada", unrelated)
    assert len(every.prompt.items) == 3 and every.trace.abstained is None


def test_cli_reports_an_incomplete_llm_configuration(demo: Store) -> None:
    url = str(demo.engine.url)  # type: ignore[attr-defined]
    for command in (["generate", "--user", "ada", "hi"], ["serve-llm"]):
        result = runner.invoke(app, ["--store", url, *command, "--backend", "openai"])
        assert result.exit_code == 1, result.output
        assert "the openai backend needs model" in result.output
