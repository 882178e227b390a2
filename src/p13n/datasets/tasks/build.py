"""Building a task: a recipe's sources read, verified against their recorded sha256, split into
train, dev and test examples, and written in the LaMP format with the resolved ``recipe.json``.

Splits (Salemi et al. 2023, LaMP's user-based and time-based settings):

- ``user``: users are shuffled with the seed into disjoint test, dev and train sets. Each user
  gives ``targets_per_user`` examples (usually one): seeded random held-out items; the profile is
  the user's other items (``profile_scope="others"``), or only those before the target in the
  user's order (``"earlier"``, e.g. a dialogue's earlier turns).
- ``time``: every user with enough history is in every split. Sorted by date, a user's latest
  item is the test target, the second latest the dev target, the third latest the train target;
  each profile holds only items dated strictly before its target.

Both keep an example only when its profile has at least ``min_profile`` items, and keep the
``max_profile`` most recent ones.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from p13n.datasets.corpora import CorpusRecord, corpus_loaders
from p13n.datasets.lamp import (
    SPLITS,
    LampExample,
    LampSplit,
    TaskSpec,
    write_recipe,
    write_split,
)
from p13n.datasets.tasks.recipe import LABELS, AnyRecipe, PairsRecipe, Recipe, read_recipe
from p13n.errors import SourceChangedError, TaskBuildError


@dataclass(frozen=True)
class BuiltTask:
    """What ``write_task`` wrote: examples (or pairs) per split, in ``folder``."""

    name: str
    folder: Path
    counts: dict[str, int]
    seconds: float


# --- sources ---------------------------------------------------------------------------------


def source_digest(path: Path) -> str:
    """sha256 of a file, or of a folder's files (relative paths and contents, sorted)."""
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        inner = hashlib.sha256(file.read_bytes()).hexdigest()
        digest.update(f"{file.relative_to(path).as_posix()}\0{inner}\n".encode())
    return digest.hexdigest()


@contextmanager
def _source_paths(recipe: AnyRecipe, data_root: Path | None) -> Iterator[dict[str, Path]]:
    with ExitStack() as stack:
        paths: dict[str, Path] = {}
        for source in recipe.sources:
            if recipe.root == "package":
                ref = resources.files("p13n").joinpath(source)
                path = stack.enter_context(resources.as_file(ref))
            elif data_root is None:
                raise TaskBuildError(f"task {recipe.name!r} reads {source}: give a data root")
            else:
                if not Path(data_root).is_dir():
                    raise TaskBuildError(f"data root {data_root} is not a folder")
                path = Path(data_root) / source
            if not path.exists():
                raise TaskBuildError(f"task {recipe.name!r}: source {path} does not exist")
            paths[source] = path
        yield paths


def _verified(recipe: AnyRecipe, paths: Mapping[str, Path]) -> dict[str, str]:
    digests = {source: source_digest(path) for source, path in paths.items()}
    changed = [s for s in recipe.sources if recipe.sha256 and recipe.sha256[s] != digests[s]]
    if changed:
        raise SourceChangedError(
            f"task {recipe.name!r} was built from other bytes of {', '.join(changed)} "
            f"(recorded sha256 {recipe.sha256[changed[0]][:12]}…, "
            f"now {digests[changed[0]][:12]}…): "
            "a rebuild would differ; restore the data, or build the task anew from its shipped "
            "recipe into another folder"
        )
    return digests


# --- building ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # identity: one item per record read
class _Item:
    record: CorpusRecord
    position: int

    @property
    def date(self) -> str | None:
        return self.record.date


@dataclass(frozen=True)
class _Example:
    user: str
    target: _Item
    profile: list[_Item]


def _users(records: Sequence[CorpusRecord], recipe: Recipe) -> dict[str, list[_Item]]:
    needed = recipe.fields_used()
    nonblank = list(dict.fromkeys([*recipe.require, recipe.output]))
    users: dict[str, list[_Item]] = {}
    seen: set[tuple[str, str]] = set()
    for position, record in enumerate(records):
        where = f"{record.source}:{record.line}" if record.line else record.source
        for name in needed:
            if name not in record.fields:
                raise TaskBuildError(
                    f"{where}: a {recipe.loader} record has no field {name!r} "
                    f"(it has {sorted(record.fields)}); fix recipe {recipe.name!r}"
                )
        if any(not record.fields[name].strip() for name in nonblank):
            continue
        if (record.user_id, record.id) in seen:
            raise TaskBuildError(f"{where}: user {record.user_id!r} has record {record.id!r} twice")
        seen.add((record.user_id, record.id))
        if recipe.split == "time" and record.date is None:
            raise TaskBuildError(f"{where}: a time split needs dated records; this one has none")
        users.setdefault(record.user_id, []).append(_Item(record, position))
    for items in users.values():
        items.sort(key=lambda item: (item.date or "", item.position))
    return users


def _is_target(item: _Item, recipe: Recipe) -> bool:
    return all(item.record.fields[k] == v for k, v in recipe.target_where.items())


def _earlier(items: Sequence[_Item], target: _Item) -> list[_Item]:
    """Items before ``target`` in the user's order, dated strictly earlier where both have dates."""
    before = items[: items.index(target)]
    if target.date is None:
        return list(before)
    return [i for i in before if i.date is None or i.date < target.date]


def _user_split(users: Mapping[str, list[_Item]], recipe: Recipe) -> dict[str, list[_Example]]:
    chosen: dict[str, list[_Example]] = {}
    k = recipe.targets_per_user
    for user in sorted(users):
        items = users[user]
        candidates = [i for i in items if _is_target(i, recipe)]
        if recipe.profile_scope == "earlier":
            candidates = [i for i in candidates if len(_earlier(items, i)) >= recipe.min_profile]
        elif len(items) - k < recipe.min_profile:
            continue
        if len(candidates) < k:
            continue
        rng = random.Random(f"{recipe.seed}:{user}")
        targets = sorted(rng.sample(candidates, k), key=items.index)
        examples = []
        for target in targets:
            pool = _earlier(items, target) if recipe.profile_scope == "earlier" else items
            profile = [i for i in pool if i not in targets]
            if len(profile) >= recipe.min_profile:
                examples.append(_Example(user, target, profile))
        if examples:
            chosen[user] = examples
    order = sorted(chosen)
    random.Random(f"{recipe.seed}:users").shuffle(order)
    sizes = recipe.users
    assert sizes.test is not None and sizes.dev is not None  # checked by the recipe
    test, dev = order[: sizes.test], order[sizes.test : sizes.test + sizes.dev]
    rest = order[sizes.test + sizes.dev :]
    train = rest if sizes.train is None else rest[: sizes.train]
    return {
        split: [example for user in sorted(group) for example in chosen[user]]
        for split, group in (("train", train), ("dev", dev), ("test", test))
    }


def _time_split(users: Mapping[str, list[_Item]], recipe: Recipe) -> dict[str, list[_Example]]:
    found: dict[str, dict[str, _Example]] = {split: {} for split in SPLITS}
    for user in sorted(users):
        items = users[user]
        candidates = [i for i in items if _is_target(i, recipe)]
        for offset, split in enumerate(("test", "dev", "train")):
            if offset >= len(candidates):
                break
            target = candidates[-1 - offset]
            profile = _earlier(items, target)
            if len(profile) >= recipe.min_profile:
                found[split][user] = _Example(user, target, profile)
    order = sorted(users)
    random.Random(f"{recipe.seed}:users").shuffle(order)
    result: dict[str, list[_Example]] = {}
    for split in SPLITS:
        cap = getattr(recipe.users, split)
        kept = [user for user in order if user in found[split]][:cap]
        result[split] = [found[split][user] for user in sorted(kept)]
    return result


def _labels(users: Mapping[str, list[_Item]], recipe: Recipe) -> tuple[str, ...]:
    if not recipe.labels_from_data:
        return recipe.spec.labels
    labels = tuple(
        sorted({item.record.fields[recipe.output] for items in users.values() for item in items})
    )
    if recipe.spec.labels and recipe.spec.labels != labels:
        raise TaskBuildError(
            f"task {recipe.name!r}: the data's labels {list(labels)} are not the recorded "
            f"{list(recipe.spec.labels)}"
        )
    return labels


def _profile_item(item: _Item, recipe: Recipe) -> dict[str, Any]:
    fields = item.record.fields
    kept = {key: template.format_map(fields) for key, template in recipe.profile.items()}
    return {"id": item.record.id, **kept, **({"date": item.date} if item.date else {})}


def _lamp_example(example: _Example, recipe: Recipe, spec: TaskSpec, id: str) -> LampExample:
    fields = example.target.record.fields
    output = fields[recipe.output]
    if spec.labels and output not in spec.labels:
        raise TaskBuildError(
            f"{example.target.record.source}:{example.target.record.line}: output {output!r} is "
            f"not one of the labels {list(spec.labels)}"
        )
    profile = example.profile[-recipe.max_profile :] if recipe.max_profile else example.profile
    return LampExample(
        id=id,
        input=recipe.input.format_map({**fields, LABELS: ", ".join(spec.labels)}),
        profile=[_profile_item(item, recipe) for item in profile],
        output=output,
        user_id=example.user,
    )


def _check_template(name: str, templates: Collection[str] | None) -> None:
    if templates is not None and name not in templates:
        raise TaskBuildError(f"unknown prompt template {name!r}; known: {sorted(templates)}")


def build_task(
    recipe: Recipe, data_root: Path | None, *, templates: Collection[str] | None = None
) -> dict[str, LampSplit]:
    """The task's train, dev and test splits; each carries the resolved recipe (sha256 and
    labels filled in), which builds the same splits again.

    ``templates`` are the prompt template names a task may use (``p13n.prompt.templates``, which
    this layer does not import); given, a recipe naming another is refused before any source is
    read."""
    _check_template(recipe.spec.template, templates)
    loader = corpus_loaders.get(recipe.loader)
    with _source_paths(recipe, data_root) as paths:
        digests = _verified(recipe, paths)
        records = [record for source in recipe.sources for record in loader(paths[source])]
    users = _users(records, recipe)
    spec = replace(recipe.spec, labels=_labels(users, recipe))
    resolved = recipe.model_copy(update={"sha256": digests, "spec": spec})
    recorded = resolved.model_dump(mode="json")
    split = _user_split if recipe.split == "user" else _time_split
    examples = split(users, recipe)
    return {
        name: LampSplit(
            spec,
            name,
            [
                _lamp_example(example, recipe, spec, f"{recipe.name}-{name}-{n:05d}")
                for n, example in enumerate(examples[name])
            ],
            recorded,
        )
        for name in SPLITS
    }


def build_pairs(
    recipe: PairsRecipe, data_root: Path | None
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The DSP preference pairs (as JSON objects) and the resolved recipe."""
    from p13n.datasets.dsp import load_dsp, preference_pairs

    with _source_paths(recipe, data_root) as paths:
        digests = _verified(recipe, paths)
        (path,) = paths.values()
        pairs = preference_pairs(load_dsp(path), recipe.seed)
    recorded = recipe.model_copy(update={"sha256": digests}).model_dump(mode="json")
    return [asdict(pair) for pair in pairs], recorded


def write_task(
    recipe: AnyRecipe,
    data_root: Path | None,
    folder: Path,
    *,
    templates: Collection[str] | None = None,
) -> BuiltTask:
    """Build the task and write ``recipe.json`` and its files into ``folder`` (``templates`` as
    for ``build_task``)."""
    started = time.perf_counter()
    folder = Path(folder)
    if isinstance(recipe, PairsRecipe):
        pairs, recorded = build_pairs(recipe, data_root)
        write_recipe(folder, recorded)
        lines = "".join(json.dumps(pair, ensure_ascii=False) + "\n" for pair in pairs)
        (folder / "pairs.jsonl").write_text(lines, encoding="utf-8")
        return BuiltTask(recipe.name, folder, {"pairs": len(pairs)}, time.perf_counter() - started)
    splits = build_task(recipe, data_root, templates=templates)
    write_recipe(folder, splits["test"].recipe or {})
    for split in splits.values():
        write_split(split, folder)
    counts = {name: len(split.examples) for name, split in splits.items()}
    return BuiltTask(recipe.name, folder, counts, time.perf_counter() - started)


def rebuild_task(
    folder: Path,
    data_root: Path | None,
    out: Path | None = None,
    *,
    templates: Collection[str] | None = None,
) -> BuiltTask:
    """Build a task again from its ``recipe.json`` (into ``out``, default the same folder);
    refused when its sources are not the bytes it was built from (``templates`` as for
    ``build_task``)."""
    recipe = read_recipe(Path(folder) / "recipe.json")
    return write_task(recipe, data_root, Path(out) if out else Path(folder), templates=templates)


__all__ = [
    "BuiltTask",
    "build_pairs",
    "build_task",
    "rebuild_task",
    "source_digest",
    "write_task",
]
