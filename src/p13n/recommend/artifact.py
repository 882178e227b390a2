"""Saved recommenders as transparent artifacts: a folder of plain arrays and one JSON document.

Each array is an ``.npy`` file, read back with ``allow_pickle=False``; ``config.json`` holds the
format version, the sha256 of every array file, and everything else in plain JSON (ids, the
catalog, settings, notes). Nothing is pickled, so a saved model can be inspected with numpy and a
text editor, and a renamed class cannot break it.

A reader refuses another format version and a missing or altered file with a clear error
(``SavedRecommenderError``), and warns about keys it does not know rather than dropping them in
silence. A writer fills a ``.partial`` folder and renames it into place, so a reader never sees
half a model.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from p13n.data import Item
from p13n.errors import SavedRecommenderError
from p13n.recommend.content import ContentRecommender
from p13n.recommend.data import RecData
from p13n.recommend.hybrid import LearnedHybrid
from p13n.recommend.models import (
    ALS,
    BPR,
    Array,
    ItemKNN,
    ModelState,
    Popularity,
    Recommender,
    Saveable,
)
from p13n.registry import Registry

FORMAT = 3
"""The folder format this code writes and reads (formats 1 and 2 were pickles)."""
CONFIG = "config.json"
_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*\.npy$")

restorers: Registry[Callable[[ModelState, Sequence[Recommender]], Recommender]] = Registry(
    "saved recommender kind"
)
"""How each kind of saved model is rebuilt: its class's ``from_state``."""
for _saveable in (Popularity, ItemKNN, ALS, BPR, ContentRecommender, LearnedHybrid):
    restorers.register(_saveable.kind, _saveable.from_state)


class SavedPart(BaseModel):
    """A part of ``config.json``: keys it does not know are kept, to be warned about."""

    model_config = ConfigDict(extra="allow", frozen=True)


class SavedModel(SavedPart):
    """One model: its kind and name, its settings, its array files and its components."""

    kind: str
    name: str
    config: dict[str, Any] = Field(default_factory=dict)
    arrays: dict[str, str] = Field(default_factory=dict)
    """Each array's role (``users``, ``similarity.data``, ...) -> its file."""
    parts: list[SavedModel] = Field(default_factory=list)


class SavedItem(SavedPart):
    """One catalog item, as the store holds it."""

    id: str
    title: str
    text: str = ""
    attributes: dict[str, Any] = Field(default_factory=dict)


class SavedData(SavedPart):
    """The interactions a model was fitted on: ids and catalog here, the arrays in files."""

    user_ids: list[str]
    item_ids: list[str]
    catalog: list[SavedItem]
    user_attributes: dict[str, dict[str, Any]] = Field(default_factory=dict)
    skipped: dict[str, int] = Field(default_factory=dict)
    arrays: dict[str, str]
    """``rows``, ``cols``, ``values`` and ``times`` -> their files."""


class SavedDocument(SavedPart):
    """The top of ``config.json``: the format version and each array file's sha256."""

    format: int
    files: dict[str, str]
    """Array file -> the sha256 of its bytes."""


D = TypeVar("D", bound=SavedDocument)


def warn_unknown(part: BaseModel, where: str) -> None:
    """Warn about every key of ``part`` (and of the parts inside it) this code does not know."""
    extra = part.model_extra or {}
    if extra:
        warnings.warn(
            f"{where}: ignoring unknown keys {', '.join(sorted(extra))} (written by a newer p13n?)",
            UserWarning,
            stacklevel=3,
        )
    for name in type(part).model_fields:
        value = getattr(part, name)
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if isinstance(item, BaseModel):
                label = f"{name}[{i}]" if isinstance(value, list) else name
                warn_unknown(item, f"{where} > {label}")


# --- Writing ---------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def remove(path: Path) -> None:
    """Delete a file or a folder, if there is one."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_folder(path: Path, document: Mapping[str, Any], arrays: Mapping[str, Array]) -> Path:
    """Write ``arrays`` (file name -> array) and ``config.json`` (``document`` with the format
    and every file's sha256) into ``path``, atomically: into ``path.partial`` first, renamed into
    place, replacing what was there."""
    partial = path.with_name(path.name + ".partial")
    old = path.with_name(path.name + ".old")
    remove(partial)
    partial.mkdir(parents=True)
    files: dict[str, str] = {}
    for file, array in arrays.items():
        if not _FILE.match(file):
            raise ValueError(f"array file name {file!r} is not a plain .npy name")
        np.save(partial / file, array, allow_pickle=False)
        files[file] = _sha256(partial / file)
    config = {"format": FORMAT, **document, "files": files}
    (partial / CONFIG).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    remove(old)
    if path.exists() or path.is_symlink():
        path.rename(old)  # a directory cannot be replaced in one rename
    partial.rename(path)
    remove(old)
    return path


def model_entry(state: ModelState, prefix: str, arrays: dict[str, Array]) -> dict[str, Any]:
    """``state`` as a JSON entry; its arrays go into ``arrays`` under ``prefix``-ed file names."""
    files = {}
    for role, array in state.arrays.items():
        files[role] = f"{prefix}.{role}.npy"
        arrays[files[role]] = array
    return {
        "kind": state.kind,
        "name": state.name,
        "config": dict(state.config),
        "arrays": files,
        "parts": [model_entry(p, f"{prefix}.{i}", arrays) for i, p in enumerate(state.parts)],
    }


def saved_model(model: Recommender, prefix: str, arrays: dict[str, Array]) -> dict[str, Any]:
    """A fitted model as a JSON entry, its arrays added to ``arrays``."""
    if not isinstance(model, Saveable):
        raise SavedRecommenderError(f"model {model.name!r} cannot be saved (no state())")
    return model_entry(model.state(), prefix, arrays)


def data_entry(data: RecData, arrays: dict[str, Array]) -> dict[str, Any]:
    """``data`` as a JSON entry; its four arrays go into ``arrays``."""
    files = {}
    for role in ("rows", "cols", "values", "times"):
        files[role] = f"data.{role}.npy"
        arrays[files[role]] = getattr(data, role)
    return {
        "user_ids": list(data.user_ids),
        "item_ids": list(data.item_ids),
        "catalog": [
            {"id": i.id, "title": i.title, "text": i.text, "attributes": i.attributes}
            for i in data.catalog.values()
        ],
        "user_attributes": {user: dict(a) for user, a in data.user_attributes.items()},
        "skipped": dict(data.skipped),
        "arrays": files,
    }


# --- Reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SavedFolder:
    """A checked folder: its document, and its arrays by file name."""

    path: Path
    arrays: Mapping[str, Array]

    def array(self, file: str, where: str) -> Array:
        if file not in self.arrays:
            raise SavedRecommenderError(f"{self.path}: {where} names {file!r}, which is not listed")
        return self.arrays[file]


def read_folder(path: Path, schema: type[D]) -> tuple[D, SavedFolder] | None:
    """The document (validated by ``schema``) and arrays saved at ``path``; None when nothing is
    there. Another format version, a missing, altered or unlisted file, or a malformed document
    is a ``SavedRecommenderError``; unknown keys are warned about."""
    if not path.exists():
        return None
    if not path.is_dir():
        raise SavedRecommenderError(
            f"{path} is a file, not a saved recommender folder (a model pickled by an older "
            "p13n?): delete it or refit the model"
        )
    config = path / CONFIG
    try:
        raw = json.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SavedRecommenderError(f"{path}: {CONFIG} is missing") from None
    except (ValueError, OSError) as error:
        raise SavedRecommenderError(f"{config} cannot be read: {error}") from None
    version = raw.get("format") if isinstance(raw, dict) else None
    if version != FORMAT:
        raise SavedRecommenderError(
            f"{path} was saved in format {version!r}, and this p13n reads format {FORMAT}: "
            "refit the model to save it again"
        )
    try:
        document = schema.model_validate(raw)
    except ValidationError as error:
        raise SavedRecommenderError(f"{config} is malformed: {error}") from None
    warn_unknown(document, str(config))
    arrays: dict[str, Array] = {}
    for file, digest in document.files.items():
        if not _FILE.match(file):
            raise SavedRecommenderError(f"{config} lists {file!r}, not a plain .npy file name")
        if not (path / file).is_file():
            raise SavedRecommenderError(f"{path}: {file} is missing")
        if _sha256(path / file) != digest:
            raise SavedRecommenderError(f"{path}: {file} was altered (its sha256 differs)")
        try:
            arrays[file] = np.load(path / file, allow_pickle=False)
        except ValueError as error:
            raise SavedRecommenderError(f"{path}: {file} cannot be read: {error}") from None
    return document, SavedFolder(path, arrays)


def restore_model(saved: SavedModel, folder: SavedFolder) -> Recommender:
    """The model a ``SavedModel`` entry describes, rebuilt from its arrays."""
    parts = [restore_model(part, folder) for part in saved.parts]
    arrays = {
        role: folder.array(file, f"model {saved.name!r}") for role, file in saved.arrays.items()
    }
    state = ModelState(saved.kind, saved.name, saved.config, arrays, ())
    try:
        restore = restorers.get(saved.kind)
    except KeyError as error:
        raise SavedRecommenderError(f"{folder.path}: {error}") from None
    return restore(state, parts)


def restore_data(saved: SavedData, folder: SavedFolder) -> RecData:
    """The ``RecData`` a ``SavedData`` entry describes."""
    roles = ("rows", "cols", "values", "times")
    missing = [role for role in roles if role not in saved.arrays]
    if missing:
        raise SavedRecommenderError(f"{folder.path}: the data lacks its {', '.join(missing)}")
    unknown = sorted(set(saved.arrays) - set(roles))
    if unknown:
        warnings.warn(
            f"{folder.path}: ignoring unknown data arrays {', '.join(unknown)}",
            UserWarning,
            stacklevel=2,
        )
    rows, cols, values, times = (folder.array(saved.arrays[role], "data") for role in roles)
    catalog = {
        item.id: Item.model_construct(
            id=item.id, title=item.title, text=item.text, attributes=item.attributes
        )
        for item in saved.catalog
    }
    if len(saved.item_ids) != len(catalog) or set(saved.item_ids) != set(catalog):
        raise SavedRecommenderError(f"{folder.path}: the catalog does not match the item ids")
    return RecData(
        tuple(saved.user_ids),
        tuple(saved.item_ids),
        rows,
        cols,
        values,
        times,
        catalog,
        saved.user_attributes,
        saved.skipped,
    )
