"""Recipes: how a LaMP-format task (``Recipe``) or a file of preference pairs (``PairsRecipe``) is
built from a corpus, validated as a model that rejects unknown fields and echoes the bad value.

A recipe names its prompt template by string (``spec.template``); the names are known to the
prompt layer, which hands them to ``build_task`` to check.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from p13n.datasets.corpora import corpus_loaders
from p13n.datasets.spec import OutputKind, TaskSpec
from p13n.datasets.task_file import placeholders
from p13n.errors import TaskBuildError

BUILDER_VERSION = 1
"""Format of the builder: bumped whenever one recipe would give different files."""
LABELS = "labels"
"""Placeholder of an input template that stands for the task's labels, comma-separated."""


def _spec(value: object) -> TaskSpec:
    if isinstance(value, TaskSpec):
        spec = value
    elif isinstance(value, Mapping):
        unknown = set(value) - set(TaskSpec.__dataclass_fields__)
        if unknown or "name" not in value or "template" not in value:
            raise ValueError(f"spec needs name and template and knows no {sorted(unknown)}")
        spec = TaskSpec.from_dict(value)
    else:
        raise ValueError(f"spec must be an object, not {type(value).__name__}")
    if spec.output_kind not in get_args(OutputKind):
        raise ValueError(
            f"spec output_kind {spec.output_kind!r} is not one of {get_args(OutputKind)}"
        )
    return spec


SpecField = Annotated[TaskSpec, PlainValidator(_spec), PlainSerializer(TaskSpec.to_dict)]


def _relative(value: str) -> str:
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts or "\\" in value:
        raise ValueError(f"source {value!r} must be a relative path inside the data root")
    return path.as_posix()


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitSizes(_Frozen):
    """Users per split. A user split fills test, then dev, then train (``None``: all users left);
    a time split takes that many users with an example into each split (``None``: all)."""

    train: int | None = Field(None, ge=0)
    dev: int | None = Field(None, ge=0)
    test: int | None = Field(None, ge=0)


class RecipeBase(_Frozen):
    """What every recipe has: its name, the corpus loader, the sources it reads and their digests
    once built, the seed and the builder format."""

    kind: str
    name: str = Field(pattern=r"^[a-z][a-z0-9_\-]{0,63}$")
    description: str = ""
    loader: str
    root: Literal["data", "package"] = "data"
    """``data``: sources are relative to the data root; ``package``: to the p13n package."""
    sources: tuple[str, ...] = Field(min_length=1)
    sha256: dict[str, str] = Field(default_factory=dict)
    """Digest of each source (a folder's: of its files' paths and digests); empty until built."""
    seed: int = 0
    builder: int = BUILDER_VERSION

    @field_validator("sources")
    @classmethod
    def _relative_sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_relative(v) for v in value)

    @model_validator(mode="after")
    def _check_common(self) -> RecipeBase:
        if self.sha256 and set(self.sha256) != set(self.sources):
            raise ValueError(f"sha256 names {sorted(self.sha256)}, not the sources")
        if self.builder != BUILDER_VERSION:
            raise ValueError(
                f"recipe is for task builder format {self.builder}; this p13n builds format "
                f"{BUILDER_VERSION}: use the p13n version that wrote it, or build the task anew"
            )
        return self


class Recipe(RecipeBase):
    """How to build a LaMP-format task from a corpus (see ``p13n.datasets.tasks``)."""

    kind: Literal["lamp"] = "lamp"
    require: tuple[str, ...] = ()
    """Fields a record needs non-empty to be used at all (the output field always is)."""
    target_where: dict[str, str] = Field(default_factory=dict)
    """Only records whose fields equal these values are targets (the rest are profile only)."""
    input: str
    """Template over the target's fields (and ``{labels}``)."""
    output: str
    profile: dict[str, str]
    """Profile item key -> template over the item's fields; items also get ``id`` and ``date``."""
    spec: SpecField
    labels_from_data: bool = False
    """Labels are the output values present in the corpus, sorted (filled into ``spec``)."""
    min_profile: int = Field(1, ge=0)
    max_profile: int | None = Field(None, ge=1)
    split: Literal["user", "time"]
    profile_scope: Literal["others", "earlier"] | None = None
    """User split: ``others`` (default) or ``earlier``; a time split is always ``earlier``."""
    targets_per_user: int = Field(1, ge=1)
    users: SplitSizes = SplitSizes()

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        if self.loader not in corpus_loaders:
            raise ValueError(f"unknown loader {self.loader!r}; known: {corpus_loaders.names()}")
        if self.spec.name != self.name:
            raise ValueError(f"spec name {self.spec.name!r} differs from the task name")
        for template in (self.input, *self.profile.values()):
            placeholders(template)
        if LABELS in placeholders(self.input) and not (self.labels_from_data or self.spec.labels):
            raise ValueError("the input uses {labels} but the task has no labels")
        if {"id", "date"} & set(self.profile):
            raise ValueError("profile keys 'id' and 'date' are set by the builder")
        for key in (self.spec.profile_text, self.spec.profile_title):
            if key is not None and key not in self.profile:
                raise ValueError(f"spec names profile field {key!r}, which the profile lacks")
        if self.max_profile is not None and self.max_profile < self.min_profile:
            raise ValueError("max_profile is smaller than min_profile")
        if self.split == "time" and (self.targets_per_user != 1 or self.profile_scope == "others"):
            raise ValueError("a time split has one target per user and earlier-only profiles")
        if self.split == "user" and (self.users.dev is None or self.users.test is None):
            raise ValueError("a user split needs users.dev and users.test counts")
        return self

    def fields_used(self) -> list[str]:
        """Every record field the recipe reads."""
        names = [*self.require, *self.target_where, self.output]
        for template in (self.input, *self.profile.values()):
            names += [
                n for n in placeholders(template) if not (template is self.input and n == LABELS)
            ]
        return list(dict.fromkeys(names))


class PairsRecipe(RecipeBase):
    """Persona-conditioned preference pairs (DSP) written to ``pairs.jsonl``."""

    kind: Literal["pairs"] = "pairs"
    loader: Literal["dsp"] = "dsp"


AnyRecipe = Recipe | PairsRecipe
_recipes: TypeAdapter[AnyRecipe] = TypeAdapter(Annotated[AnyRecipe, Field(discriminator="kind")])


def parse_recipe(raw: object, where: str) -> AnyRecipe:
    """A recipe from its JSON value (``kind`` says which); ``where`` names it in an error."""
    try:
        return _recipes.validate_python(raw)
    except ValidationError as error:
        first = error.errors()[0]
        loc = first["loc"][1:] if first["loc"][:1] in (("lamp",), ("pairs",)) else first["loc"]
        field = ".".join(str(part) for part in loc) or "recipe"
        raise TaskBuildError(f"{where}: {field}: {first['msg']}") from None


def read_recipe(path: Path) -> AnyRecipe:
    """A recipe from its JSON file (``recipe.json`` of a built task)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaskBuildError(
            f"{path}: no such file; a built task folder holds recipe.json"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TaskBuildError(f"{path}: not valid JSON ({error})") from None
    return parse_recipe(raw, str(path))


__all__ = [
    "BUILDER_VERSION",
    "LABELS",
    "AnyRecipe",
    "PairsRecipe",
    "Recipe",
    "RecipeBase",
    "SplitSizes",
    "parse_recipe",
    "read_recipe",
]
