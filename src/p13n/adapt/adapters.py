"""Adapters in the store: trained adapters live beside the data they were learned
from (one row per adapter: owner, task, method, base model id and hash, config, training data
size, metrics, creation time, and the safetensors bytes). A row is written in one transaction, so
an adapter is stored whole or not at all, and ``forget(user)`` removes the user's adapters with
the rest of their rows."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel

from p13n.adapt import methods
from p13n.adapt.base import BaseModelInfo, TrainedWeights
from p13n.errors import AdapterMismatchError, AdapterNotFoundError, ConfigError
from p13n.store import Store, StoredAdapter

OwnerKind = Literal["user", "persona", "tenant"]


def adapter_id(kind: OwnerKind, owner: str, task: str, method: str) -> str:
    """The store's key: one adapter per owner, task and method (retraining replaces it)."""
    return f"{kind}:{owner}:{task}:{method}"


def settings_digest(settings: BaseModel) -> str:
    return hashlib.sha256(
        json.dumps(settings.model_dump(mode="json"), sort_keys=True).encode()
    ).hexdigest()[:16]


def is_current(entry: StoredAdapter | None, data_version: str, settings: BaseModel) -> bool:
    """Whether a stored adapter was trained from this data version with these settings."""
    return (
        entry is not None
        and entry.config.get("data_version") == data_version
        and entry.config.get("settings") == settings_digest(settings)
    )


def register(
    store: Store,
    trained: TrainedWeights,
    *,
    kind: OwnerKind,
    owner: str,
    task: str,
    method: str,
    base: BaseModelInfo,
    data_version: str,
    settings: BaseModel,
) -> StoredAdapter:
    """Store a trained adapter (replacing the owner's previous one for this task and method),
    stamped with the owner's data version and the settings it was trained with. ``method`` is a
    name in ``p13n.adapt.methods``."""
    methods.check(method)
    config = {**trained.config, "data_version": data_version, "settings": settings_digest(settings)}
    entry = StoredAdapter(
        adapter_id=adapter_id(kind, owner, task, method),
        user_id=owner if kind == "user" else None,
        persona_id=owner if kind == "persona" else None,
        task=task,
        method=method,
        base_model=base.name,
        base_hash=base.sha256,
        config=config,
        data_size=trained.data_size,
        metrics=trained.metrics,
        size_bytes=len(trained.weights),
        weights_sha256=hashlib.sha256(trained.weights).hexdigest(),
        created_at=datetime.now(UTC),
    )
    store.put_adapter(entry, trained.weights)
    return entry


def find(store: Store, kind: OwnerKind, owner: str, task: str, method: str) -> StoredAdapter | None:
    return store.get_adapter(adapter_id(kind, owner, task, method))


def require(
    store: Store, kind: OwnerKind, owner: str, task: str, method: str, base: BaseModelInfo
) -> StoredAdapter:
    """The owner's adapter, checked against the base model in use; a clear error otherwise
    (never a silent fall back to the base model)."""
    entry = find(store, kind, owner, task, method)
    if entry is None:
        if kind == "user":
            hint = f"`p13n adapt train --users {owner} --method {method} --task {task}`"
        elif method == methods.FINETUNE:
            hint = "`p13n adapt train --method finetune --task-folder DIR` (or --persona ID)"
        else:
            hint = f"`p13n adapt train --method {method} --task {task}`"
        raise AdapterNotFoundError(
            f"{kind} {owner!r} has no {method} adapter for task {task!r} in tenant "
            f"{store.tenant!r}; train one with {hint}"
        )
    check_base(entry, base)
    return entry


def check_base(entry: StoredAdapter, base: BaseModelInfo) -> None:
    if entry.base_hash != base.sha256:
        raise AdapterMismatchError(
            f"adapter {entry.adapter_id!r} was trained on {entry.base_model} "
            f"(weights {entry.base_hash[:12]}), not on {base.name} ({base.sha256[:12]}) in use; "
            "retrain it for this model"
        )


def weights(store: Store, entry: StoredAdapter) -> bytes:
    """The adapter's safetensors bytes, checked against the sha256 stored with it."""
    blob = store.adapter_weights(entry.adapter_id)
    if blob is None:
        raise AdapterNotFoundError(f"adapter {entry.adapter_id!r} was deleted")
    if hashlib.sha256(blob).hexdigest() != entry.weights_sha256:
        raise ConfigError(f"adapter {entry.adapter_id!r}: stored weights fail their sha256")
    return blob
