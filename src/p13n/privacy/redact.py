"""PII redaction at ingest (survey §9.4): presidio's pattern recognizers, configured per tenant.

Each detected span becomes ``<ENTITY_TYPE>``. Only recognizers that need no NLP model are used (no
spaCy or transformers model can be had offline), so person names cannot be recognized and asking
for them is refused. Nothing here touches the network: e-mail validation reads the public suffix
list bundled with tldextract, never the live one.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from p13n.data import Document, Interaction, Preference, Record, Sourced, User
from p13n.errors import ConfigError

if TYPE_CHECKING:
    from presidio_analyzer import EntityRecognizer, RecognizerResult

DEFAULT_ENTITIES: tuple[str, ...] = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "US_SSN",
    "STREET_ADDRESS",
)
"""What a tenant's redaction covers unless its configuration says otherwise."""

OPTIONAL_ENTITIES: tuple[str, ...] = ("URL", "UK_NHS", "UK_NINO", "MAC_ADDRESS", "CRYPTO")
"""Further entities presidio recognizes without a model; a tenant may add them."""

SUPPORTED_ENTITIES: tuple[str, ...] = DEFAULT_ENTITIES + OPTIONAL_ENTITIES

NER_ENTITIES: tuple[str, ...] = ("PERSON", "LOCATION", "ORGANIZATION", "NRP")
"""Entities presidio finds only with a named-entity recognition model (refused here)."""

DEFAULT_PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR")
"""presidio's ``PhoneRecognizer.DEFAULT_SUPPORTED_REGIONS`` (a test checks they agree)."""

DEFAULT_SCORE_THRESHOLD = 0.4
"""Without an NLP engine presidio cannot raise scores from context words ("phone", "ssn"), so the
recognizers' own scores decide. 0.4 keeps every phone number (``PhoneRecognizer`` scores each
0.4), delimited SSNs (0.5), IP addresses (0.6), street addresses (0.5) and whatever passed a
checksum (card numbers, IBANs, e-mail domains: 1.0), and drops presidio's "very weak" patterns
(0.05-0.1: any 9-digit number or ZIP+4 as an SSN, ``::`` as an IP address)."""

STREET_ADDRESS_SCORE = 0.5

# presidio has no street-address recognizer (its LOCATION entity needs a NER model, and finds
# cities and countries rather than street addresses), so this one is written by hand. It matches
# common US and UK forms: "221B Baker Street", "1600 Amphitheatre Parkway", "12 Main St.",
# "10-12 High Road, Apt 4", "Flat 3, 14 Kensington Gardens", "2512 Milam St #5216": an optional
# flat or unit, a house number (optionally with a letter, or a range), one to four capitalised
# words (or an ordinal such as "5th") and a street type. The street name must be capitalised so
# that ordinary prose ("3 more court dates") does not match; the street type may be in any case.
# It never crosses a line break. Known misses: addresses without a house number, lower-case
# street names, non-English street types ("Rue", "Straße"); known false alarms: capitalised
# phrases after a number that end in a street type ("2 Supreme Court").
_STREET_TYPES = (
    "street|avenue|road|boulevard|lane|drive|court|place|square|terrace|way|parkway|highway|"
    "close|crescent|gardens|grove|row|mews|circle|trail|walk|hill|loop|alley|plaza"
)
_STREET_ABBREVIATIONS = "st|ave|rd|blvd|ln|dr|ct|pl|sq|pkwy|hwy|cir"  # may end in "."
_UNIT = r"(?:(?i:flat|apt|apartment|suite|ste|unit)\.?[ \t]*\#?|\#[ \t]*)[0-9]+[A-Za-z]?"
STREET_ADDRESS_REGEX = (
    r"(?<![\w/.=\-])"  # not inside a date ("12/22"), a decimal or an identifier
    rf"(?:{_UNIT},?[ \t]+)?"  # "Flat 3, "
    r"[0-9]{1,5}[A-Za-z]?(?:-[0-9]{1,5}[A-Za-z]?)?"  # "221B", "10-12"
    r"[ \t]+(?:\p{Lu}[\p{Ll}'\u2019\-]+|[0-9]{1,3}(?:st|nd|rd|th))"  # "Baker", "5th"
    r"(?:[ \t]+\p{Lu}[\p{Ll}'\u2019\-]+){0,3}"  # "Kensington", "Amphitheatre"
    rf"[ \t]+(?i:(?:{_STREET_TYPES})\b|(?:{_STREET_ABBREVIATIONS})\b\.?)"  # "Street", "St."
    rf"(?:,?[ \t]+{_UNIT}\b)?"  # ", Apt 4"
)

RecordT = TypeVar("RecordT", bound=Record)


def _ner_refusal(entities: Sequence[str]) -> str:
    return (
        f"redaction of {', '.join(entities)} needs a named-entity recognition (NER) model, and "
        "no NER model is installed (presidio finds names with a spaCy or transformers model, and "
        "none can be downloaded here); remove "
        f"{'it' if len(entities) == 1 else 'them'} from the redaction entities"
    )


def _phone_regions_schema(schema: dict[str, Any]) -> None:
    import phonenumbers

    schema["items"] = {"type": "string", "enum": sorted(phonenumbers.SUPPORTED_REGIONS)}


def _threshold_rules(schema: dict[str, Any]) -> None:
    """States in the JSON Schema what ``Redactor`` refuses: a ``score_threshold`` above the best
    score an enabled entity's recognizer can give (it would drop every span of that entity).
    Written as bands of the threshold, each with the entities it leaves alive: schema
    generators handle such a flat ``anyOf`` where they give up on ``if``/``not``/``contains``."""
    best = {e: _best_score(_recognizer(e, DEFAULT_PHONE_REGIONS)) for e in SUPPORTED_ENTITIES}
    # Any entity set allows a threshold up to the lowest best score (the default entities hold
    # that entity, PHONE_NUMBER, so the bands below also describe a request that omits them).
    lowest = min(best.values())
    bands: list[dict[str, Any]] = [
        {"properties": {"score_threshold": {"maximum": lowest}}},
        {"properties": {"enabled": {"const": False}}, "required": ["enabled"]},
    ]
    for ceiling in sorted({score for score in best.values() if score > lowest}):
        alive = [entity for entity in SUPPORTED_ENTITIES if best[entity] >= ceiling]
        bands.append(
            {
                "properties": {
                    "score_threshold": {"maximum": ceiling},
                    "entities": {"items": {"enum": alive}},
                },
                "required": ["entities"],
            }
        )
    schema["anyOf"] = bands


class RedactionConfig(BaseModel):
    """A tenant's redaction settings."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_threshold_rules)

    enabled: bool = Field(True, strict=True)
    entities: tuple[str, ...] = Field(
        DEFAULT_ENTITIES,
        # NER_ENTITIES are left out: they are valid names, but refused (see below).
        json_schema_extra={"items": {"type": "string", "enum": list(SUPPORTED_ENTITIES)}},
    )
    """Entity types to redact: any of ``SUPPORTED_ENTITIES``. ``NER_ENTITIES`` are valid names
    but refused by ``Redactor`` (``ConfigError``): they need a model this installation lacks."""
    score_threshold: float = Field(DEFAULT_SCORE_THRESHOLD, ge=0.0, le=1.0, strict=True)
    """Spans scoring below this are kept (see ``DEFAULT_SCORE_THRESHOLD``)."""
    phone_regions: tuple[str, ...] = Field(
        DEFAULT_PHONE_REGIONS, min_length=1, json_schema_extra=_phone_regions_schema
    )
    """Regions whose national phone number formats are recognized (ISO 3166 alpha-2); numbers
    written with a ``+`` country code are recognized whatever the regions."""

    @field_validator("entities")
    @classmethod
    def _known_entities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(name.strip().upper() for name in value))
        unknown = [name for name in names if name not in SUPPORTED_ENTITIES + NER_ENTITIES]
        if unknown:
            raise ValueError(
                f"unknown entity {', '.join(map(repr, unknown))}; "
                f"supported: {', '.join(SUPPORTED_ENTITIES)}"
            )
        return names

    @field_validator("phone_regions")
    @classmethod
    def _known_regions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import phonenumbers

        regions = tuple(dict.fromkeys(region.strip().upper() for region in value))
        unknown = [region for region in regions if region not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            raise ValueError(f"unknown phone region {', '.join(map(repr, unknown))}")
        if not regions:
            raise ValueError("give at least one phone region")
        return regions


@dataclass(frozen=True)
class Redaction:
    """A redacted text and how many spans of each entity type were replaced."""

    text: str
    counts: dict[str, int]


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    entity: str
    score: float


# -- presidio recognizers, built once per process ---------------------------------------------

_lock = threading.Lock()
_built: dict[tuple[str, tuple[str, ...]], EntityRecognizer] = {}


def _recognizer(entity: str, phone_regions: tuple[str, ...]) -> EntityRecognizer:
    """presidio's recognizer for ``entity``, constructed once per process (and region list)."""
    key = (entity, phone_regions if entity == "PHONE_NUMBER" else ())
    with _lock:
        found = _built.get(key)
        if found is None:
            found = _build(entity, phone_regions)
            # compile its patterns now (presidio compiles on first use), not inside a request
            found.analyze("warm-up 1", [entity], None)  # type: ignore[arg-type]
            _built[key] = found
        return found


def _build(entity: str, phone_regions: tuple[str, ...]) -> EntityRecognizer:
    # presidio's import pulls in spaCy, torch and transformers (seconds), so it waits until a
    # Redactor is first built; the recognizers themselves are cheap to construct.
    from presidio_analyzer import Pattern, PatternRecognizer
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        CryptoRecognizer,
        IbanRecognizer,
        IpRecognizer,
        MacAddressRecognizer,
        NhsRecognizer,
        PhoneRecognizer,
        UkNinoRecognizer,
        UrlRecognizer,
        UsSsnRecognizer,
    )

    factories: dict[str, Callable[[], EntityRecognizer]] = {
        "EMAIL_ADDRESS": _email_recognizer,
        "PHONE_NUMBER": lambda: PhoneRecognizer(supported_regions=phone_regions, leniency=1),
        "CREDIT_CARD": CreditCardRecognizer,
        "IBAN_CODE": IbanRecognizer,
        "IP_ADDRESS": IpRecognizer,
        "US_SSN": UsSsnRecognizer,
        "URL": UrlRecognizer,
        "UK_NHS": NhsRecognizer,
        "UK_NINO": UkNinoRecognizer,
        "MAC_ADDRESS": MacAddressRecognizer,
        "CRYPTO": CryptoRecognizer,
        "STREET_ADDRESS": lambda: PatternRecognizer(
            supported_entity="STREET_ADDRESS",
            name="StreetAddressRecognizer",
            patterns=[Pattern("US/UK street address", STREET_ADDRESS_REGEX, STREET_ADDRESS_SCORE)],
            context=["address", "live", "lives", "street", "located"],
            # case-sensitive (presidio's default ignores case): street names are capitalised
            global_regex_flags=0,
        ),
    }
    return factories[entity]()


@functools.cache
def _fewest_phone_digits() -> int:
    """The fewest digits a valid phone number of any region has, by libphonenumber's metadata (4).

    ``PhoneRecognizer`` (at leniency 1, presidio's default) reports only numbers that
    libphonenumber finds valid, and a valid number's national part has one of its region's
    possible lengths. A text with fewer digits holds no phone number, so ``Redactor`` skips the
    recognizer there: it scans the text once per region, most of the redaction's time.
    """
    import phonenumbers
    from phonenumbers import PhoneMetadata

    metadata = [PhoneMetadata.metadata_for_region(r) for r in phonenumbers.SUPPORTED_REGIONS]
    metadata += [
        PhoneMetadata.metadata_for_nongeo_region(code)
        for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS
    ]
    lengths = [
        length
        for each in metadata
        if each is not None and each.general_desc is not None
        for length in each.general_desc.possible_length
        if length > 0
    ]
    return min(lengths, default=1)


def _email_recognizer() -> EntityRecognizer:
    """presidio's e-mail recognizer, validating domains against tldextract's bundled snapshot.

    presidio's own calls ``tldextract.extract``, whose default extractor fetches the public suffix
    list from publicsuffix.org on first use (and caches it in ``~/.cache``). This one never asks
    the network and writes nothing to disk.
    """
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    offline = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)
    offline("example.com")  # load the snapshot now, not inside the first request

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return offline(pattern_text).fqdn != ""

    return OfflineEmailRecognizer()


def _best_score(recognizer: EntityRecognizer) -> float:
    """The highest score ``recognizer`` can give a span (without context words)."""
    from presidio_analyzer import EntityRecognizer, PatternRecognizer
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    if isinstance(recognizer, PhoneRecognizer):
        return float(recognizer.SCORE)
    if isinstance(recognizer, PatternRecognizer):
        if type(recognizer).validate_result is not PatternRecognizer.validate_result:
            return float(EntityRecognizer.MAX_SCORE)  # a passed checksum scores the maximum
        return max(float(pattern["score"]) for pattern in recognizer.to_dict()["patterns"])
    return float(EntityRecognizer.MAX_SCORE)


# -- the redactor ----------------------------------------------------------------------------


class Redactor:
    """Replaces PII in texts and records with ``<ENTITY_TYPE>``, as one tenant configured it.

    Cheap to construct: presidio's recognizers are shared by every ``Redactor`` of the process.
    Thread-safe: redaction keeps no state between calls.
    """

    def __init__(self, config: RedactionConfig | None = None) -> None:
        self.config = config or RedactionConfig()
        refused = [entity for entity in self.config.entities if entity in NER_ENTITIES]
        if refused:
            raise ConfigError(_ner_refusal(refused))
        self._recognizers: list[tuple[str, EntityRecognizer]] = []
        self._min_digits: dict[str, int] = {}
        """Recognizers skipped for a text with fewer digits (a cheap test; they are slow)."""
        if not self.config.enabled:
            return
        for entity in self.config.entities:
            recognizer = _recognizer(entity, self.config.phone_regions)
            best = _best_score(recognizer)
            if best < self.config.score_threshold:
                raise ConfigError(
                    f"score_threshold {self.config.score_threshold} would drop every "
                    f"{entity}: presidio scores it at most {best} without context words; "
                    f"lower the threshold to {best} or remove {entity}"
                )
            self._recognizers.append((entity, recognizer))
        if "PHONE_NUMBER" in self.config.entities:
            self._min_digits["PHONE_NUMBER"] = _fewest_phone_digits()

    def __repr__(self) -> str:
        return f"Redactor({self.config!r})"

    def _spans(self, text: str) -> list[_Span]:
        """Every detection at or above the threshold, overlaps included, by position."""
        found: list[_Span] = []
        digits = sum(map(str.isdigit, text)) if self._min_digits else 0
        for entity, recognizer in self._recognizers:
            if digits < self._min_digits.get(entity, 0):
                continue
            # presidio types the NLP artifacts as required; pattern recognizers never read them
            results: list[RecognizerResult] = recognizer.analyze(text, [entity], None)  # type: ignore[arg-type]
            found.extend(
                _Span(result.start, result.end, entity, float(result.score))
                for result in results
                if result.score >= self.config.score_threshold and result.end > result.start
            )
        found.sort(key=lambda span: (span.start, -span.end))
        return found

    def redact(self, text: str) -> Redaction:
        """``text`` with each detected span replaced by ``<ENTITY_TYPE>``.

        Overlapping detections (a URL inside an e-mail address, a number that is both a phone
        number and an SSN) become one placeholder covering all of them, so no fragment of any
        survives; it is named after the highest-scoring of them, the longest on a tie.
        """
        if not self._recognizers or not text:
            return Redaction(text, {})
        pieces: list[str] = []
        counts: Counter[str] = Counter()
        position = 0
        for group in _overlapping(self._spans(text)):
            start, end = group[0].start, max(span.end for span in group)
            winner = max(group, key=lambda span: (span.score, span.end - span.start))
            pieces += [text[position:start], f"<{winner.entity}>"]
            counts[winner.entity] += 1
            position = end
        pieces.append(text[position:])
        return Redaction("".join(pieces), dict(sorted(counts.items())))

    def redact_record(self, record: RecordT) -> tuple[RecordT, Counter[str]]:
        """A new record with the user-written text redacted, and what was replaced.

        Redacted: a document's text, title and metadata; a preference's prompt, chosen,
        rejected and metadata; an interaction's metadata; a user's attributes (string values,
        at any depth). Ids, kinds, timestamps and numbers are kept, as are items and personas
        (catalog and tenant data, not written by the user). The input is never modified.
        """
        counts: Counter[str] = Counter()
        if not self._recognizers:
            return record.model_copy(deep=True), counts

        def text(value: str) -> str:
            redaction = self.redact(value)
            counts.update(redaction.counts)
            return redaction.text

        def json_value(value: JsonValue) -> JsonValue:
            if isinstance(value, str):
                return text(value)
            if isinstance(value, list):
                return [json_value(item) for item in value]
            if isinstance(value, dict):
                return {key: json_value(item) for key, item in value.items()}
            return value

        update: dict[str, object] = {}
        if isinstance(record, Document):
            update["text"] = text(record.text)
            update["title"] = None if record.title is None else text(record.title)
        if isinstance(record, Preference):
            update.update(
                prompt=text(record.prompt),
                chosen=text(record.chosen),
                rejected=text(record.rejected),
            )
        if isinstance(record, Document | Interaction | Preference):
            update["metadata"] = json_value(record.metadata)
        if isinstance(record, User):
            update["attributes"] = json_value(record.attributes)
        return record.model_copy(update=update, deep=True), counts

    def redact_batch(self, sourced: Sequence[Sourced]) -> tuple[list[Sourced], dict[str, int]]:
        """Every record redacted (origins kept), and the total replaced per entity type."""
        total: Counter[str] = Counter()
        redacted: list[Sourced] = []
        for each in sourced:
            record, counts = self.redact_record(each.record)
            total.update(counts)
            redacted.append(replace(each, record=record))
        return redacted, dict(sorted(total.items()))


def _overlapping(spans: list[_Span]) -> list[list[_Span]]:
    """Spans (sorted by start) grouped into runs that overlap one another."""
    groups: list[list[_Span]] = []
    end = -1
    for span in spans:
        if groups and span.start < end:
            groups[-1].append(span)
            end = max(end, span.end)
        else:
            groups.append([span])
            end = span.end
    return groups
