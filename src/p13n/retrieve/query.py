"""Query generation φ_q: what the retriever searches for, made from the user's input x."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from p13n.llm import LLM, ChatMessage, GenerationOptions


@runtime_checkable
class QueryGenerator(Protocol):
    @property
    def name(self) -> str: ...

    def query(self, text: str) -> str: ...


@dataclass(frozen=True)
class IdentityQuery:
    """The input itself (what the LaMP baselines do)."""

    name: str = "identity"

    def query(self, text: str) -> str:
        return text


class KeywordQuery:
    """The input's ``top`` key phrases (YAKE: unsupervised, statistical, no model needed).
    The input itself is the query only when YAKE finds no phrase at all (a one-word input)."""

    name = "keywords"

    def __init__(self, top: int = 8, max_ngram: int = 2) -> None:
        import yake

        self.top, self.max_ngram = top, max_ngram
        self._extractor = yake.KeywordExtractor(lan="en", n=max_ngram, top=top)

    def query(self, text: str) -> str:
        phrases = [phrase for phrase, _ in self._extractor.extract_keywords(text)]
        return " ".join(phrases) if phrases else text


EXPANSION_INSTRUCTION = (
    "List the key topics, names and terms a search engine needs to find texts related to the "
    "request below. Answer with keywords only, separated by commas."
)


@dataclass(frozen=True)
class LLMExpansionQuery:
    """The input followed by search terms the LLM writes for it (query expansion in the style
    of query2doc: the expansion adds recall, the original keeps precision)."""

    llm: LLM = field(repr=False)
    max_new_tokens: int = 32
    name: str = "llm-expansion"

    def query(self, text: str) -> str:
        messages: list[ChatMessage] = [
            {"role": "system", "content": EXPANSION_INSTRUCTION},
            {"role": "user", "content": text},
        ]
        expansion = self.llm.generate(
            messages, GenerationOptions(max_new_tokens=self.max_new_tokens)
        ).text
        return f"{text}\n{expansion}".strip()
