"""MovieLens (GroupLens) in three layouts: 100K ``u.*``, 1M ``*.dat`` and the CSV "latest" one.

Users carry their demographic attributes where the layout has them, movies become items (title,
genres, year), ratings become ``rate`` interactions, and tags (latest format) become the user's
own short documents.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from p13n.data import Document, Interaction, Item, LoadOptions, Sourced, User
from p13n.datasets.source import build, read_csv, read_lines
from p13n.errors import IngestError

# ml-1m's users.dat codes age and occupation (see its README).
ML1M_AGES = {
    "1": "Under 18",
    "18": "18-24",
    "25": "25-34",
    "35": "35-44",
    "45": "45-49",
    "50": "50-55",
    "56": "56+",
}
ML1M_OCCUPATIONS = [
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
]
_YEAR = re.compile(r"\((\d{4})\)\s*$")


def detect_layout(path: Path) -> str:
    """``100k``, ``1m`` or ``latest``, from the files in ``path``."""
    if (path / "u.data").exists():
        return "100k"
    if (path / "ratings.dat").exists():
        return "1m"
    if (path / "ratings.csv").exists():
        return "latest"
    raise IngestError(
        str(path),
        None,
        None,
        "not a MovieLens folder: expected u.data (100K), ratings.dat (1M) or ratings.csv (latest)",
    )


def load_movielens(path: Path, options: LoadOptions = LoadOptions()) -> Iterator[Sourced]:
    """Users, items and rating interactions from a MovieLens folder (layout detected)."""
    path = Path(path)
    layout = detect_layout(path)
    if layout == "100k":
        yield from _load_100k(path, options)
    elif layout == "1m":
        yield from _load_1m(path, options)
    else:
        yield from _load_latest(path, options)


def _fields(path: Path, sep: str, count: int, encoding: str) -> Iterator[tuple[int, list[str]]]:
    for number, line in read_lines(path, encoding):
        if not line.strip():
            continue
        fields = line.split(sep)
        if len(fields) < count:
            raise IngestError(
                str(path),
                number,
                None,
                f"expected {count} {sep!r}-separated fields, got {len(fields)}",
            )
        yield number, fields


def _movie(
    movie_id: str, title: str, genres: list[str], extra: dict[str, str]
) -> dict[str, object]:
    year = _YEAR.search(title)
    text = f"Genres: {', '.join(genres)}." if genres else ""
    attributes: dict[str, object] = {"genres": genres, **{k: v for k, v in extra.items() if v}}
    if year:
        attributes["year"] = int(year.group(1))
    return {"id": movie_id, "title": title.strip(), "text": text, "attributes": attributes}


def _rating(user: str, item: str, rating: str, when: str) -> dict[str, object]:
    return {"user_id": user, "item_id": item, "kind": "rate", "value": rating, "timestamp": when}


def _load_100k(path: Path, options: LoadOptions) -> Iterator[Sourced]:
    # The 100K files are Latin-1 (item titles such as "Misérables").
    genres = [line.split("|")[0] for _, line in read_lines(path / "u.genre", "latin-1") if line]
    source = str(path / "u.user")
    for number, f in _fields(path / "u.user", "|", 5, "latin-1"):
        raw: dict[str, object] = {
            "id": f[0],
            "attributes": {
                "age": _int(f[1], source, number, "age"),
                "gender": f[2],
                "occupation": f[3],
                "zip": f[4],
            },
        }
        yield build(User, raw, source, number, options)
    source = str(path / "u.item")
    for number, f in _fields(path / "u.item", "|", 5 + len(genres), "latin-1"):
        flags = f[5 : 5 + len(genres)]
        movie_genres = [g for g, flag in zip(genres, flags, strict=True) if flag == "1"]
        raw = _movie(f[0], f[1], movie_genres, {"release_date": f[2], "imdb_url": f[4]})
        yield build(Item, raw, source, number, options)
    source = str(path / "u.data")
    for number, f in _fields(path / "u.data", "\t", 4, "latin-1"):
        yield build(Interaction, _rating(*f[:4]), source, number, options)


def _int(value: str, source: str, line: int, field: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise IngestError(source, line, field, f"{value!r} is not an integer") from None


def _load_1m(path: Path, options: LoadOptions) -> Iterator[Sourced]:
    if (path / "users.dat").exists():
        source = str(path / "users.dat")
        for number, f in _fields(path / "users.dat", "::", 5, "latin-1"):
            occupation = _int(f[3], source, number, "occupation")
            if not 0 <= occupation < len(ML1M_OCCUPATIONS):
                raise IngestError(
                    source, number, "occupation", f"unknown occupation code {occupation}"
                )
            raw: dict[str, object] = {
                "id": f[0],
                "attributes": {
                    "gender": f[1],
                    "age": ML1M_AGES.get(f[2], f[2]),
                    "occupation": ML1M_OCCUPATIONS[occupation],
                    "zip": f[4],
                },
            }
            yield build(User, raw, source, number, options)
    if (path / "movies.dat").exists():
        source = str(path / "movies.dat")
        for number, f in _fields(path / "movies.dat", "::", 3, "latin-1"):
            yield build(Item, _movie(f[0], f[1], _genres(f[2]), {}), source, number, options)
    source = str(path / "ratings.dat")
    for number, f in _fields(path / "ratings.dat", "::", 4, "latin-1"):
        yield build(Interaction, _rating(*f[:4]), source, number, options)


def _genres(value: str) -> list[str]:
    return [g for g in value.split("|") if g and g != "(no genres listed)"]


def _load_latest(path: Path, options: LoadOptions) -> Iterator[Sourced]:
    if (path / "movies.csv").exists():
        source = str(path / "movies.csv")
        for number, row in read_csv(path / "movies.csv", ["movieId", "title", "genres"]):
            raw = _movie(row["movieId"], row["title"], _genres(row["genres"]), {})
            yield build(Item, raw, source, number, options)
    source = str(path / "ratings.csv")
    for number, row in read_csv(path / "ratings.csv", ["userId", "movieId", "rating", "timestamp"]):
        raw = _rating(row["userId"], row["movieId"], row["rating"], row["timestamp"])
        yield build(Interaction, raw, source, number, options)
    if (path / "tags.csv").exists():
        source = str(path / "tags.csv")
        for number, row in read_csv(path / "tags.csv", ["userId", "movieId", "tag", "timestamp"]):
            raw = {
                "user_id": row["userId"],
                "kind": "tag",
                "text": row["tag"],
                "timestamp": row["timestamp"],
                "metadata": {"item_id": row["movieId"]},
            }
            yield build(Document, raw, source, number, options)
