"""Reading indirect-prediction data: LaMP rating and label splits and MovieLens 100K folds as
cases and training observations."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from p13n.datasets.lamp import LampSplit, profile_text
from p13n.errors import IndirectDataError
from p13n.evaluate.metrics import parse_rating
from p13n.predict.base import (
    RATING_SCALE,
    Case,
    History,
    LabelCase,
    Observations,
    RatingCase,
    V,
)

Row = tuple[str, str, float]
"""A MovieLens rating: (user, item, rating)."""

# Official LaMP inputs (and p13n's LaMP-2 style recipes) prefix the instruction and the label
# list; only the text after the marker is the item itself, which is what gets embedded.
_INSTRUCTION = re.compile(
    r"^(?:Which category|What is the score|categories:)[\s\S]*?(?:article|description|review):\s*"
)


def input_text(raw: str) -> str:
    """The item's own text of a LaMP input: any leading instruction and label list removed."""
    return _INSTRUCTION.sub("", raw, count=1).strip() or raw.strip()


def parse_star(value: object, where: str) -> float:
    """A rating from 1 to 5 (``parse_rating``'s reading), else an error naming ``where``."""
    rating = parse_rating(str(value)) if value is not None else None
    if rating is None or not RATING_SCALE[0] <= rating <= RATING_SCALE[1]:
        raise IndirectDataError(f"{where}: rating {value!r} is not a number from 1 to 5")
    return rating


def _label(value: object, labels: Sequence[str], where: str) -> str:
    label = "" if value is None else str(value).strip()
    if not label or (labels and label not in labels):
        known = f" (labels: {', '.join(labels)})" if labels else ""
        raise IndirectDataError(f"{where}: label {value!r} is not one of the task's labels{known}")
    return label


def _value_field(split: LampSplit) -> str:
    field_name = split.spec.profile_title
    if field_name is None:
        raise IndirectDataError(
            f"task {split.spec.name!r}: its profile items name no rating or label field"
        )
    return field_name


def lamp_rating_cases(split: LampSplit) -> list[RatingCase]:
    """A LaMP rating split (LaMP-3 style) as cases: each example's profile is its history."""
    return _lamp_cases(split, parse_star)


def lamp_label_cases(split: LampSplit, labels: Sequence[str]) -> list[LabelCase]:
    """A LaMP label split (LaMP-2 style) as cases over ``labels``."""
    return _lamp_cases(split, lambda value, where: _label(value, labels, where))


def _lamp_cases(split: LampSplit, parse: Callable[[object, str], V]) -> list[Case[V]]:
    value_field = _value_field(split)
    cases: list[Case[V]] = []
    for example in split.examples:
        if example.output is None:
            raise IndirectDataError(f"example {example.id!r}: no gold output to fit or score")
        gold = parse(example.output, f"example {example.id!r}")
        values = tuple(
            parse(
                item.get(value_field), f"example {example.id!r}, profile item {item.get('id', n)!r}"
            )
            for n, item in enumerate(example.profile)
        )
        history = History(
            tuple(profile_text(item, split.spec) for item in example.profile),
            values,
            tuple(str(item.get("id", n)) for n, item in enumerate(example.profile)),
        )
        user = example.user_id if example.user_id is not None else example.id
        cases.append(Case(example.id, input_text(example.input), history, gold, user, example.id))
    return cases


def task_labels(*splits: LampSplit) -> tuple[str, ...]:
    """The task's label set: its spec's, else every label its splits use."""
    spec_labels = splits[0].spec.labels
    if spec_labels:
        return tuple(spec_labels)
    field_name = _value_field(splits[0])
    found = {
        str(value).strip()
        for split in splits
        for example in split.examples
        for value in [
            example.output,
            *(item.get(field_name) for item in example.profile),
        ]
        if value is not None and str(value).strip()
    }
    return tuple(sorted(found))


def observations_from_cases(cases: Sequence[Case[V]]) -> Observations[V]:
    """The training pool of LaMP cases: each target and every profile item (once per user)."""
    users: list[str] = []
    items: list[str] = []
    texts: list[str] = []
    values: list[V] = []
    seen: set[tuple[str, str]] = set()

    def add(user: str, item: str, text: str, value: V) -> None:
        if (user, item) not in seen:
            seen.add((user, item))
            users.append(user)
            items.append(item)
            texts.append(text)
            values.append(value)

    for case in cases:
        assert case.gold is not None  # the readers refuse cases without a gold
        add(case.user_id, case.item_id or case.id, case.text, case.gold)
        for text, value, item in zip(
            case.history.texts, case.history.values, case.history.item_ids, strict=True
        ):
            add(case.user_id, item, text, value)
    return Observations(tuple(users), tuple(items), tuple(texts), tuple(values))


@dataclass(frozen=True)
class MovieLensFold:
    """One official MovieLens 100K fold: each movie's text and the (user, item, rating) rows."""

    texts: dict[str, str]
    base: list[Row]
    test: list[Row]


def movie_text(title: str, genres_text: str) -> str:
    """``Title (year). Genres: ...``: what a movie is embedded as."""
    return f"{title}. {genres_text}".strip() if genres_text else title


def read_movielens_fold(path: Path, fold: str = "u1") -> MovieLensFold:
    """``{fold}.base`` and ``{fold}.test`` of a MovieLens 100K folder, with the movies' texts."""
    from p13n.data import Interaction, Item
    from p13n.datasets.movielens import load_movielens
    from p13n.datasets.source import read_lines

    texts: dict[str, str] = {}
    for sourced in load_movielens(path):
        if isinstance(sourced.record, Interaction):
            break  # users and items come first; the ratings are read from the fold's files
        if isinstance(sourced.record, Item):
            texts[sourced.record.id] = movie_text(sourced.record.title, sourced.record.text)

    def rows(name: str) -> list[Row]:
        result = []
        for number, line in read_lines(path / name, "latin-1"):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 3:
                raise IndirectDataError(f"{path / name}:{number}: expected user, item, rating")
            user, item = fields[0], fields[1]
            where = f"{path / name}:{number} (user {user}, item {item})"
            result.append((user, item, parse_star(fields[2], where)))
        return result

    return MovieLensFold(texts, rows(f"{fold}.base"), rows(f"{fold}.test"))


def per_user_holdout(
    rows: Sequence[Row], fraction: float = 0.1, seed: int = 0
) -> tuple[list[Row], list[Row]]:
    """Split rows into (fit, dev): for each user, a seeded ``fraction`` of their rows held out."""
    by_user: dict[str, list[int]] = defaultdict(list)
    for index, (user, _, _) in enumerate(rows):
        by_user[user].append(index)
    rng = np.random.default_rng(seed)
    held: set[int] = set()
    for user in sorted(by_user, key=lambda u: (len(u), u)):
        indices = by_user[user]
        count = round(fraction * len(indices))
        if count and count < len(indices):
            held.update(int(i) for i in rng.choice(indices, size=count, replace=False))
    fit = [row for i, row in enumerate(rows) if i not in held]
    dev = [row for i, row in enumerate(rows) if i in held]
    return fit, dev


def movielens_observations(rows: Sequence[Row], texts: dict[str, str]) -> Observations[float]:
    """MovieLens rating rows as training observations."""
    return Observations(
        tuple(r[0] for r in rows),
        tuple(r[1] for r in rows),
        tuple(texts.get(r[1], r[1]) for r in rows),
        tuple(r[2] for r in rows),
    )


def movielens_cases(
    rows: Sequence[Row], history_rows: Sequence[Row], texts: dict[str, str]
) -> list[RatingCase]:
    """One case per rating row; a user's history is their rows in ``history_rows``."""
    grouped: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for user, item, rating in history_rows:
        grouped[user].append((item, rating))
    histories: dict[str, History[float]] = {}
    empty: History[float] = History((), (), ())
    for user, rated in grouped.items():
        histories[user] = History(
            tuple(texts.get(item, item) for item, _ in rated),
            tuple(rating for _, rating in rated),
            tuple(item for item, _ in rated),
        )
    return [
        Case(
            f"{user}:{item}", texts.get(item, item), histories.get(user, empty), rating, user, item
        )
        for user, item, rating in rows
    ]
