"""Retrieval over a user's own data: every retriever honours one contract on a real store (SQLite
and PostgreSQL) with the real encoder and real text; BM25 scores are rank_bm25's; corpora are
cached per data version in a bounded LRU; fusion, recency and collaborative retrieval do what
they document."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from rank_bm25 import BM25Okapi

from p13n.data import Document, Interaction, Item, User
from p13n.encode import Encoder
from p13n.errors import ConfigError, UnknownNameError, UnknownUserError
from p13n.retrieve import (
    BM25Retriever,
    CorpusLoader,
    HybridRetriever,
    IdentityQuery,
    KeywordQuery,
    LRUCache,
    RecencyRetriever,
    Retrieved,
    Retriever,
    RetrieverConfig,
    UserCorpus,
    build_query_generator,
    build_retriever,
    tokenize,
    top_k,
)
from p13n.store import Store, WriteSet, open_store
from tests.conftest import fresh_postgres_schema

HUFFPOST = "huffpost-news-category-v3-head/News_Category_Dataset_v3_first10000.json"

CONFIGS: dict[str, RetrieverConfig] = {
    "bm25": RetrieverConfig(name="bm25"),
    "tfidf": RetrieverConfig(name="tfidf"),
    "dense": RetrieverConfig(name="dense"),
    "hybrid-bm25-dense": RetrieverConfig(name="hybrid", components=("bm25", "dense")),
    "hybrid-bm25-tfidf-dense": RetrieverConfig(
        name="hybrid", components=("bm25", "tfidf", "dense")
    ),
    "recency-bm25": RetrieverConfig(name="recency", inner="bm25", half_life_days=365),
    "recency-dense": RetrieverConfig(name="recency", inner="dense", half_life_days=365),
}
USES_BM25 = {"bm25", "hybrid-bm25-dense", "hybrid-bm25-tfidf-dense", "recency-bm25"}


# -- real text and writing it through the store ---------------------------------------------------


@cache
def _huffpost(path: Path) -> tuple[dict[str, str], ...]:
    with path.open(encoding="utf-8") as lines:
        return tuple(json.loads(line) for line in lines)


def articles(
    shared_data: Path, n: int, *, author: str | None = None, category: str | None = None
) -> list[dict[str, str]]:
    """The first ``n`` HuffPost articles (newest first) by this author or in this category."""
    found = [
        a
        for a in _huffpost(shared_data / HUFFPOST)
        if (author is None or a["authors"] == author)
        and (category is None or a["category"] == category)
    ]
    assert len(found) >= n
    return found[:n]


def article_document(user: str, article: dict[str, str], **changes: Any) -> Document:
    fields: dict[str, Any] = {
        "user_id": user,
        "kind": "news",
        "title": article["headline"],
        "text": article["short_description"],
        "timestamp": article["date"],
        **changes,
    }
    return Document(**fields)


_VECTORS: dict[str, np.ndarray] = {}


def encode(encoder: Encoder, texts: list[str]) -> list[np.ndarray]:
    """The encoder's vectors, each distinct text encoded once per test session."""
    todo = sorted({t for t in texts if t not in _VECTORS})
    if todo:
        _VECTORS.update(zip(todo, encoder.encode(todo), strict=True))
    return [_VECTORS[t] for t in texts]


def write(
    store: Store,
    encoder: Encoder | None,
    documents: Sequence[Document] = (),
    **rest: Any,
) -> None:
    """One write of these rows, with the encoder's vectors of the documents (as ingest does)."""
    users = {d.user_id for d in documents} | {i.user_id for i in rest.get("interactions", ())}
    vectors = {}
    if encoder is not None and documents:
        texts = [d.embedding_text for d in documents]
        vectors = {
            (d.user_id, d.id): v for d, v in zip(documents, encode(encoder, texts), strict=True)
        }
    store.write(
        WriteSet(
            implicit_user_ids=sorted(users),
            documents=documents,
            encoder_id=encoder.id if encoder is not None else None,
            document_vectors=vectors,
            **rest,
        )
    )


def full_text(article: dict[str, str]) -> str:
    return f"{article['headline']} {article['short_description']}"


def ids(result: Retrieved) -> list[str]:
    return [item.id for item in result.items]


def ranked(result: Retrieved) -> list[tuple[str, float]]:
    return [(item.id, item.score) for item in result.items]


# -- the contract world: two users with real articles, one with nothing ----------------------------


@dataclass
class World:
    store: Store
    loader: CorpusLoader
    alice: list[Document]
    bob: list[Document]
    alice_articles: list[dict[str, str]]
    bob_articles: list[dict[str, str]]


def populate(store: Store, encoder: Encoder, shared_data: Path) -> World:
    alice_articles = articles(shared_data, 10, author="Cole Delbyck")  # entertainment
    bob_articles = articles(shared_data, 10, author="Nick Visser")  # politics
    alice = [article_document("alice", a) for a in alice_articles]
    bob = [article_document("bob", a) for a in bob_articles]
    write(
        store,
        encoder,
        alice + bob,
        users=[
            User(id="alice", attributes={"occupation": "film critic", "city": "Lisbon"}),
            User(id="bob", attributes={"occupation": "political reporter"}),
            User(id="empty"),
        ],
        items=[
            Item(id="m1", title="Nomadland", text="A woman lives in her van across the West."),
            Item(id="m2", title="All the President's Men", text="Two reporters and Watergate."),
        ],
        interactions=[
            Interaction(
                user_id="alice", item_id="m1", kind="rate", value=4.5, timestamp="2022-08-01"
            ),
            Interaction(user_id="bob", item_id="m2", kind="view", timestamp="2022-08-02"),
        ],
    )
    return World(store, CorpusLoader(store, encoder), alice, bob, alice_articles, bob_articles)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def read_only_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    """One store per backend for the tests that only read the world (writing it once keeps the
    suite fast); tests that write use the per-test ``store`` fixture instead."""
    if request.param == "sqlite":
        opened = open_store(f"sqlite:///{tmp_path_factory.mktemp('retrieve') / 'p13n.db'}")
        yield opened
        opened.close()
        return
    with fresh_postgres_schema() as url:
        opened = open_store(url)
        yield opened
        opened.close()


@pytest.fixture(scope="module")
def read_only_world(read_only_store: Store, encoder: Encoder, shared_data: Path) -> World:
    return populate(read_only_store, encoder, shared_data)


@pytest.fixture
def world(read_only_world: World, encoder: Encoder) -> World:
    """The shared world, seen through a fresh loader (empty cache, zero stats). Do not write."""
    return replace(read_only_world, loader=CorpusLoader(read_only_world.store, encoder))


@pytest.fixture
def fresh_world(store: Store, encoder: Encoder, shared_data: Path) -> World:
    """The same world in a store of its own, for tests that write."""
    return populate(store, encoder, shared_data)


@pytest.fixture(params=list(CONFIGS))
def config_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def retriever(config_name: str, encoder: Encoder) -> Retriever:
    return build_retriever(CONFIGS[config_name], encoder)


# -- 1. the contract every retriever honours -----------------------------------------------------


def test_the_world_is_what_the_loader_builds(world: World, encoder: Encoder) -> None:
    corpus = world.loader.corpus("alice")
    assert len(corpus) == 10 + 1 + 2
    assert corpus.sources == ["document"] * 10 + ["interaction"] + ["attribute"] * 2
    assert set(corpus.owners) == {"alice"}
    assert corpus.has_vector is not None and corpus.has_vector.tolist() == [True] * 10 + [False] * 3
    # documents newest first, each with the vector the encoder gives its text
    moments = [t for t in corpus.timestamps[:10] if t is not None]
    assert moments == sorted(moments, reverse=True) and len(moments) == 10
    by_id = {d.id: d for d in world.alice}
    assert corpus.vectors is not None
    expected = encode(encoder, [by_id[i].embedding_text for i in corpus.ids[:10]])
    np.testing.assert_allclose(corpus.vectors[:10], np.vstack(expected), atol=1e-6)
    # interactions and attributes rendered as text
    assert corpus.texts[10] == "rate (4.5): Nomadland — A woman lives in her van across the West."
    assert corpus.titles[10] == "Nomadland"
    assert corpus.texts[11:] == ["city: Lisbon", "occupation: film critic"]
    assert corpus.ids[11:] == ["attribute:city", "attribute:occupation"]


def test_a_user_without_data_retrieves_nothing(world: World, retriever: Retriever) -> None:
    corpus = world.loader.corpus("empty")
    assert len(corpus) == 0
    assert retriever.score("oscar nominated film", corpus).shape == (0,)
    result = top_k(retriever, "oscar nominated film", corpus, 5)
    assert result == Retrieved(query="oscar nominated film", retriever=retriever.name, items=())


def test_k_beyond_the_corpus_returns_every_row_once(world: World, retriever: Retriever) -> None:
    corpus = world.loader.corpus("alice")
    query = full_text(world.alice_articles[3])
    result = top_k(retriever, query, corpus, len(corpus) + 7)
    assert len(result) == len(corpus)
    assert sorted(ids(result)) == sorted(corpus.ids)
    scores = [item.score for item in result.items]
    assert scores == sorted(scores, reverse=True)
    assert all(np.isfinite(scores))
    for item in result.items:
        row = corpus.ids.index(item.id)
        assert (item.source, item.kind, item.title, item.text, item.timestamp, item.owner) == (
            corpus.sources[row],
            corpus.kinds[row],
            corpus.titles[row],
            corpus.texts[row],
            corpus.timestamps[row],
            "alice",
        )
    assert ranked(top_k(retriever, query, corpus, len(corpus))) == ranked(result)
    assert ranked(top_k(retriever, query, corpus, 3)) == ranked(result)[:3]


def test_k_zero_returns_nothing_and_negative_k_is_refused(
    world: World, retriever: Retriever
) -> None:
    corpus = world.loader.corpus("alice")
    assert top_k(retriever, "film", corpus, 0).items == ()
    with pytest.raises(ValueError, match="k must be >= 0"):
        top_k(retriever, "film", corpus, -1)


def test_queries_with_no_indexed_word_still_return_k_rows(
    world: World, retriever: Retriever
) -> None:
    corpus = world.loader.corpus("alice")
    for query in ("", "the of and", "xylophonequasar"):
        result = top_k(retriever, query, corpus, 4)
        assert len(result) == 4 and all(np.isfinite(i.score) for i in result.items)


def test_rows_with_no_sign_of_relevance_are_not_quoted(
    world: World, retriever: Retriever, config_name: str
) -> None:
    """With ``require_match``, a sparse retriever (and a hybrid or recency on one) quotes only
    rows sharing a word with the query; ``min_score`` thresholds any score; the rows left out
    are counted, and the defaults of ``top_k`` keep them all."""
    corpus = world.loader.corpus("alice")
    article = full_text(world.alice_articles[3])
    for query in ("xylophonequasar", article, "award show red carpet"):
        everything = top_k(retriever, query, corpus, 4)
        matched = top_k(retriever, query, corpus, 4, require_match=True)
        assert everything.unmatched == 0 and len(everything) == 4
        shared = [not set(tokenize(query)).isdisjoint(tokenize(corpus.retrievable_text(
            corpus.ids.index(i.id)))) for i in everything.items]  # fmt: skip
        sparse = config_name in ("bm25", "tfidf", "recency-bm25")
        if sparse:
            assert [i.id for i in matched.items] == [
                i.id for i, hit in zip(everything.items, shared, strict=True) if hit
            ]
        elif config_name in ("dense", "recency-dense") or "dense" in config_name:
            assert matched.items == everything.items  # a dense component matches every row
        assert len(matched) + matched.unmatched == 4 and matched.require_match
    nothing = top_k(retriever, "xylophonequasar", corpus, 4, require_match=True)
    if config_name in ("bm25", "tfidf", "recency-bm25"):
        assert nothing.items == () and nothing.unmatched == 4
    assert len(top_k(retriever, article, corpus, 4, require_match=True)) == 4
    high = top_k(retriever, "xylophonequasar", corpus, 4, min_score=0.99)
    assert high.items == () and high.unmatched == 4 and high.min_score == 0.99
    assert high.relevance_rule() == "a score above 0.99"
    with pytest.raises(ValidationError, match="finite number"):
        RetrieverConfig(min_score=float("nan"))


def test_a_small_corpus_matches_where_bm25_scores_zero_or_less() -> None:
    """rank_bm25's idf floor scores a word found in every row at or under 0: whether a row
    matches is whether it shares a word, not the sign of its score."""
    from datetime import UTC, datetime

    texts = ["My dog is called Biscuit.", "What is my dog called?"]
    corpus = UserCorpus(
        user_id="u", version="v", ids=["a", "b"], sources=["document"] * 2, kinds=["note"] * 2,
        titles=[None, None], texts=texts, timestamps=[datetime.now(UTC)] * 2, owners=["u"] * 2,
    )  # fmt: skip
    bm25 = BM25Retriever()
    assert (bm25.score("dog toy", corpus) <= 0).all()
    found = top_k(bm25, "dog toy", corpus, 2, require_match=True)
    assert [i.id for i in found.items] == ["a", "b"] and found.unmatched == 0
    assert top_k(bm25, "cat toy", corpus, 2, require_match=True).unmatched == 2


def test_retrieval_is_deterministic(
    world: World, retriever: Retriever, config_name: str, encoder: Encoder
) -> None:
    queries = [full_text(world.alice_articles[5]), "award show red carpet", "xylophonequasar"]
    corpus = world.loader.corpus("alice")
    first = [ranked(top_k(retriever, q, corpus, 8)) for q in queries]
    again = [ranked(top_k(retriever, q, world.loader.corpus("alice"), 8)) for q in queries]
    fresh_loader = CorpusLoader(world.store, encoder)
    fresh_retriever = build_retriever(CONFIGS[config_name], encoder)
    fresh = [ranked(top_k(fresh_retriever, q, fresh_loader.corpus("alice"), 8)) for q in queries]
    assert first == again == fresh
    assert world.loader.stats.hits >= 1 and world.loader.stats.misses == 1


def test_a_user_never_retrieves_another_users_rows(world: World, retriever: Retriever) -> None:
    bob_ids = {d.id for d in world.bob} | {str(x.id) for x in world.store.interactions("bob")}
    bob_texts = {d.text for d in world.bob}
    alice_corpus, bob_corpus = world.loader.corpus("alice"), world.loader.corpus("bob")
    for article, document in zip(world.bob_articles[:3], world.bob[:3], strict=True):
        query = full_text(article)  # matches bob's row verbatim, alice's hardly at all
        assert ids(top_k(retriever, query, bob_corpus, 1)) == [document.id]
        result = top_k(retriever, query, alice_corpus, 100)
        assert len(result) == len(alice_corpus)
        assert {item.owner for item in result.items} == {"alice"}
        assert not bob_ids & set(ids(result))
        assert not bob_texts & {item.text for item in result.items}


def test_a_write_invalidates_the_cached_corpus(
    fresh_world: World, retriever: Retriever, encoder: Encoder, shared_data: Path
) -> None:
    world = fresh_world
    loader = world.loader
    newcomer = articles(shared_data, 1, category="SPORTS")[0]
    query = full_text(newcomer)
    before = loader.corpus("alice")
    first = top_k(retriever, query, before, 3)
    assert loader.corpus("alice") is before  # cached while nothing changes
    newest = max(d.timestamp for d in world.alice if d.timestamp is not None)
    document = article_document("alice", newcomer, timestamp=newest + timedelta(days=1))
    assert document.id not in ids(first)

    write(world.store, encoder, [document])

    after = loader.corpus("alice")
    assert after is not before
    assert after.version != before.version
    assert after.version == world.store.data_version("alice")
    assert len(after) == len(before) + 1
    assert ids(top_k(retriever, query, after, 1)) == [document.id]
    assert loader.stats.misses == 2


def test_an_unknown_user_is_an_error(world: World, retriever: Retriever) -> None:
    with pytest.raises(UnknownUserError) as raised:
        world.loader.corpus("nobody")
    assert raised.value.user_id == "nobody" and raised.value.tenant == world.store.tenant
    with pytest.raises(UnknownUserError):
        world.loader.collaborative_corpus("nobody", neighbours=1)


def test_distinctive_words_of_a_document_rank_it_first(world: World, retriever: Retriever) -> None:
    corpus = world.loader.corpus("alice")
    row_tokens = [tokenize(corpus.retrievable_text(row)) for row in range(len(corpus))]
    for row in (0, 4, 9):
        others = {t for other, tokens in enumerate(row_tokens) if other != row for t in tokens}
        distinctive = list(dict.fromkeys(t for t in row_tokens[row] if t not in others))
        assert len(distinctive) >= 3
        query = " ".join(distinctive[:8] * 2)
        assert ids(top_k(retriever, query, corpus, 1)) == [corpus.ids[row]], query


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_a_corpus_of_stopwords_only_scores_without_error(
    store: Store, encoder: Encoder, config_name: str
) -> None:
    write(store, encoder, [Document(user_id="terse", text="Was it?", timestamp="2024-01-01")])
    corpus = CorpusLoader(store, encoder).corpus("terse")
    assert len(corpus) == 1
    result = top_k(build_retriever(CONFIGS[config_name], encoder), "was it good", corpus, 3)
    assert ids(result) == corpus.ids


# -- the corpus loader: sources, tenants, what invalidates it -------------------------------------


def test_the_loader_reads_only_the_sources_it_is_given(world: World, encoder: Encoder) -> None:
    documents = CorpusLoader(world.store, encoder, sources=("documents",)).corpus("alice")
    assert documents.sources == ["document"] * 10
    rest = CorpusLoader(world.store, None, sources=("interactions", "attributes")).corpus("alice")
    assert rest.sources == ["interaction", "attribute", "attribute"]
    assert rest.vectors is None and rest.encoder_id is None
    # without an encoder the documents are read as written, still newest first
    plain = CorpusLoader(world.store, None, sources=("documents",)).corpus("alice")
    assert plain.ids == documents.ids and plain.texts == documents.texts
    with pytest.raises(ValueError, match="unknown corpus sources"):
        CorpusLoader(world.store, encoder, sources=("documents", "emails"))  # type: ignore[arg-type]


def test_another_tenant_never_sees_this_tenants_rows(fresh_world: World, encoder: Encoder) -> None:
    world = fresh_world
    other = world.store.with_tenant("other")
    write(other, encoder, [Document(user_id="alice", text="Quiet tenant note about gardening.")])
    corpus = CorpusLoader(other, encoder).corpus("alice")
    assert corpus.texts == ["Quiet tenant note about gardening."]
    query = full_text(world.alice_articles[0])
    result = top_k(build_retriever(CONFIGS["bm25"], encoder), query, corpus, 10)
    assert ids(result) == corpus.ids and {i.owner for i in result.items} == {"alice"}
    mine = world.loader.corpus("alice")
    assert len(mine) == 13 and "Quiet tenant note about gardening." not in mine.texts


def test_renaming_an_item_reaches_the_interactions_that_render_it(
    fresh_world: World, encoder: Encoder
) -> None:
    world = fresh_world
    loader = world.loader
    before = loader.corpus("alice")
    assert "Nomadland" in before.texts[10]
    world.store.write(
        WriteSet(items=[Item(id="m1", title="Zebra Migration", text="A documentary.")])
    )
    after = loader.corpus("alice")
    assert after.texts[10] == "rate (4.5): Zebra Migration — A documentary."
    result = top_k(BM25Retriever(), "zebra migration", after, 1)
    assert result.items[0].source == "interaction"


# -- 2. BM25 is rank_bm25's BM25Okapi -------------------------------------------------------------


def corpus_of(texts: list[str], user: str = "reader") -> UserCorpus:
    """A corpus built directly (no store): one undated document row per text."""
    n = len(texts)
    return UserCorpus(
        user_id=user,
        version="v1",
        ids=[f"a{i}" for i in range(n)],
        sources=["document"] * n,
        kinds=["news"] * n,
        titles=[None] * n,
        texts=texts,
        timestamps=[None] * n,
        owners=[user] * n,
    )


@pytest.mark.parametrize(("k1", "b"), [(1.5, 0.75), (1.2, 0.5), (2.0, 1.0)])
def test_bm25_scores_are_rank_bm25s(shared_data: Path, k1: float, b: float) -> None:
    corpus = corpus_of([full_text(a) for a in _huffpost(shared_data / HUFFPOST)[:200]])
    tokens = [tokenize(text) for text in corpus.texts]
    reference = BM25Okapi(tokens, k1=k1, b=b)
    retriever = build_retriever(RetrieverConfig(name="bm25", k1=k1, b=b))
    document_frequency = Counter(t for row in tokens for t in set(row))
    queries = [
        corpus.texts[3],
        corpus.texts[57],
        corpus.texts[120].split(".")[0],
        "covid vaccine boosters",
        "trump trump biden",  # a repeated term counts twice in both
        "hurricane xylophonequasar",  # a term no document has adds nothing in both
    ]
    queries.append(" ".join(t for t, _ in document_frequency.most_common(3)))
    for query in queries:
        terms = tokenize(query)
        expected = reference.get_scores(terms)
        assert expected.max() > 0
        ours = retriever.score(query, corpus)
        np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6)
        assert ids(top_k(retriever, query, corpus, 10)) == [
            corpus.ids[row] for row in np.argsort(-expected, kind="stable")[:10]
        ]


def test_bm25_ranks_by_terms_found_in_most_documents_as_rank_bm25_does() -> None:
    """A small personal corpus repeats its writer's words: a term in most rows still ranks."""
    texts = ["apple pie recipe", "apple orchard visit", "banana bread", "apple apple tart"]
    corpus = corpus_of(texts)
    ours = BM25Retriever().score("apple", corpus)
    expected = BM25Okapi([tokenize(t) for t in texts]).get_scores(["apple"])
    np.testing.assert_allclose(ours, expected, rtol=1e-9)
    assert ours.argmax() == 3 and ours[2] == 0
    assert BM25Retriever().score("banana", corpus).argmax() == 2


# -- 3. the corpus cache is a bounded LRU ---------------------------------------------------------


def test_the_loader_keeps_at_most_cache_size_corpora(store: Store, shared_data: Path) -> None:
    users = [f"u{n}" for n in range(5)]
    stories = articles(shared_data, 5, category="FOOD & DRINK")
    write(store, None, [article_document(u, a) for u, a in zip(users, stories, strict=True)])
    loader = CorpusLoader(store, None, cache_size=3)
    u0, u1, u2 = (loader.corpus(u) for u in users[:3])
    assert (loader.stats.cached, loader.stats.misses, loader.stats.evictions) == (3, 3, 0)

    assert loader.corpus("u0") is u0  # a hit: u0 is now the most recently used
    loader.corpus("u3")  # evicts u1, the least recently used
    assert (loader.stats.cached, loader.stats.hits, loader.stats.evictions) == (3, 1, 1)
    assert loader.corpus("u2") is u2 and loader.corpus("u0") is u0
    assert loader.stats.misses == 4

    again = loader.corpus("u1")  # rebuilt, evicting u3
    assert again is not u1 and again.ids == u1.ids
    assert loader.stats.misses == 5 and loader.stats.evictions == 2
    loader.corpus("u4")  # evicts u2
    assert loader.stats.cached == 3 and loader.stats.evictions == 3
    assert loader.corpus("u0") is u0 and loader.corpus("u1") is again
    assert loader.corpus("u2") is not u2
    assert loader.stats.cached == 3


def test_lru_cache_directly() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        LRUCache(0)
    lru = LRUCache(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1
    lru.put("c", 3)
    assert (lru.get("b"), lru.get("a"), lru.get("c")) == (None, 1, 3)
    lru.put("a", 10)  # replacing keeps one entry
    assert len(lru) == 2 and lru.get("a") == 10 and lru.evictions == 1
    lru.discard(lambda key: key == "a")
    assert len(lru) == 1 and lru.get("a") is None


# -- 4. recency ------------------------------------------------------------------------------------


def fillers(when: object) -> list[Document]:
    """Unrelated rows, so the query's words are in fewer than half the documents (BM25 idf > 0)."""
    texts = [
        "Marathon training plan for beginners.",
        "Quarterly tax filing reminders.",
        "Repotting a fiddle leaf fig in spring.",
        "Jazz piano voicings worth practising.",
    ]
    return [Document(user_id="baker", text=t, timestamp=when) for t in texts]


@pytest.mark.parametrize("inner", ["bm25", "dense"])
def test_recency_prefers_the_newer_of_two_equal_rows(
    store: Store, encoder: Encoder, inner: str
) -> None:
    text = "Sourdough starter tips for a crackling crust."
    old = Document(user_id="baker", text=text, timestamp="2024-01-01")
    new = Document(user_id="baker", text=text, timestamp="2024-01-10")
    write(store, encoder, [old, new, *fillers("2024-01-05")])
    corpus = CorpusLoader(store, encoder, sources=("documents",)).corpus("baker")
    query = "sourdough crust"
    base = build_retriever(RetrieverConfig(name=inner), encoder)
    inner_scores = dict(zip(corpus.ids, base.score(query, corpus), strict=True))
    assert inner_scores[old.id] == pytest.approx(inner_scores[new.id]) and inner_scores[old.id] > 0

    recency = RecencyRetriever(base, half_life_days=30)
    result = top_k(recency, query, corpus, 6)
    assert ids(result)[:2] == [new.id, old.id]
    scores = dict(ranked(result))
    assert scores[new.id] == pytest.approx(inner_scores[new.id])  # the newest row keeps its score
    assert scores[old.id] == pytest.approx(inner_scores[old.id] * 0.5 ** (9 / 30))


@pytest.mark.parametrize("inner", ["bm25", "dense"])
def test_a_huge_half_life_keeps_the_inner_order(store: Store, encoder: Encoder, inner: str) -> None:
    old = Document(user_id="baker", text="Sourdough sourdough crust, sourdough.", timestamp=0)
    new = Document(user_id="baker", text="A sourdough loaf.", timestamp=400 * 86400)
    write(store, encoder, [old, new, *fillers(86400)])
    corpus = CorpusLoader(store, encoder, sources=("documents",)).corpus("baker")
    query = "sourdough sourdough crust"
    base = build_retriever(RetrieverConfig(name=inner), encoder)
    inner_order = ids(top_k(base, query, corpus, 6))
    assert inner_order[0] == old.id  # more relevant, 400 days older
    short = build_retriever(
        RetrieverConfig(name="recency", inner=inner, half_life_days=30), encoder
    )
    assert ids(top_k(short, query, corpus, 1)) == [new.id]
    huge = RecencyRetriever(base, half_life_days=1e9)
    assert ids(top_k(huge, query, corpus, 2)) == inner_order[:2]
    np.testing.assert_allclose(huge.score(query, corpus), base.score(query, corpus), rtol=1e-6)


def test_a_huge_half_life_keeps_the_inner_order_on_real_text(
    world: World, encoder: Encoder
) -> None:
    corpus = world.loader.corpus("alice")
    for inner in ("bm25", "dense"):
        base = build_retriever(RetrieverConfig(name=inner), encoder)
        huge = build_retriever(
            RetrieverConfig(name="recency", inner=inner, half_life_days=1e9), encoder
        )
        for article in world.alice_articles[:3]:
            query = article["headline"]
            positive = [i for i in top_k(base, query, corpus, len(corpus)).items if i.score > 0]
            got = top_k(huge, query, corpus, len(positive))
            assert ids(got) == [i.id for i in positive]


def test_recency_refuses_a_non_positive_half_life(encoder: Encoder) -> None:
    with pytest.raises(ValueError, match="half_life_days"):
        RecencyRetriever(BM25Retriever(), half_life_days=0)
    with pytest.raises(ValidationError):
        RetrieverConfig(name="recency", half_life_days=0)
    with pytest.raises(ValidationError, match="recency -> recency contains itself"):
        RetrieverConfig(name="recency", inner="recency")


# -- 5. hybrid is reciprocal-rank fusion -----------------------------------------------------------


def rrf_expected(scores: list[np.ndarray], rrf_k: int) -> np.ndarray:
    """Σ 1/(rrf_k + rank), rank 1-based, ties in row order (computed without numpy's argsort);
    a row a component scored exactly 0 (not matched) gets nothing from it."""
    fused = np.zeros(len(scores[0]))
    for component in scores:
        order = sorted(range(len(component)), key=lambda row: -component[row])
        for position, row in enumerate(order, start=1):
            if component[row] != 0:
                fused[row] += 1.0 / (rrf_k + position)
    return fused


@pytest.mark.parametrize("components", [("bm25", "dense"), ("bm25", "tfidf", "dense")])
@pytest.mark.parametrize("rrf_k", [60, 5])
def test_hybrid_scores_are_reciprocal_rank_sums(
    world: World, encoder: Encoder, components: tuple[str, ...], rrf_k: int
) -> None:
    corpus = world.loader.corpus("alice")
    hybrid = build_retriever(
        RetrieverConfig(name="hybrid", components=components, rrf_k=rrf_k), encoder
    )
    assert isinstance(hybrid, HybridRetriever)
    assert hybrid.name == f"hybrid({','.join(components)})"
    parts = [build_retriever(RetrieverConfig(name=c), encoder) for c in components]
    for query in (world.alice_articles[2]["headline"], "celebrity wedding", "xylophonequasar"):
        expected = rrf_expected([p.score(query, corpus) for p in parts], rrf_k)
        np.testing.assert_allclose(hybrid.score(query, corpus), expected, rtol=1e-12)
        for item in top_k(hybrid, query, corpus, 5).items:
            assert item.score == pytest.approx(expected[corpus.ids.index(item.id)], rel=1e-12)
    if rrf_k == 60:
        top = top_k(hybrid, full_text(world.alice_articles[2]), corpus, 1).items[0]
        assert top.score == pytest.approx(len(components) / 61)  # first for every component


def test_hybrid_needs_two_components_and_no_nested_hybrid(encoder: Encoder) -> None:
    with pytest.raises(ValueError, match="two or more"):
        HybridRetriever((BM25Retriever(),))
    with pytest.raises(ValidationError, match="hybrid -> hybrid contains itself"):
        RetrieverConfig(name="hybrid", components=("bm25", "hybrid"))
    with pytest.raises(ValidationError, match="hybrid -> recency -> hybrid contains itself"):
        RetrieverConfig(name="hybrid", components=("bm25", "recency"), inner="hybrid")
    nested = RetrieverConfig(name="recency", inner="hybrid", components=("bm25", "tfidf"))
    assert nested.used() == {"recency", "hybrid", "bm25", "tfidf"}
    assert build_retriever(nested, None).name == "recency(hybrid(bm25,tfidf),30d)"
    with pytest.raises(ConfigError, match="encoder"):
        build_retriever(RetrieverConfig(name="hybrid"), None)


# -- 6. collaborative retrieval --------------------------------------------------------------------


def test_collaborative_corpus_adds_only_the_nearest_users_documents(
    store: Store, encoder: Encoder, shared_data: Path
) -> None:
    food = articles(shared_data, 16, category="FOOD & DRINK")
    sports = articles(shared_data, 8, category="SPORTS")
    documents = {
        "alice": [article_document("alice", a) for a in food[:8]],
        "bob": [article_document("bob", a) for a in food[8:]],
        "carol": [article_document("carol", a) for a in sports],
    }
    write(
        store,
        encoder,
        [d for docs in documents.values() for d in docs],
        users=[User(id=u, attributes={"name": u}) for u in documents],
        items=[Item(id="i", title="Cast iron pan")],
        interactions=[Interaction(user_id="bob", item_id="i", kind="purchase", timestamp=1)],
    )
    # the nearest user, computed here from the encoder's vectors of each user's documents
    centroids = {}
    for user, docs in documents.items():
        mean = np.vstack(encode(encoder, [d.embedding_text for d in docs])).mean(axis=0)
        centroids[user] = mean / np.linalg.norm(mean)
    similarity = {u: float(centroids[u] @ centroids["alice"]) for u in ("bob", "carol")}
    assert similarity["bob"] > similarity["carol"]  # food writers are closer than sports

    loader = CorpusLoader(store, encoder)
    neighbours = loader.similar_users("alice", 2)
    assert [u for u, _ in neighbours] == ["bob", "carol"]
    assert [s for _, s in neighbours] == pytest.approx([similarity["bob"], similarity["carol"]])

    own = loader.corpus("alice")
    assert set(own.owners) == {"alice"}
    shared = loader.collaborative_corpus("alice", neighbours=1)
    assert shared.ids[: len(own)] == own.ids and shared.owners[: len(own)] == own.owners
    added = range(len(own), len(shared))
    assert {shared.ids[r] for r in added} == {d.id for d in documents["bob"]}
    assert {shared.owners[r] for r in added} == {"bob"}
    assert {shared.sources[r] for r in added} == {"document"}  # not bob's purchase or attributes
    assert set(shared.owners) == {"alice", "bob"}

    query = full_text(food[9])  # bob's document, verbatim
    dense = build_retriever(RetrieverConfig(name="dense"), encoder)
    best = top_k(dense, query, shared, 1).items[0]
    assert (best.id, best.owner) == (documents["bob"][1].id, "bob")
    assert {i.owner for i in top_k(dense, query, own, len(own)).items} == {"alice"}

    assert loader.collaborative_corpus("alice", neighbours=0).ids == own.ids
    everyone = loader.collaborative_corpus("alice", neighbours=5)
    assert set(everyone.owners) == {"alice", "bob", "carol"}
    assert loader.corpus("alice").owners == own.owners  # the plain corpus never gains any


# -- 7. query generators and configuration ---------------------------------------------------------


def test_identity_query_returns_its_input() -> None:
    text = "Write a headline for: the city council approved the new bike lanes."
    assert IdentityQuery().query(text) == text
    assert build_query_generator("identity").query(text) == text


def test_keyword_query_draws_its_words_from_the_input(shared_data: Path) -> None:
    generator = build_query_generator("keywords")
    assert isinstance(generator, KeywordQuery)
    for article in _huffpost(shared_data / HUFFPOST)[:5]:
        text = full_text(article)
        query = generator.query(text)
        assert query.strip()
        words = set(re.findall(r"\w+", text.lower()))
        assert set(re.findall(r"\w+", query.lower())) <= words
    assert generator.query("Sourdough") == "Sourdough"


def test_query_generators_by_name() -> None:
    with pytest.raises(UnknownNameError):
        build_query_generator("telepathy")
    with pytest.raises(ConfigError, match="needs an LLM"):
        build_query_generator("llm-expansion")


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "bm26"},
        {"name": "hybrid", "components": ("bm25", "splade")},
        {"name": "recency", "inner": "nope"},
        {"name": "bm25", "top_n": 3},
        {"k": -1},
        {"k": 101},
        {"sources": ("documents", "emails")},
    ],
)
def test_retriever_config_refuses_unknown_names_and_fields(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RetrieverConfig(**fields)


def test_retriever_config_is_frozen_and_names_every_registered_retriever(encoder: Encoder) -> None:
    config = RetrieverConfig()
    with pytest.raises(ValidationError):
        config.name = "dense"  # type: ignore[misc]
    for name in ("bm25", "tfidf", "dense", "hybrid", "recency"):
        assert build_retriever(RetrieverConfig(name=name), encoder).name.startswith(name)
    with pytest.raises(ConfigError, match="needs an encoder"):
        build_retriever(RetrieverConfig(name="dense"))


def test_dense_refuses_a_corpus_from_another_encoder(world: World, encoder: Encoder) -> None:
    corpus = world.loader.corpus("alice")
    foreign = UserCorpus(
        corpus.user_id, corpus.version, corpus.ids, corpus.sources, corpus.kinds, corpus.titles,
        corpus.texts, corpus.timestamps, corpus.owners, encoder_id="another/encoder",
        vectors=corpus.vectors, has_vector=corpus.has_vector,
    )  # fmt: skip
    with pytest.raises(ValueError, match="same encoder"):
        build_retriever(RetrieverConfig(name="dense"), encoder).score("film", foreign)
