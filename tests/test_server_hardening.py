"""What an outside probe of the service found (issue 19), one regression test per finding: stale
interactions and recommendation, ids in paths, forget and the SQLite write-ahead log, inputs
that used to answer 500, bounds, unsafe ids, unhandled errors and unparseable bodies, the
schema's truth, the thin-data fallback, and the dashboard cookie on the API."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from p13n.data import Document, User
from p13n.data.models import MAX_ID_CHARS, id_pattern, text_pattern
from p13n.server.auth import COOKIE
from p13n.store import open_store
from tests.server_support import ADMIN, Service, live_server, make_service


@pytest.fixture
def service(sqlite_url: str) -> Service:
    return make_service(sqlite_url)


@pytest.fixture
def either(store_url: str) -> Service:
    """The service on SQLite, then on PostgreSQL: findings that were backend-specific."""
    return make_service(store_url)


def _ingest(service: Service, records: list[dict[str, Any]], tenant: str = "acme") -> Any:
    return service.client.post(
        "/v1/ingest", json={"records": records}, headers=service.headers(tenant)
    )


def _raw(service: Service, path: str, body: bytes, tenant: str = "acme") -> httpx.Response:
    headers = {**service.headers(tenant), "content-type": "application/json"}
    return service.client.post(path, content=body, headers=headers)


def _users(service: Service, tenant: str = "acme") -> list[str]:
    listed = service.client.get("/v1/users", headers=service.headers(tenant)).json()
    return [user["id"] for user in listed["users"]]


# ------------------------------------------ 1. one stale interaction broke every recommendation
CATALOG = [
    {"type": "item", "id": f"m{n}", "title": title}
    for n, title in enumerate(["Alien", "Heat", "Ronin", "Brazil", "Fargo", "Up"])
]


def test_an_interaction_with_an_unknown_or_deleted_item_breaks_no_other_users_recommendations(
    service: Service,
) -> None:
    h = service.headers("acme")
    views = [
        {"type": "interaction", "user_id": user, "item_id": f"m{n}", "kind": "view"}
        for user, items in {"ann": (0, 1, 2), "ben": (1, 2, 3), "cy": (0, 3, 4)}.items()
        for n in items
    ]
    # mallory's history names an item the catalog never had, and one that is deleted next.
    stale = [
        {"type": "interaction", "user_id": "mallory", "item_id": "ghost-item", "kind": "view"},
        {"type": "interaction", "user_id": "mallory", "item_id": "m5", "kind": "view"},
    ]
    assert _ingest(service, [*CATALOG, *views, *stale]).status_code == 201
    assert service.client.delete("/v1/items/m5", headers=h).status_code == 200
    feedback = {"user": "ann", "item_id": "gone-too", "rating": 5}
    assert service.client.post("/v1/feedback", json=feedback, headers=h).status_code == 201
    for model in ("popularity", "item-knn", "als", "bpr", "content", "hybrid"):
        answer = service.client.post(
            "/v1/recommend", json={"user": "ben", "model": model, "k": 3}, headers=h
        )
        assert answer.status_code == 200, (model, answer.text)
        result = answer.json()
        assert result["items"], model
        assert {i["item_id"] for i in result["items"]}.isdisjoint({"m1", "m2", "m3"})  # unseen
        # What was left out is counted; whose it was is never said.
        assert "left out 3 interactions: item not in the catalog" in result["notes"]
        assert not {"mallory", "ghost-item", "gone-too", "ann"} & set(json.dumps(result).split('"'))


# --------------------------------------------- 2. a percent-encoded '/' reached another user
def test_an_encoded_slash_in_a_path_reaches_nothing_and_ids_cannot_hold_a_slash(
    service: Service,
) -> None:
    records = [
        {"type": "user", "id": "victim"},
        {"type": "document", "user_id": "victim", "id": "vd1", "text": "Victim's private note."},
    ]
    assert _ingest(service, records).status_code == 201
    h = service.headers("acme")
    with live_server(service.app) as url, httpx.Client(base_url=url, headers=h) as http:
        for method, path in (
            ("DELETE", "/v1/users/victim%2Fdocuments%2Fvd1"),
            ("DELETE", "/v1/users/victim%2fdocuments%2fvd1"),
            ("GET", "/v1/users/victim%2Fexport"),
            ("POST", "/v1/users/a%2Fb/documents"),
        ):
            answer = http.request(method, path, json={"text": "x"} if method == "POST" else None)
            assert answer.status_code == 400, (path, answer.text)
            assert "encoded '/'" in answer.json()["error"]["message"]
        kept = http.get("/v1/users/victim/documents/vd1")
        assert kept.status_code == 200 and kept.json()["text"] == "Victim's private note."
    for record in (
        {"type": "user", "id": "a/b"},
        {"type": "document", "user_id": "victim", "id": "doc/1", "text": "x"},
        {"type": "item", "id": "shelf/1", "title": "x"},
        {"type": "document", "user_id": "..", "text": "x"},
    ):
        refused = _ingest(service, [record])
        assert refused.status_code == 422, record
        assert "records[0]" in refused.json()["detail"]
    assert _users(service) == ["victim"]


def test_a_user_stored_with_a_slash_before_the_rule_can_still_be_forgotten_from_the_cli(
    sqlite_url: str,
) -> None:
    from p13n.cli import app

    store = open_store(sqlite_url)
    store.write(_legacy_user("a/b"))  # written as an older version allowed
    store.close()
    result = CliRunner().invoke(app, ["--store", sqlite_url, "forget", "a/b", "--yes"])
    assert result.exit_code == 0, result.output
    store = open_store(sqlite_url)
    assert store.get_user("a/b") is None
    store.close()


def _legacy_user(user_id: str) -> Any:
    from p13n.store import WriteSet

    return WriteSet(users=[User.model_construct(id=user_id, attributes={})])


# ------------------------------------------------- 3. forget left plaintext in the SQLite WAL
MARKER = "Quetzalcoatl-7731 fishes for trout in Montana"


def _store_files(url: str) -> list[Path]:
    database = Path(url.removeprefix("sqlite:///"))
    return sorted(database.parent.glob(database.name + "*"))


def test_forget_leaves_no_byte_of_the_user_in_any_file_of_the_sqlite_store(
    service: Service, sqlite_url: str
) -> None:
    h = service.headers("acme")
    records = [{"type": "user", "id": "zed-quetzal", "attributes": {"note": MARKER}}]
    records += [
        {"type": "document", "user_id": "zed-quetzal", "text": f"{MARKER}, entry {n}."}
        for n in range(30)
    ]
    records.append({"type": "document", "user_id": "amy", "text": "Amy writes about opera."})
    assert _ingest(service, records).status_code == 201
    for n in range(5):  # more writes of the user's rows: more page images in the log
        service.client.post(
            "/v1/users/zed-quetzal/documents", json={"text": f"{MARKER} again {n}"}, headers=h
        )
    before = {
        path.name: path.read_bytes().count(MARKER.encode()) for path in _store_files(sqlite_url)
    }
    assert sum(before.values()) > 0 and before.get("p13n.db-wal", 0) > 0  # the test can fail
    forgot = service.client.delete("/v1/users/zed-quetzal", headers=h)
    assert forgot.status_code == 200 and forgot.json()["left_on_disk"] is None
    files = _store_files(sqlite_url)
    assert {path.name for path in files} >= {"p13n.db", "p13n.db-wal", "p13n.db-shm"}
    for path in files:
        content = path.read_bytes()
        assert MARKER.encode() not in content, path.name
        assert b"zed-quetzal" not in content, path.name
    assert "amy" in _users(service)
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as check:
        texts = [row[0] for row in check.execute("SELECT text FROM documents")]
    assert texts == ["Amy writes about opera."]


def test_the_sqlite_store_deletes_securely_and_vacuum_erases_what_an_insecure_delete_left(
    sqlite_url: str,
) -> None:
    store = open_store(sqlite_url)
    with store.engine.connect() as connection:  # type: ignore[attr-defined]
        assert connection.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    store.write(_legacy_user("u"))
    path = sqlite_url.removeprefix("sqlite:///")
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA secure_delete=OFF")
    raw.execute("INSERT INTO documents (tenant, user_id, document_id, kind, text, meta, "
                "content_hash, ingested_at) VALUES ('default', 'u', 'd', 'text', ?, '{}', 'h', "
                "'2026-01-01')", (MARKER,))  # fmt: skip
    raw.execute("DELETE FROM documents")
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()
    assert any(MARKER.encode() in p.read_bytes() for p in _store_files(sqlite_url))
    assert store.vacuum() == []
    assert not any(MARKER.encode() in p.read_bytes() for p in _store_files(sqlite_url))
    store.close()


@pytest.mark.postgres
def test_on_postgresql_forget_says_what_stays_on_disk_and_vacuum_rewrites_the_tables(
    postgres_url: str,
) -> None:
    service = make_service(postgres_url)
    assert (
        _ingest(service, [{"type": "document", "user_id": "zed", "text": MARKER}]).status_code
        == 201
    )
    forgot = service.client.delete("/v1/users/zed", headers=service.headers("acme")).json()
    assert "VACUUM FULL" in forgot["left_on_disk"] and "p13n vacuum" in forgot["left_on_disk"]
    store = open_store(postgres_url)
    left = store.vacuum()
    assert any("pg_switch_wal" in note for note in left)
    store.close()


# ---------------------------------------------------------- 4. 500s that must be 422s
SURROGATES = {
    "a document's text": b'{"records":[{"type":"document","user_id":"s","text":"x\\ud800y"}]}',
    "a title": b'{"records":[{"type":"document","user_id":"s","text":"x","title":"\\udfff"}]}',
    "an attribute value": b'{"records":[{"type":"user","id":"s","attributes":{"k":"\\ud83d"}}]}',
    "an attribute key": b'{"records":[{"type":"user","id":"s","attributes":{"\\ud800":1}}]}',
}
BAD_VALUES = {
    "a timestamp leaving year 1 in UTC": (
        b'{"records":[{"type":"document","user_id":"s","text":"x",'
        b'"timestamp":"0001-01-01T00:00:00+01:00"}]}',
        "field 'timestamp'",
    ),
    "a timestamp leaving year 9999 in UTC": (
        b'{"records":[{"type":"document","user_id":"s","text":"x",'
        b'"timestamp":"9999-12-31T23:00:00-02:00"}]}',
        "field 'timestamp'",
    ),
    "NUL in an attribute": (
        b'{"records":[{"type":"user","id":"s","attributes":{"k":"a\\u0000b"}}]}',
        "NUL",
    ),
    "NUL in an attribute key": (
        b'{"records":[{"type":"user","id":"s","attributes":{"a\\u0000":1}}]}',
        "NUL",
    ),
    "NaN in metadata": (
        b'{"records":[{"type":"document","user_id":"s","text":"x","metadata":{"k":NaN}}]}',
        "finite",
    ),
    "Infinity in an attribute": (
        b'{"records":[{"type":"user","id":"s","attributes":{"k":[1,-Infinity]}}]}',
        "finite",
    ),
    "1e999 (infinite) in an attribute": (
        b'{"records":[{"type":"user","id":"s","attributes":{"k":{"deep":1e999}}}]}',
        "finite",
    ),
}


def test_lone_surrogates_nul_nan_and_out_of_range_times_are_422s_naming_the_field_on_both_backends(
    either: Service,
) -> None:
    for what, body in SURROGATES.items():
        answer = _raw(either, "/v1/ingest", body)
        assert answer.status_code == 422, (what, answer.text)
        assert "records[0]" in answer.json()["detail"] and "surrogate" in answer.text, what
    for what, (body, says) in BAD_VALUES.items():
        answer = _raw(either, "/v1/ingest", body)
        assert answer.status_code == 422, (what, answer.text)
        assert "records[0]" in answer.json()["detail"] and says in answer.text, what
    assert _users(either) == []  # nothing of any rejected batch was stored
    label = either.client.post(
        "/v1/admin/tenants/acme/keys", json={"label": "ops\u0000"}, headers=ADMIN
    )  # PostgreSQL refuses NUL in text: this was a 500 there
    assert label.status_code == 422 and "body.label" in label.text and "NUL" in label.text
    for path in ("/v1/users", "/v1/users/s/documents"):
        field = "offset" if path == "/v1/users" else "limit"
        beyond = either.client.get(path, params={field: 2**63}, headers=either.headers("acme"))
        assert beyond.status_code == 422 and f"query.{field}" in beyond.text, beyond.text


# ---------------------------------------------------------------------------- 5. bounds
def test_attributes_and_metadata_are_bounded_and_values_must_fit_float32(either: Service) -> None:
    huge = {"type": "user", "id": "big", "attributes": {"blob": "x" * 40_000}}
    refused = _ingest(either, [huge])
    assert (
        refused.status_code == 422
        and "32,768" in refused.text
        and "records[0] (user)" in refused.text
    )
    deep: Any = 1
    for _ in range(40):
        deep = {"d": deep}
    nested = _ingest(either, [{"type": "user", "id": "deep", "attributes": deep}])
    assert nested.status_code == 422 and "deeper than 32" in nested.text
    overflow = {
        "type": "interaction",
        "user_id": "u",
        "item_id": "i",
        "kind": "rate",
        "value": 1e39,
    }
    refused = _ingest(either, [overflow])
    assert refused.status_code == 422 and "float32" in refused.text
    one = either.client.post(
        "/v1/users/u/interactions",
        json={"item_id": "i", "kind": "rate", "value": -3.5e38},
        headers=either.headers("acme"),
    )
    assert one.status_code == 422 and "float32" in one.text
    assert _users(either) == []
    fits = {"type": "user", "id": "ok", "attributes": {"blob": "x" * 30_000, "n": 3.4e38}}
    assert _ingest(either, [fits]).status_code == 201


# ------------------------------------------------------------------------------- 6. ids
@pytest.mark.parametrize(
    "unsafe",
    ["\x7f", "\x85", "\x9b", "\u202e", "\u2066", "\u200b", "\u200d", "\ufeff", "\u2028", "\x00"],
    ids=["DEL", "NEL", "CSI", "RLO", "LRI", "ZWSP", "ZWJ", "BOM", "LS", "NUL"],
)
def test_ids_refuse_control_bidi_and_zero_width_characters(unsafe: str) -> None:
    with pytest.raises(ValidationError, match="id contains"):
        User(id=f"ad{unsafe}min")
    with pytest.raises(ValidationError, match="id contains"):
        Document(user_id="u", id=f"do{unsafe}c", text="x")
    assert User(id="Zoë 東京 🎉 a.b-c_d:e").id == "Zoë 東京 🎉 a.b-c_d:e"


# ------------------------------------------ 7. unhandled errors, unparseable bodies
def test_an_unhandled_error_is_a_counted_500_in_the_documented_shape(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug nobody handled")

    store = service.state.tenant_store("acme")
    monkeypatch.setattr(type(store), "count_users", broken)  # injected: no such bug is known
    answer = service.client.get("/v1/users", headers=service.headers("acme"))
    assert answer.status_code == 500
    assert answer.json()["error"]["type"] == "server_error"
    assert "a bug nobody handled" not in answer.text  # internals stay in the server's log
    metrics = service.client.get("/metrics").text
    assert 'p13n_requests_total{method="GET",route="/v1/users",status="500"} 1.0' in metrics
    assert 'p13n_request_seconds_count{route="/v1/users"}' in metrics


def test_unparseable_bodies_are_400s_that_say_why(service: Service) -> None:
    cases = {
        b'{"records":[{"type":"user","id":"\xff\xfe"}]}': "not UTF-8",
        b'{"records":' + b"[" * 5000 + b"]" * 5000 + b"}": "nests deeper than 64",
        b'{"records":' + b"[" * 80 + b"]" * 80 + b"}": "nests deeper than 64",
        b'{"records":[{"type":"user","id":"s","attributes":{"n":' + b"9" * 5000 + b"}}]}": (
            "more than 4,300 digits"
        ),
        b'{"records": [': "not JSON",
        b"": None,  # no body at all: a 422 saying the body is required
    }
    for body, says in cases.items():
        answer = _raw(service, "/v1/ingest", body)
        if says is None:
            assert answer.status_code == 422 and "body" in answer.text
            continue
        assert answer.status_code == 400, (body[:40], answer.text)
        assert says in answer.json()["error"]["message"], answer.text
        assert answer.headers["content-type"] == "application/json"
    assert _users(service) == []


# --------------------------------------------------------------------- 8. schema truth
def test_every_error_is_documented_in_the_shape_it_is_sent_in(service: Service) -> None:
    document = service.client.get("/openapi.json").json()
    error_ref = "#/components/schemas/ErrorOut"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    content = response["content"]["application/json"]["schema"]
                    assert content == {"$ref": error_ref}, (method, path, status)
            if path.startswith("/v1/") and not path.startswith("/v1/admin"):
                assert {"401", "403", "422", "429", "500"} <= set(operation["responses"])
    assert "HTTPValidationError" not in document["components"]["schemas"]
    records = document["components"]["schemas"]["BatchIn"]["properties"]["records"]
    assert records["maxItems"] == 10_000 and "discriminator" in records["items"]
    assert "AttributeValue" in document["components"]["schemas"]
    invalid = service.client.post("/v1/users", json={"id": 7}, headers=service.headers("acme"))
    assert invalid.status_code == 422 and set(invalid.json()) == {"error", "detail"}


def test_an_unsupported_method_is_a_405_whose_allow_header_lists_every_method_of_the_path(
    service: Service,
) -> None:
    h = service.headers("acme")
    for method in ("PUT", "PATCH", "OPTIONS"):
        answer = service.client.request(method, "/v1/users/u1", headers=h)
        assert answer.status_code == 405
        assert answer.headers["allow"] == "DELETE, GET"
        assert answer.json()["error"]["code"] == 405
    assert service.client.put("/v1/users", headers=h).headers["allow"] == "GET, POST"


def test_timestamps_are_what_the_schema_says_rfc_3339_strings_or_numbers(service: Service) -> None:
    h = service.headers("acme")
    post = service.client.post
    for accepted in ("2024-05-01T12:00:00Z", "2024-05-01t12:00:00.5+02:00", 1714564800, 1.5e9):
        made = post(
            "/v1/users/u/documents",
            json={"text": f"t {accepted}", "timestamp": accepted},
            headers=h,
        )
        assert made.status_code == 201, (accepted, made.text)
    for refused in ("2024-05-01", "1714564800", "", "2024-05-01T12:00:00", True, 1e13):
        answer = post("/v1/users/u/documents", json={"text": "x", "timestamp": refused}, headers=h)
        assert answer.status_code == 422, (refused, answer.text)
        assert "timestamp" in answer.text
    # Files keep their wider format: dates and zone-less times are UTC there (DATA_FORMAT.md).
    assert Document(user_id="u", text="x", timestamp="2024-05-01").timestamp is not None


def test_request_fields_take_json_types_as_they_are(service: Service) -> None:
    h = service.headers("acme")
    for body in (
        {"user": "u", "k": "5"},
        {"user": "u", "k": True},
        {"user": 5},
        {"user": "u", "explain": "yes"},
    ):
        answer = service.client.post("/v1/recommend", json=body, headers=h)
        assert answer.status_code == 422, (body, answer.text)
    assert (
        service.client.post(
            "/v1/recommend", json={"user": "nobody", "k": 5.0}, headers=h
        ).status_code
        == 404
    )


WHITESPACE = st.sampled_from([" ", "\t", "\n", "\u00a0", "\u2003", "\u3000", "\x1c"])


LONG = st.builds(
    str.__add__, st.sampled_from(["", " ", "\t "]), st.text("ab", min_size=197, max_size=201)
)
"""Ids about the length limit, some padded: the limit holds before stripping, as published."""


@settings(max_examples=400, deadline=None)
@given(
    st.text(min_size=1, max_size=12)
    | st.builds("".join, st.lists(WHITESPACE | st.just(".")))
    | LONG
)
def test_the_published_id_schema_accepts_exactly_the_ids_the_data_model_accepts(value: str) -> None:
    import re

    try:
        User(id=value)
        accepted = True
    except ValidationError:
        accepted = False
    published = bool(re.search(id_pattern(), value)) and len(value) <= MAX_ID_CHARS
    assert published == accepted, repr(value)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=12) | st.builds("".join, st.lists(WHITESPACE | st.just("\x00"))))
def test_the_published_text_pattern_accepts_exactly_the_texts_a_record_accepts(value: str) -> None:
    import re

    try:
        Document(user_id="u", text=value)
        accepted = True
    except ValidationError:
        accepted = False
    assert bool(re.search(text_pattern(), value)) == accepted, repr(value)


# --------------------------------------------------------------------- 9. the fallback
def test_hybrid_on_a_small_tenant_falls_back_to_popular_items_and_says_so(service: Service) -> None:
    h = service.headers("acme")
    views = [{"type": "interaction", "user_id": "ann", "item_id": "m0", "kind": "view"}]
    assert _ingest(service, [*CATALOG, *views, {"type": "user", "id": "new"}]).status_code == 201
    for user, fallback in (("ann", "too little data"), ("new", "no interactions")):
        answer = service.client.post("/v1/recommend", json={"user": user}, headers=h)
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert result["fallback"] == fallback and result["model"] == "popularity"
        assert result["items"][0]["item_id"] == ("m1" if user == "ann" else "m0")
    assert any("no user has the 3 it needs" in note for note in result["notes"])


def test_a_tenant_without_interactions_gets_an_empty_list_not_an_error(service: Service) -> None:
    assert _ingest(service, [*CATALOG, {"type": "user", "id": "ann"}]).status_code == 201
    answer = service.client.post(
        "/v1/recommend", json={"user": "ann"}, headers=service.headers("acme")
    )
    assert answer.status_code == 200 and answer.json()["items"] == []
    assert answer.json()["fallback"] == "no interactions"


# ---------------------------------------------------------------- 10. the dashboard cookie
def test_the_dashboard_cookie_does_not_authenticate_the_api(service: Service) -> None:
    assert _ingest(service, [{"type": "user", "id": "ann"}]).status_code == 201
    client = service.client
    client.cookies.set(COOKIE, service.keys["acme"])
    try:
        for method, path in (("GET", "/v1/users"), ("DELETE", "/v1/users/ann")):
            answer = client.request(method, path)
            assert answer.status_code == 401, (method, path, answer.text)
        assert client.get("/dashboard").status_code == 200  # the dashboard reads it
    finally:
        client.cookies.clear()
    assert _users(service) == ["ann"]
