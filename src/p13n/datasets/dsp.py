"""The Domain-Specific Preference (DSP) data (Cheng et al. 2023, "Everyone Deserves A Reward:
Learning Customized Human Preferences", arXiv 2309.03126).

Each record is an Alpaca instruction answered by ChatGPT under four domain personas (academy,
business, entertainment, literature & art), plus the original Alpaca answer (``normal`` in the
file, ``alpaca`` here). For a persona's domain, that domain's answer is preferred over the others:
the paper's domain-conditioned preferences, as ``preference_pairs`` builds them.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p13n.errors import DspFormatError, UnknownNameError

DOMAINS = ("academy", "business", "entertainment", "literature")
ALPACA = "alpaca"
"""Key of the original Alpaca answer (``normal`` in the released file)."""
FILE_PATTERN = "domain_specific_preference.*.json"

_PERSONAS = {
    "academy": "An academic researcher who wants rigorous, precise and well-structured answers "
    "that use correct terminology and reason from evidence.",
    "business": "A business professional who wants concise, practical answers focused on "
    "actionable outcomes, costs and benefits.",
    "entertainment": "An entertainment lover who wants lively, humorous and engaging answers in "
    "a casual, conversational tone.",
    "literature": "A lover of literature and art who wants expressive, imaginative answers rich "
    "in imagery and elegant language.",
}


@dataclass(frozen=True)
class DspQuery:
    """One instruction and its answers by domain (``DOMAINS``, plus ``ALPACA`` when non-empty)."""

    id: str
    query: str
    answers: dict[str, str]


@dataclass(frozen=True)
class PreferencePair:
    """For a user with the ``persona`` domain, ``chosen`` is preferred over ``rejected``."""

    id: str
    persona: str
    prompt: str
    chosen: str
    rejected: str


def persona_description(domain: str) -> str:
    """A one-sentence persona for a DSP domain, paraphrasing the paper's domain framing (the
    paper's own system prompts appear only in a figure)."""
    try:
        return _PERSONAS[domain]
    except KeyError:
        raise UnknownNameError("DSP domain", domain, list(DOMAINS)) from None


def _resolve(path: Path) -> Path:
    if path.is_dir():
        found = sorted(path.glob(FILE_PATTERN))
        if len(found) != 1:
            names = ", ".join(p.name for p in found) or "none"
            raise DspFormatError(
                f"{path}: expected exactly one {FILE_PATTERN} file, found {names}; "
                "pass the file itself"
            )
        return found[0]
    if not path.is_file():
        raise DspFormatError(f"{path}: no such file or directory")
    return path


def _split(file: Path) -> str:
    """``test`` for ``domain_specific_preference.test.json``; the file's stem otherwise."""
    parts = file.name.split(".")
    return parts[1] if len(parts) == 3 and parts[0] == "domain_specific_preference" else file.stem


def _record(file: Path, index: int, raw: Any, split: str) -> DspQuery:
    def fail(problem: str) -> DspFormatError:
        return DspFormatError(f"{file}: record {index}: {problem}")

    if not isinstance(raw, dict):
        raise fail(f"expected an object, got {type(raw).__name__}")
    unknown = set(raw) - {"query", "responses"}
    if unknown:
        raise fail(f"unknown fields {sorted(unknown)}; expected 'query' and 'responses'")
    query, responses = raw.get("query"), raw.get("responses")
    if not isinstance(query, str) or not query.strip():
        raise fail("'query' must be a non-empty string")
    if not isinstance(responses, dict):
        raise fail("'responses' must be an object of domain -> answer")
    unknown = set(responses) - {*DOMAINS, "normal"}
    if unknown:
        raise fail(f"unknown response keys {sorted(unknown)}; expected {[*DOMAINS, 'normal']}")
    answers: dict[str, str] = {}
    for domain in DOMAINS:
        answer = responses.get(domain)
        if not isinstance(answer, str) or not answer.strip():
            raise fail(f"response {domain!r} must be a non-empty string")
        answers[domain] = answer
    normal = responses.get("normal")
    if normal is not None and not isinstance(normal, str):
        raise fail("response 'normal' must be a string")
    if normal and normal.strip():  # one released record has an empty Alpaca answer
        answers[ALPACA] = normal
    return DspQuery(id=f"dsp-{split}-{index:04d}", query=query, answers=answers)


def load_dsp(path: Path) -> list[DspQuery]:
    """Read a DSP split: the JSON file, or the folder holding exactly one such file. Ids are
    ``dsp-<split>-<index>``, stable across runs."""
    file = _resolve(Path(path))
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DspFormatError(f"{file}: not readable as JSON: {error}") from None
    if not isinstance(raw, list):
        raise DspFormatError(f"{file}: expected a JSON array of records, got {type(raw).__name__}")
    split = _split(file)
    return [_record(file, index, item, split) for index, item in enumerate(raw)]


def _rng(seed: int, *parts: str) -> random.Random:
    # Seeded per (query, persona), so a pair does not depend on which other queries are included.
    digest = hashlib.sha256("\x00".join((str(seed), *parts)).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def preference_pairs(queries: Sequence[DspQuery], seed: int) -> list[PreferencePair]:
    """For each query and each persona domain D: chosen = D's answer, rejected = a seeded choice
    among the other domains' answers. Other answers identical to the chosen one are never
    rejected (some instructions have one correct answer in every domain); a (query, persona)
    whose other answers are all identical to it gives no pair. Ids are ``<query>:<D>><rejected>``.
    """
    pairs: list[PreferencePair] = []
    for query in queries:
        for persona in DOMAINS:
            chosen = query.answers[persona]
            others = [
                d for d in DOMAINS if d != persona and query.answers[d].strip() != chosen.strip()
            ]
            if not others:
                continue
            rejected = _rng(seed, query.id, persona).choice(others)
            pairs.append(
                PreferencePair(
                    id=f"{query.id}:{persona}>{rejected}",
                    persona=persona,
                    prompt=query.query,
                    chosen=chosen,
                    rejected=query.answers[rejected],
                )
            )
    return pairs
