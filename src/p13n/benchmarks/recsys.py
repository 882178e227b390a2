"""``p13n bench recsys``: every recommender side by side on one split, in one run.

Classic models are tuned on the validation split (small grids), the hybrids learn their weights
there, the LLM re-ranker its mixing weight; the test split is read once, at the end. All models
are scored on the same users, with full ranking over every unseen item.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from p13n.data import Interaction, Item, LoadOptions, User
from p13n.datasets import loaders
from p13n.encode import Encoder, get_encoder
from p13n.errors import RecDataError
from p13n.llm import LLMConfig
from p13n.recommend.content import ContentRecommender, item_vectors
from p13n.recommend.data import RecData
from p13n.recommend.hybrid import LearnedHybrid
from p13n.recommend.models import CLASSIC_GRIDS, Recommender
from p13n.recommend.ranking import (
    Phase,
    RankingResult,
    evaluate,
    excluded,
    score_ranking,
    tune_classic,
)
from p13n.recommend.split import Split, leave_last_out, random_split, simulate_cold_start

if TYPE_CHECKING:
    from p13n.recommend.llm import Candidates, LLMReranker

CLASSIC = ("popularity", "item-knn", "als", "bpr")


class RecsysConfig(BaseModel):
    """What one ``p13n bench recsys`` run does."""

    model_config = ConfigDict(extra="forbid")

    data: Path
    format: str = "movielens"
    kinds: tuple[str, ...] = ("rate",)
    split: Literal["temporal", "random"] = "temporal"
    cold_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    """Share of evaluated users cut to 1-5 training items (0: none; MovieLens has no natural
    cold-start users)."""
    seed: int = 0
    llm: bool = True
    llm_config: LLMConfig = Field(default_factory=LLMConfig)
    users: int | None = Field(None, gt=0)
    """Evaluate on a seeded sample: every cold-start user plus this many others (None: all)."""
    rerank: bool = True
    rerank_depth: int = Field(20, gt=1)
    batch_size: int = Field(8, gt=0)
    out: Path = Path(".p13n/bench/recsys")
    cache: Path | None = None


@dataclass
class ModelResult:
    name: str
    family: str
    params: dict[str, Any]
    fit_seconds: float
    valid: RankingResult
    test: RankingResult
    notes: str = ""


@dataclass
class RecsysResult:
    config: RecsysConfig
    split: Split
    rows: list[int]
    cold: set[int]
    models: list[ModelResult] = field(default_factory=list)
    llm_calls: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def model(self, name: str) -> ModelResult:
        return next(m for m in self.models if m.name == name)


def load_recdata(path: Path, format: str, kinds: Sequence[str]) -> RecData:
    """Users, items and interactions from a dataset folder, through the ingest loaders."""
    users: list[User] = []
    items: list[Item] = []
    interactions: list[Interaction] = []
    for sourced in loaders.get(format)(path, LoadOptions()):
        record = sourced.record
        if isinstance(record, User):
            users.append(record)
        elif isinstance(record, Item):
            items.append(record)
        elif isinstance(record, Interaction):
            interactions.append(record)
    if not interactions:
        raise RecDataError(f"{path}: no interactions of kind {', '.join(kinds)}")
    duplicates: Literal["error", "latest"] = "error"
    if not items:  # review data sets (Amazon 5-core) carry no catalog: one item per product id
        # Titles only: a text made of the products' reviews would hand the content model the
        # held-out users' own reviews of their held-out items.
        ids = sorted({i.item_id for i in interactions if i.kind in kinds})
        items = [Item(id=item_id, title=f"product {item_id}") for item_id in ids]
        duplicates = "latest"  # a user rates several variants of one product: the latest counts
    return RecData.build(interactions, items, users, kinds=kinds, duplicates=duplicates)


def make_split(data: RecData, config: RecsysConfig) -> Split:
    split = (
        leave_last_out(data) if config.split == "temporal" else random_split(data, seed=config.seed)
    )
    if config.cold_fraction > 0:
        split = simulate_cold_start(split, fraction=config.cold_fraction, seed=config.seed)
    return split


def evaluation_rows(split: Split, users: int | None, seed: int) -> list[int]:
    """All evaluated users, or every cold-start one plus a seeded sample of ``users`` others."""
    rows = sorted(split.test)
    if users is None:
        return rows
    cold = split.cold_users()
    others = [r for r in rows if r not in cold]
    rng = np.random.default_rng(seed)
    sample = rng.choice(others, size=min(users, len(others)), replace=False)
    return sorted({r for r in rows if r in cold} | {int(r) for r in sample})


Report = Callable[[str], None]


@contextmanager
def _timed() -> Iterator[list[float]]:
    box = [0.0]
    start = time.perf_counter()
    yield box
    box[0] = time.perf_counter() - start


def run_recsys(config: RecsysConfig, report: Report = print) -> RecsysResult:
    """Fit, tune and evaluate every model; see the module docstring for the protocol."""
    started = time.perf_counter()
    data = load_recdata(config.data, config.format, config.kinds)
    split = make_split(data, config)
    rows = evaluation_rows(split, config.users, config.seed)
    cold = split.cold_users() & set(rows)
    result = RecsysResult(config, split, rows, cold)
    report(
        f"{len(data):,} interactions, {data.n_users:,} users, {data.n_items:,} items; "
        f"{split.name}; evaluating {len(rows):,} users ({len(cold):,} cold-start)"
    )
    components: dict[str, Recommender] = {}
    for name in CLASSIC:
        model, params, fit_seconds = tune_classic(name, split, rows)
        valid = evaluate(model, split, "valid", rows)
        components[name] = model
        result.models.append(
            ModelResult(
                name,
                "classic",
                params,
                fit_seconds,
                valid,
                evaluate(model, split, "test", rows),
                f"best of {len(CLASSIC_GRIDS[name])} on validation",
            )
        )
        report(f"{name}: {params} (valid NDCG@10 {valid.mean('ndcg@10'):.4f})")
    encoder = get_encoder()
    with _timed() as seconds:
        vectors = item_vectors(data, encoder)
    content = ContentRecommender("content", vectors)
    _add(result, content, "text", {"encoder": encoder.id}, split, rows, seconds[0])
    hybrid = LearnedHybrid([*components.values(), content], name="hybrid")
    _add_hybrid(result, hybrid, split, rows)
    if config.llm:
        _llm_models(result, components, content, encoder, split, rows, report)
    result.seconds = time.perf_counter() - started
    return result


def _add(
    result: RecsysResult,
    model: Recommender,
    family: str,
    params: dict[str, Any],
    split: Split,
    rows: Sequence[int],
    seconds: float = 0.0,
) -> None:
    with _timed() as fit:
        model.fit(split.train)
    result.models.append(
        ModelResult(
            model.name,
            family,
            params,
            seconds + fit[0],
            evaluate(model, split, "valid", rows),
            evaluate(model, split, "test", rows),
        )
    )


def _add_hybrid(
    result: RecsysResult, hybrid: LearnedHybrid, split: Split, rows: Sequence[int]
) -> None:
    with _timed() as seconds:
        hybrid.fit(split.train)
        weights = hybrid.learn(split.train, split.valid, rows)
    result.models.append(
        ModelResult(
            hybrid.name,
            "hybrid",
            {"warm": dict(weights.warm), "cold": dict(weights.cold)},
            seconds[0],
            evaluate(hybrid, split, "valid", rows),
            evaluate(hybrid, split, "test", rows),
            "weights learned on validation: " + weights.describe(),
        )
    )


def _llm_models(
    result: RecsysResult,
    components: dict[str, Recommender],
    content: ContentRecommender,
    encoder: Encoder,
    split: Split,
    rows: Sequence[int],
    report: Report,
) -> None:
    from rich.progress import Progress

    from p13n.llm import get_llm
    from p13n.llm.cache import GenerationCache
    from p13n.recommend.llm import (
        LLMReranker,
        RecommendationTexts,
        enrich_items,
        profile_vectors,
        write_profiles,
    )

    config = result.config
    data = split.train
    llm = get_llm(config.llm_config)
    cache = GenerationCache(config.cache or config.out / "llm-cache.sqlite")
    texts = RecommendationTexts(llm, cache, batch_size=config.batch_size)
    try:
        with Progress() as progress:
            task = progress.add_task("LLM item descriptions", total=data.n_items)
            with _timed() as enrich_seconds:
                enriched = enrich_items(data, texts, lambda n: progress.advance(task, n))
            task = progress.add_task("LLM user profiles", total=len(rows))
            with _timed() as profile_seconds:
                profiles = write_profiles(data, rows, texts, lambda n: progress.advance(task, n))
        with _timed() as seconds:
            enriched_vectors = item_vectors(data, encoder, enriched)
        llm_items = ContentRecommender("llm-items", enriched_vectors)
        _add(
            result,
            llm_items,
            "llm",
            {"llm": llm.model},
            split,
            rows,
            enrich_seconds[0] + seconds[0],
        )
        with _timed() as seconds:
            user_vectors = profile_vectors(profiles, encoder.encode)
        llm_profile = ContentRecommender("llm-profile", enriched_vectors, user_vectors)
        _add(
            result,
            llm_profile,
            "llm",
            {"llm": llm.model},
            split,
            rows,
            profile_seconds[0] + seconds[0],
        )
        result.models[-1].notes = f"profiles of {len(profiles)} users, against enriched items"
        # The same profiles against the catalog's own text: a profile mostly names genres,
        # which the catalog text states plainly; validation decides which pairing is used.
        profile_catalog = ContentRecommender("llm-profile-catalog", content.vectors, user_vectors)
        _add(result, profile_catalog, "llm", {"llm": llm.model}, split, rows)
        result.models[-1].notes = f"profiles of {len(profiles)} users, against catalog text"
        llm_hybrid = LearnedHybrid(
            [*components.values(), content, llm_items, llm_profile, profile_catalog],
            name="llm-hybrid",
        )
        _add_hybrid(result, llm_hybrid, split, rows)
        if config.rerank:
            reranker = LLMReranker(texts, data, depth=config.rerank_depth)
            _rerank(result, llm_hybrid, reranker, split, rows, report)
        result.llm_calls = {"generated": texts.generated, "reused": texts.reused}
        report(f"LLM calls: {texts.generated} made, {texts.reused} from the cache")
    finally:
        cache.close()


def _rerank(
    result: RecsysResult,
    base: LearnedHybrid,
    reranker: LLMReranker,
    split: Split,
    rows: Sequence[int],
    report: Report,
) -> None:
    from rich.progress import Progress

    candidates: dict[Phase, dict[int, Candidates]] = {"valid": {}, "test": {}}
    with _timed() as seconds, Progress() as progress:
        for phase in ("valid", "test"):
            held = split.valid if phase == "valid" else split.test
            users = [r for r in rows if r in held]
            task = progress.add_task(f"LLM re-ranking ({phase})", total=len(users))
            for start in range(0, len(users), 64):
                chunk = users[start : start + 64]
                scores = base.scores(chunk)
                for i, row in enumerate(chunk):
                    candidates[phase][row] = reranker.candidates(
                        row, scores[i], excluded(split, row, phase)
                    )
                    progress.advance(task)

    def objective(ranked: dict[int, list[tuple[int, float]]]) -> float:
        return score_ranking(ranked, split.valid, split.train.n_items).mean("ndcg@10")

    weight = reranker.learn(candidates["valid"], split.valid, objective)
    report(f"llm-rerank: weight {weight} chosen on validation")
    valid = {row: c.ranked(weight) for row, c in candidates["valid"].items()}
    test = {row: c.ranked(weight) for row, c in candidates["test"].items()}
    n = split.train.n_items
    result.models.append(
        ModelResult(
            "llm-rerank",
            "llm",
            {"depth": reranker.depth, "weight": weight},
            seconds[0],
            score_ranking(valid, split.valid, n),
            score_ranking(test, split.test, n),
            f"llm-hybrid's top {reranker.depth} re-ranked; weight {weight} chosen on validation",
        )
    )
