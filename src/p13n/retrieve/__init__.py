"""Retrieval over a user's own data: query generation φ_q and retrievers R, each by name."""

from __future__ import annotations

from collections.abc import Callable

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


RetrieverFactory = Callable[[RetrieverConfig, Encoder | None], Retriever]
retrievers: Registry[RetrieverFactory] = Registry("retriever")


def _needs_encoder(encoder: Encoder | None, name: str) -> Encoder:
    if encoder is None:
        raise ConfigError(f"the {name!r} retriever needs an encoder")
    return encoder


retrievers.register("bm25", lambda config, _: BM25Retriever(k1=config.k1, b=config.b))
retrievers.register("tfidf", lambda config, _: TfidfRetriever())
retrievers.register("dense", lambda _, e: DenseRetriever(_needs_encoder(e, "dense")))


@retrievers.decorator("hybrid")
def _hybrid(config: RetrieverConfig, encoder: Encoder | None) -> Retriever:
    return HybridRetriever(
        tuple(build_retriever(config, encoder, name) for name in config.components),
        rrf_k=config.rrf_k,
    )


@retrievers.decorator("recency")
def _recency(config: RetrieverConfig, encoder: Encoder | None) -> Retriever:
    return RecencyRetriever(
        build_retriever(config, encoder, config.inner), half_life_days=config.half_life_days
    )


def build_retriever(
    config: RetrieverConfig, encoder: Encoder | None = None, name: str | None = None
) -> Retriever:
    """The retriever ``name`` (default ``config.name``) configured by ``config``."""
    return retrievers.get(name or config.name)(config, encoder)


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
    "TfidfRetriever",
    "UserCorpus",
    "build_query_generator",
    "build_retriever",
    "query_generators",
    "retrievers",
    "tokenize",
    "top_k",
]
