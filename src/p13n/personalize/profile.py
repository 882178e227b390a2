"""LLM-written user profiles (profile-augmented prompting, survey §5.2.3): a short summary of the
user's interests and style, stored with the data version it was written from and rewritten
when the user's data changes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from p13n.llm import LLM, ChatMessage, GenerationOptions
from p13n.prompt.templates import quote
from p13n.retrieve import CorpusLoader
from p13n.store import Store, StoredProfile

SUMMARY_INSTRUCTION = (
    "Below are texts written by one person and things they did, newest first, as quoted data. "
    "In at most three sentences, describe this person's interests, the topics they write "
    "about, and their writing style (tone, length, vocabulary). Describe; do not quote."
)


@dataclass(frozen=True)
class ProfileResult:
    text: str
    refreshed: bool
    """True when it was (re)written for this call; False when the stored one was still valid."""


class ProfileWriter:
    """Returns a user's profile, writing it with ``llm`` when none is stored for the user's
    current data version."""

    def __init__(
        self,
        store: Store,
        loader: CorpusLoader,
        llm: LLM,
        *,
        max_source_tokens: int = 1024,
        max_new_tokens: int = 96,
    ) -> None:
        self.store, self.loader, self.llm = store, loader, llm
        self.max_source_tokens = max_source_tokens
        self.max_new_tokens = max_new_tokens
        # What the summary was written from is part of its identity: another recipe or another
        # choice of sources is another profile.
        sources = ",".join(loader.sources)
        recipe = f"{SUMMARY_INSTRUCTION}|{max_source_tokens}|{max_new_tokens}|{sources}"
        digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
        self.key = f"summary:{llm.backend}:{llm.model}:{digest}"[:200]

    def profile(self, user_id: str, *, version: str | None = None) -> ProfileResult:
        """``version``: the user's data version, when the caller has just read it."""
        corpus = self.loader.corpus(user_id, version=version)
        stored = self.store.get_profile(user_id, self.key)
        if stored is not None and stored.data_version == corpus.version:
            return ProfileResult(stored.text, refreshed=False)
        lines: list[str] = []
        used = 0
        for row in range(len(corpus)):
            line = quote(corpus.retrievable_text(row))
            cost = self.llm.tokenizer.count(line)
            if used + cost > self.max_source_tokens:
                line = quote(
                    self.llm.tokenizer.truncate(
                        corpus.retrievable_text(row), self.max_source_tokens - used
                    )
                )
                lines.append(line)
                break
            lines.append(line)
            used += cost
        if not lines:
            return ProfileResult("", refreshed=False)
        messages: list[ChatMessage] = [
            {"role": "system", "content": SUMMARY_INSTRUCTION},
            {"role": "user", "content": "\n".join(lines)},
        ]
        text = self.llm.generate(
            messages, GenerationOptions(max_new_tokens=self.max_new_tokens)
        ).text
        self.store.put_profile(
            StoredProfile(
                user_id=user_id,
                profile_key=self.key,
                data_version=corpus.version,
                model=self.llm.model,
                text=text,
                created_at=datetime.now(UTC),
            )
        )
        return ProfileResult(text, refreshed=True)
