"""Benchmark tasks in the LaMP format, built from per-user corpora by a recipe.

A ``Recipe`` says which corpus to read (loader and files relative to a data root), how a record
becomes an example (input template, output field, profile item fields), how users are split and
how many items a profile holds. Building it writes ``recipe.json``, the recipe with the sha256 of
its sources filled in, next to the split files; rebuilding from that file gives the same bytes and
is refused when the sources changed.

- ``recipe``: the recipe models and reading a ``recipe.json``;
- ``build``: reading the sources, the ``user`` and ``time`` splits, writing the files;
- ``shipped``: the shipped tasks, one recipe file each under ``recipes/``.
"""

from __future__ import annotations

from p13n.datasets.tasks.build import (
    BuiltTask,
    build_pairs,
    build_task,
    rebuild_task,
    source_digest,
    write_task,
)
from p13n.datasets.tasks.recipe import (
    BUILDER_VERSION,
    LABELS,
    AnyRecipe,
    PairsRecipe,
    Recipe,
    RecipeBase,
    SplitSizes,
    parse_recipe,
    read_recipe,
)
from p13n.datasets.tasks.shipped import shipped_tasks
from p13n.errors import SourceChangedError, TaskBuildError

__all__ = [
    "BUILDER_VERSION",
    "LABELS",
    "AnyRecipe",
    "BuiltTask",
    "PairsRecipe",
    "Recipe",
    "RecipeBase",
    "SourceChangedError",
    "SplitSizes",
    "TaskBuildError",
    "build_pairs",
    "build_task",
    "parse_recipe",
    "read_recipe",
    "rebuild_task",
    "shipped_tasks",
    "source_digest",
    "write_task",
]
