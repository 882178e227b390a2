"""Privacy: PII redaction with presidio's recognizers (offline), and a user's data export."""

from __future__ import annotations

import hashlib
import json
import socket
from collections import Counter
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from p13n.data import Document, Interaction, Item, Preference, Sourced, User
from p13n.errors import ConfigError, UnknownUserError
from p13n.privacy import (
    DEFAULT_ENTITIES,
    SUPPORTED_ENTITIES,
    Redaction,
    RedactionConfig,
    Redactor,
    export_user,
)
from p13n.privacy import redact as redact_module
from p13n.privacy.export import TABLE_SECTIONS
from p13n.store import SQLStore, Store, StoredAdapter, StoredProfile
from p13n.store import schema as s


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


# -- each entity, in the sentences users write -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Write to ada.lovelace@example.co.uk about the launch.",
            "Write to <EMAIL_ADDRESS> about the launch.",
        ),
        ("Call me on (415) 555-0132 after six.", "Call me on <PHONE_NUMBER> after six."),
        ("US office: 212-555-0147, ask for Sam.", "US office: <PHONE_NUMBER>, ask for Sam."),
        ("My London number is +44 20 7946 0958.", "My London number is <PHONE_NUMBER>."),
        ("Ring the flat on 020 7946 0958 tonight.", "Ring the flat on <PHONE_NUMBER> tonight."),
        (
            "Charge it to my Visa 4111 1111 1111 1111, please.",
            "Charge it to my Visa <CREDIT_CARD>, please.",
        ),
        ("Card number 4111111111111111 expires soon.", "Card number <CREDIT_CARD> expires soon."),
        (
            "Pay the deposit to GB82 WEST 1234 5698 7654 32 by Friday.",
            "Pay the deposit to <IBAN_CODE> by Friday.",
        ),
        ("Rent goes to DE89370400440532013000 monthly.", "Rent goes to <IBAN_CODE> monthly."),
        (
            "The router answers on 192.168.1.20 and 2001:db8::1 today.",
            "The router answers on <IP_ADDRESS> and <IP_ADDRESS> today.",
        ),
        ("My SSN is 536-22-1234, keep it safe.", "My SSN is <US_SSN>, keep it safe."),
        ("We moved to 221B Baker Street last spring.", "We moved to <STREET_ADDRESS> last spring."),
        (
            "Ship it to 1600 Amphitheatre Parkway, Mountain View.",
            "Ship it to <STREET_ADDRESS>, Mountain View.",
        ),
        ("Meet me at 12 Main St. at noon.", "Meet me at <STREET_ADDRESS> at noon."),
        (
            "Flat 3, 14 Kensington Gardens is ours; the office is 350 5th Avenue, Suite 300.",
            "<STREET_ADDRESS> is ours; the office is <STREET_ADDRESS>.",
        ),
    ],
)
def test_each_entity_is_replaced_by_its_type(redactor: Redactor, text: str, expected: str) -> None:
    assert redactor.redact(text).text == expected


def test_counts_say_how_many_of_each_type_were_replaced(redactor: Redactor) -> None:
    text = (
        "Hi, I'm at 221B Baker Street. Mail me at ada@example.com or ada.l@example.org, "
        "call +44 20 7946 0958 or (415) 555-0132, card 4111 1111 1111 1111, server 10.0.0.7."
    )
    redaction = redactor.redact(text)
    assert redaction == Redaction(
        "Hi, I'm at <STREET_ADDRESS>. Mail me at <EMAIL_ADDRESS> or <EMAIL_ADDRESS>, "
        "call <PHONE_NUMBER> or <PHONE_NUMBER>, card <CREDIT_CARD>, server <IP_ADDRESS>.",
        {
            "CREDIT_CARD": 1,
            "EMAIL_ADDRESS": 2,
            "IP_ADDRESS": 1,
            "PHONE_NUMBER": 2,
            "STREET_ADDRESS": 1,
        },
    )


@pytest.mark.parametrize(
    "text",
    [
        "I paid 40 dollars on 12 March",
        "I paid 40 dollars on 12 March, and 25.50 on 3/14/2024 at 10:30.",
        "Order 1234567 shipped in 3 days; room 204, version 3.14.2, 12 bugs fixed.",
        "The score was 3-1 and the film runs 95 min; rated 4.5 stars by 1,234 people.",
        "Back in 2019 I bought 2 pairs for $89.99 each.",
        "I ran 5 miles down Main Street and 3 more court dates are pending.",
        "ZIP 94043-1351 and reference 123456789 are too weak to call an SSN.",
        # checksums: the Luhn digit of a card, the mod-97 check of an IBAN, the e-mail's TLD
        "Not a card: 4111 1111 1111 1112.",
        "Not an IBAN: GB82 WEST 1234 5698 7654 33.",
        "Not an address either: x@y.notatld",
        "",
    ],
)
def test_text_without_pii_is_untouched(redactor: Redactor, text: str) -> None:
    assert redactor.redact(text) == Redaction(text, {})


def test_a_number_that_is_both_ssn_and_phone_is_one_ssn(redactor: Redactor) -> None:
    # presidio's PhoneRecognizer (0.4) and UsSsnRecognizer (0.5) both claim this span
    spans = redactor._spans("My SSN is 499-65-1034.")
    assert {(span.entity, span.start, span.end) for span in spans} == {
        ("PHONE_NUMBER", 10, 21),
        ("US_SSN", 10, 21),
    }
    assert redactor.redact("My SSN is 499-65-1034.") == Redaction(
        "My SSN is <US_SSN>.", {"US_SSN": 1}
    )


def test_overlapping_spans_become_one_placeholder_leaving_no_fragment() -> None:
    redactor = Redactor(RedactionConfig(entities=(*DEFAULT_ENTITIES, "URL")))
    # inside: the URL recognizer also finds "ada.lovelace" and "example.co.uk" in the address
    assert redactor.redact("mail ada.lovelace@example.co.uk now") == Redaction(
        "mail <EMAIL_ADDRESS> now", {"EMAIL_ADDRESS": 1}
    )
    # across: "example.com/archive" (a URL) starts inside the address and ends after it
    spans = redactor._spans("See ada@example.com/archive for logs.")
    assert [(span.entity, span.start, span.end) for span in spans] == [
        ("EMAIL_ADDRESS", 4, 19),
        ("URL", 8, 27),
    ]
    assert redactor.redact("See ada@example.com/archive for logs.") == Redaction(
        "See <EMAIL_ADDRESS> for logs.", {"EMAIL_ADDRESS": 1}
    )
    # apart: both kept
    assert redactor.redact("ada@example.com and https://example.org/x") == Redaction(
        "<EMAIL_ADDRESS> and <URL>", {"EMAIL_ADDRESS": 1, "URL": 1}
    )


# -- configuration ---------------------------------------------------------------------------------


def test_disabled_redaction_passes_everything_through() -> None:
    redactor = Redactor(RedactionConfig(enabled=False))
    text = "Mail ada@example.com, card 4111 1111 1111 1111, 221B Baker Street."
    assert redactor.redact(text) == Redaction(text, {})
    document = Document(user_id="ada", text=text, metadata={"to": "ada@example.com"})
    copy, counts = redactor.redact_record(document)
    assert copy == document and copy is not document and counts == Counter()


def test_only_the_configured_entities_are_redacted() -> None:
    redactor = Redactor(RedactionConfig(entities=("email_address", "ip_address")))
    assert redactor.config.entities == ("EMAIL_ADDRESS", "IP_ADDRESS")
    text = "ada@example.com from 10.0.0.7, call (415) 555-0132"
    assert redactor.redact(text).text == "<EMAIL_ADDRESS> from <IP_ADDRESS>, call (415) 555-0132"


@pytest.mark.parametrize("entity", ["PERSON", "person", "LOCATION", "ORGANIZATION"])
def test_entities_needing_a_ner_model_are_refused(entity: str) -> None:
    for enabled in (True, False):
        config = RedactionConfig(enabled=enabled, entities=("EMAIL_ADDRESS", entity))
        with pytest.raises(ConfigError, match="no NER model is installed"):
            Redactor(config)


def test_unknown_entities_and_regions_are_rejected_by_the_config() -> None:
    with pytest.raises(ValidationError, match="unknown entity 'EMAIL'"):
        RedactionConfig(entities=("EMAIL",))
    with pytest.raises(ValidationError, match="unknown phone region 'XX'"):
        RedactionConfig(phone_regions=("US", "XX"))
    with pytest.raises(ValidationError, match="extra"):
        RedactionConfig.model_validate({"enabled": True, "entitys": ["URL"]})
    config = RedactionConfig()
    with pytest.raises(ValidationError, match="frozen"):
        config.enabled = False  # type: ignore[misc]
    assert RedactionConfig.model_validate_json(config.model_dump_json()) == config


def test_a_threshold_that_would_drop_a_whole_entity_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"would drop every PHONE_NUMBER.*at most 0\.4"):
        Redactor(RedactionConfig(score_threshold=0.5))
    no_phones = tuple(entity for entity in DEFAULT_ENTITIES if entity != "PHONE_NUMBER")
    assert Redactor(RedactionConfig(entities=no_phones, score_threshold=0.5)).redact(
        "My SSN is 536-22-1234."
    ) == Redaction("My SSN is <US_SSN>.", {"US_SSN": 1})
    # at 0 presidio's very weak patterns count: any 9-digit number is an SSN
    everything = Redactor(RedactionConfig(score_threshold=0.0))
    assert everything.redact("reference 536221234").text == "reference <US_SSN>"


def test_phone_regions_are_presidios_by_default_and_configurable() -> None:
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    assert RedactionConfig().phone_regions == tuple(PhoneRecognizer.DEFAULT_SUPPORTED_REGIONS)
    us_only = Redactor(RedactionConfig(phone_regions=("US",)))
    # a UK number in national format is no longer recognized; with its country code it still is
    assert us_only.redact("Ring 020 7946 0958 or +44 20 7946 0958").text == (
        "Ring 020 7946 0958 or <PHONE_NUMBER>"
    )


def test_redactors_share_presidios_recognizers() -> None:
    first = Redactor(RedactionConfig(entities=("EMAIL_ADDRESS", "CREDIT_CARD")))
    second = Redactor(RedactionConfig(entities=("CREDIT_CARD",), score_threshold=0.9))
    assert first._recognizers[1][1] is second._recognizers[0][1]


def test_redaction_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """presidio's own e-mail recognizer would fetch the public suffix list on first use."""
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network access during redaction")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(redact_module, "_built", {})  # build the recognizers again, guarded
    redactor = Redactor(RedactionConfig(entities=SUPPORTED_ENTITIES))
    redaction = redactor.redact(
        "Mail ada@example.co.uk, grace@navy.mil or alan@cam.ac.uk; see https://example.org."
    )
    assert attempts == []
    assert redaction.text == "Mail <EMAIL_ADDRESS>, <EMAIL_ADDRESS> or <EMAIL_ADDRESS>; see <URL>."


# -- records ---------------------------------------------------------------------------------------


def test_a_documents_text_title_and_metadata_are_redacted(redactor: Redactor) -> None:
    document = Document(
        user_id="ada",
        kind="email",
        title="Call (415) 555-0132",
        text="Reach me at ada@example.com or at 221B Baker Street.",
        timestamp="2025-01-04T09:00:00Z",
        metadata={"to": "grace@example.org", "thread": [{"from": "10.0.0.7"}, 3], "size": 12},
    )
    before = document.model_dump()
    redacted, counts = redactor.redact_record(document)
    assert document.model_dump() == before  # the input is never modified
    assert redacted.text == "Reach me at <EMAIL_ADDRESS> or at <STREET_ADDRESS>."
    assert redacted.title == "Call <PHONE_NUMBER>"
    assert redacted.metadata == {
        "to": "<EMAIL_ADDRESS>",
        "thread": [{"from": "<IP_ADDRESS>"}, 3],
        "size": 12,
    }
    assert (redacted.id, redacted.user_id, redacted.kind, redacted.timestamp) == (
        document.id,
        document.user_id,
        document.kind,
        document.timestamp,
    )
    assert counts == Counter(EMAIL_ADDRESS=2, STREET_ADDRESS=1, PHONE_NUMBER=1, IP_ADDRESS=1)


def test_preferences_interactions_and_users_are_redacted(redactor: Redactor) -> None:
    preference = Preference(
        user_id="ada",
        prompt="Tell grace@example.org the summary.",
        chosen="Sent to grace@example.org.",
        rejected="I'd rather phone +44 20 7946 0958.",
        metadata={"source": "ops@example.com"},
    )
    redacted, counts = redactor.redact_record(preference)
    assert (redacted.prompt, redacted.chosen, redacted.rejected) == (
        "Tell <EMAIL_ADDRESS> the summary.",
        "Sent to <EMAIL_ADDRESS>.",
        "I'd rather phone <PHONE_NUMBER>.",
    )
    assert redacted.metadata == {"source": "<EMAIL_ADDRESS>"}
    assert counts == Counter(EMAIL_ADDRESS=3, PHONE_NUMBER=1) and redacted.id == preference.id

    interaction = Interaction(
        user_id="ada",
        item_id="film-orbit",
        kind="rate",
        value=4.0,
        timestamp=1_700_000_000,
        metadata={"note": "texted 020 7946 0958", "device": "10.0.0.7", "stars": 4},
    )
    redacted_interaction, counts = redactor.redact_record(interaction)
    assert redacted_interaction.metadata == {
        "note": "texted <PHONE_NUMBER>",
        "device": "<IP_ADDRESS>",
        "stars": 4,
    }
    assert redacted_interaction.model_dump(exclude={"metadata"}) == interaction.model_dump(
        exclude={"metadata"}
    )
    assert interaction.metadata["device"] == "10.0.0.7"

    user = User(
        id="ada",
        attributes={
            "age": 34,
            "city": "Zurich",
            "home": {"street": "221B Baker Street", "phones": ["+44 20 7946 0958"]},
            "email": "ada@example.com",
        },
    )
    redacted_user, counts = redactor.redact_record(user)
    assert redacted_user.attributes == {
        "age": 34,
        "city": "Zurich",
        "home": {"street": "<STREET_ADDRESS>", "phones": ["<PHONE_NUMBER>"]},
        "email": "<EMAIL_ADDRESS>",
    }
    assert redacted_user.id == "ada" and user.attributes["email"] == "ada@example.com"
    assert counts == Counter(STREET_ADDRESS=1, PHONE_NUMBER=1, EMAIL_ADDRESS=1)


def test_catalog_items_are_copied_unchanged(redactor: Redactor) -> None:
    item = Item(id="book-x", title="Call 911", text="Letters to ops@example.com, collected.")
    copy, counts = redactor.redact_record(item)
    assert copy == item and copy is not item and counts == Counter()


def test_a_batch_keeps_origins_and_totals_the_counts(redactor: Redactor) -> None:
    batch = [
        Sourced(User(id="ada", attributes={"email": "ada@example.com"}), "upload.jsonl", 1),
        Sourced(Document(user_id="ada", text="Call (415) 555-0132."), "upload.jsonl", 2),
        Sourced(Document(user_id="ada", text="Mail grace@example.org"), "upload.jsonl", 3),
        Sourced(Item(id="film-x", title="Film"), "catalog.csv", None),
    ]
    redacted, totals = redactor.redact_batch(batch)
    assert totals == {"EMAIL_ADDRESS": 2, "PHONE_NUMBER": 1}
    assert [(each.source, each.line) for each in redacted] == [
        (each.source, each.line) for each in batch
    ]
    assert [type(each.record) for each in redacted] == [type(each.record) for each in batch]
    document = redacted[1].record
    assert isinstance(document, Document) and document.text == "Call <PHONE_NUMBER>."
    original = batch[2].record
    assert isinstance(original, Document) and original.text == "Mail grace@example.org"


# -- export ----------------------------------------------------------------------------------------


def _rows_of(store: Store, user_id: str) -> dict[str, int]:
    """How many rows each per-user table holds for the user."""
    assert isinstance(store, SQLStore)
    with store.engine.connect() as connection:
        return {
            table.name: connection.execute(
                select(func.count())
                .select_from(table)
                .where(table.c.tenant == store.tenant, table.c.user_id == user_id)
            ).scalar_one()
            for table in s.PER_USER_TABLES
        }


def test_every_per_user_table_has_a_section_in_the_export() -> None:
    assert set(TABLE_SECTIONS) == {table.name for table in s.PER_USER_TABLES}


def test_a_users_export_holds_everything_about_them_as_json(demo: Store) -> None:
    weights = b"adapter weights"
    demo.put_adapter(
        StoredAdapter(
            adapter_id="user:ada:headline:lora",
            user_id="ada",
            persona_id=None,
            task="headline",
            method="lora",
            base_model="test-base",
            base_hash="b" * 64,
            config={"r": 8},
            data_size=12,
            metrics={"loss": 0.75},
            size_bytes=len(weights),
            weights_sha256=hashlib.sha256(weights).hexdigest(),
            created_at=datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC),
        ),
        weights,
    )
    version = demo.data_version("ada")
    assert version is not None
    demo.put_profile(
        StoredProfile(
            user_id="ada",
            profile_key="summary:test",
            data_version=version,
            model="test-model",
            text="Ada writes terse, precise notes.",
            created_at=datetime(2026, 2, 3, tzinfo=UTC),
        )
    )

    export = export_user(demo, "ada")
    assert json.loads(json.dumps(export)) == export
    assert export["tenant"] == "default" and export["user_id"] == "ada"
    assert datetime.fromisoformat(export["exported_at"]).tzinfo is not None
    assert export["user"] == {"id": "ada", "attributes": demo.get_user("ada").attributes}  # type: ignore[union-attr]
    assert [d["id"] for d in export["documents"]] == [d.id for d in demo.documents("ada")]
    assert {d["text"] for d in export["documents"]} == {d.text for d in demo.documents("ada")}
    assert [i["id"] for i in export["interactions"]] == [i.id for i in demo.interactions("ada")]
    assert [p["id"] for p in export["preferences"]] == [p.id for p in demo.preferences("ada")]
    assert export["personas"] == [
        {
            "id": "concise-pragmatic",
            "description": "Writes short, direct, practical text; values precision and action "
            "over flourish.",
            "metadata": {"attributes": {"style": "concise"}},
        }
    ]
    assert "dmitri" not in json.dumps(export)  # the persona's other member is not ada's data
    assert export["profiles"] == [
        {
            "profile_key": "summary:test",
            "data_version": version,
            "model": "test-model",
            "text": "Ada writes terse, precise notes.",
            "created_at": "2026-02-03T00:00:00+00:00",
        }
    ]
    [adapter] = export["adapters"]
    assert adapter["adapter_id"] == "user:ada:headline:lora"
    assert adapter["created_at"] == "2026-02-03T04:05:06+00:00"
    assert "weights" not in adapter and weights.decode() not in json.dumps(export)

    # every row the store holds about ada is in the export
    sizes = {
        name: 1 if section == "user" else len(export[section])
        for name, section in TABLE_SECTIONS.items()
    }
    sizes["document_embeddings"] = sum(export["embeddings"].values())
    assert sizes == _rows_of(demo, "ada")
    assert sizes["document_embeddings"] > 0 and sizes["documents"] > 0


def test_exports_of_unknown_users_and_other_tenants_raise(demo: Store) -> None:
    with pytest.raises(UnknownUserError, match="no user 'nobody' in tenant 'default'"):
        export_user(demo, "nobody")
    with pytest.raises(UnknownUserError) as raised:
        export_user(demo.with_tenant("other"), "ada")
    assert (raised.value.user_id, raised.value.tenant) == ("ada", "other")
