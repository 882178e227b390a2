"""Isolation, as a property: whatever users and tenants hold, a read for one user returns
exactly that user's rows in that tenant, never another's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p13n.data import Document, Interaction, Preference
from p13n.store import Store, WriteSet, open_store

ids = st.sampled_from(["u1", "u2", "u3", "U1", "u1 ", "ü", "x" * 200])
tenants = st.sampled_from(["default", "acme", "Acme"])
texts = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=30,
).filter(str.strip)
rows = st.lists(st.tuples(tenants, ids, texts), min_size=1, max_size=25)


def _check(store: Store, data: list[tuple[str, str, str]], suffix: str = "") -> None:
    """Write ``data`` (tenant, user, text) and read it back for every user of every tenant."""
    for tenant in {t for t, _, _ in data}:
        view = store.with_tenant(tenant + suffix)
        mine = [(u.strip(), text) for t, u, text in data if t == tenant]
        documents = [Document(user_id=u, text=text) for u, text in mine]
        unique = {(d.user_id, d.id): d for d in documents}
        view.write(
            WriteSet(
                implicit_user_ids=sorted({u for u, _ in mine}),
                documents=list(unique.values()),
                interactions=[
                    Interaction(user_id=u, item_id=f"i{len(text)}", kind="view") for u, text in mine
                ],
                preferences=[
                    Preference(user_id=u, prompt=text, chosen="a", rejected="b") for u, text in mine
                ],
                encoder_id="e",
                document_vectors={
                    key: np.full(4, len(d.text), np.float32) for key, d in unique.items()
                },
            )
        )
    for tenant in ("default", "acme", "Acme"):
        view = store.with_tenant(tenant + suffix)
        for user in {u.strip() for _, u, _ in data} | {"nobody"}:
            expected = {text for t, u, text in data if t == tenant and u.strip() == user}
            assert {d.text for d in view.documents(user)} == expected
            assert all(d.user_id == user for d in view.documents(user))
            embedded = view.document_embeddings(user, "e")
            assert {d.text for d in embedded.documents} == expected
            assert [v[0] for v in embedded.vectors] == [len(d.text) for d in embedded.documents]
            assert {i.user_id for i in view.interactions(user)} <= {user}
            assert {p.prompt for p in view.preferences(user)} == expected
            assert view.user_counts(user).documents == len(expected)


def test_reads_never_cross_users_or_tenants(tmp_path_factory: pytest.TempPathFactory) -> None:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(rows)
    def run(data: list[tuple[str, str, str]]) -> None:
        path: Path = tmp_path_factory.mktemp("iso") / "p13n.db"
        store = open_store(f"sqlite:///{path}")
        try:
            _check(store, data)
        finally:
            store.close()

    run()


@pytest.mark.postgres
def test_reads_never_cross_users_or_tenants_postgres(postgres_url: str) -> None:
    store = open_store(postgres_url)
    counter = iter(range(10_000))

    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(rows)
    def run(data: list[tuple[str, str, str]]) -> None:
        # Fresh tenant names per example keep the examples apart in one schema.
        _check(store, data, suffix=f"-{next(counter)}")

    run()
    store.close()
