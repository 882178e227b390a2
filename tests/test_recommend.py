"""Recommenders: data validation, splits, models, the learned hybrid, serving and its fallbacks,
explanations grounded in the user's history, and the two CLI commands."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from p13n.benchmarks.recsys import RecsysConfig, load_recdata, run_recsys
from p13n.cli import app
from p13n.data import Interaction, Item, User
from p13n.encode import Encoder
from p13n.errors import RecDataError
from p13n.evaluate.metrics import ranking_metrics_per_query
from p13n.llm import LLM
from p13n.recommend.content import ContentRecommender, item_vectors
from p13n.recommend.data import RecData
from p13n.recommend.hybrid import LearnedHybrid, coordinate_ascent, guarded_weights, ndcg_at
from p13n.recommend.llm import LLMReranker, RecommendationTexts, explain, history_lines
from p13n.recommend.models import ALS, BPR, ItemKNN, Popularity
from p13n.recommend.ranking import evaluate, score_ranking, validation_ndcg
from p13n.recommend.service import FittedRecommender, data_from_store, fit_recommender
from p13n.recommend.split import (
    COLD_START_MAX,
    leave_last_out,
    random_split,
    simulate_cold_start,
)
from p13n.store import WriteSet, open_store

runner = CliRunner()


def rating(user: str, item: str, value: float, day: int) -> Interaction:
    when = datetime(2024, 1, day, tzinfo=UTC)
    return Interaction(user_id=user, item_id=item, kind="rate", value=value, timestamp=when)


def catalog(n: int) -> list[Item]:
    return [Item(id=f"i{k}", title=f"Item {k}", text=f"Genres: g{k % 3}.") for k in range(n)]


def small_data() -> RecData:
    """Four users with 3-6 dated ratings over eight items."""
    interactions = [
        rating(user, f"i{(start + step) % 8}", 1 + (step % 5), 1 + step)
        for user, start, count in (("a", 0, 6), ("b", 2, 5), ("c", 4, 3), ("d", 1, 4))
        for step in range(count)
    ]
    return RecData.build(interactions, catalog(8), [User(id="e")])


# --- RecData --------------------------------------------------------------------------------


def test_unknown_item_is_refused_naming_the_interaction() -> None:
    bad = rating("a", "nope", 3, 1)
    with pytest.raises(RecDataError, match=rf"interaction {bad.id}.*'nope' is not in the catalog"):
        RecData.build([rating("a", "i1", 4, 1), bad], catalog(3))


def test_duplicate_interactions_are_refused_or_the_latest_kept() -> None:
    first, second = rating("a", "i1", 2, 1), rating("a", "i1", 5, 3)
    with pytest.raises(RecDataError, match=rf"{second.id}: user 'a' already .*{first.id}"):
        RecData.build([first, second], catalog(3))
    data = RecData.build([second, first, rating("a", "i2", 1, 2)], catalog(3), duplicates="latest")
    assert len(data) == 2
    assert data.values[data.cols == data.col("i1")].tolist() == [5.0]


def test_empty_catalog_and_non_finite_values_are_refused() -> None:
    with pytest.raises(RecDataError, match="catalog is empty"):
        RecData.build([rating("a", "i1", 4, 1)], [])
    # the data model refuses NaN already; rows read back with model_construct are checked again
    corrupt = Interaction.model_construct(
        id="x1", user_id="a", item_id="i1", kind="rate", value=float("nan"), timestamp=None
    )
    with pytest.raises(RecDataError, match="interaction x1: value nan is not a finite float32"):
        RecData.build([corrupt], catalog(3))


def test_users_without_interactions_are_kept_and_history_is_in_time_order() -> None:
    data = small_data()
    assert data.user_ids == ("a", "b", "c", "d", "e")
    assert data.counts.tolist() == [6, 5, 3, 4, 0]
    times = data.times[data.history(0)]
    assert times.tolist() == sorted(times.tolist())


# --- Splits ---------------------------------------------------------------------------------


def test_leave_last_out_holds_out_the_last_two_by_time() -> None:
    data = small_data()
    split = leave_last_out(data)
    for row in range(4):
        history = data.history(row)
        assert split.test[row] == (int(data.cols[history[-1]]),)
        assert split.valid[row] == (int(data.cols[history[-2]]),)
        assert split.train.counts[row] == len(history) - 2
    assert 4 not in split.test  # no interactions: not evaluated
    assert len(split.train) == len(data) - 8


def test_random_split_is_seeded_disjoint_and_complete() -> None:
    data = small_data()
    one, two = random_split(data, seed=3), random_split(data, seed=3)
    assert one.test == two.test and one.valid == two.valid
    for row in one.test:
        train = set(one.train.seen(row).tolist())
        held = set(one.valid[row]) | set(one.test[row])
        assert not train & held and not set(one.valid[row]) & set(one.test[row])
        assert train | held == set(data.seen(row).tolist())


def test_simulated_cold_start_truncates_only_the_chosen_users(shared_data: Path) -> None:
    data = load_recdata(shared_data / "movielens-100k", "movielens", ("rate",))
    split = leave_last_out(data)
    cold = simulate_cold_start(split, fraction=0.2, seed=0)
    assert len(cold.simulated_cold) == round(0.2 * len(split.test))
    assert cold.cold_users() == set(cold.simulated_cold)  # MovieLens has no natural cold users
    for row in cold.simulated_cold:
        kept = cold.train.history(row)
        assert 1 <= len(kept) <= COLD_START_MAX
        # the user's first interactions, as if they had just joined
        first = split.train.history(row)[: len(kept)]
        assert cold.train.cols[kept].tolist() == split.train.cols[first].tolist()
    untouched = next(r for r in split.test if r not in cold.simulated_cold)
    assert cold.train.counts[untouched] == split.train.counts[untouched]
    assert cold.test == split.test and cold.valid == split.valid
    again = simulate_cold_start(split, fraction=0.2, seed=0)
    assert again.simulated_cold == cold.simulated_cold


# --- Metrics and learning -------------------------------------------------------------------


def test_numpy_ndcg_objective_equals_ranx() -> None:
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((40, 30))
    relevant = rng.random((40, 30)) < 0.1
    relevant[np.arange(40), rng.integers(0, 30, 40)] = True
    qrels = {str(u): {str(i): 1 for i in np.flatnonzero(relevant[u])} for u in range(40)}
    run = {str(u): {str(i): float(scores[u, i]) for i in range(30)} for u in range(40)}
    for k in (5, 10, 20):
        expected = np.mean(list(ranking_metrics_per_query(qrels, run, (k,))[f"ndcg@{k}"].values()))
        assert ndcg_at(scores, relevant, k) == pytest.approx(expected, abs=1e-9)


def test_coordinate_ascent_finds_the_informative_component() -> None:
    rng = np.random.default_rng(1)
    relevant = np.zeros((50, 40), dtype=bool)
    relevant[np.arange(50), rng.integers(0, 40, 50)] = True
    noise = rng.standard_normal((50, 40)).astype(np.float32)
    signal = (relevant + 0.3 * rng.standard_normal((50, 40))).astype(np.float32)
    weights = coordinate_ascent(np.stack([noise, signal], axis=-1), relevant, 10)
    assert weights[1] > weights[0] and weights.sum() == pytest.approx(1.0)
    combined = np.stack([noise, signal], -1) @ weights
    assert ndcg_at(combined, relevant, 10) > ndcg_at(noise, relevant, 10) + 0.3


def test_learned_weights_must_beat_the_simpler_choices_out_of_fold() -> None:
    rng = np.random.default_rng(2)
    users, items = 200, 60
    relevant = np.zeros((users, items), dtype=bool)
    relevant[np.arange(users), rng.integers(0, items, users)] = True
    half_a = rng.random(users) < 0.5  # each component knows half the users' items
    a = np.where(half_a[:, None], relevant + 0.2 * rng.standard_normal((users, items)), 0.0)
    b = np.where(~half_a[:, None], relevant + 0.2 * rng.standard_normal((users, items)), 0.0)
    noise = rng.standard_normal((users, items))
    names = ["popularity", "a", "b"]
    z = np.stack([noise, a, b], axis=-1).astype(np.float32)
    weights, chosen = guarded_weights(z, relevant, 10, names)
    assert chosen == "learned" and weights[1] > 0 and weights[2] > 0  # together they win
    # One informative component: mixing adds nothing the error can see; the single one serves.
    alone = np.stack([noise, relevant + 0.2 * rng.standard_normal((users, items)), noise], -1)
    weights, chosen = guarded_weights(alone.astype(np.float32), relevant, 10, names)
    assert chosen == "best single: a" and weights.tolist() == [0.0, 1.0, 0.0]
    # Cold-start users: popularity the best, the warm users' mix worse: popularity serves.
    cold = alone.astype(np.float32)[..., [1, 0]]
    shared = np.array([0.5, 0.5], np.float32)
    weights, chosen = guarded_weights(cold, relevant, 10, ["popularity", "x"], shared=shared)
    assert chosen == "best single: popularity" and weights.tolist() == [1.0, 0.0]


@pytest.fixture(scope="module")
def movielens(shared_data: Path) -> RecData:
    return load_recdata(shared_data / "movielens-100k", "movielens", ("rate",))


def test_classic_models_beat_popularity_for_warm_users(movielens: RecData) -> None:
    split = leave_last_out(movielens)
    rows = sorted(split.valid)[:300]
    popularity = Popularity()
    popularity.fit(split.train)
    scores = popularity.scores([0])[0]
    assert np.allclose(np.expm1(scores), np.bincount(split.train.cols, minlength=1682))
    baseline = validation_ndcg(popularity, split, rows)
    for model in (ItemKNN(50), ALS(64, regularization=0.1), BPR(128)):
        model.fit(split.train)
        assert validation_ndcg(model, split, rows) > baseline, model.name


def test_evaluation_never_ranks_seen_items_and_hides_valid_items_at_test(
    movielens: RecData,
) -> None:
    split = leave_last_out(movielens)
    model = ALS(32)
    model.fit(split.train)
    rows = sorted(split.test)[:50]
    for phase in ("valid", "test"):
        result = evaluate(model, split, phase, rows)
        for row in rows:
            shown = {col for col, _ in result.ranked[row]}
            assert len(shown) == 20
            assert not shown & set(split.train.seen(row).tolist())
            if phase == "test":
                assert not shown & set(split.valid[row])
    assert set(result.per_user) >= {"ndcg@10", "hit_rate@10", "mrr@10", "recall@20"}
    assert 0 < result.coverage(10) < 1


def test_hybrid_weights_come_from_validation_only(movielens: RecData, encoder: Encoder) -> None:
    split = simulate_cold_start(leave_last_out(movielens), seed=0)
    rows = sorted(split.valid)[::3]

    def learned(test: dict[int, tuple[int, ...]]) -> dict[str, float]:
        hybrid = LearnedHybrid([Popularity(), ALS(32), ItemKNN(50)])
        hybrid.fit(split.train)
        weights = hybrid.learn(split.train, split.valid, rows)
        return {**{f"w:{k}": v for k, v in weights.warm.items()}, **weights.cold}

    scrambled = {row: ((items[0] + 7) % movielens.n_items,) for row, items in split.test.items()}
    assert learned(dict(split.test)) == learned(scrambled)


# --- Serving ------------------------------------------------------------------------------


def tiny_movielens(shared_data: Path, folder: Path, users: int = 30, items: int = 120) -> Path:
    """A MovieLens-format slice: the first ``users`` users' ratings of the first ``items``."""
    source = shared_data / "movielens-100k"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("u.user", "u.genre"):
        shutil.copy(source / name, folder / name)
    kept = {str(i) for i in range(1, items + 1)}
    lines = (source / "u.item").read_text(encoding="latin-1").splitlines(keepends=True)
    (folder / "u.item").write_text(
        "".join(line for line in lines if line.split("|")[0] in kept), encoding="latin-1"
    )
    ratings = (source / "u.data").read_text(encoding="latin-1").splitlines(keepends=True)
    (folder / "u.data").write_text(
        "".join(r for r in ratings if int(r.split("\t")[0]) <= users and r.split("\t")[1] in kept),
        encoding="latin-1",
    )
    return folder


@pytest.fixture
def tiny_store(shared_data: Path, tmp_path: Path) -> str:
    folder = tiny_movielens(shared_data, tmp_path / "ml")
    url = f"sqlite:///{tmp_path / 'p13n.db'}"
    result = runner.invoke(app, ["--store", url, "ingest", "movielens", str(folder), "--no-embed"])
    assert result.exit_code == 0, result.output
    return url


def test_serving_excludes_seen_items_and_falls_back_for_new_users(
    tiny_store: str, encoder: Encoder
) -> None:
    store = open_store(tiny_store)
    data = data_from_store(store)
    fitted = fit_recommender(data, "hybrid", encoder)
    rated = np.flatnonzero(data.counts)  # u.user lists every user; 30 of them rated here
    user = data.user_ids[int(rated[np.argmin(data.counts[rated])])]  # most unseen items
    known = fitted.recommend(user, 5)
    assert known.fallback is None and known.model == "hybrid" and len(known.items) == 5
    assert known.history == len(store.interactions(user))
    assert not {r.item.id for r in known.items} & {i.item_id for i in store.interactions(user)}
    stranger = fitted.recommend("never-seen", 5)
    assert stranger.fallback == "unknown user" and stranger.model == "popularity"
    popular = np.argsort(-np.bincount(data.cols, minlength=data.n_items), kind="stable")[:5]
    assert [r.item.id for r in stranger.items] == [data.item_ids[c] for c in popular]
    store.write(WriteSet(users=[User(id="newcomer")]))
    fitted = fit_recommender(data_from_store(store), "popularity", encoder)
    assert fitted.recommend("newcomer", 3).fallback == "no interactions"
    with pytest.raises(RecDataError, match="k must be positive"):
        fitted.recommend("1", 0)
    store.close()


def test_a_saved_model_is_reused_until_the_interactions_change(
    tiny_store: str, encoder: Encoder, tmp_path: Path
) -> None:
    store = open_store(tiny_store)
    fitted = fit_recommender(data_from_store(store), "als", encoder)
    path = fitted.save(tmp_path / "als.pkl")
    loaded = FittedRecommender.load(path)
    assert loaded is not None and loaded.fingerprint == fitted.fingerprint
    assert [r.item.id for r in loaded.recommend("2", 5).items] == [
        r.item.id for r in fitted.recommend("2", 5).items
    ]
    store.write(WriteSet(interactions=[rating("2", "1", 5, 20)], implicit_user_ids=["2"]))
    assert fit_recommender(data_from_store(store), "als", encoder).fingerprint != loaded.fingerprint
    store.close()


def test_bad_model_name_and_empty_store_give_clear_errors(
    sqlite_url: str, encoder: Encoder
) -> None:
    store = open_store(sqlite_url)
    with pytest.raises(RecDataError, match="catalog is empty"):
        data_from_store(store)
    store.close()
    with pytest.raises(RecDataError, match="unknown model 'svd'"):
        fit_recommender(small_data(), "svd", encoder)


@pytest.mark.slow
def test_explanations_name_items_from_the_users_own_history(
    shared_data: Path, embedded_llm: LLM, encoder: Encoder, tmp_path: Path
) -> None:
    data = load_recdata(tiny_movielens(shared_data, tmp_path / "ml"), "movielens", ("rate",))
    vectors = item_vectors(data, encoder)
    texts = RecommendationTexts(embedded_llm, batch_size=4)
    row = data.user_index["1"]
    own = set(data.seen(row).tolist())
    candidates = [c for c in range(data.n_items) if c not in own][:3]
    explanations = explain(data, row, candidates, vectors, texts)
    assert [e.item_id for e in explanations] == [data.item_ids[c] for c in candidates]
    for explanation in explanations:
        assert explanation.because and {data.col(i) for i in explanation.because} <= own
        for item_id in explanation.because:
            assert data.catalog[item_id].title in explanation.text
        assert len(explanation.text) > len("Because you watched ")


@pytest.mark.slow
def test_llm_texts_are_cached_and_the_reranker_scores_titles(
    shared_data: Path, embedded_llm: LLM, tmp_path: Path
) -> None:
    from p13n.llm.cache import GenerationCache

    data = load_recdata(tiny_movielens(shared_data, tmp_path / "ml"), "movielens", ("rate",))
    cache = GenerationCache(tmp_path / "cache.sqlite")
    prompts = [[{"role": "user", "content": f"Say {w}."}] for w in ("hi", "yes")]
    texts = RecommendationTexts(embedded_llm, cache, batch_size=2)
    first = texts.answer(prompts, texts_options())
    again = RecommendationTexts(embedded_llm, cache)
    assert again.answer(prompts, texts_options()) == first
    assert (again.generated, again.reused) == (0, 2)
    reranker = LLMReranker(again, data, depth=5)
    row = data.user_index["1"]  # rated every one of the 120 movies: nothing to re-rank
    assert (
        len(reranker.candidates(row, np.ones(data.n_items, np.float32), data.seen(row)).cols) == 0
    )
    rated = np.flatnonzero(data.counts)
    row = int(rated[np.argmin(data.counts[rated])])
    lines = history_lines(data, row)
    assert lines and all("(rated " in line for line in lines)
    scores = np.zeros(data.n_items, dtype=np.float32)
    scores[:10] = np.arange(10, 0, -1)
    candidates = reranker.candidates(row, scores, data.seen(row))
    assert len(candidates.cols) == 5 and not set(candidates.cols.tolist()) & set(
        data.seen(row).tolist()
    )
    assert np.isfinite(candidates.pmi).all()
    assert [c for c, _ in candidates.ranked(0.0)] == candidates.cols.tolist()
    cache.close()


def texts_options():  # type: ignore[no-untyped-def]
    from p13n.llm import GenerationOptions

    return GenerationOptions(max_new_tokens=4)


# --- Benchmark and CLI --------------------------------------------------------------------


def test_benchmark_reports_every_model_side_by_side(shared_data: Path, tmp_path: Path) -> None:
    folder = tiny_movielens(shared_data, tmp_path / "ml", users=60, items=200)
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["bench", "recsys", "--data", str(folder), "--no-llm", "--out", str(out)],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "results.json").read_text())
    models = payload["summary"]["models"]
    assert list(models) == ["popularity", "item-knn", "als", "bpr", "content", "hybrid"]
    for entry in models.values():
        assert entry["all"]["users"] == payload["users"]
        assert 0 <= entry["all"]["ndcg@10_low"] <= entry["all"]["ndcg@10"]
        assert entry["all"]["ndcg@10"] <= entry["all"]["ndcg@10_high"] <= 1
    assert (out / "ndcg.png").stat().st_size > 10_000
    for name in models:
        assert name in result.output
    compared = {(c["model"], c["group"]) for c in payload["summary"]["comparisons"]}
    assert ("hybrid", "cold") in compared
    # bias and fairness, every model side by side
    fair = payload["fairness"]
    assert list(fair["models"]) == list(models) and (out / "fairness.png").stat().st_size > 10_000
    popularity = fair["models"]["popularity"]
    for name, entry in fair["models"].items():
        assert 0 <= entry["tail_share"] <= 1 and 0 <= entry["gini"] <= 1
        assert entry["miscalibration"] is not None and entry["miscalibration"] >= 0
        assert entry["average_popularity"] <= popularity["average_popularity"], name
        gender = entry["groups"]["gender"]
        assert sum(gender["sizes"].values()) == payload["users"]
        assert set(gender["sizes"]) <= {"F", "M"} and set(entry["groups"]["age"]["sizes"])
        assert gender["gap"] == pytest.approx(
            max(gender["means"].values()) - min(gender["means"].values())
        )
    assert popularity["tail_share"] == 0.0  # the most popular items only
    summary_md = (out / "summary.md").read_text()
    assert "Test NDCG@10 by gender" in summary_md and "long-tail share@10" in summary_md


def test_recommend_cli_serves_and_falls_back(tiny_store: str, tmp_path: Path) -> None:
    env = {"COLUMNS": "200", "P13N_CACHE_DIR": str(tmp_path / "cache")}
    args = ["--store", tiny_store, "recommend", "--model", "item-knn", "--k", "3"]
    result = runner.invoke(app, [*args, "--user", "1"], env=env)
    assert result.exit_code == 0, result.output
    assert "item-knn for 1" in result.output and "fitted item-knn" in result.output
    again = runner.invoke(app, [*args, "--user", "1"], env=env)
    assert "fitted" not in again.output  # the saved model is current
    stranger = runner.invoke(app, [*args, "--user", "nobody"], env=env)
    assert stranger.exit_code == 0 and "fallback: unknown user" in stranger.output
    missing = runner.invoke(app, ["--store", tiny_store, "recommend"], env=env)
    assert missing.exit_code != 0 and "--user" in missing.output


def test_run_recsys_rejects_a_folder_without_interactions(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="MovieLens"):
        run_recsys(RecsysConfig(data=tmp_path, llm=False), report=lambda _: None)


def test_content_recommender_prefers_items_like_the_users_likes(encoder: Encoder) -> None:
    items = [
        Item(id="space1", title="Star voyage", text="Genres: Sci-Fi, space adventure."),
        Item(id="space2", title="Galaxy war", text="Genres: Sci-Fi, space battle."),
        Item(id="romance", title="Paris love", text="Genres: Romance, a love story."),
        Item(id="space3", title="Moon base", text="Genres: Sci-Fi, astronauts in space."),
    ]
    data = RecData.build(
        [rating("u", "space1", 5, 1), rating("u", "space2", 5, 2)], items, kinds=None
    )
    model = ContentRecommender("content", item_vectors(data, encoder))
    model.fit(data)
    scores = model.scores([0])[0]
    assert scores[data.col("space3")] > scores[data.col("romance")]
    assert score_ranking({0: [(data.col("space3"), 1.0)]}, {0: (data.col("space3"),)}, 4).mean(
        "ndcg@10"
    ) == pytest.approx(1.0)


@pytest.mark.slow
def test_recommend_cli_explains_from_the_users_history(
    tiny_store: str, tmp_path: Path, embedded_llm: LLM
) -> None:
    env = {"COLUMNS": "250", "P13N_CACHE_DIR": str(tmp_path / "cache")}
    store = open_store(tiny_store)
    data = data_from_store(store)
    rated = np.flatnonzero(data.counts)
    user = data.user_ids[int(rated[np.argmin(data.counts[rated])])]
    titles = {data.catalog[i.item_id].title for i in store.interactions(user)}
    store.close()
    args = ["--store", tiny_store, "recommend", "--user", user, "--model", "als", "--k", "2"]
    result = runner.invoke(app, [*args, "--explain"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.count("Because you watched") == 2
    assert any(title[:20] in result.output for title in titles)


def test_factorisation_fits_are_reproducible(movielens: RecData) -> None:
    for make in (lambda: ALS(32), lambda: BPR(32, iterations=20)):
        one, two = make(), make()
        one.fit(movielens)
        two.fit(movielens)
        assert np.array_equal(one.scores([0, 5]), two.scores([0, 5]))
