"""Privacy (survey §9.4): PII redaction at ingest, configured per tenant, and a user's data export.

Importing this package is cheap: presidio is imported when the first ``Redactor`` is built.
"""

from p13n.privacy.export import export_user
from p13n.privacy.redact import (
    DEFAULT_ENTITIES,
    NER_ENTITIES,
    SUPPORTED_ENTITIES,
    Redaction,
    RedactionConfig,
    Redactor,
)

__all__ = [
    "DEFAULT_ENTITIES",
    "NER_ENTITIES",
    "SUPPORTED_ENTITIES",
    "Redaction",
    "RedactionConfig",
    "Redactor",
    "export_user",
]
