"""Loaders on the real files in ../shared/data, counts checked against each folder's SOURCE.md,
and on small files in the other layouts (MovieLens 1M and "latest"), written here."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from p13n.data import Document, Interaction, Item, Persona, Preference, User
from p13n.datasets import LoadOptions, Sourced, load_amazon, load_csv, load_jsonl, load_movielens
from p13n.errors import IngestError


def by_type(records: list[Sourced]) -> dict[type, list[object]]:
    grouped: dict[type, list[object]] = {}
    for entry in records:
        grouped.setdefault(type(entry.record), []).append(entry.record)
    return grouped


def test_movielens_100k_matches_source_counts(shared_data: Path) -> None:
    records = by_type(list(load_movielens(shared_data / "movielens-100k")))
    users, items, ratings = records[User], records[Item], records[Interaction]
    # SOURCE.md: 943 users, 1,682 items, 100,000 ratings, histogram 1:6,110 … 5:21,201.
    assert (len(users), len(items), len(ratings)) == (943, 1682, 100_000)
    histogram = Counter(int(r.value) for r in ratings)  # type: ignore[attr-defined]
    assert histogram == {1: 6110, 2: 11370, 3: 27145, 4: 34174, 5: 21201}
    assert all(n >= 20 for n in Counter(r.user_id for r in ratings).values())  # type: ignore[attr-defined]
    first = next(u for u in users if u.id == "1")  # type: ignore[attr-defined]
    assert first.attributes == {
        "age": 24,
        "gender": "M",
        "occupation": "technician",
        "zip": "85711",
    }  # type: ignore[attr-defined]
    toy_story = next(i for i in items if i.id == "1")  # type: ignore[attr-defined]
    assert toy_story.title == "Toy Story (1995)"  # type: ignore[attr-defined]
    assert toy_story.attributes["genres"] == ["Animation", "Children's", "Comedy"]  # type: ignore[attr-defined]
    assert toy_story.attributes["year"] == 1995  # type: ignore[attr-defined]
    # Latin-1 titles decode correctly (SOURCE.md: item 543 "Misérables").
    assert "Misérables" in next(i for i in items if i.id == "543").title  # type: ignore[attr-defined]
    sample = next(r for r in ratings if r.user_id == "196" and r.item_id == "242")  # type: ignore[attr-defined]
    assert sample.value == 3.0 and sample.timestamp.timestamp() == 881250949  # type: ignore[attr-defined]


def _distinct_ratings(lines: list[str]) -> set[tuple[object, ...]]:
    rows = [json.loads(line) for line in lines]
    return {
        (r["reviewerID"], r["asin"], r["unixReviewTime"], r.get("reviewText") or None, r["overall"])
        for r in rows
    }


def test_amazon_fashion_collapses_duplicates(shared_data: Path) -> None:
    path = shared_data / "amazon-reviews-2018-fashion-5core" / "AMAZON_FASHION_5.json"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3176  # SOURCE.md: 3,176 reviews
    records = by_type(list(load_amazon(path)))
    documents, ratings = records[Document], records[Interaction]
    # SOURCE.md: 406 users, 31 items; 447 distinct (user, text, time) reviews, of which two
    # (16 records) have no text and so are ratings only.
    assert len({r.user_id for r in ratings}) == 406  # type: ignore[attr-defined]
    assert len({r.item_id for r in ratings}) == 31  # type: ignore[attr-defined]
    assert len(documents) == 447 - 2
    assert len({(d.user_id, d.text, d.timestamp) for d in documents}) == len(documents)  # type: ignore[attr-defined]
    # One rating per distinct (user, item, time, text): a differential count from the raw file.
    assert len(ratings) == len(_distinct_ratings(lines))
    review = documents[0]
    assert review.kind == "review" and review.metadata["items"]  # type: ignore[attr-defined]
    linked = {r.metadata["review_id"] for r in ratings}  # type: ignore[attr-defined]
    assert {d.id for d in documents} <= linked  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "users", "items", "distinct", "distinct_without_text"),
    [
        # SOURCE.md table: users, items, distinct reviews; "no text" records collapse to these.
        ("Gift_Cards_5", 458, 148, 2156, 2),
        ("Magazine_Subscriptions_5", 348, 157, 1972, 1),
        ("All_Beauty_5", 991, 85, 1379, 1),
    ],
)
def test_amazon_small_5core_gz(
    shared_data: Path, name: str, users: int, items: int, distinct: int, distinct_without_text: int
) -> None:
    path = shared_data / "amazon-reviews-2018-small-5core" / f"{name}.json.gz"
    records = by_type(list(load_amazon(path)))
    ratings = records[Interaction]
    assert len({r.user_id for r in ratings}) == users  # type: ignore[attr-defined]
    assert len({r.item_id for r in ratings}) == items  # type: ignore[attr-defined]
    assert len(records[Document]) == distinct - distinct_without_text
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        assert len(ratings) == len(_distinct_ratings(handle.read().splitlines()))


def test_amazon_folder_reads_every_file(shared_data: Path) -> None:
    records = by_type(list(load_amazon(shared_data / "amazon-reviews-2018-small-5core")))
    assert len(records[Document]) == (2156 - 2) + (1972 - 1) + (1379 - 1)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_movielens_1m_layout(tmp_path: Path) -> None:
    write(tmp_path / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    write(
        tmp_path / "movies.dat",
        "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Les Misérables (1995)::Drama\n",
        "latin-1",
    )
    write(tmp_path / "ratings.dat", "1::1::5::978300760\n2::2::3::978302109\n")
    records = by_type(list(load_movielens(tmp_path)))
    assert records[User][0].attributes == {  # type: ignore[attr-defined]
        "gender": "F",
        "age": "Under 18",
        "occupation": "K-12 student",
        "zip": "48067",
    }
    assert records[User][1].attributes["occupation"] == "self-employed"  # type: ignore[attr-defined]
    assert records[Item][1].title == "Les Misérables (1995)"  # type: ignore[attr-defined]
    assert [(r.user_id, r.item_id, r.value) for r in records[Interaction]] == [  # type: ignore[attr-defined]
        ("1", "1", 5.0),
        ("2", "2", 3.0),
    ]


def test_movielens_latest_layout_with_tags(tmp_path: Path) -> None:
    write(
        tmp_path / "movies.csv",
        'movieId,title,genres\n1,"American President, The (1995)",'
        "Comedy|Drama|Romance\n2,Unknown (2000),(no genres listed)\n",
    )
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.5,964982703\n")
    write(tmp_path / "tags.csv", "userId,movieId,tag,timestamp\n1,1,funny,1445714994\n")
    records = by_type(list(load_movielens(tmp_path)))
    assert records[Item][0].title == "American President, The (1995)"  # type: ignore[attr-defined]
    assert records[Item][1].attributes["genres"] == []  # type: ignore[attr-defined]
    assert records[Interaction][0].value == 4.5  # type: ignore[attr-defined]
    tag = records[Document][0]
    assert (tag.kind, tag.text, tag.metadata) == ("tag", "funny", {"item_id": "1"})  # type: ignore[attr-defined]


def test_movielens_unknown_folder(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="not a MovieLens folder"):
        list(load_movielens(tmp_path))


def test_generic_jsonl_reads_every_record_type(tmp_path: Path) -> None:
    lines = [
        {"type": "user", "id": "u", "attributes": {"age": 3}},
        {
            "type": "document",
            "user_id": "u",
            "text": "hi",
            "kind": "post",
            "timestamp": "2024-05-01T12:00:00+02:00",
        },
        {"type": "interaction", "user_id": "u", "item_id": "i", "kind": "click"},
        {"type": "preference", "user_id": "u", "prompt": "p", "chosen": "c", "rejected": "r"},
        {"type": "item", "id": "i", "title": "Item"},
        {"type": "persona", "id": "p", "description": "d", "members": ["u"]},
    ]
    path = write(tmp_path / "data.jsonl", "".join(json.dumps(x) + "\n" for x in lines) + "\n")
    records = list(load_jsonl(path))
    assert [type(r.record) for r in records] == [
        User,
        Document,
        Interaction,
        Preference,
        Item,
        Persona,
    ]
    assert [r.line for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[1].record.timestamp.isoformat() == "2024-05-01T10:00:00+00:00"  # type: ignore[attr-defined]


def test_generic_csv_by_file_name_and_type_flag(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    write(folder / "users.csv", "id,attributes.city,attributes.zip\nu1,Oslo,0150\n")
    write(
        folder / "documents.csv",
        'user_id,kind,title,text,timestamp,metadata.source\nu1,note,,"line one\nline two",'
        "1700000000,phone\n",
    )
    write(folder / "personas.csv", "id,description,members\np,short,u1|u2\n")
    records = by_type(list(load_csv(folder)))
    assert records[User][0].attributes == {"city": "Oslo", "zip": "0150"}  # type: ignore[attr-defined]
    document = records[Document][0]
    assert document.text == "line one\nline two" and document.title is None  # type: ignore[attr-defined]
    assert document.metadata == {"source": "phone"}  # type: ignore[attr-defined]
    assert records[Persona][0].members == ["u1", "u2"]  # type: ignore[attr-defined]
    other = write(tmp_path / "export.csv", "user_id,item_id,kind,value\nu1,i1,rate,4\n")
    (rating,) = (r.record for r in load_csv(other, record_type="interactions"))
    assert rating.value == 4.0  # type: ignore[attr-defined]


def test_size_limit_is_configurable(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.jsonl", json.dumps({"type": "document", "user_id": "u", "text": "x" * 50})
    )
    assert len(list(load_jsonl(path, LoadOptions(max_text_chars=50)))) == 1
    with pytest.raises(IngestError, match="over the limit of 49"):
        list(load_jsonl(path, LoadOptions(max_text_chars=49)))


def test_attribute_size_limit_is_configurable_and_names_the_line(tmp_path: Path) -> None:
    user = {"type": "user", "id": "u", "attributes": {"bio": "x" * 40}}  # 50 characters as JSON
    path = write(tmp_path / "u.jsonl", json.dumps(user))
    assert len(list(load_jsonl(path, LoadOptions(max_attribute_chars=50)))) == 1
    with pytest.raises(IngestError, match=r"u\.jsonl:1: field 'attributes': .*limit of 49"):
        list(load_jsonl(path, LoadOptions(max_attribute_chars=49)))
    big = write(tmp_path / "big.jsonl", json.dumps({**user, "attributes": {"bio": "x" * 40_000}}))
    with pytest.raises(IngestError, match="limit of 32,768"):  # the default
        list(load_jsonl(big))
