"""The granularity router (survey §4.4): serve each request at user, persona or global level.

A user with enough data of their own is served from it (user level); a user with a little is
served through their persona's description (persona level), optionally with the documents of
the persona's members most like them (Persona-DB's collaborative refinement, opt-in); a user with
nothing, or one the store has never seen, is served with the population's global profile. Every
decision is returned as a ``Route`` whose ``reason`` says why, and ends up in the trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from p13n.errors import UnknownUserError
from p13n.personalize.personas import PersonaInfo, PersonaSet
from p13n.retrieve import CorpusLoader
from p13n.store import Store

Level = Literal["user", "persona", "global"]
ServedLevel = Literal["user", "persona", "global", "none"]


class GranularityConfig(BaseModel):
    """How the level is chosen. ``level = "auto"`` is the router; the others force a level."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    level: Literal["auto", "user", "persona", "global"] = Field(
        "user", description="auto: by the user's item count; or always this level"
    )
    persona_min_items: int = Field(
        1, ge=0, description="auto: a user with fewer items of their own is served at global level"
    )
    user_min_items: int = Field(
        1, ge=0, description="auto: a user with at least this many items is served at user level"
    )
    blend: bool = Field(False, description="user level also carries the user's persona description")
    collaborative_members: int = Field(
        0,
        ge=0,
        description="persona level: also retrieve from this many members of the persona most "
        "like the user (Persona-DB refinement); 0: off",
    )
    global_instruction: str | None = Field(
        None, description="global level: this text instead of the stored global profile"
    )

    @model_validator(mode="after")
    def _ordered(self) -> GranularityConfig:
        if self.persona_min_items > self.user_min_items:
            raise ValueError(
                f"persona_min_items ({self.persona_min_items}) must not exceed user_min_items "
                f"({self.user_min_items})"
            )
        return self

    @property
    def routes(self) -> bool:
        """Whether the router may serve below user level (an unknown user is then served)."""
        return self.level != "user"


@dataclass(frozen=True)
class Route:
    """The level a request is served at, and why."""

    level: ServedLevel
    reason: str
    items: int | None
    """The user's own documents and interactions (counted by the ``auto`` router only; None
    otherwise, and for a user the store does not know)."""
    persona: str | None = None
    placed_by: str | None = None
    """How the persona was found: membership, attributes or nearest centroid."""
    description: str | None = None
    """The persona's or the population's description the prompt carries."""
    members: list[str] = field(default_factory=list)
    """Persona members whose documents are retrieved from (collaborative refinement)."""


class Router:
    """Chooses the level for each request from the store's personas and the user's data."""

    def __init__(
        self, store: Store, loader: CorpusLoader, config: GranularityConfig | None = None
    ) -> None:
        self.store, self.loader = store, loader
        self.config = config or GranularityConfig()

    def route(
        self,
        user_id: str,
        *,
        known: bool,
        attributes: Mapping[str, object] | None = None,
    ) -> Route:
        """The level for ``user_id``; ``known``: whether the store has the user. A request's
        ``attributes`` (a newcomer's, say) can place the user in a persona."""
        config = self.config
        if not known:
            if config.level == "user":
                raise UnknownUserError(user_id, self.store.tenant)
            return self._unknown(user_id, attributes or {})
        items: int | None = None
        if config.level == "auto":
            counts = self.store.user_counts(user_id)
            items = counts.documents + counts.interactions
            if items < config.persona_min_items:
                wanted: Level = "global"
                why = f"{items} items < persona_min_items={config.persona_min_items}"
            elif items < config.user_min_items:
                wanted = "persona"
                why = f"{items} items < user_min_items={config.user_min_items}"
            else:
                wanted = "user"
                why = f"{items} items >= user_min_items={config.user_min_items}"
        else:
            wanted, why = config.level, f"level = {config.level} (configured)"
        if wanted == "user" and not config.blend:  # the library's default: no reads at all
            return Route("user", why, items)
        personas = PersonaSet.read(self.store)
        if wanted == "global":
            return self._global(personas, why, items)
        placed = self._place(user_id, personas, attributes or {})
        if wanted == "user":
            if config.blend and placed is not None:
                persona, how = placed
                return Route(
                    "user",
                    f"{why}; blended with persona {persona.id} ({how})",
                    items,
                    persona.id,
                    how,
                    persona.description,
                )
            return Route("user", why, items)
        if placed is None:
            return self._global(personas, f"{why}; no persona places the user", items)
        persona, how = placed
        return Route(
            "persona",
            f"{why}; persona {persona.id} ({how})",
            items,
            persona.id,
            how,
            persona.description,
            self._members(user_id, persona),
        )

    def _unknown(self, user_id: str, attributes: Mapping[str, object]) -> Route:
        personas = PersonaSet.read(self.store)
        if attributes and self.config.level in ("auto", "persona"):
            persona = personas.by_attributes(attributes)
            if persona is not None:
                return Route(
                    "persona",
                    f"unknown user; the request's attributes place them in persona {persona.id}",
                    None,
                    persona.id,
                    "attributes",
                    persona.description,
                    self._members(user_id, persona),
                )
            return self._global(personas, "unknown user; no persona matches the attributes", None)
        return self._global(personas, "unknown user", None)

    def _global(self, personas: PersonaSet, why: str, items: int | None) -> Route:
        text = self.config.global_instruction
        if text:
            return Route("global", f"{why}: configured global instruction", items, None, None, text)
        if personas.global_profile is not None:
            profile = personas.global_profile
            return Route(
                "global",
                f"{why}: global profile v{profile.version}",
                items,
                None,
                None,
                profile.description,
            )
        return Route(
            "none",
            f"{why}; no global profile (run `p13n personas discover`) nor global_instruction: "
            "non-personalized",
            items,
        )

    def _place(
        self, user_id: str, personas: PersonaSet, attributes: Mapping[str, object]
    ) -> tuple[PersonaInfo, str] | None:
        """The user's persona: a stored membership, else the attributes (the user's own and the
        request's), else the persona whose centroid is nearest the user's documents."""
        joined = [p for p in map(personas.get, self.store.personas_of(user_id)) if p is not None]
        if joined:  # a declared persona is the application's word: it goes first
            joined.sort(key=lambda p: (p.source != "declared", p.id))
            return joined[0], "membership"
        user = self.store.get_user(user_id)
        merged = {**(user.attributes if user else {}), **attributes}
        if merged:
            persona = personas.by_attributes(merged)
            if persona is not None:
                return persona, "attributes"
        if self.loader.encoder is not None and any(p.centroid is not None for p in personas.groups):
            centroid = self.loader.centroid(user_id)
            if centroid is not None:
                nearest = personas.nearest(centroid)
                if nearest is not None:
                    persona, similarity = nearest
                    return persona, f"nearest centroid, cosine {similarity:.2f}"
        return None

    def _members(self, user_id: str, persona: PersonaInfo) -> list[str]:
        """The members to retrieve from: those whose centroid is nearest the user's (or the
        persona's, for a user without documents); none unless configured."""
        wanted = self.config.collaborative_members
        members = [m for m in persona.persona.members if m != user_id]
        if wanted == 0 or not members:
            return []
        target = None
        if self.loader.encoder is not None:
            try:
                target = self.loader.centroid(user_id)
            except UnknownUserError:
                target = None
            if target is None:
                target = persona.centroid
        if target is None:
            return sorted(members)[:wanted]
        scored = []
        for member in members:
            vector = self.loader.centroid(member)
            if vector is not None and vector.shape == target.shape:
                scored.append((-float(np.dot(vector, target)), member))
        return [member for _, member in sorted(scored)[:wanted]]
