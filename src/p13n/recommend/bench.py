"""``p13n bench recsys``: every recommender side by side on one split, in one run.

Classic models are tuned on the validation split (small grids), the hybrids learn their weights
there, the LLM re-ranker its mixing weight; the test split is read once, at the end. All models
are scored on the same users, with full ranking over every unseen item.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from p13n.data import Interaction, Item, User
from p13n.datasets import loaders
from p13n.datasets.source import LoadOptions
from p13n.encode import Encoder, get_encoder
from p13n.evaluate.stats import bootstrap_mean, paired_decomposable
from p13n.llm import LLMConfig
from p13n.recommend.content import ContentRecommender, item_vectors
from p13n.recommend.data import RecData, RecDataError
from p13n.recommend.evaluate import (
    KS,
    Phase,
    RankingResult,
    evaluate,
    excluded,
    score_ranking,
    tune_classic,
)
from p13n.recommend.hybrid import LearnedHybrid
from p13n.recommend.models import CLASSIC_GRIDS, Recommender
from p13n.recommend.split import Split, leave_last_out, random_split, simulate_cold_start

if TYPE_CHECKING:
    from p13n.recommend.llm import Candidates, LLMReranker

CLASSIC = ("popularity", "item-knn", "als", "bpr")
RESAMPLES = 2000


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
    return RecData.build(interactions, items, users, kinds=kinds)


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

    from p13n.evaluate.cache import GenerationCache
    from p13n.llm import get_llm
    from p13n.recommend.llm import (
        LLMReranker,
        LLMTexts,
        enrich_items,
        profile_vectors,
        write_profiles,
    )

    config = result.config
    data = split.train
    llm = get_llm(config.llm_config)
    cache = GenerationCache(config.cache or config.out / "llm-cache.sqlite")
    texts = LLMTexts(llm, cache, batch_size=config.batch_size)
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


# --- Summaries -----------------------------------------------------------------------------


def groups(result: RecsysResult) -> dict[str, list[int]]:
    cold = sorted(result.cold)
    warm = [r for r in result.rows if r not in result.cold]
    return {"all": list(result.rows), "cold": cold, "warm": warm}


def summary(result: RecsysResult) -> dict[str, Any]:
    """Every model's test metrics per user group, with 95% intervals for NDCG@10, and the LLM
    hybrid against the best classic model chosen on validation."""
    names = [f"{m}@{k}" for k in KS for m in ("precision", "recall", "ndcg", "hit_rate", "mrr")]
    out: dict[str, Any] = {"models": {}, "comparisons": []}
    for model in result.models:
        entry: dict[str, Any] = {
            "family": model.family,
            "params": model.params,
            "fit_seconds": round(model.fit_seconds, 2),
            "notes": model.notes,
            "valid_ndcg@10": model.valid.mean("ndcg@10"),
        }
        for group, rows in groups(result).items():
            if not rows:
                continue
            metrics = {name: model.test.mean(name, rows) for name in names}
            values = [model.test.per_user["ndcg@10"][r] for r in rows]
            interval = bootstrap_mean(values, resamples=RESAMPLES, seed=result.config.seed)
            metrics["ndcg@10_low"], metrics["ndcg@10_high"] = interval.low, interval.high
            metrics["coverage@10"] = model.test.coverage(10, rows)
            metrics["users"] = len(rows)
            entry[group] = metrics
        out["models"][model.name] = entry
    for challenger in ("hybrid", "llm-hybrid", "llm-rerank"):
        if not any(m.name == challenger for m in result.models):
            continue
        for group, rows in groups(result).items():
            if rows:
                out["comparisons"].append(_compare(result, challenger, group, rows))
    return out


def _compare(result: RecsysResult, challenger: str, group: str, rows: list[int]) -> dict[str, Any]:
    classic_models = [m for m in result.models if m.family == "classic"]
    best = max(classic_models, key=lambda m: m.valid.mean("ndcg@10", rows))
    system = result.model(challenger).test.per_user["ndcg@10"]
    baseline = best.test.per_user["ndcg@10"]
    paired = paired_decomposable(
        [system[r] for r in rows],
        [baseline[r] for r in rows],
        higher_is_better=True,
        resamples=RESAMPLES,
        seed=result.config.seed,
    )
    return {"model": challenger, "group": group, "best_classic": best.name, **asdict(paired)}


def write_outputs(result: RecsysResult, out: Path) -> dict[str, Path]:
    """results.json (config, summary, each model's top-10 per user) and ndcg.png."""
    out.mkdir(parents=True, exist_ok=True)
    data = result.split.train
    payload = {
        "config": json.loads(result.config.model_dump_json()),
        "split": result.split.name,
        "users": len(result.rows),
        "cold_users": len(result.cold),
        "seconds": round(result.seconds, 1),
        "llm_calls": result.llm_calls,
        "summary": summary(result),
        "per_user_ndcg@10": {
            model.name: {
                data.user_ids[row]: value for row, value in model.test.per_user["ndcg@10"].items()
            }
            for model in result.models
        },
        "cold_user_ids": sorted(data.user_ids[row] for row in result.cold),
        "top10": {
            model.name: {
                data.user_ids[row]: [data.item_ids[c] for c, _ in model.test.ranked[row][:10]]
                for row in result.rows
                if row in model.test.ranked
            }
            for model in result.models
        },
    }
    paths = {"json": out / "results.json", "plot": out / "ndcg.png", "markdown": out / "summary.md"}
    paths["json"].write_text(json.dumps(payload, indent=1, ensure_ascii=False), encoding="utf-8")
    paths["markdown"].write_text(markdown(payload), encoding="utf-8")
    plot(payload["summary"], paths["plot"])
    return paths


def markdown(payload: dict[str, Any]) -> str:
    """The test figures of every model per user group, and the comparisons, as markdown."""
    summary_ = payload["summary"]
    lines = [
        f"{payload['split']}: {payload['users']} users ({payload['cold_users']} cold-start)",
        "",
        "| model | group | NDCG@10 [95% CI] | HR@10 | MRR@10 | P@10 | R@10 | NDCG@20 | R@20 "
        "| coverage@10 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in summary_["models"].items():
        for group in ("all", "cold", "warm"):
            m = entry.get(group)
            if m is None:
                continue
            lines.append(
                f"| {name} | {group} ({m['users']}) | {m['ndcg@10']:.4f} "
                f"[{m['ndcg@10_low']:.4f}, {m['ndcg@10_high']:.4f}] | {m['hit_rate@10']:.4f} "
                f"| {m['mrr@10']:.4f} | {m['precision@10']:.4f} | {m['recall@10']:.4f} "
                f"| {m['ndcg@20']:.4f} | {m['recall@20']:.4f} | {m['coverage@10']:.3f} |"
            )
    lines += [
        "",
        "| challenger | group | best classic (on validation) | Δ NDCG@10 [95% CI] | p | W/L/T |",
        "|---|---|---|---|---|---|",
    ]
    for c in summary_["comparisons"]:
        lines.append(
            f"| {c['model']} | {c['group']} | {c['best_classic']} | {c['difference']:+.4f} "
            f"[{c['low']:+.4f}, {c['high']:+.4f}] | {_p(c['p_value'])} "
            f"| {c['wins']}/{c['losses']}/{c['ties']} |"
        )
    lines += ["", "Learned settings:", ""]
    for name, entry in summary_["models"].items():
        params = "" if entry["family"] == "hybrid" else f"{entry['params']} "
        lines.append(f"- {name}: {params}{entry['notes']}".rstrip())
    return "\n".join(lines) + "\n"


def plot(summary_: dict[str, Any], path: Path) -> Path:
    """NDCG@10 of every model for all, cold-start and warm users, with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(summary_["models"])
    group_names = [g for g in ("all", "cold", "warm") if g in summary_["models"][models[0]]]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(models) + 2), 4))
    width = 0.8 / len(group_names)
    for j, group in enumerate(group_names):
        values = [summary_["models"][m][group]["ndcg@10"] for m in models]
        lows = [
            v - summary_["models"][m][group]["ndcg@10_low"]
            for m, v in zip(models, values, strict=True)
        ]
        highs = [
            summary_["models"][m][group]["ndcg@10_high"] - v
            for m, v in zip(models, values, strict=True)
        ]
        positions = np.arange(len(models)) + (j - (len(group_names) - 1) / 2) * width
        users = summary_["models"][models[0]][group]["users"]
        ax.bar(positions, values, width, yerr=[lows, highs], capsize=2, label=f"{group} ({users})")
    ax.set_xticks(np.arange(len(models)), models, rotation=30, ha="right")
    ax.set_ylabel("NDCG@10 (test)")
    ax.set_title("Recommenders side by side (95% bootstrap intervals)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"{value:.3f}"
