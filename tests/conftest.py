"""Shared fixtures: real SQLite files, the real PostgreSQL server, the real bundled encoder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from uuid import uuid4

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from p13n.datasets import load_jsonl
from p13n.encode import Encoder, get_encoder
from p13n.ingest import ingest
from p13n.llm import LLM
from p13n.store import Store, open_store

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
POSTGRES_URL = os.environ.get("P13N_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; tests that need it skip only where it is absent, never on CI."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED_DATA} is missing on CI")
        pytest.skip(f"{SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'p13n.db'}"


@contextmanager
def fresh_postgres_schema() -> Iterator[str]:
    """A URL for a new schema on the real server, dropped on exit."""
    engine = create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    schema = f"p13n_test_{uuid4().hex[:12]}"
    try:
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as error:
        if os.environ.get("P13N_SKIP_POSTGRES") == "1":
            pytest.skip("P13N_SKIP_POSTGRES=1")
        pytest.fail(
            f"PostgreSQL at {POSTGRES_URL} is not reachable ({error.orig}); start it, point "
            "P13N_TEST_POSTGRES_URL elsewhere, or set P13N_SKIP_POSTGRES=1 to skip explicitly"
        )
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema on the real server for each test, dropped afterwards."""
    with fresh_postgres_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh cache, so every run exercises the real one-time ONNX export of the encoder."""
    folder = tmp_path_factory.mktemp("p13n-cache")
    previous = os.environ.get("P13N_CACHE_DIR")
    os.environ["P13N_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        del os.environ["P13N_CACHE_DIR"]
    else:
        os.environ["P13N_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    """The real default encoder: bundled all-MiniLM-L6-v2 on ONNX Runtime."""
    return get_encoder()


@pytest.fixture(scope="session")
def embedded_llm() -> LLM:
    """The real embedded SmolLM2 model, loaded once for the session (offline)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from p13n.llm import get_llm

    return get_llm()


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory, encoder: Encoder) -> str:
    """The bundled demo users in a SQLite store, with embeddings (once per module)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}"
    store = open_store(url)
    with resources.as_file(resources.files("p13n.demo") / "demo.jsonl") as path:
        ingest(store, load_jsonl(path), encoder=encoder)
    store.close()
    return url


@pytest.fixture
def demo(demo_url: str, tmp_path: Path) -> Iterator[Store]:
    """A private copy of the demo store, so tests that write do not affect each other."""
    source = Path(demo_url.removeprefix("sqlite:///"))
    copy = tmp_path / "demo.db"
    copy.write_bytes(source.read_bytes())
    store = open_store(f"sqlite:///{copy}")
    yield store
    store.close()
