"""schemathesis hooks for ``bench/fuzz_service.py`` (loaded through ``SCHEMATHESIS_HOOKS``).

No text is generated: explained recommendations are filtered out (``/v1/generate`` and chat
completions are left out of the run by path), since one would take the embedded model seconds.

JSON Schema cannot state a rule that compares two values of one request. p13n has two, both
named in the operations' descriptions: a preference's ``chosen`` and ``rejected`` must differ,
and a batch may repeat an id only with the same content. A schema-valid request that breaks one
of them is rightly refused with a 422 saying so; schemathesis's ``positive_data_acceptance``
would count that as a mismatch. This check is that check, except for a 422 whose message is one
of those two rules (and nothing else).
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance

CROSS_FIELD_RULES = (
    "chosen and rejected are the same text",
    "appears twice in this batch with different content",
)


@schemathesis.hook
def filter_body(ctx: Any, body: Any) -> bool:
    """No explained recommendations: each would generate text."""
    return not (isinstance(body, dict) and body.get("explain") is True)


@schemathesis.check
def positive_data_acceptance_but_cross_field_rules(ctx: Any, response: Any, case: Any) -> Any:
    """Schema-valid data is accepted, unless it breaks a rule JSON Schema cannot state."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if response.status_code == 422 and any(r in response.text for r in CROSS_FIELD_RULES):
            return None
        raise
