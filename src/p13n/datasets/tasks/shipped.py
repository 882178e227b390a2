"""The shipped tasks: one recipe file per task under ``recipes/`` (package data, in the same JSON
shape as a built task's ``recipe.json``), validated by the recipe models when this module loads."""

from __future__ import annotations

import json
from importlib import resources

from p13n.datasets.tasks.recipe import AnyRecipe, parse_recipe
from p13n.errors import TaskBuildError
from p13n.registry import Registry

RECIPES = "recipes"
"""Folder of the shipped recipe files, inside this package."""

shipped_tasks: Registry[AnyRecipe] = Registry("shipped task")
"""Tasks built from ../shared/data (and ``demo`` from the package), by name."""


def _register_shipped() -> None:
    folder = resources.files("p13n.datasets.tasks").joinpath(RECIPES)
    for entry in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if not entry.name.endswith(".json"):
            continue
        where = f"shipped recipe {RECIPES}/{entry.name}"
        try:
            raw = json.loads(entry.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise TaskBuildError(f"{where}: not valid JSON ({error})") from None
        recipe = parse_recipe(raw, where)
        if f"{recipe.name}.json" != entry.name:
            raise TaskBuildError(f"{where}: holds task {recipe.name!r}; name the file after it")
        shipped_tasks.register(recipe.name, recipe)


_register_shipped()

__all__ = ["RECIPES", "shipped_tasks"]
