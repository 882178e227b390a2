"""The store contract: every backend (SQLite file, real PostgreSQL) passes the same suite."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, func, select, text

from p13n.data import Document, Interaction, Item, Persona, Preference, User
from p13n.errors import StoreError
from p13n.store import (
    SQLStore,
    Store,
    StoredAdapter,
    StoredProfile,
    WriteSet,
    head_revision,
    open_store,
)
from p13n.store import schema as s
from p13n.store.migrate import VERSION_TABLE, upgrade
from tests.helpers import dump

ENCODER = "test-encoder"


def doc(user: str, text: str, day: int | None = None, kind: str = "post") -> Document:
    when = None if day is None else datetime(2024, 1, day, tzinfo=UTC)
    return Document(user_id=user, text=text, kind=kind, timestamp=when, metadata={"n": day})


def vector(seed: int, dim: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


def test_opens_at_head_revision(store: Store) -> None:
    assert store.schema_revision() == head_revision()


def test_unknown_user_reads_are_empty(store: Store) -> None:
    assert store.get_user("nobody") is None
    assert store.documents("nobody") == []
    assert store.interactions("nobody") == []
    assert store.preferences("nobody") == []
    embedded = store.document_embeddings("nobody", ENCODER)
    assert embedded.documents == [] and embedded.vectors.shape == (0, 0)
    assert store.user_counts("nobody").documents == 0
    assert store.forget("nobody") == {t.name: 0 for t in s.PER_USER_TABLES}


def test_round_trip_of_every_record_type(store: Store) -> None:
    user = User(id="ada", attributes={"age": 34, "tags": ["a", "b"], "nested": {"x": 1.5}})
    documents = [doc("ada", "first", 1), doc("ada", "second", 3), doc("ada", "undated")]
    interaction = Interaction(
        user_id="ada", item_id="m1", kind="rate", value=4.5, timestamp=1_700_000_000
    )
    preference = Preference(user_id="ada", persona_id="terse", prompt="p", chosen="a", rejected="b")
    item = Item(id="m1", title="Movie", text="About things", attributes={"genres": ["drama"]})
    persona = Persona(id="terse", description="short sentences", members=["ada", "bob"])
    store.write(
        WriteSet(
            users=[user],
            implicit_user_ids=["bob"],
            documents=documents,
            interactions=[interaction],
            preferences=[preference],
            items=[item],
            personas=[persona],
        )
    )

    assert store.get_user("ada") == user
    assert store.get_user("bob") == User(id="bob")
    # newest first, undated last
    assert [d.text for d in store.documents("ada")] == ["second", "first", "undated"]
    assert store.documents("ada") == [documents[1], documents[0], documents[2]]
    assert store.documents("ada", limit=1) == [documents[1]]
    assert store.interactions("ada") == [interaction]
    assert store.preferences("ada") == [preference]
    assert store.persona_preferences("terse") == [preference]
    assert store.items(["m1", "missing"]) == [item]
    assert store.personas() == [persona]
    assert store.personas_of("bob") == ["terse"]
    counts = store.user_counts("ada")
    assert (counts.documents, counts.interactions, counts.preferences, counts.personas) == (
        3,
        1,
        1,
        1,
    )
    assert [summary.user.id for summary in store.list_users()] == ["ada", "bob"]
    assert store.count_users() == 2


def test_kind_filter_and_interaction_order(store: Store) -> None:
    store.write(
        WriteSet(
            implicit_user_ids=["u"],
            documents=[
                doc("u", "a review", 1, kind="review"),
                doc("u", "an email", 2, kind="email"),
            ],
            interactions=[
                Interaction(user_id="u", item_id="i1", kind="view", timestamp=10),
                Interaction(user_id="u", item_id="i2", kind="click", timestamp=20),
            ],
        )
    )
    assert [d.text for d in store.documents("u", kinds=["review"])] == ["a review"]
    assert [i.item_id for i in store.interactions("u")] == ["i2", "i1"]
    assert [i.item_id for i in store.interactions("u", kinds=["view"])] == ["i1"]


def test_tenant_wide_listings(store: Store) -> None:
    interactions = [
        Interaction(user_id="u2", item_id="i1", kind="rate", value=3.0, timestamp=30),
        Interaction(user_id="u1", item_id="i2", kind="view"),  # undated: last of u1
        Interaction(user_id="u1", item_id="i3", kind="rate", value=5.0, timestamp=20),
        Interaction(user_id="u1", item_id="i1", kind="view", timestamp=10, metadata={"n": 1}),
        Interaction(user_id="u2", item_id="i3", kind="view", timestamp=5),
    ]
    items = [
        Item(id="i3", title="Third", attributes={"genres": ["drama"]}),
        Item(id="i1", title="First", text="about one"),
        Item(id="i2", title="Second"),
    ]
    users = [User(id="u2", attributes={"age": 40}), User(id="u1", attributes={"city": "Oslo"})]
    store.write(
        WriteSet(
            users=users,
            implicit_user_ids=["u3"],
            interactions=interactions,
            items=items,
        )
    )

    listed = store.all_interactions()
    assert [(i.user_id, i.item_id) for i in listed] == [
        ("u1", "i1"),
        ("u1", "i3"),
        ("u1", "i2"),
        ("u2", "i3"),
        ("u2", "i1"),
    ]
    assert listed == [interactions[n] for n in (3, 2, 1, 4, 0)]
    assert [(i.user_id, i.item_id) for i in store.all_interactions(kinds=["rate"])] == [
        ("u1", "i3"),
        ("u2", "i1"),
    ]
    assert store.all_interactions(kinds=[]) == []
    assert store.catalog() == [items[1], items[2], items[0]]
    assert store.all_users() == [users[1], users[0], User(id="u3")]

    other = store.with_tenant("other")
    assert other.all_interactions() == []
    assert other.catalog() == []
    assert other.all_users() == []
    other.write(
        WriteSet(
            implicit_user_ids=["x"],
            interactions=[Interaction(user_id="x", item_id="ix", kind="view", timestamp=1)],
            items=[Item(id="ix", title="Other tenant's item")],
        )
    )
    assert [i.user_id for i in other.all_interactions()] == ["x"]
    assert [i.id for i in other.catalog()] == ["ix"]
    assert [u.id for u in other.all_users()] == ["x"]
    assert store.all_interactions() == listed
    assert [i.id for i in store.catalog()] == ["i1", "i2", "i3"]
    assert [u.id for u in store.all_users()] == ["u1", "u2", "u3"]


def test_embeddings_are_stored_exactly_beside_their_rows(store: Store) -> None:
    documents = [doc("u", f"text {n}", n + 1) for n in range(5)]
    vectors = {("u", d.id): vector(n) for n, d in enumerate(documents[:4])}
    store.write(
        WriteSet(
            implicit_user_ids=["u"],
            documents=documents,
            encoder_id=ENCODER,
            document_vectors=vectors,
        )
    )
    embedded = store.document_embeddings("u", ENCODER)
    assert embedded.vectors.dtype == np.float32 and embedded.vectors.shape == (4, 8)
    for row, document in zip(embedded.vectors, embedded.documents, strict=True):
        np.testing.assert_array_equal(row, vectors[("u", document.id)])
    assert embedded.missing == [documents[4].id]
    assert store.document_embeddings("u", "other-encoder").documents == []
    assert store.embedded("document", vectors.keys(), ENCODER) == set(vectors)


def test_a_changed_document_loses_its_old_vectors(store: Store) -> None:
    original = Document(id="d1", user_id="u", text="old text")
    store.write(
        WriteSet(
            implicit_user_ids=["u"],
            documents=[original],
            encoder_id=ENCODER,
            document_vectors={("u", "d1"): vector(1)},
        )
    )
    store.write(WriteSet(documents=[Document(id="d1", user_id="u", text="new text")]))
    embedded = store.document_embeddings("u", ENCODER)
    assert embedded.documents == [] and embedded.missing == ["d1"]
    assert store.documents("u")[0].text == "new text"


def test_item_vectors(store: Store) -> None:
    store.write(
        WriteSet(items=[Item(id="i", title="t")], encoder_id=ENCODER, item_vectors={"i": vector(3)})
    )
    np.testing.assert_array_equal(store.item_vectors(["i", "x"], ENCODER)["i"], vector(3))


def test_forget_leaves_nothing_of_the_user_in_any_table(store: Store) -> None:
    for user in ("gone", "kept"):
        documents = [doc(user, f"{user} wrote {n}", n + 1) for n in range(3)]
        store.write(
            WriteSet(
                users=[User(id=user, attributes={"a": 1})],
                documents=documents,
                interactions=[Interaction(user_id=user, item_id="i", kind="view")],
                preferences=[Preference(user_id=user, prompt="p", chosen="c", rejected="r")],
                personas=[Persona(id=f"p-{user}", description="d", members=[user])],
                encoder_id=ENCODER,
                document_vectors={(user, d.id): vector(n) for n, d in enumerate(documents)},
            )
        )
        store.put_profile(profile(user, store.data_version(user) or ""))
        store.put_adapter(*adapter(f"user:{user}:headline:lora", user_id=user))
    kept_before = {t: [r for r in rows if "kept" in r] for t, rows in dump(store).items()}
    deleted = store.forget("gone")
    assert deleted == {
        "users": 1,
        "documents": 3,
        "document_embeddings": 3,
        "interactions": 1,
        "preferences": 1,
        "persona_members": 1,
        "profiles": 1,
        "adapters": 1,
    }
    assert isinstance(store, SQLStore)
    with store.engine.connect() as connection:
        for table in s.metadata.sorted_tables:
            if "user_id" in table.c:
                left = connection.execute(
                    select(func.count()).select_from(table).where(table.c.user_id == "gone")
                ).scalar_one()
                assert left == 0, table.name
    kept_after = {t: [r for r in rows if "kept" in r] for t, rows in dump(store).items()}
    assert kept_after == kept_before


def test_deleting_records_removes_them_with_their_vectors_and_moves_the_version(
    store: Store,
) -> None:
    documents = [doc("u", f"note {n}", n + 1) for n in range(3)]
    store.write(
        WriteSet(
            implicit_user_ids=["u", "v"],
            documents=[*documents, doc("v", "note 0", 1)],
            interactions=[Interaction(user_id="u", item_id="i", kind="view")],
            encoder_id=ENCODER,
            document_vectors={("u", d.id): vector(n) for n, d in enumerate(documents)},
        )
    )
    version = store.data_version("u")
    gone = documents[0].id or ""
    assert store.delete_records("u", "document", [gone, "no-such-id"]) == 1
    assert [d.id for d in store.documents("u")] == [documents[2].id, documents[1].id]
    assert store.user_counts("u").embeddings == 2
    assert store.data_version("u") != version
    assert len(store.documents("v")) == 1  # another user's record with the same text stays
    interaction = store.interactions("u")[0].id or ""
    assert store.delete_records("v", "interaction", [interaction]) == 0  # not v's to delete
    assert store.delete_records("u", "interaction", [interaction]) == 1
    unchanged = store.data_version("u")
    assert store.delete_records("u", "document", ["no-such-id"]) == 0
    assert store.data_version("u") == unchanged
    with pytest.raises(StoreError, match="cannot delete 'user' records"):
        store.delete_records("u", "user", ["u"])


def test_deleting_items_removes_them_and_their_vectors_in_this_tenant_only(store: Store) -> None:
    items = [Item(id="i1", title="Heat"), Item(id="i2", title="Ronin")]
    store.write(
        WriteSet(
            implicit_user_ids=["u"],
            items=items,
            interactions=[Interaction(user_id="u", item_id="i1", kind="view")],
            encoder_id=ENCODER,
            item_vectors={"i1": vector(0), "i2": vector(1)},
        )
    )
    other = store.with_tenant("acme")
    other.write(WriteSet(items=[Item(id="i1", title="Acme's Heat")]))
    assert store.delete_items(["i1", "no-such-item"]) == 1
    assert [i.id for i in store.items(["i1", "i2"])] == ["i2"]
    assert set(store.item_vectors(["i1", "i2"], ENCODER)) == {"i2"}
    assert len(store.interactions("u")) == 1  # the user's history stays
    assert [i.title for i in other.items(["i1"])] == ["Acme's Heat"]
    assert store.delete_items(["i1"]) == 0


def test_tenants_never_see_each_other(store: Store) -> None:
    other = store.with_tenant("acme")
    store.write(WriteSet(implicit_user_ids=["u"], documents=[doc("u", "default tenant text")]))
    other.write(WriteSet(implicit_user_ids=["u"], documents=[doc("u", "acme text")]))
    assert [d.text for d in store.documents("u")] == ["default tenant text"]
    assert [d.text for d in other.documents("u")] == ["acme text"]
    other.forget("u")
    assert [d.text for d in store.documents("u")] == ["default tenant text"]


def test_malformed_tenant_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="tenant"):
        store.with_tenant("no spaces please")


def test_a_failing_write_stores_nothing(store: Store) -> None:
    before = dump(store)
    with pytest.raises(StoreError, match="encoder_id"):
        # Users and documents are written first in the transaction; the vectors then fail.
        store.write(
            WriteSet(
                implicit_user_ids=["u"],
                documents=[doc("u", "text")],
                document_vectors={("u", "x"): vector(1)},
            )
        )
    assert dump(store) == before


def test_upsert_replaces_content(store: Store) -> None:
    store.write(WriteSet(users=[User(id="u", attributes={"city": "Oslo"})]))
    store.write(WriteSet(users=[User(id="u", attributes={"city": "Bergen"})]))
    store.write(WriteSet(implicit_user_ids=["u"]))  # a reference never overwrites attributes
    assert store.get_user("u") == User(id="u", attributes={"city": "Bergen"})


def test_schema_matches_the_migrations(store: Store) -> None:
    assert isinstance(store, SQLStore)
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        diff = compare_metadata(context, s.metadata)
    assert diff == []


def test_an_older_store_upgrades_in_place(store_url: str) -> None:
    # Build a revision-0001 store by hand, with data in it, as an older p13n would have left it.
    url = store_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    with engine.begin() as connection:
        upgrade(connection, "0001")
        connection.execute(
            text(
                "INSERT INTO documents (tenant, user_id, document_id, kind, title, text, "
                "timestamp, meta, content_hash, ingested_at) VALUES ('default', 'u', 'd1', "
                "'post', NULL, 'written before 0002', NULL, '{}', 'h', CURRENT_TIMESTAMP)"
            )
        )
    engine.dispose()
    with pytest.raises(StoreError, match="p13n migrate"):
        open_store(store_url, migrate=False)
    upgraded = open_store(store_url)
    assert upgraded.schema_revision() == head_revision()
    assert [d.text for d in upgraded.documents("u")] == ["written before 0002"]
    assert upgraded.document_embeddings("u", ENCODER).missing == ["d1"]


def test_a_newer_store_is_refused(store: Store, store_url: str) -> None:
    assert isinstance(store, SQLStore)
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE p13n_schema_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match="newer p13n"):
        open_store(store_url)


def test_unknown_url_schemes_are_refused() -> None:
    with pytest.raises(StoreError, match="sqlite:// or postgresql://"):
        open_store("mysql://localhost/db")
    with pytest.raises(StoreError, match="does not parse"):
        open_store("not a url")


def profile(user_id: str, data_version: str, text: str = "likes short headlines") -> StoredProfile:
    return StoredProfile(
        user_id=user_id,
        profile_key="profile:test",
        data_version=data_version,
        model="test-model",
        text=text,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_data_version_changes_with_each_write_of_the_users_data(store: Store) -> None:
    assert store.data_version("u") is None
    store.write(WriteSet(users=[User(id="u")], implicit_user_ids=["v"]))
    first, other = store.data_version("u"), store.data_version("v")
    assert first is not None and other is not None
    store.documents("u")
    assert store.data_version("u") == first
    store.write(WriteSet(implicit_user_ids=["u"], documents=[doc("u", "new text")]))
    second = store.data_version("u")
    assert second not in (None, first)
    store.write(
        WriteSet(
            interactions=[Interaction(user_id="u", item_id="i", kind="view")],
            implicit_user_ids=["u"],
        )
    )
    assert store.data_version("u") not in (first, second)
    store.write(WriteSet(implicit_user_ids=["w"], documents=[doc("w", "someone else")]))
    assert store.data_version("v") == other
    # vectors added later for a stored document change what retrieval sees: a new version
    before_vectors = store.data_version("w")
    stored = store.documents("w")[0]
    store.write(WriteSet(encoder_id=ENCODER, document_vectors={("w", str(stored.id)): vector(1)}))
    assert store.data_version("w") != before_vectors


def test_profiles_round_trip_and_need_a_known_user(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown user 'ghost'"):
        store.put_profile(profile("ghost", "v1"))
    store.write(WriteSet(users=[User(id="u")]))
    assert store.get_profile("u", "profile:test") is None
    store.put_profile(profile("u", "v1"))
    store.put_profile(profile("u", "v2", "prefers long answers"))
    stored = store.get_profile("u", "profile:test")
    assert stored == profile("u", "v2", "prefers long answers")
    assert store.with_tenant("acme").get_profile("u", "profile:test") is None


def adapter(
    adapter_id: str,
    *,
    user_id: str | None = None,
    persona_id: str | None = None,
    task: str = "headline",
    method: str = "lora",
    weights: bytes = b"safetensors bytes",
    **changes: object,
) -> tuple[StoredAdapter, bytes]:
    """A registry entry that describes ``weights`` truly (``changes`` can make it lie)."""
    fields: dict[str, object] = {
        "adapter_id": adapter_id,
        "user_id": user_id,
        "persona_id": persona_id,
        "task": task,
        "method": method,
        "base_model": "test-base",
        "base_hash": "b" * 64,
        "config": {"r": 8, "alpha": 16.0, "target_modules": ["q_proj", "v_proj"]},
        "data_size": 12,
        "metrics": {"loss": [1.5, 0.75], "final": {"loss": 0.75}},
        "size_bytes": len(weights),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "created_at": datetime(2026, 2, 3, 4, 5, 6, 789000, tzinfo=UTC),
        **changes,
    }
    return StoredAdapter(**fields), weights  # type: ignore[arg-type]


def owners(store: Store, users: tuple[str, ...] = ("u1", "u2"), personas: int = 2) -> None:
    store.write(
        WriteSet(
            users=[User(id=user) for user in users],
            personas=[
                Persona(id=f"p{n}", description=f"persona {n}", members=[users[0]])
                for n in range(1, personas + 1)
            ],
        )
    )


def test_adapters_round_trip_with_megabytes_of_weights(store: Store) -> None:
    owners(store)
    weights = np.random.default_rng(7).bytes(4 * 1024 * 1024 + 3)
    entry, _ = adapter("user:u1:headline:lora", user_id="u1", weights=weights)
    assert store.get_adapter(entry.adapter_id) is None
    assert store.adapter_weights(entry.adapter_id) is None
    store.put_adapter(entry, weights)
    assert store.get_adapter(entry.adapter_id) == entry
    assert store.adapters() == [entry]
    stored = store.adapter_weights(entry.adapter_id)
    assert type(stored) is bytes and stored == weights
    assert hashlib.sha256(stored).hexdigest() == entry.weights_sha256
    # Tenant-wide and persona adapters round-trip too; any zone comes back as the same UTC moment.
    local = datetime(2026, 2, 3, 6, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    shared, blob = adapter("tenant:headline:embedding", method="embedding", created_at=local)
    store.put_adapter(shared, blob)
    back = store.get_adapter(shared.adapter_id)
    assert back is not None and back.created_at == local and back.created_at.tzinfo is UTC
    assert back.user_id is None and back.persona_id is None and back.config == shared.config
    persona, blob = adapter("persona:p1:headline:dpo", persona_id="p1", method="dpo", weights=b"")
    store.put_adapter(persona, blob)
    assert store.get_adapter(persona.adapter_id) == persona
    assert store.adapter_weights(persona.adapter_id) == b""


def test_adapter_filters_match_every_given_field(store: Store) -> None:
    owners(store)
    specs: dict[str, dict[str, Any]] = {
        "c": {"user_id": "u1"},
        "a": {"user_id": "u1", "method": "dpo"},
        "e": {"user_id": "u2", "task": "tweet"},
        "b": {"persona_id": "p1"},
        "d": {"method": "embedding", "task": "tweet"},
    }
    entries = {key: adapter(key, **spec)[0] for key, spec in specs.items()}
    for entry in entries.values():
        store.put_adapter(entry, b"safetensors bytes")

    def ids(**filters: str) -> list[str]:
        return [a.adapter_id for a in store.adapters(**filters)]

    assert ids() == ["a", "b", "c", "d", "e"]
    assert store.adapters() == [entries[key] for key in "abcde"]
    assert ids(user_id="u1") == ["a", "c"]
    assert ids(user_id="u1", method="lora") == ["c"]
    assert ids(user_id="u2", task="headline") == []
    assert ids(persona_id="p1") == ["b"]
    assert ids(task="tweet") == ["d", "e"]
    assert ids(method="lora", task="headline") == ["b", "c"]
    assert ids(user_id="nobody") == []


def test_put_adapter_replaces_an_entry_and_its_weights(store: Store) -> None:
    owners(store)
    first, old = adapter("x", user_id="u1", weights=b"old weights")
    store.put_adapter(first, old)
    second, new = adapter(
        "x", persona_id="p1", method="dpo", weights=b"new, longer weights", metrics={"loss": 0.1}
    )
    store.put_adapter(second, new)
    assert store.adapters() == [second]
    assert store.adapter_weights("x") == new
    assert store.adapters(user_id="u1") == []


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"user_id": "u1", "persona_id": "p1"}, "names both user 'u1' and persona 'p1'"),
        ({"user_id": "ghost"}, "unknown user 'ghost'"),
        ({"persona_id": "ghost"}, "unknown persona 'ghost'"),
        ({"user_id": "u1", "size_bytes": 3}, "size_bytes=3, but its weights are 17 bytes"),
        ({"weights_sha256": "0" * 64}, "weights_sha256='000"),
    ],
)
def test_a_refused_adapter_stores_nothing(store: Store, spec: dict[str, Any], problem: str) -> None:
    owners(store)
    kept, blob = adapter("bad", user_id="u2", weights=b"the weights already stored")
    store.put_adapter(kept, blob)
    before = dump(store)
    entry, weights = adapter("bad", **spec)
    with pytest.raises(StoreError, match="adapter 'bad'") as refused:
        store.put_adapter(entry, weights)
    assert problem in str(refused.value)
    assert dump(store) == before
    assert store.adapters() == [kept] and store.adapter_weights("bad") == blob


def test_adapters_go_with_their_user_or_persona(store: Store) -> None:
    owners(store, users=("gone", "kept"), personas=3)
    specs: list[dict[str, Any]] = [
        {"user_id": "gone"},
        {"user_id": "gone", "task": "tweet"},
        {"user_id": "kept"},
        {"persona_id": "p1"},
        {"persona_id": "p2"},
        {"persona_id": "p3"},
        {},
    ]
    for spec in specs:
        owner = spec.get("user_id") or spec.get("persona_id") or "tenant"
        store.put_adapter(*adapter(f"{owner}:{spec.get('task', 'headline')}", **spec))
    assert store.forget("gone")["adapters"] == 2
    assert store.adapters(user_id="gone") == []
    assert store.adapter_weights("gone:headline") is None
    assert store.delete_personas(["p1", "nope"]) == 1
    # Personas an ingest drops go the same way.
    store.write(WriteSet(deleted_personas=["p3"]))
    assert [a.adapter_id for a in store.adapters()] == [
        "kept:headline",
        "p2:headline",
        "tenant:headline",
    ]
    assert store.delete_adapters(["p2:headline", "p2:headline", "missing"]) == 1
    assert store.delete_adapters([]) == 0
    assert [a.adapter_id for a in store.adapters()] == ["kept:headline", "tenant:headline"]


def test_tenants_never_see_each_others_adapters(store: Store) -> None:
    owners(store)
    entry, weights = adapter("user:u1:headline:lora", user_id="u1")
    store.put_adapter(entry, weights)
    other = store.with_tenant("acme")
    assert other.adapters() == [] and other.adapters(user_id="u1") == []
    assert other.get_adapter(entry.adapter_id) is None
    assert other.adapter_weights(entry.adapter_id) is None
    with pytest.raises(StoreError, match="unknown user 'u1'"):
        other.put_adapter(entry, weights)  # u1 exists only in the default tenant
    owners(other, users=("u1",), personas=0)
    mine, theirs = adapter(entry.adapter_id, user_id="u1", weights=b"acme's weights")
    other.put_adapter(mine, theirs)
    assert other.delete_adapters(["missing"]) == 0
    assert store.adapter_weights(entry.adapter_id) == weights
    assert other.adapter_weights(entry.adapter_id) == theirs
    assert other.forget("u1")["adapters"] == 1
    assert store.adapters() == [entry]
    assert other.delete_adapters([entry.adapter_id]) == 0
    assert store.get_adapter(entry.adapter_id) == entry
