"""Saved recommenders: a folder of plain arrays and JSON that scores exactly as the fitted model,
refused when altered or of another format, with warnings for keys it does not know; typed configs
of the classic models and the registries fit_recommender goes through."""

from __future__ import annotations

import inspect
import json
import pickle
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from p13n.data import Interaction, Item, User
from p13n.encode import Encoder
from p13n.errors import NotFittedError, SavedRecommenderError
from p13n.recommend.artifact import CONFIG, FORMAT
from p13n.recommend.content import ContentRecommender
from p13n.recommend.data import RecData
from p13n.recommend.hybrid import LearnedHybrid
from p13n.recommend.models import (
    ALS,
    BPR,
    CLASSIC_GRIDS,
    ALSConfig,
    BPRConfig,
    ItemKNN,
    ItemKNNConfig,
    Popularity,
    classic,
)
from p13n.recommend.service import (
    SERVABLE,
    FittedRecommender,
    delete_saved,
    fit_recommender,
    saved_path,
    servable,
)


def rating(user: str, item: str, value: float, day: int) -> Interaction:
    when = datetime(2024, 1, day, tzinfo=UTC)
    return Interaction(user_id=user, item_id=item, kind="rate", value=value, timestamp=when)


def dataset() -> RecData:
    """Twelve users with 4-9 dated ratings over twenty items, one user without any, one rating
    of an item no longer in the catalog (skipped), items and users with attributes."""
    items = [
        Item(
            id=f"i{k:02d}",
            title=f"Item {k}",
            text=f"Genres: {('drama', 'comedy', 'space', 'crime')[k % 4]}.",
            attributes={"year": 1990 + k, "tags": ["a", "b"]} if k % 5 == 0 else {},
        )
        for k in range(20)
    ]
    interactions = [
        rating(f"u{u}", f"i{(3 * u + 7 * step) % 20:02d}", 1 + (u + step) % 5, 1 + step)
        for u in range(12)
        for step in range(4 + u % 6)
    ]
    interactions.append(rating("u0", "gone", 5, 28))
    users = [User(id="quiet", attributes={"age": 30}), User(id="u3", attributes={"city": "Oslo"})]
    return RecData.build(interactions, items, users, duplicates="latest", invalid="skip")


@pytest.fixture(scope="module")
def fitted_models(encoder: Encoder) -> dict[str, FittedRecommender]:
    data = dataset()
    return {name: fit_recommender(data, name, encoder) for name in SERVABLE}


def assert_same_data(one: RecData, two: RecData) -> None:
    assert (one.user_ids, one.item_ids) == (two.user_ids, two.item_ids)
    for field in ("rows", "cols", "values", "times"):
        a, b = getattr(one, field), getattr(two, field)
        assert a.dtype == b.dtype and np.array_equal(a, b), field
    assert list(one.catalog) == list(two.catalog)
    assert [i.model_dump() for i in one.catalog.values()] == [
        i.model_dump() for i in two.catalog.values()
    ]
    assert one.user_attributes == two.user_attributes and one.skipped == two.skipped


def assert_same(fitted: FittedRecommender, loaded: FittedRecommender) -> None:
    rows = list(range(fitted.data.n_users))
    assert type(loaded.model) is type(fitted.model)
    assert np.array_equal(loaded.model.scores(rows), fitted.model.scores(rows))
    assert np.array_equal(loaded.popularity.scores(rows), fitted.popularity.scores(rows))
    assert np.array_equal(loaded.vectors, fitted.vectors)
    assert_same_data(fitted.data, loaded.data)
    assert (loaded.model_name, loaded.encoder_id, loaded.fingerprint) == (
        fitted.model_name,
        fitted.encoder_id,
        fitted.fingerprint,
    )
    assert (loaded.notes, loaded.fallback) == (fitted.notes, fitted.fallback)
    for user in [*fitted.data.user_ids, "stranger"]:
        assert loaded.recommend(user, 5) == fitted.recommend(user, 5)


@pytest.mark.parametrize("name", SERVABLE)
def test_a_saved_model_scores_exactly_as_the_fitted_one(
    name: str, fitted_models: dict[str, FittedRecommender], tmp_path: Path
) -> None:
    fitted = fitted_models[name]
    path = fitted.save(tmp_path / name)
    loaded = FittedRecommender.load(path)
    assert loaded is not None
    assert_same(fitted, loaded)
    if name == "hybrid":
        assert isinstance(loaded.model, LearnedHybrid) and isinstance(fitted.model, LearnedHybrid)
        assert loaded.model.weights == fitted.model.weights
        assert [c.name for c in loaded.model.components] == [
            c.name for c in fitted.model.components
        ]
    if name == "item-knn":
        assert isinstance(loaded.model, ItemKNN) and isinstance(fitted.model, ItemKNN)
        assert loaded.model.config == fitted.model.config


def test_the_too_little_data_fallback_round_trips(encoder: Encoder, tmp_path: Path) -> None:
    items = [Item(id=f"i{k}", title=f"Item {k}") for k in range(4)]
    data = RecData.build([rating("a", "i1", 4, 1), rating("b", "i1", 5, 2)], items)
    fitted = fit_recommender(data, "als", encoder, thin_data="popularity")
    assert fitted.fallback == "too little data"
    loaded = FittedRecommender.load(fitted.save(tmp_path / "als"))
    assert loaded is not None
    assert_same(fitted, loaded)


def test_the_folder_holds_plain_arrays_and_json(
    fitted_models: dict[str, FittedRecommender], tmp_path: Path
) -> None:
    path = fitted_models["hybrid"].save(tmp_path / "hybrid")
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.old"))
    document = json.loads((path / CONFIG).read_text())
    assert document["format"] == FORMAT and document["model_name"] == "hybrid"
    files = {p.name for p in path.iterdir()} - {CONFIG}
    assert files == set(document["files"]) and all(f.endswith(".npy") for f in files)
    for file in files:
        np.load(path / file, allow_pickle=False)  # no object arrays anywhere
    assert [p["kind"] for p in document["model"]["parts"]] == [*classic_order(), "content"]
    assert document["model"]["parts"][2]["config"] == fitted_config(fitted_models, "als")


def classic_order() -> list[str]:
    return ["popularity", "item-knn", "als", "bpr"]


def fitted_config(fitted_models: dict[str, FittedRecommender], name: str) -> dict[str, Any]:
    hybrid = fitted_models["hybrid"].model
    assert isinstance(hybrid, LearnedHybrid)
    component = next(c for c in hybrid.components if c.name == name)
    assert isinstance(component, ALS)
    return component.config.model_dump()


def saved(fitted_models: dict[str, FittedRecommender], tmp_path: Path, name: str = "als") -> Path:
    return fitted_models[name].save(tmp_path / name)


def edit_config(path: Path, change: Any) -> None:
    document = json.loads((path / CONFIG).read_text())
    change(document)
    (path / CONFIG).write_text(json.dumps(document))


def test_another_format_version_is_refused(
    fitted_models: dict[str, FittedRecommender], tmp_path: Path
) -> None:
    path = saved(fitted_models, tmp_path)
    edit_config(path, lambda d: d.update(format=FORMAT - 1))
    with pytest.raises(SavedRecommenderError, match=rf"format {FORMAT - 1}.*reads format {FORMAT}"):
        FittedRecommender.load(path)


def test_a_pickle_from_an_older_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "als.pkl"
    path.write_bytes(pickle.dumps({"format": 2, "fitted": None}))
    with pytest.raises(SavedRecommenderError, match="is a file, not a saved recommender folder"):
        FittedRecommender.load(path)
    assert FittedRecommender.load(tmp_path / "nothing") is None


def test_a_missing_or_altered_file_is_refused(
    fitted_models: dict[str, FittedRecommender], tmp_path: Path
) -> None:
    path = saved(fitted_models, tmp_path)
    (path / "model.users.npy").unlink()
    with pytest.raises(SavedRecommenderError, match=r"model\.users\.npy is missing"):
        FittedRecommender.load(path)
    path = saved(fitted_models, tmp_path)
    items = np.load(path / "model.items.npy")
    np.save(path / "model.items.npy", items * 2)
    with pytest.raises(SavedRecommenderError, match=r"model\.items\.npy was altered"):
        FittedRecommender.load(path)
    path = saved(fitted_models, tmp_path)
    (path / CONFIG).unlink()
    with pytest.raises(SavedRecommenderError, match=r"config\.json is missing"):
        FittedRecommender.load(path)
    path = saved(fitted_models, tmp_path)
    edit_config(path, lambda d: d["files"].pop("data.rows.npy"))
    with pytest.raises(SavedRecommenderError, match=r"'data\.rows\.npy', which is not listed"):
        FittedRecommender.load(path)
    path = saved(fitted_models, tmp_path)
    edit_config(path, lambda d: d["data"]["user_ids"].reverse())
    with pytest.raises(SavedRecommenderError, match="do not match their fingerprint"):
        FittedRecommender.load(path)
    path = saved(fitted_models, tmp_path)
    edit_config(path, lambda d: d["files"].update({"../x.npy": "0"}))
    with pytest.raises(SavedRecommenderError, match=r"not a plain \.npy file name"):
        FittedRecommender.load(path)


def test_unknown_keys_are_warned_about_not_dropped_silently(
    fitted_models: dict[str, FittedRecommender], tmp_path: Path
) -> None:
    path = saved(fitted_models, tmp_path, "hybrid")

    def add(document: dict[str, Any]) -> None:
        document["created_by"] = "p13n 9"
        document["model"]["parts"][2]["config"]["dropout"] = 0.1
        document["model"]["parts"][1]["note"] = "x"
        document["data"]["catalog"][0]["rank"] = 1

    edit_config(path, add)
    with pytest.warns(UserWarning, match="unknown") as caught:
        loaded = FittedRecommender.load(path)
    messages = " | ".join(str(w.message) for w in caught)
    for key in ("created_by", "dropout", "note", "rank"):
        assert key in messages
    assert loaded is not None
    assert_same(fitted_models["hybrid"], loaded)


def test_saving_again_replaces_the_folder(
    fitted_models: dict[str, FittedRecommender], tmp_path: Path
) -> None:
    path = saved_path(tmp_path, "model")
    fitted_models["als"].save(path)
    fitted_models["item-knn"].save(path)
    (tmp_path / "model.pkl").write_bytes(b"old")  # an older pickle at another path stays apart
    loaded = FittedRecommender.load(path)
    assert loaded is not None and loaded.model_name == "item-knn"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "model.pkl"]


def test_delete_saved_removes_models_leftovers_and_old_pickles(
    fitted_models: dict[str, FittedRecommender], tmp_path: Path
) -> None:
    folder = tmp_path / "tenant"
    fitted_models["popularity"].save(saved_path(folder, "popularity"))
    fitted_models["als"].save(saved_path(folder, "als-rate"))
    (folder / "hybrid.pkl").write_bytes(b"pickled")
    (folder / "bpr.partial").mkdir()
    (folder / "notes.txt").write_text("not ours")
    deleted = delete_saved(folder)
    assert sorted(p.name for p in deleted) == ["als-rate", "hybrid.pkl", "popularity"]
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert delete_saved(tmp_path / "none") == []


# --- Typed configs and registries ------------------------------------------------------------


def test_constructors_and_typed_configs_agree_on_defaults() -> None:
    for model, config in ((ItemKNN, ItemKNNConfig), (ALS, ALSConfig), (BPR, BPRConfig)):
        parameters = inspect.signature(model.__init__).parameters
        defaults = {n: p.default for n, p in parameters.items() if n != "self"}
        assert defaults == config().model_dump(), model.__name__
    assert ALS(32, regularization=0.1).config == ALSConfig(factors=32, regularization=0.1)


def test_classic_models_are_built_from_validated_configs() -> None:
    assert classic.names() == sorted(CLASSIC_GRIDS)
    for name, grid in CLASSIC_GRIDS.items():
        for params in grid:
            model = classic.get(name).make(params)
            assert model.name == name
    with pytest.raises(ValidationError, match="factor"):
        classic.get("als").make({"factor": 8})
    with pytest.raises(ValidationError, match="neighbours"):
        ItemKNN(0)


def test_fit_recommender_serves_every_registered_model() -> None:
    assert servable.names() == sorted(SERVABLE)


def test_scoring_before_fit_names_the_model() -> None:
    for model in (Popularity(), ItemKNN(), ALS(), BPR()):
        with pytest.raises(NotFittedError, match=f"{model.name} is not fitted"):
            model.scores([0])
        with pytest.raises(RuntimeError):  # callers catching the builtin still do
            model.scores([0])
    content = ContentRecommender("llm-items", np.zeros((3, 2), np.float32))
    with pytest.raises(NotFittedError, match="llm-items is not fitted"):
        content.scores([0])
    with pytest.raises(NotFittedError, match="hybrid has no weights"):
        LearnedHybrid([Popularity()]).scores([0])


def test_no_warning_on_a_clean_load(
    fitted_models: dict[str, FittedRecommender], tmp_path: Path
) -> None:
    path = saved(fitted_models, tmp_path, "content")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert FittedRecommender.load(path) is not None


def test_a_content_model_with_fixed_user_vectors_round_trips() -> None:
    from p13n.recommend.models import ModelState

    data = dataset()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((data.n_items, 4)).astype(np.float32)
    fixed = {0: rng.standard_normal(4).astype(np.float32), 5: np.ones(4, np.float32)}
    model = ContentRecommender("llm-profile", vectors, fixed)
    model.fit(data)
    state = model.state()
    copy = ModelState(state.kind, state.name, state.config, dict(state.arrays))
    loaded = ContentRecommender.from_state(copy, ())
    rows = list(range(data.n_users))
    assert np.array_equal(loaded.scores(rows), model.scores(rows))
    assert loaded.fixed_users is not None and sorted(loaded.fixed_users) == [0, 5]
