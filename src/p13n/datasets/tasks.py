"""Benchmark tasks in the LaMP format, built from per-user corpora by a recipe.

A ``Recipe`` says which corpus to read (loader and files relative to a data root), how a record
becomes an example (input template, output field, profile item fields), how users are split and
how many items a profile holds. Building it writes ``recipe.json``, the recipe with the sha256 of
its sources filled in, next to the split files; rebuilding from that file gives the same bytes and
is refused when the sources changed.

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
import string
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, get_args

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

from p13n.datasets.corpora import CorpusRecord, corpus_loaders
from p13n.datasets.lamp import (
    SPLITS,
    LampExample,
    LampSplit,
    OutputKind,
    TaskSpec,
    write_recipe,
    write_split,
)
from p13n.errors import P13nError
from p13n.registry import Registry

BUILDER_VERSION = 1
"""Format of the builder: bumped whenever one recipe would give different files."""
LABELS = "labels"
"""Placeholder of an input template that stands for the task's labels, comma-separated."""


class TaskBuildError(P13nError, ValueError):
    """A task cannot be built: a bad recipe, a missing source, a record without a needed field."""


class SourceChangedError(TaskBuildError):
    """A recipe's sources are not the bytes it was built from, so a rebuild would differ."""


def _placeholders(template: str) -> list[str]:
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise ValueError(f"template {template!r}: {error}") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.replace("_", "").isalnum() or spec or conversion:
            raise ValueError(
                f"template {template!r}: use plain {{field}} placeholders, not {name!r}"
            )
        names.append(name)
    return names


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


class _Sourced(_Frozen):
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
    def _check_common(self) -> _Sourced:
        if self.sha256 and set(self.sha256) != set(self.sources):
            raise ValueError(f"sha256 names {sorted(self.sha256)}, not the sources")
        if self.builder != BUILDER_VERSION:
            raise ValueError(
                f"recipe is for task builder format {self.builder}; this p13n builds format "
                f"{BUILDER_VERSION}: use the p13n version that wrote it, or build the task anew"
            )
        return self


class Recipe(_Sourced):
    """How to build a LaMP-format task from a corpus (see the module docstring)."""

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
            _placeholders(template)
        if LABELS in _placeholders(self.input) and not (self.labels_from_data or self.spec.labels):
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
                n for n in _placeholders(template) if not (template is self.input and n == LABELS)
            ]
        return list(dict.fromkeys(names))


class PairsRecipe(_Sourced):
    """Persona-conditioned preference pairs (DSP) written to ``pairs.jsonl``."""

    kind: Literal["pairs"] = "pairs"
    loader: Literal["dsp"] = "dsp"


AnyRecipe = Recipe | PairsRecipe
_recipes: TypeAdapter[AnyRecipe] = TypeAdapter(Annotated[AnyRecipe, Field(discriminator="kind")])


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


def _check_template(name: str) -> None:
    from p13n.prompt.templates import templates  # the prompt package imports retrieval

    if name not in templates:
        raise TaskBuildError(f"unknown prompt template {name!r}; known: {templates.names()}")


def build_task(recipe: Recipe, data_root: Path | None) -> dict[str, LampSplit]:
    """The task's train, dev and test splits; each carries the resolved recipe (sha256 and
    labels filled in), which builds the same splits again."""
    _check_template(recipe.spec.template)
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


def write_task(recipe: AnyRecipe, data_root: Path | None, folder: Path) -> BuiltTask:
    """Build the task and write ``recipe.json`` and its files into ``folder``."""
    started = time.perf_counter()
    folder = Path(folder)
    if isinstance(recipe, PairsRecipe):
        pairs, recorded = build_pairs(recipe, data_root)
        write_recipe(folder, recorded)
        lines = "".join(json.dumps(pair, ensure_ascii=False) + "\n" for pair in pairs)
        (folder / "pairs.jsonl").write_text(lines, encoding="utf-8")
        return BuiltTask(recipe.name, folder, {"pairs": len(pairs)}, time.perf_counter() - started)
    splits = build_task(recipe, data_root)
    write_recipe(folder, splits["test"].recipe or {})
    for split in splits.values():
        write_split(split, folder)
    counts = {name: len(split.examples) for name, split in splits.items()}
    return BuiltTask(recipe.name, folder, counts, time.perf_counter() - started)


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
    try:
        return _recipes.validate_python(raw)
    except ValidationError as error:
        first = error.errors()[0]
        loc = first["loc"][1:] if first["loc"][:1] in (("lamp",), ("pairs",)) else first["loc"]
        where = ".".join(str(part) for part in loc) or "recipe"
        raise TaskBuildError(f"{path}: {where}: {first['msg']}") from None


def rebuild_task(folder: Path, data_root: Path | None, out: Path | None = None) -> BuiltTask:
    """Build a task again from its ``recipe.json`` (into ``out``, default the same folder);
    refused when its sources are not the bytes it was built from."""
    recipe = read_recipe(Path(folder) / "recipe.json")
    return write_task(recipe, data_root, Path(out) if out else Path(folder))


# --- shipped tasks -----------------------------------------------------------------------------

shipped_tasks: Registry[AnyRecipe] = Registry("shipped task")
"""Tasks built from ../shared/data (and ``demo`` from the package), by name."""

_HUFFPOST = "huffpost-news-category-v3-head/News_Category_Dataset_v3_first10000.json"
_AMAZON = "amazon-reviews-2018-small-5core"


def _ship(recipe: AnyRecipe) -> None:
    shipped_tasks.register(recipe.name, recipe)


_ship(
    Recipe(
        name="headline",
        description="HuffPost description -> headline, per byline (LaMP-4 style).",
        loader="huffpost",
        sources=(_HUFFPOST,),
        require=("short_description",),
        input="{short_description}",
        output="headline",
        profile={"text": "{short_description}", "title": "{headline}"},
        spec=TaskSpec("headline", "lamp4", "text", "text", "title"),
        min_profile=3,
        max_profile=100,
        split="time",
    )
)
_ship(
    Recipe(
        name="news-category",
        description="HuffPost headline + description -> category, per byline (LaMP-2N style).",
        loader="huffpost",
        sources=(_HUFFPOST,),
        require=("headline", "short_description"),
        input="categories: [{labels}]\narticle: {headline}\n{short_description}",
        output="category",
        profile={"text": "{headline}\n{short_description}", "category": "{category}"},
        spec=TaskSpec("news-category", "lamp2", "label", "text", "category"),
        labels_from_data=True,
        min_profile=3,
        max_profile=100,
        split="time",
    )
)
_ship(
    Recipe(
        name="email-subject",
        description="AESLC sent mail: body -> subject, per sender (LaMP-6 style); undated, so "
        "4 held-out emails per sender.",
        loader="aeslc",
        sources=("aeslc-enron-subject-lines/aeslc_sent_by_user.jsonl",),
        require=("email_body",),
        input="{email_body}",
        output="subject",
        profile={"text": "{email_body}", "title": "{subject}"},
        spec=TaskSpec("email-subject", "lamp6", "text", "text", "title"),
        min_profile=4,
        max_profile=100,
        split="user",
        targets_per_user=4,
        users=SplitSizes(dev=13, test=25),
    )
)
_ship(
    Recipe(
        name="paper-title",
        description="S2 researcher profiles: abstract -> title, per author (LaMP-5 style); "
        "4 held-out papers per author.",
        loader="s2-profiles",
        sources=("s2-reviewer-profiles-goldstandard",),
        require=("abstract",),
        input="{abstract}",
        output="title",
        profile={"abstract": "{abstract}", "title": "{title}", "year": "{year}"},
        spec=TaskSpec("paper-title", "lamp5", "text", "abstract", "title", profile_date=None),
        min_profile=3,
        max_profile=100,
        split="user",
        targets_per_user=4,
        users=SplitSizes(dev=13, test=25),
    )
)
_ship(
    Recipe(
        name="review-rating",
        description="Amazon 2018 5-core, four categories: review -> star rating (LaMP-3 style).",
        loader="amazon-reviews",
        sources=(
            "amazon-reviews-2018-fashion-5core/AMAZON_FASHION_5.json",
            f"{_AMAZON}/All_Beauty_5.json.gz",
            f"{_AMAZON}/Gift_Cards_5.json.gz",
            f"{_AMAZON}/Magazine_Subscriptions_5.json.gz",
        ),
        input="{reviewText}",
        output="rating",
        profile={"text": "{reviewText}", "score": "{rating}"},
        spec=TaskSpec(
            "review-rating", "lamp3", "rating", "text", "score", labels=("1", "2", "3", "4", "5")
        ),
        min_profile=2,
        split="time",
    )
)
_ship(
    Recipe(
        name="review-writing",
        description="Amazon 2018 5-core Magazine_Subscriptions + All_Beauty: product, rating, "
        "summary -> review (LongLaMP style). Not Fashion (about one distinct review per "
        "user) nor Gift_Cards (reviews of a few words).",
        loader="amazon-reviews",
        sources=(f"{_AMAZON}/All_Beauty_5.json.gz", f"{_AMAZON}/Magazine_Subscriptions_5.json.gz"),
        require=("summary",),
        input="Write a review for product {asin} rated {rating} out of 5 with the summary "
        '"{summary}"',
        output="reviewText",
        profile={"text": "{reviewText}", "title": "{summary}", "score": "{rating}"},
        spec=TaskSpec("review-writing", "longlamp-review", "text", "text", "title"),
        min_profile=2,
        split="time",
    )
)
_ship(
    Recipe(
        name="persona-dialogue",
        description="ConvAI2: recent history -> the persona speaker's next reply; profile = "
        "persona sentences + earlier turns.",
        loader="convai2",
        sources=("convai2-personachat/valid_self_original_no_cands.txt",),
        target_where={"kind": "turn"},
        input="Reply to your partner's last message in this conversation.\n{context}",
        output="text",
        profile={"text": "{text}", "kind": "{kind}"},
        spec=TaskSpec("persona-dialogue", "chat", "text", "text", None, profile_date=None),
        min_profile=7,
        split="user",
        profile_scope="earlier",
        users=SplitSizes(dev=100, test=200),
    )
)
_ship(
    PairsRecipe(
        name="dsp-pairs",
        description="DSP: a persona domain's answer chosen over another domain's (pairs.jsonl).",
        sources=("dsp-domain-preference/domain_specific_preference.test.json",),
    )
)
_ship(
    Recipe(
        name="demo",
        description="Bundled demo users: a document's text -> the title they gave it.",
        loader="documents",
        root="package",
        sources=("demo/demo.jsonl",),
        input="Give this {kind} a short title; answer with the title only.\n{text}",
        output="title",
        profile={"text": "{text}", "title": "{title}", "kind": "{kind}"},
        spec=TaskSpec("demo", "chat", "text", "text", "title"),
        min_profile=2,
        split="time",
    )
)

__all__ = [
    "BUILDER_VERSION",
    "LABELS",
    "AnyRecipe",
    "BuiltTask",
    "PairsRecipe",
    "Recipe",
    "SourceChangedError",
    "SplitSizes",
    "TaskBuildError",
    "build_pairs",
    "build_task",
    "read_recipe",
    "rebuild_task",
    "shipped_tasks",
    "source_digest",
    "write_task",
]
