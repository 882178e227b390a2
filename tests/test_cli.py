"""The CLI end to end (Typer's runner, real store, real encoder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from p13n.cli import app
from p13n.config import load_settings
from p13n.errors import ConfigError
from p13n.store import open_store
from tests.helpers import write_jsonl

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_ingest_users_show_forget(sqlite_url: str, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "mine.jsonl",
        [
            {"type": "user", "id": "ada", "attributes": {"city": "Zurich"}},
            {"type": "item", "id": "m1", "title": "The Deep Stack"},
            {
                "type": "document",
                "user_id": "ada",
                "kind": "note",
                "title": "Cache",
                "text": "Version the keys.",
                "timestamp": "2025-01-02",
            },
            {
                "type": "interaction",
                "user_id": "ada",
                "item_id": "m1",
                "kind": "rate",
                "value": 5,
                "timestamp": "2025-01-03",
            },
        ],
    )
    code, out = invoke("--store", sqlite_url, "ingest", "jsonl", str(path))
    assert code == 0, out
    assert "2 texts embedded" in out
    code, out = invoke("--store", sqlite_url, "users")
    assert code == 0 and "ada" in out and "1 users in tenant 'default'" in out
    code, out = invoke("--store", sqlite_url, "show", "ada")
    assert code == 0
    assert "Version the keys." in out and "The Deep Stack" in out and "Zurich" in out
    code, out = invoke("--store", sqlite_url, "forget", "ada", "--yes")
    assert code == 0 and "forgot 'ada'" in out
    assert open_store(sqlite_url).get_user("ada") is None
    code, out = invoke("--store", sqlite_url, "show", "ada")
    assert code == 1 and "no user 'ada'" in out


def test_bad_input_exits_non_zero_with_the_record_named(sqlite_url: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"type": "document", "user_id": "u", "text": ""}) + "\n")
    code, out = invoke("--store", sqlite_url, "ingest", "jsonl", str(path), "--no-embed")
    assert code == 1
    assert "bad.jsonl:1: field 'text': text is empty" in out.replace("\n", "")
    assert open_store(sqlite_url).count_users() == 0


def test_ingest_movielens_without_embeddings(sqlite_url: str, shared_data: Path) -> None:
    code, out = invoke(
        "--store",
        sqlite_url,
        "ingest",
        "movielens",
        str(shared_data / "movielens-100k"),
        "--no-embed",
    )
    assert code == 0, out
    store = open_store(sqlite_url)
    assert store.count_users() == 943
    assert store.user_counts("1").interactions == 272  # user 1 rated 272 films in u.data


def test_forget_asks_first(sqlite_url: str, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "u.jsonl", [{"type": "user", "id": "u"}])
    invoke("--store", sqlite_url, "ingest", "jsonl", str(path))
    result = runner.invoke(app, ["--store", sqlite_url, "forget", "u"], input="n\n")
    assert result.exit_code == 1 and open_store(sqlite_url).get_user("u") is not None


@pytest.mark.slow
def test_demo_ingests_the_bundled_users_and_compares_answers(sqlite_url: str) -> None:
    code, out = invoke("--store", sqlite_url, "demo", "--max-new-tokens", "12")
    assert code == 0, out
    assert out.count("non-personalized") == 3 and out.count("retrieved by hybrid") == 3
    assert all(f"user {u}" in out for u in ("ada", "bruno", "chloe"))
    store = open_store(sqlite_url)
    assert [s.user.id for s in store.list_users()] == [
        "ada",
        "bruno",
        "chloe",
        "dmitri",
        "emi",
        "fern",
    ]
    assert all(
        store.user_counts(u).embeddings == 6 for u in ("ada", "bruno", "chloe", "dmitri", "emi")
    )
    assert store.user_counts("fern").documents == 0  # the cold-start user
    personas = {p.id: p.metadata.get("source", "declared") for p in store.personas()}
    declared = {"concise-pragmatic", "expressive-casual", "formal-literary"}
    assert {p for p, source in personas.items() if source == "declared"} == declared
    assert personas["global"] == "global" and "discovered-1" in personas  # the demo discovers
    assert "served at global level: unknown user: global profile v1" in " ".join(out.split())
    assert store.get_user("newcomer") is None  # serving an unknown user stores nothing
    code, out = invoke("--store", sqlite_url, "demo", "--no-generate")
    assert code == 0 and "0 texts embedded" in out  # idempotent
    assert "non-personalized" not in out


def test_settings_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "p13n.toml"
    config.write_text('[p13n]\nstore = "sqlite:///from-file.db"\ntenant = "file"\n')
    monkeypatch.delenv("P13N_STORE", raising=False)
    monkeypatch.setenv("P13N_TENANT", "env")
    settings = load_settings(config)
    assert (settings.store, settings.tenant) == ("sqlite:///from-file.db", "env")
    assert load_settings(config, tenant="flag").tenant == "flag"
    monkeypatch.setenv("P13N_CONFIG", str(config))
    assert load_settings().store == "sqlite:///from-file.db"


def test_bad_settings_are_refused_with_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("P13N_MAX_DOCUMENT_CHARS", "lots")
    with pytest.raises(ConfigError, match="'max_document_chars' = 'lots'"):
        load_settings()
    monkeypatch.delenv("P13N_MAX_DOCUMENT_CHARS")
    config = tmp_path / "c.toml"
    config.write_text('[p13n]\nstores = "typo"\n')
    with pytest.raises(ConfigError, match="stores"):
        load_settings(config)
    config.write_text("[p13n\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_cli_reports_config_errors(tmp_path: Path) -> None:
    code, out = invoke("--store", "mysql://x/y", "users")
    assert code == 1 and "sqlite:// or postgresql://" in out


def test_migrate_reports_the_revision(sqlite_url: str) -> None:
    from p13n.store import head_revision

    code, out = invoke("--store", sqlite_url, "migrate")
    assert code == 0 and f"schema revision {head_revision()}" in out
