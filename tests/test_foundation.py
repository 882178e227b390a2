"""Data model validation, stable ids, registries, the encoder, and import hygiene."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from p13n.data import Document, Interaction, Item, Persona, Preference, User, parse_timestamp
from p13n.encode import Encoder, encoders, get_encoder
from p13n.errors import RegistryError, UnknownNameError
from p13n.registry import Registry


def test_ids_are_stable_and_content_derived() -> None:
    a = Document(user_id="u", text="same", timestamp="2024-01-01T00:00:00Z")
    b = Document(user_id="u", text="same", timestamp=1704067200)
    assert a.id == b.id and a.content_hash == b.content_hash
    assert Document(user_id="v", text="same").id != Document(user_id="u", text="same").id
    # metadata is content, not identity: same id, different hash (an update)
    c = Document(user_id="u", text="same", timestamp=1704067200, metadata={"x": 1})
    assert c.id == a.id and c.content_hash != a.content_hash
    assert Document(id="mine", user_id="u", text="t").id == "mine"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T14:00:00+02:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        (1714564800, datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("1714564800", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        (None, None),
    ],
)
def test_timestamps(value: object, expected: datetime | None) -> None:
    assert parse_timestamp(value) == expected


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01", True, float("nan"), [2024]])
def test_bad_timestamps(value: object) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        parse_timestamp(value)


def test_record_rules() -> None:
    with pytest.raises(ValidationError, match="needs a value"):
        Interaction(user_id="u", item_id="i", kind="rate")
    with pytest.raises(ValidationError, match="not a finite number"):
        Interaction(user_id="u", item_id="i", kind="rate", value=float("inf"))
    with pytest.raises(ValidationError, match="needs a user_id, a persona_id or both"):
        Preference(prompt="p", chosen="a", rejected="b")
    with pytest.raises(ValidationError, match="kind"):
        Document(user_id="u", text="t", kind="Not A Kind!")
    with pytest.raises(ValidationError, match="id"):
        User(id="")
    with pytest.raises(ValidationError, match="title"):
        Item(id="i", title=" ")
    with pytest.raises(ValidationError, match="NUL character at position 1"):
        Document(user_id="u", text="a\x00b")
    assert Persona(id="p", description="d", members=["b", "a", "b"]).members == ["a", "b"]
    assert Document(user_id="u", text="t", kind="Review").kind == "review"


def test_registry_rules() -> None:
    registry: Registry[int] = Registry("thing")
    registry.register("one", 1)
    with pytest.raises(RegistryError, match="already registered"):
        registry.register("one", 2)
    with pytest.raises(RegistryError, match="malformed"):
        registry.register("Bad Name", 3)
    with pytest.raises(UnknownNameError, match="unknown thing 'two'; known: one") as caught:
        registry.get("two")
    assert isinstance(caught.value, KeyError)


def test_bundled_encoder(encoder: Encoder) -> None:
    assert isinstance(encoder, Encoder)
    assert encoders.names() == ["minilm", "minilm-bf16", "minilm-torch"]
    texts = [
        "The cat sat on the mat.",
        "A cat is sitting on a rug.",
        "Quarterly tax filing deadline.",
    ]
    vectors = encoder.encode(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > 0.5 > similarity[0, 2]
    np.testing.assert_allclose(get_encoder().encode(texts), vectors, atol=1e-6)  # deterministic
    assert encoder.encode([]).shape == (0, 384)


def test_onnx_and_torch_encoders_agree(encoder: Encoder, onnx_cache: Path) -> None:
    """The default (ONNX Runtime) encoder gives the sentence-transformers vectors, so both may
    share one encoder id; bf16 differs slightly and has its own id."""
    assert list((onnx_cache / "onnx").glob("*.onnx"))  # exported once into the cache
    texts = ["short", "A longer sentence about cooking pasta with lemon and butter. " * 30, "ok!"]
    torch_encoder = get_encoder("minilm-torch")
    assert encoder.id == torch_encoder.id
    np.testing.assert_allclose(encoder.encode(texts), torch_encoder.encode(texts), atol=1e-5)
    bf16 = get_encoder("minilm-bf16")
    assert bf16.id != encoder.id
    cosine = (bf16.encode(texts) * encoder.encode(texts)).sum(axis=1)
    assert cosine.min() > 0.99


def test_importing_p13n_does_not_import_torch() -> None:
    code = (
        "import sys, p13n, p13n.data, p13n.store, p13n.encode, p13n.datasets, p13n.ingest, "
        "p13n.cli; print('torch' in sys.modules, 'sentence_transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
