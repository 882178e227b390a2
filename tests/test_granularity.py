"""Personas (declared, discovered, global) and the granularity router, end to end: real SQLite
and PostgreSQL stores, the real bundled encoder and the real embedded model.

Twelve users write about two clearly separated topics (seven about cooking, five about football);
a few more users have too little data to be clustered and are what the router is for."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from p13n.cli import app
from p13n.data import Document, Interaction, Item, Persona, Record, User
from p13n.datasets import Sourced
from p13n.encode import Encoder
from p13n.errors import UnknownUserError
from p13n.ingest import ingest
from p13n.llm import LLM, GenerationOptions
from p13n.personalize import Personalizer, PersonalizerConfig, PreparedPrompt
from p13n.personalize.personas import (
    DiscoveryConfig,
    DiscoveryError,
    DiscoveryResult,
    PersonaSet,
    discover_personas,
)
from p13n.personalize.router import GranularityConfig, Route, Router
from p13n.prompt.templates import quote
from p13n.retrieve import CorpusLoader, RetrieverConfig
from p13n.store import Store, open_store
from tests.helpers import dump

COOKS = [f"cook-{n}" for n in range(1, 8)]
FANS = [f"fan-{n}" for n in range(1, 6)]
DISHES = [
    "mushroom risotto",
    "lentil soup",
    "ratatouille",
    "tomato pasta sauce",
    "vegetable curry",
    "sourdough bread",
    "lemon tart",
]
METHODS = [
    "simmered it slowly on the stove",
    "baked it in a hot oven",
    "seasoned it with garlic, thyme and black pepper",
]
TEAMS = ["Arsenal", "Lyon", "Porto", "Ajax", "Celtic"]
EVENTS = [
    "the striker scored a header from a corner",
    "the goalkeeper saved a penalty in stoppage time",
    "the referee showed two red cards after a wild tackle",
]
NIGHT_OWLS = "People who read and write late at night, in short bursts."
DISCOVERY = DiscoveryConfig(
    n_personas=2, min_documents=2, max_new_tokens=24, max_source_tokens=160, sample_members=4
)
"""Users with one document (the newcomers) are left out of the clustering."""
COOKING_QUESTION = "What should I cook for dinner with vegetables and herbs?"


def cooking(user: int, doc: int) -> str:
    dish = DISHES[(user + doc) % len(DISHES)]
    return (
        f"In my kitchen tonight I cooked {dish} and {METHODS[doc]}; the recipe needs fresh "
        "herbs, butter and patience."
    )


def football(user: int, doc: int) -> str:
    team = TEAMS[(user + doc) % len(TEAMS)]
    return (
        f"Football match report: {team} won 2-1 at the stadium; {EVENTS[doc]}, and the fans sang "
        "until the final whistle."
    )


def records() -> list[Record]:
    found: list[Record] = []
    for n, user in enumerate(COOKS):
        attributes: dict[str, str] = {"country": "FR"}
        if n < 5:  # 5 of 7 cooks: a defining value of their persona
            attributes["diet"] = "vegetarian"
        found.append(User(id=user, attributes=dict(attributes)))
        found += [Document(user_id=user, kind="post", text=cooking(n, d)) for d in range(3)]
    for n, user in enumerate(FANS):
        attributes = {"country": "FR"}  # everyone's: defines no persona
        if n < 4:
            attributes["team"] = "blue"
        if user == "fan-1":  # matches the declared persona, but fan-1 is a member elsewhere
            attributes["shift"] = "night"
        found.append(User(id=user, attributes=dict(attributes)))
        found += [Document(user_id=user, kind="post", text=football(n, d)) for d in range(3)]
    found += [
        User(id="newbie-cook"),
        Document(
            user_id="newbie-cook",
            kind="post",
            text="I cooked a pumpkin soup with ginger and cream; the recipe was easy.",
        ),
        User(id="newbie-night", attributes={"shift": "night"}),
        Document(
            user_id="newbie-night",
            kind="post",
            text="Watched the football derby; the midfielder scored a stunning goal.",
        ),
        User(id="empty"),
        User(id="rater"),
        Item(id="film-1", title="Kickoff", text="A film about a football club."),
        Interaction(user_id="rater", item_id="film-1", kind="view"),
        Interaction(user_id="rater", item_id="film-1", kind="rate", value=4),
        Persona(
            id="night-owls",
            description=NIGHT_OWLS,
            members=["cook-1"],
            metadata={"attributes": {"shift": "night"}},
        ),
    ]
    return found


@dataclass(frozen=True)
class Discovered:
    url: str
    result: DiscoveryResult


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, encoder: Encoder) -> str:
    """The users above, embedded, with the declared persona; nothing discovered yet."""
    url = f"sqlite:///{tmp_path_factory.mktemp('granularity') / 'base.db'}"
    store = open_store(url)
    ingest(store, [Sourced(r, "test") for r in records()], encoder=encoder)
    store.close()
    return url


def copy_db(url: str, target: Path) -> str:
    target.write_bytes(Path(url.removeprefix("sqlite:///")).read_bytes())
    return f"sqlite:///{target}"


@pytest.fixture(scope="module")
def discovered(
    base_url: str, tmp_path_factory: pytest.TempPathFactory, encoder: Encoder, embedded_llm: LLM
) -> Discovered:
    """The base store after one discovery with ``DISCOVERY``."""
    url = copy_db(base_url, tmp_path_factory.mktemp("discovered") / "discovered.db")
    store = open_store(url)
    result = discover_personas(store, encoder, embedded_llm, DISCOVERY)
    store.close()
    return Discovered(url, result)


@pytest.fixture
def base(base_url: str, tmp_path: Path) -> Iterator[Store]:
    """A private copy of the base store."""
    store = open_store(copy_db(base_url, tmp_path / "base.db"))
    yield store
    store.close()


@pytest.fixture
def found(discovered: Discovered, tmp_path: Path) -> Iterator[Store]:
    """A private copy of the discovered store."""
    store = open_store(copy_db(discovered.url, tmp_path / "found.db"))
    yield store
    store.close()


def personas_by_id(store: Store) -> dict[str, Persona]:
    return {p.id: p for p in store.personas()}


def personalizer(
    store: Store, llm: LLM, encoder: Encoder, granularity: GranularityConfig
) -> Personalizer:
    config = PersonalizerConfig(
        retriever=RetrieverConfig(name="bm25", k=4),
        generation=GenerationOptions(max_new_tokens=4),
        granularity=granularity,
    )
    return Personalizer(store, config, llm=llm, encoder=encoder)


def route_of(prepared: PreparedPrompt) -> Route:
    route = prepared.trace_fields["granularity"]
    assert isinstance(route, Route)
    return route


def user_message(prepared: PreparedPrompt) -> str:
    return prepared.prompt.messages[-1]["content"]


ROUTER = GranularityConfig(level="auto", persona_min_items=1, user_min_items=3)
"""Newcomers (1 item) at persona level, the twelve (3 items) at user level, 0 items global."""


# -- discovery -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_discovery_puts_each_topic_in_its_own_persona_largest_first(
    discovered: Discovered, found: Store, encoder: Encoder, embedded_llm: LLM
) -> None:
    result = discovered.result
    assert result.refreshed and result.version == 1 and result.users == 12
    assert [p.id for p in result.personas] == ["discovered-1", "discovered-2"]
    assert [p.members for p in result.personas] == [COOKS, FANS]  # 7 cooks before 5 fans
    assert [p.metadata["size"] for p in result.personas] == [7, 5]
    stored = personas_by_id(found)
    assert set(stored) == {"discovered-1", "discovered-2", "global", "night-owls"}
    personas = PersonaSet.read(found)
    assert personas.global_profile is not None
    assert personas.global_profile.id == "global" and personas.global_profile.source == "global"
    assert stored["global"].members == [] and stored["global"].metadata["size"] == 12
    assert stored["global"].description == result.global_profile.description
    for persona in result.personas:
        info = personas.get(persona.id)
        assert info is not None and info.source == "discovered" and info.version == 1
        assert info.description and info.description == stored[persona.id].description
        assert info.centroid is not None and info.centroid.shape == (encoder.dim,)
        assert stored[persona.id].members == persona.members
        assert persona.metadata["fingerprint"] == result.fingerprint
        assert persona.metadata["seed"] == 0
        assert persona.metadata["model"] == f"{embedded_llm.backend}:{embedded_llm.model}"
        assert persona.metadata["encoder"] == encoder.id
    assert stored["global"].metadata["fingerprint"] == result.fingerprint
    # Memberships are stored: a cook is in the cooking persona (and cook-1 in the declared one
    # too); users left out of the clustering are in no discovered persona.
    assert found.personas_of("cook-2") == ["discovered-1"]
    assert found.personas_of("cook-1") == ["discovered-1", "night-owls"]
    assert found.personas_of("fan-5") == ["discovered-2"]
    for user in ("newbie-cook", "newbie-night", "empty", "rater"):
        assert found.personas_of(user) == []


@pytest.mark.slow
def test_discovery_is_deterministic_under_a_seed(
    discovered: Discovered, base: Store, encoder: Encoder, embedded_llm: LLM
) -> None:
    again = discover_personas(base, encoder, embedded_llm, DISCOVERY)
    first = discovered.result
    assert again.fingerprint == first.fingerprint and again.version == first.version == 1
    assert [(p.id, p.members, p.description) for p in again.personas] == [
        (p.id, p.members, p.description) for p in first.personas
    ]
    assert again.global_profile.description == first.global_profile.description
    for mine, theirs in zip(again.personas, first.personas, strict=True):
        assert mine.metadata["centroid"] == theirs.metadata["centroid"]
        assert mine.metadata["attributes"] == theirs.metadata["attributes"]


@pytest.mark.slow
def test_defining_attributes_are_those_a_cluster_shares_and_others_do_not(
    discovered: Discovered, found: Store
) -> None:
    cooks, fans = discovered.result.personas
    assert cooks.metadata["attributes"] == {"diet": "vegetarian"}
    assert fans.metadata["attributes"] == {"team": "blue"}  # fan-1's own shift=night is not
    personas = PersonaSet.read(found)
    placed = personas.by_attributes({"diet": "Vegetarian ", "country": "fr"})
    assert placed is not None and placed.id == "discovered-1"
    placed = personas.by_attributes({"team": "blue"})
    assert placed is not None and placed.id == "discovered-2"
    assert personas.by_attributes({"country": "fr"}) is None


@pytest.mark.slow
def test_a_refresh_without_changes_writes_nothing(
    found: Store, encoder: Encoder, embedded_llm: LLM
) -> None:
    before = dump(found)
    result = discover_personas(found, encoder, embedded_llm, DISCOVERY)
    assert not result.refreshed and result.version == 1
    assert [p.id for p in result.personas] == ["discovered-1", "discovered-2"]
    assert dump(found) == before


@pytest.mark.slow
def test_changed_data_is_rediscovered_as_the_next_version(
    discovered: Discovered, found: Store, encoder: Encoder, embedded_llm: LLM
) -> None:
    declared = personas_by_id(found)["night-owls"]
    note = Document(user_id="cook-7", kind="post", text=football(0, 0))
    ingest(found, [Sourced(note, "test")], encoder=encoder)
    result = discover_personas(found, encoder, embedded_llm, DISCOVERY)
    assert result.refreshed and result.version == 2
    assert result.fingerprint != discovered.result.fingerprint
    stored = personas_by_id(found)
    for persona_id in ("discovered-1", "discovered-2", "global"):
        assert stored[persona_id].metadata["version"] == 2
        assert stored[persona_id].metadata["fingerprint"] == result.fingerprint
    assert stored["night-owls"] == declared  # declared personas are never touched
    assert not discover_personas(found, encoder, embedded_llm, DISCOVERY).refreshed


@pytest.mark.slow
def test_stale_discovered_personas_are_deleted_when_k_shrinks(
    discovered: Discovered, found: Store, encoder: Encoder, embedded_llm: LLM
) -> None:
    declared = personas_by_id(found)["night-owls"]
    three = discover_personas(
        found, encoder, embedded_llm, DISCOVERY.model_copy(update={"n_personas": 3})
    )
    assert three.refreshed and three.version == 2 and three.removed == []
    assert [p.id for p in three.personas] == ["discovered-1", "discovered-2", "discovered-3"]
    sizes = [len(p.members) for p in three.personas]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == 12
    assert sorted(m for p in three.personas for m in p.members) == sorted(COOKS + FANS)
    third = three.personas[2].members
    assert all("discovered-3" in found.personas_of(member) for member in third)

    two = discover_personas(found, encoder, embedded_llm, DISCOVERY)
    assert two.refreshed and two.version == 3 and two.removed == ["discovered-3"]
    stored = personas_by_id(found)
    assert set(stored) == {"discovered-1", "discovered-2", "global", "night-owls"}
    assert all("discovered-3" not in found.personas_of(member) for member in third)
    assert {stored[p].metadata["version"] for p in ("discovered-1", "discovered-2", "global")} == {
        3
    }
    # The same data and settings as the first discovery: the same personas, a later version.
    assert [(p.members, p.description) for p in two.personas] == [
        (p.members, p.description) for p in discovered.result.personas
    ]
    assert stored["night-owls"] == declared
    assert found.personas_of("cook-1") == ["discovered-1", "night-owls"]


@pytest.mark.slow
def test_too_few_users_is_a_discovery_error_naming_the_counts(
    base: Store, tmp_path: Path, encoder: Encoder, embedded_llm: LLM
) -> None:
    before = dump(base)
    with pytest.raises(
        DiscoveryError,
        match=rf"needs at least 13 users with 2\+ embedded documents \(encoder {encoder.id}\); "
        "found 12",
    ):
        discover_personas(
            base, encoder, embedded_llm, DISCOVERY.model_copy(update={"n_personas": 12})
        )
    with pytest.raises(DiscoveryError, match=r"max_personas \(2\) is below min_personas \(3\)"):
        discover_personas(
            base, encoder, embedded_llm, DiscoveryConfig(min_personas=3, max_personas=2)
        )
    assert dump(base) == before
    small = open_store(f"sqlite:///{tmp_path / 'small.db'}")
    two = [Document(user_id=u, kind="post", text=cooking(n, 0)) for n, u in enumerate(COOKS[:2])]
    ingest(small, [Sourced(d, "test") for d in two], encoder=encoder)
    with pytest.raises(DiscoveryError, match=r"needs at least 3 users with 1\+ .*; found 2$"):
        discover_personas(small, encoder, embedded_llm)  # default: at least 2 personas
    assert small.personas() == []
    small.close()
    with pytest.raises(ValidationError):
        DiscoveryConfig(min_personas=1)


# -- the router ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_router_chooses_the_level_by_item_count_and_places_users(
    found: Store, encoder: Encoder, embedded_llm: LLM
) -> None:
    p = personalizer(found, embedded_llm, encoder, ROUTER)
    stored = personas_by_id(found)

    def route(user: str) -> Route:
        return route_of(p.prepare(user, COOKING_QUESTION))

    empty = route("empty")
    assert empty.level == "global" and empty.items == 0 and empty.persona is None
    assert "0 items < persona_min_items=1" in empty.reason and "global profile v1" in empty.reason
    rater = route("rater")  # interactions count as items; nothing places a user without text
    assert rater.level == "global" and rater.items == 2
    assert "2 items < user_min_items=3" in rater.reason and "no persona places" in rater.reason
    by_text = route("newbie-cook")
    assert by_text.level == "persona" and by_text.items == 1
    assert by_text.persona == "discovered-1" and by_text.placed_by is not None
    assert by_text.placed_by.startswith("nearest centroid, cosine")
    assert by_text.description == stored["discovered-1"].description
    by_attributes = route("newbie-night")  # writes about football, but shift=night places first
    assert (by_attributes.level, by_attributes.persona, by_attributes.placed_by) == (
        "persona",
        "night-owls",
        "attributes",
    )
    assert by_attributes.description == NIGHT_OWLS
    # The request's attributes count like the user's own: they beat the nearest centroid.
    asked = route_of(p.prepare("newbie-cook", COOKING_QUESTION, attributes={"shift": "night"}))
    assert (asked.level, asked.persona, asked.placed_by) == ("persona", "night-owls", "attributes")
    for user, persona in (("cook-1", "night-owls"), ("fan-1", "discovered-2")):
        # cook-1: a declared membership beats a discovered one; fan-1: membership beats its own
        # shift=night attribute
        member = Router(
            found, CorpusLoader(found, encoder), ROUTER.model_copy(update={"user_min_items": 4})
        ).route(user, known=True)
        assert (member.level, member.persona, member.placed_by) == (
            "persona",
            persona,
            "membership",
        )
        assert member.reason == f"3 items < user_min_items=4; persona {persona} (membership)"
    own = route("cook-2")
    assert (own.level, own.items, own.persona) == ("user", 3, None)
    assert own.reason == "3 items >= user_min_items=3"
    forced = route_of(
        personalizer(found, embedded_llm, encoder, GranularityConfig(level="global")).prepare(
            "cook-2", COOKING_QUESTION
        )
    )
    assert forced.level == "global" and forced.reason.startswith("level = global (configured)")


@pytest.mark.slow
def test_persona_and_global_levels_put_their_description_in_the_prompt(
    found: Store, encoder: Encoder, embedded_llm: LLM
) -> None:
    p = personalizer(found, embedded_llm, encoder, ROUTER)
    stored = personas_by_id(found)
    persona = p.prepare("newbie-cook", COOKING_QUESTION)
    description = stored["discovered-1"].description
    assert persona.prompt.persona == description
    assert f"persona: {quote(description)}" in user_message(persona)
    assert persona.prompt.items == () and persona.trace_fields["retrieved"] is None
    assert persona.prompt.profile is None
    population = p.prepare("empty", COOKING_QUESTION)
    text = stored["global"].description
    assert population.prompt.persona == text
    assert f"population: {quote(text)}" in user_message(population)
    assert "persona:" not in user_message(population)
    assert population.trace_fields["personalized"] is True


@pytest.mark.slow
def test_blend_adds_the_persona_description_at_user_level(
    found: Store, encoder: Encoder, embedded_llm: LLM
) -> None:
    description = personas_by_id(found)["discovered-1"].description
    plain = personalizer(found, embedded_llm, encoder, ROUTER).prepare("cook-2", COOKING_QUESTION)
    assert plain.prompt.persona is None and "persona:" not in user_message(plain)
    blended = personalizer(
        found, embedded_llm, encoder, ROUTER.model_copy(update={"blend": True})
    ).prepare("cook-2", COOKING_QUESTION)
    route = route_of(blended)
    assert (route.level, route.persona, route.placed_by) == ("user", "discovered-1", "membership")
    assert "blended with persona discovered-1 (membership)" in route.reason
    assert blended.prompt.persona == description
    assert f"persona: {quote(description)}" in user_message(blended)
    assert blended.prompt.items and blended.trace_fields["retrieved"] is not None
    assert {item.owner for item in blended.trace_fields["retrieved"].items} == {"cook-2"}


@pytest.mark.slow
def test_unknown_users_fail_at_user_level_and_are_served_by_the_router(
    found: Store, encoder: Encoder, embedded_llm: LLM
) -> None:
    strict = personalizer(found, embedded_llm, encoder, GranularityConfig(level="user"))
    with pytest.raises(UnknownUserError, match="no user 'nobody' in tenant 'default'"):
        strict.prepare("nobody", COOKING_QUESTION)
    with pytest.raises(UnknownUserError, match="no user 'nobody'"):
        Router(found, CorpusLoader(found, encoder)).route("nobody", known=False)
    p = personalizer(found, embedded_llm, encoder, ROUTER)
    anonymous = p.prepare("nobody", COOKING_QUESTION)
    route = route_of(anonymous)
    assert (route.level, route.items, route.reason) == (
        "global",
        None,
        "unknown user: global profile v1",
    )
    assert anonymous.prompt.persona == personas_by_id(found)["global"].description
    assert anonymous.trace_fields["data_version"] == ""
    night = route_of(p.prepare("nobody", COOKING_QUESTION, attributes={"shift": "Night"}))
    assert (night.level, night.persona, night.placed_by, night.description) == (
        "persona",
        "night-owls",
        "attributes",
        NIGHT_OWLS,
    )
    assert "the request's attributes place them in persona night-owls" in night.reason
    vegetarian = route_of(p.prepare("nobody", COOKING_QUESTION, attributes={"diet": "vegetarian"}))
    assert (vegetarian.level, vegetarian.persona) == ("persona", "discovered-1")
    unmatched = route_of(p.prepare("nobody", COOKING_QUESTION, attributes={"shift": "day"}))
    assert unmatched.level == "global"
    assert unmatched.reason.startswith("unknown user; no persona matches the attributes")


@pytest.mark.slow
def test_without_a_global_profile_the_prompt_is_not_personalized(
    base: Store, encoder: Encoder, embedded_llm: LLM
) -> None:
    p = personalizer(base, embedded_llm, encoder, ROUTER)
    for user in ("empty", "nobody"):
        prepared = p.prepare(user, COOKING_QUESTION)
        route = route_of(prepared)
        assert route.level == "none" and "no global profile" in route.reason
        assert prepared.trace_fields["personalized"] is False
        baseline = p.prepare(user, COOKING_QUESTION, personalize=False)
        assert baseline.trace_fields["granularity"] is None
        assert prepared.prompt.messages == baseline.prompt.messages
        assert prepared.prompt.builder == "none"
    instruction = "Write for a general audience of home readers."
    configured = personalizer(
        base, embedded_llm, encoder, ROUTER.model_copy(update={"global_instruction": instruction})
    ).prepare("empty", COOKING_QUESTION)
    route = route_of(configured)
    assert route.level == "global" and route.reason.endswith(": configured global instruction")
    assert f"population: {quote(instruction)}" in user_message(configured)


@pytest.mark.slow
def test_collaborative_members_retrieve_only_from_the_persona(
    found: Store, encoder: Encoder, embedded_llm: LLM
) -> None:
    members = personas_by_id(found)["discovered-1"].members
    collaborative = ROUTER.model_copy(update={"collaborative_members": 2})
    p = personalizer(found, embedded_llm, encoder, collaborative)
    prepared = p.prepare("newbie-cook", COOKING_QUESTION)
    route = route_of(prepared)
    assert route.level == "persona" and route.persona == "discovered-1"
    assert len(route.members) == 2 and set(route.members) <= set(members)
    retrieved = prepared.trace_fields["retrieved"]
    assert retrieved is not None and retrieved.items
    owners = {item.id: item.owner for item in retrieved.items}
    assert set(owners.values()) <= {*route.members, "newbie-cook"}  # the user's own come too
    assert set(owners.values()) & set(route.members)
    for item in prepared.prompt.items:
        assert ("{similar user}" in item.line) == (owners[item.id] != "newbie-cook")
    assert "{similar user}" in user_message(prepared)

    # A newcomer the store does not know: only the members' documents, each marked.
    walk_in = p.prepare("walk-in", COOKING_QUESTION, attributes={"shift": "night"})
    route = route_of(walk_in)
    assert (route.persona, route.members) == ("night-owls", ["cook-1"])
    retrieved = walk_in.trace_fields["retrieved"]
    assert retrieved is not None and retrieved.items
    assert {item.owner for item in retrieved.items} == {"cook-1"}
    assert walk_in.prompt.items
    assert all("{similar user}" in item.line for item in walk_in.prompt.items)

    off = personalizer(found, embedded_llm, encoder, ROUTER)  # collaborative_members=0
    for user, attributes in (("newbie-cook", None), ("walk-in", {"shift": "night"})):
        prepared = off.prepare(user, COOKING_QUESTION, attributes=attributes)
        assert route_of(prepared).level == "persona" and route_of(prepared).members == []
        assert prepared.trace_fields["retrieved"] is None and prepared.prompt.items == ()
        assert "{similar user}" not in user_message(prepared)


@pytest.mark.slow
def test_the_trace_carries_the_routing_decision_as_json(
    found: Store, encoder: Encoder, embedded_llm: LLM
) -> None:
    collaborative = ROUTER.model_copy(update={"collaborative_members": 2})
    p = personalizer(found, embedded_llm, encoder, collaborative)
    for user, level in (("empty", "global"), ("newbie-cook", "persona"), ("cook-2", "user")):
        result = p.generate(user, COOKING_QUESTION)
        route = result.trace.granularity
        assert route is not None and route.level == level and route.reason
        assert 0 < result.trace.completion_tokens <= 4
        plain = json.loads(json.dumps(result.to_dict()))
        assert plain["trace"]["granularity"]["level"] == level
        assert plain["trace"]["granularity"]["reason"] == route.reason
        assert plain["trace"]["granularity"]["members"] == route.members
    baseline = p.generate("cook-2", COOKING_QUESTION, personalize=False)
    assert baseline.trace.granularity is None
    assert json.loads(json.dumps(baseline.to_dict()))["trace"]["granularity"] is None


def test_granularity_config_orders_its_thresholds() -> None:
    with pytest.raises(
        ValidationError, match=r"persona_min_items \(5\) must not exceed user_min_items \(2\)"
    ):
        GranularityConfig(level="auto", persona_min_items=5, user_min_items=2)
    same = GranularityConfig(level="auto", persona_min_items=3, user_min_items=3)
    assert same.routes and not GranularityConfig().routes
    with pytest.raises(ValidationError):
        GranularityConfig(level="team")


# -- the command line ----------------------------------------------------------------------------

runner = CliRunner()


def invoke(*args: str, **env: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200", **env}, catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.slow
def test_cli_discovers_lists_shows_and_routes(base_url: str, tmp_path: Path) -> None:
    url = copy_db(base_url, tmp_path / "cli.db")
    code, out = invoke("--store", url, "personas", "list")
    assert code == 0 and "night-owls" in out and "discovered-1" not in out
    code, out = invoke(
        "--store", url, "personas", "discover", "--personas", "2", "--min-documents", "2"
    )
    assert code == 0, out
    assert "discovered 2 personas from 12 users, version 1" in out
    code, out = invoke("--store", url, "personas", "list")
    assert code == 0, out
    for text in ("discovered-1", "discovered-2", "global", "night-owls", "diet=vegetarian"):
        assert text in out
    assert "team=blue" in out and "shift=night" in out and "country=" not in out
    code, out = invoke(
        "--store", url, "personas", "discover", "--personas", "2", "--min-documents", "2"
    )
    assert code == 0 and "personas are up to date (version 1, 12 users" in out

    code, out = invoke("--store", url, "show", "cook-2")
    assert code == 0, out
    assert "persona discovered-1 (discovered, v1, 7 members): " in out
    assert "router: user level: 3 items >= user_min_items=1" in out
    code, out = invoke("--store", url, "show", "cook-2", P13N_USER_MIN_ITEMS="5")
    assert code == 0, out
    assert "router: persona level via persona discovered-1 (membership): 3 items < " in out
    code, out = invoke("--store", url, "show", "empty")
    assert code == 0, out
    assert "persona: not a member of any" in out
    assert "router: global level: 0 items < persona_min_items=1: global profile v1" in out

    ask = ("--store", url, "generate", "hello", "--user", "nobody", "--max-new-tokens", "4")
    code, out = invoke(*ask, "--level", "user")
    assert code == 1 and "error: no user 'nobody' in tenant 'default'" in out
    code, out = invoke(*ask)
    assert code == 0, out
    assert "served at global level: unknown user: global profile v1" in out
    code, out = invoke(*ask, "--attr", "shift=night")
    assert code == 0, out
    assert "served at persona level: unknown user; the request's attributes place them in " in out
    code, out = invoke(*ask, "--attr", "shift")
    assert code == 1 and "--attr 'shift': expected KEY=VALUE" in out
    code, out = invoke(*ask, "--level", "sideways")
    assert code == 1 and "Input should be 'auto', 'user', 'persona' or 'global'" in out


# -- the store: delete_personas on both backends -------------------------------------------------


def test_delete_personas_removes_personas_and_memberships(store: Store, store_url: str) -> None:
    def persona(persona_id: str, members: list[str]) -> Sourced:
        return Sourced(Persona(id=persona_id, description=f"{persona_id}.", members=members), "t")

    users = [Sourced(User(id=u), "t") for u in ("a", "b", "c", "d")]
    ingest(store, [*users, persona("p1", ["a", "b"]), persona("p2", ["b", "c"])], encoder=None)
    other = open_store(store_url, tenant="other")
    try:
        ingest(other, [Sourced(User(id="a"), "t"), persona("p1", ["a"])], encoder=None)
        versions = {u: store.data_version(u) for u in ("a", "b", "c", "d")}
        other_version = other.data_version("a")

        before = dump(store)
        assert store.delete_personas([]) == 0 and store.delete_personas(["absent"]) == 0
        assert dump(store) == before

        assert store.delete_personas(["p1", "absent", "p1"]) == 1
        assert [(p.id, p.members) for p in store.personas()] == [("p2", ["b", "c"])]
        assert store.personas_of("a") == [] and store.personas_of("b") == ["p2"]
        assert store.user_counts("a").personas == 0 and store.user_counts("b").personas == 1
        after = {u: store.data_version(u) for u in ("a", "b", "c", "d")}
        assert after["a"] != versions["a"] and after["b"] != versions["b"]  # members' data moved
        assert after["c"] == versions["c"] and after["d"] == versions["d"]
        assert store.get_user("a") is not None  # the users themselves stay

        # Another tenant's persona of the same id is not touched.
        assert [(p.id, p.members) for p in other.personas()] == [("p1", ["a"])]
        assert other.personas_of("a") == ["p1"] and other.data_version("a") == other_version

        assert store.delete_personas(["p2"]) == 1
        assert store.personas() == [] and store.personas_of("b") == []
        assert store.data_version("c") != versions["c"]
    finally:
        other.close()
