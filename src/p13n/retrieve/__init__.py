"""Retrieval over a user's own data: query generation φ_q and retrievers R, each by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from p13n.encode import Encoder
from p13n.errors import ConfigError
from p13n.llm import LLM
from p13n.registry import Registry
from p13n.retrieve.base import (
    LRUCache,
    Retrieved,
    RetrievedItem,
    Retriever,
    UserCorpus,
    tokenize,
    top_k,
)
from p13n.retrieve.bm25 import BM25Retriever
from p13n.retrieve.corpus import ALL_SOURCES, CorpusLoader, Source
from p13n.retrieve.dense import DenseRetriever
from p13n.retrieve.fusion import HybridRetriever, RecencyRetriever
from p13n.retrieve.query import IdentityQuery, KeywordQuery, LLMExpansionQuery, QueryGenerator
from p13n.retrieve.tfidf import TfidfRetriever


class RetrieverConfig(BaseModel):
    """Which retriever, over which of the user's data, and how many rows it returns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "bm25"
    k: int = Field(4, ge=0, le=100)
    sources: tuple[Source, ...] = ALL_SOURCES
    components: tuple[str, ...] = Field(("bm25", "dense"), description="hybrid: what it fuses")
    rrf_k: int = Field(60, gt=0, description="hybrid: reciprocal-rank fusion constant")
    inner: str = Field("bm25", description="recency: the retriever whose scores decay")
    half_life_days: float = Field(30.0, gt=0, description="recency: age that halves a score")
    k1: float = Field(1.5, gt=0)
    b: float = Field(0.75, ge=0, le=1)
    collaborative_neighbours: int = Field(
        0, ge=0, le=50, description="also retrieve from this many similar users' documents"
    )
    cache_size: int = Field(256, ge=1, description="users whose corpus and indexes stay cached")
    min_score: float | None = Field(
        None,
        allow_inf_nan=False,
        description="quote only rows scoring above this (a cosine threshold for dense, chosen on "
        "dev); none: any score",
    )
    require_match: bool = Field(
        True,
        description="quote only rows the retriever matches: for a sparse retriever (and a hybrid "
        "or recency built on one), rows sharing a word with the query; false quotes the top k "
        "whatever they share (LaMP's protocol)",
    )

    @model_validator(mode="after")
    def _known_names(self) -> RetrieverConfig:
        for name in (self.name, *self.components, self.inner):
            if name not in retrievers:
                raise ValueError(f"unknown retriever {name!r}: choose from {retrievers.names()}")
        self.used()  # refuses a configuration that nests a retriever inside itself
        return self

    def parts(self, name: str) -> tuple[str, ...]:
        """The retrievers ``name`` is built from (``components`` or ``inner``), if any."""
        if name == "hybrid":
            return self.components
        if name == "recency":
            return (self.inner,)
        return ()

    def used(self, name: str | None = None, _path: tuple[str, ...] = ()) -> set[str]:
        """Every retriever name that building ``name`` (default ``self.name``) involves."""
        name = name or self.name
        if name in _path:
            raise ValueError(
                f"retriever {' -> '.join((*_path, name))} contains itself: a hybrid's "
                "components and a recency's inner retriever must not lead back to it"
            )
        found = {name}
        for part in self.parts(name):
            found |= self.used(part, (*_path, name))
        return found

    def needs_encoder(self) -> bool:
        """Whether building the retriever takes an encoder (some retriever it involves scores
        with stored vectors)."""
        return any(retrievers.get(name).needs_encoder for name in self.used())


RetrieverFactory = Callable[[RetrieverConfig, Encoder | None], Retriever]


@dataclass(frozen=True)
class RetrieverKind:
    """A registered retriever: how to build it, and whether it needs an encoder to score."""

    build: RetrieverFactory
    needs_encoder: bool = False
    """``build`` is then always given one (``build_retriever`` refuses to build it without)."""


retrievers: Registry[RetrieverKind] = Registry("retriever")


def _dense(config: RetrieverConfig, encoder: Encoder | None) -> Retriever:
    assert encoder is not None  # build_retriever checks needs_encoder
    return DenseRetriever(encoder)


def _hybrid(config: RetrieverConfig, encoder: Encoder | None) -> Retriever:
    return HybridRetriever(
        tuple(build_retriever(config, encoder, name) for name in config.components),
        rrf_k=config.rrf_k,
    )


def _recency(config: RetrieverConfig, encoder: Encoder | None) -> Retriever:
    return RecencyRetriever(
        build_retriever(config, encoder, config.inner), half_life_days=config.half_life_days
    )


retrievers.register(
    "bm25", RetrieverKind(lambda config, _: BM25Retriever(k1=config.k1, b=config.b))
)
retrievers.register("tfidf", RetrieverKind(lambda config, _: TfidfRetriever()))
retrievers.register("dense", RetrieverKind(_dense, needs_encoder=True))
# A hybrid or recency retriever needs an encoder when a part does: RetrieverConfig.used() says.
retrievers.register("hybrid", RetrieverKind(_hybrid))
retrievers.register("recency", RetrieverKind(_recency))


def build_retriever(
    config: RetrieverConfig, encoder: Encoder | None = None, name: str | None = None
) -> Retriever:
    """The retriever ``name`` (default ``config.name``) configured by ``config``."""
    name = name or config.name
    kind = retrievers.get(name)
    if kind.needs_encoder and encoder is None:
        raise ConfigError(f"the {name!r} retriever needs an encoder")
    return kind.build(config, encoder)


QueryFactory = Callable[[LLM | None], QueryGenerator]
query_generators: Registry[QueryFactory] = Registry("query generator")
query_generators.register("identity", lambda _: IdentityQuery())
query_generators.register("keywords", lambda _: KeywordQuery())


@query_generators.decorator("llm-expansion")
def _expansion(llm: LLM | None) -> QueryGenerator:
    if llm is None:
        raise ConfigError("LLM query expansion needs an LLM")
    return LLMExpansionQuery(llm)


def build_query_generator(name: str, llm: LLM | None = None) -> QueryGenerator:
    return query_generators.get(name)(llm)


__all__ = [
    "ALL_SOURCES",
    "BM25Retriever",
    "CorpusLoader",
    "DenseRetriever",
    "HybridRetriever",
    "IdentityQuery",
    "KeywordQuery",
    "LLMExpansionQuery",
    "LRUCache",
    "QueryGenerator",
    "RecencyRetriever",
    "Retrieved",
    "RetrievedItem",
    "Retriever",
    "RetrieverConfig",
    "RetrieverFactory",
    "RetrieverKind",
    "TfidfRetriever",
    "UserCorpus",
    "build_query_generator",
    "build_retriever",
    "query_generators",
    "retrievers",
    "tokenize",
    "top_k",
]
