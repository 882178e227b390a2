"""Loaders that turn public datasets and a user's own files into the p13n data model (survey §7)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from p13n.data import LoadOptions, Sourced
from p13n.datasets.amazon import load_amazon
from p13n.datasets.dsp import DspQuery, PreferencePair, load_dsp, preference_pairs
from p13n.datasets.generic import load_csv, load_jsonl
from p13n.datasets.lamp import (
    LampExample,
    LampSplit,
    TaskSpec,
    read_examples,
    read_split,
    write_recipe,
    write_split,
)
from p13n.datasets.movielens import load_movielens
from p13n.datasets.spec import PromptSpec
from p13n.datasets.task_file import TASK_FILE, read_task_file
from p13n.registry import Registry

Loader = Callable[[Path, LoadOptions], Iterator[Sourced]]
loaders: Registry[Loader] = Registry("dataset loader")
loaders.register("movielens", load_movielens)
loaders.register("amazon", load_amazon)
loaders.register("jsonl", load_jsonl)
loaders.register("csv", load_csv)

__all__ = [
    "TASK_FILE",
    "DspQuery",
    "LampExample",
    "LampSplit",
    "LoadOptions",
    "Loader",
    "PreferencePair",
    "PromptSpec",
    "Sourced",
    "TaskSpec",
    "load_amazon",
    "load_csv",
    "load_dsp",
    "load_jsonl",
    "load_movielens",
    "loaders",
    "preference_pairs",
    "read_examples",
    "read_split",
    "read_task_file",
    "write_recipe",
    "write_split",
]
