"""Settings, validated once at the edge: defaults < config file < ``P13N_*`` env vars < flags."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from p13n.data import DEFAULT_MAX_ATTRIBUTE_CHARS, DEFAULT_MAX_TEXT_CHARS
from p13n.errors import ConfigError

DEFAULT_STORE = "sqlite:///.p13n/p13n.db"
CONFIG_FILE = "p13n.toml"
"""Read from the working directory when neither ``--config`` nor ``P13N_CONFIG`` names a file."""


class Settings(BaseModel):
    """Everything the CLI (and later the service) is configured with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: str = Field(DEFAULT_STORE, description="sqlite:///path.db or postgresql://...")
    tenant: str = "default"
    encoder: str = Field("minilm", description="registered encoder name")
    embed: bool = Field(True, description="compute embeddings at ingest")
    max_document_chars: int = Field(DEFAULT_MAX_TEXT_CHARS, gt=0)
    max_attribute_chars: int = Field(
        DEFAULT_MAX_ATTRIBUTE_CHARS, gt=0, description="longest attributes or metadata, as JSON"
    )
    llm_backend: str = Field(
        "onnx", description="onnx (the embedded model, int4), embedded (torch), hf or openai"
    )
    llm_model: str | None = Field(None, description="openai: the served model's name")
    llm_path: str | None = Field(None, description="hf, onnx: a local transformers model directory")
    llm_precision: Literal["int4", "int8", "fp32"] = Field(
        "int4", description="onnx: the weights' precision"
    )
    llm_base_url: str = Field("http://127.0.0.1:8000/v1", description="openai: the server")
    # The granularity router (p13n.personalize.router.GranularityConfig), flat for P13N_* vars.
    level: str = Field("auto", description="auto (the router), user, persona or global")
    persona_min_items: int = Field(1, ge=0, description="auto: fewer items → global level")
    user_min_items: int = Field(1, ge=0, description="auto: at least this many → user level")
    blend: bool = Field(False, description="user level also carries the persona's description")
    collaborative_members: int = Field(
        0, ge=0, description="persona level: retrieve from this many similar members (opt-in)"
    )
    global_instruction: str | None = Field(
        None, description="global level: this text instead of the discovered global profile"
    )


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Merge the config file, ``P13N_<FIELD>`` environment variables and explicit overrides."""
    values: dict[str, Any] = {}
    path = config_file or (Path(os.environ["P13N_CONFIG"]) if "P13N_CONFIG" in os.environ else None)
    if path is None and Path(CONFIG_FILE).exists():
        path = Path(CONFIG_FILE)
    if path is not None:
        try:
            values.update(tomllib.loads(path.read_text(encoding="utf-8")).get("p13n", {}))
        except FileNotFoundError:
            raise ConfigError(f"config file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {error}") from None
    for name in Settings.model_fields:
        env = f"P13N_{name.upper()}"
        if env in os.environ:
            values[name] = os.environ[env]
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"setting {field!r} = {first.get('input')!r}: {first['msg']} "
            f"(from flags, P13N_{field.upper()} or the [p13n] table of {path or CONFIG_FILE})"
        ) from None
