"""Personas (survey §4.2) and the global profile (§4.3).

A persona is a group of users who share preferences, with a description a prompt can carry.
Personas are *declared* (ingested as ``persona`` records: a description, members, and optionally
the attribute values that place a newcomer in it) or *discovered*: users are clustered by their
profile embedding (the mean of their document vectors) and their attributes with scikit-learn's
k-means, and the LLM writes each cluster's description from the texts of its most central
members. Discovery also writes the *global* profile, the same description for the whole
population: the level that serves users nothing is known about.

Everything a discovered persona needs later lives in its ``metadata``: ``source``, ``version``
(one more on every rediscovery), the ``fingerprint`` of the features it was clustered from (a
refresh with unchanged data is a no-op), the ``centroid`` that places users by their data, the
``attributes`` most of its members share, the seed and the models.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from p13n.data import Persona
from p13n.encode import Encoder
from p13n.errors import DiscoveryError
from p13n.llm import LLM, ChatMessage, GenerationOptions
from p13n.prompt.templates import quote
from p13n.store import Store, WriteSet

GLOBAL_ID = "global"
PersonaSource = Literal["declared", "discovered", "global"]
"""Where a persona came from: ingested, found by clustering, or the whole population."""
Vector = npt.NDArray[np.float32]

PERSONA_INSTRUCTION = (
    "Below are texts written by several people who belong to one group, as quoted data. In at "
    "most two sentences, describe what this group writes about and how they write (topics, "
    "tone, length). Describe the group; do not quote."
)
GLOBAL_INSTRUCTION = (
    "Below are texts written by many different people, as quoted data. In at most two "
    "sentences, describe what is typical of these texts (topics, tone, length). Describe; do "
    "not quote."
)


@dataclass(frozen=True, eq=False)
class PersonaInfo:
    """A stored persona with its metadata read: where it came from and how to place users."""

    persona: Persona
    source: PersonaSource
    version: int
    centroid: Vector | None
    attributes: dict[str, JsonValue]

    @property
    def id(self) -> str:
        return self.persona.id

    @property
    def description(self) -> str:
        return self.persona.description

    @classmethod
    def of(cls, persona: Persona) -> PersonaInfo:
        meta = persona.metadata
        centroid = meta.get("centroid")
        vector = None
        if isinstance(centroid, list) and centroid:
            vector = np.asarray(centroid, dtype=np.float32)
            norm = float(np.linalg.norm(vector))
            vector = vector / norm if norm > 0 else None
        source = meta.get("source", "global" if persona.id == GLOBAL_ID else "declared")
        attributes = meta.get("attributes")
        version = meta.get("version", 1)
        return cls(
            persona=persona,
            source=source if source in ("declared", "discovered", "global") else "declared",  # type: ignore[arg-type]
            version=version if isinstance(version, int) else 1,
            centroid=vector,
            attributes=dict(attributes) if isinstance(attributes, dict) else {},
        )


@dataclass(frozen=True)
class PersonaSet:
    """A tenant's personas as the router sees them: the groups and the global profile."""

    groups: list[PersonaInfo]
    global_profile: PersonaInfo | None

    @classmethod
    def read(cls, store: Store) -> PersonaSet:
        infos = [PersonaInfo.of(p) for p in store.personas()]
        found = [i for i in infos if i.source == "global"]
        return cls([i for i in infos if i.source != "global"], found[0] if found else None)

    def get(self, persona_id: str) -> PersonaInfo | None:
        return next((p for p in self.groups if p.id == persona_id), None)

    def by_attributes(self, attributes: Mapping[str, object]) -> PersonaInfo | None:
        """The persona whose declared attribute values all match ``attributes``: the most
        specific one (most attributes) first, then declared before discovered, then by id."""
        matching = [
            p
            for p in self.groups
            if p.attributes
            and all(_same(attributes.get(key), value) for key, value in p.attributes.items())
        ]
        matching.sort(key=lambda p: (-len(p.attributes), p.source != "declared", p.id))
        return matching[0] if matching else None

    def nearest(self, centroid: Vector) -> tuple[PersonaInfo, float] | None:
        """The persona whose centroid is closest (cosine) to a user's."""
        scored = [
            (float(p.centroid @ centroid), p)
            for p in self.groups
            if p.centroid is not None and p.centroid.shape == centroid.shape
        ]
        if not scored:
            return None
        similarity, best = min(scored, key=lambda pair: (-pair[0], pair[1].id))
        return best, similarity


def _same(given: object, expected: object) -> bool:
    return given is not None and str(given).strip().lower() == str(expected).strip().lower()


class DiscoveryConfig(BaseModel):
    """How personas are discovered; part of what a refresh compares."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_personas: int | None = Field(
        None, ge=1, description="clusters; None: chosen by silhouette among min..max"
    )
    min_personas: int = Field(2, ge=2)
    max_personas: int = Field(8, ge=2)
    seed: int = 0
    min_documents: int = Field(
        1, ge=1, description="users with fewer embedded documents are left out"
    )
    attribute_weight: float = Field(
        1.0, ge=0, description="weight of the attributes against the text centroid (0: ignore)"
    )
    sample_members: int = Field(12, ge=1, description="members whose texts the LLM reads")
    max_source_tokens: int = Field(768, gt=0)
    max_new_tokens: int = Field(80, gt=0)
    max_sentences: int = Field(2, ge=1, description="descriptions are cut to this many sentences")
    users: list[str] | None = Field(
        None, description="cluster only these users (default: every user of the tenant)"
    )


@dataclass
class DiscoveryResult:
    """What a discovery run wrote (or found up to date)."""

    personas: list[Persona]
    global_profile: Persona
    version: int
    fingerprint: str
    refreshed: bool
    users: int
    silhouette: dict[int, float] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class UserFeatures:
    """Each clustered user's text centroid (unit length) and attributes, rows in ``ids`` order."""

    ids: list[str]
    centroids: Vector
    attributes: list[dict[str, str]]
    texts: list[list[str]]
    vectors: list[Vector]

    def matrix(self, attribute_weight: float) -> npt.NDArray[np.float64]:
        """What k-means clusters: the centroid, then one-hot attributes scaled so that all of a
        user's attributes together weigh ``attribute_weight`` against the unit centroid."""
        from sklearn.feature_extraction import DictVectorizer

        text = self.centroids.astype(np.float64)
        if attribute_weight == 0 or not any(self.attributes):
            return text
        onehot = DictVectorizer(sparse=False, sort=True).fit_transform(self.attributes)
        counts = np.maximum(onehot.sum(axis=1, keepdims=True), 1.0)
        return np.hstack([text, attribute_weight * onehot / np.sqrt(counts)])


def user_features(
    store: Store,
    encoder: Encoder,
    *,
    users: Sequence[str] | None = None,
    min_documents: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> UserFeatures:
    """Read every (given) user's stored document vectors and attributes."""
    if users is None:
        users = [user.id for user in store.all_users()]
    ids: list[str] = []
    centroids: list[Vector] = []
    attributes: list[dict[str, str]] = []
    texts: list[list[str]] = []
    vectors: list[Vector] = []
    for done, user_id in enumerate(sorted(set(users)), start=1):
        embedded = store.document_embeddings(user_id, encoder.id)
        if len(embedded) >= min_documents:
            mean = embedded.vectors.mean(axis=0)
            norm = float(np.linalg.norm(mean))
            if norm > 0:
                user = store.get_user(user_id)
                ids.append(user_id)
                centroids.append((mean / norm).astype(np.float32))
                attributes.append(_scalar_attributes(user.attributes if user else {}))
                texts.append(list(embedded.texts))
                vectors.append(embedded.vectors)
        if progress is not None:
            progress(done, len(users))
    dim = encoder.dim if not centroids else centroids[0].shape[0]
    matrix = np.vstack(centroids) if centroids else np.zeros((0, dim), dtype=np.float32)
    return UserFeatures(ids, matrix, attributes, texts, vectors)


def _scalar_attributes(attributes: Mapping[str, object]) -> dict[str, str]:
    return {
        key: str(value).strip().lower()
        for key, value in attributes.items()
        if isinstance(value, str | int | float | bool) and str(value).strip()
    }


def discover_personas(
    store: Store,
    encoder: Encoder,
    llm: LLM,
    config: DiscoveryConfig | None = None,
    *,
    force: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> DiscoveryResult:
    """Cluster the users, describe each cluster and the population with the LLM, and store them
    as personas ``discovered-1`` … (largest first) and ``global``, replacing an earlier discovery.

    Deterministic under ``config.seed`` (k-means with a fixed ``random_state`` over users in id
    order, greedy decoding). A refresh whose features, settings and models are unchanged writes
    nothing, unless ``force``.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    config = config or DiscoveryConfig()
    if config.max_personas < config.min_personas:
        raise DiscoveryError(
            f"max_personas ({config.max_personas}) is below min_personas ({config.min_personas})"
        )

    def report(stage: str) -> Callable[[int, int], None]:
        return lambda done, total: progress(stage, done, total) if progress else None

    features = user_features(
        store,
        encoder,
        users=config.users,
        min_documents=config.min_documents,
        progress=report("reading users"),
    )
    n = len(features.ids)
    wanted = config.n_personas or config.min_personas
    if n < max(2, wanted + 1):
        raise DiscoveryError(
            f"persona discovery needs at least {max(2, wanted + 1)} users with "
            f"{config.min_documents}+ embedded documents (encoder {encoder.id}); found {n}"
        )
    matrix = features.matrix(config.attribute_weight)
    fingerprint = _fingerprint(features, matrix, config, encoder.id, llm)
    existing = PersonaSet.read(store)
    discovered = [p for p in existing.groups if p.source == "discovered"]
    if (
        not force
        and discovered
        and existing.global_profile is not None
        and all(p.persona.metadata.get("fingerprint") == fingerprint for p in discovered)
        and existing.global_profile.persona.metadata.get("fingerprint") == fingerprint
    ):
        return DiscoveryResult(
            [p.persona for p in discovered],
            existing.global_profile.persona,
            discovered[0].version,
            fingerprint,
            refreshed=False,
            users=n,
        )

    silhouettes: dict[int, float] = {}
    if config.n_personas is not None:
        k = config.n_personas
        labels = KMeans(k, random_state=config.seed, n_init=10).fit_predict(matrix)
    else:
        best: tuple[float, int, Any] | None = None
        candidates = range(config.min_personas, min(config.max_personas, n - 1) + 1)
        for step, k in enumerate(candidates, start=1):
            fitted = KMeans(k, random_state=config.seed, n_init=10).fit_predict(matrix)
            if len(set(fitted)) < 2:
                continue
            score = float(
                silhouette_score(matrix, fitted, sample_size=min(n, 2000), random_state=config.seed)
            )
            silhouettes[k] = round(score, 4)
            if best is None or score > best[0] + 1e-12:
                best = (score, k, fitted)
            report("choosing the number of personas")(step, len(candidates))
        if best is None:
            raise DiscoveryError(f"the {n} users' features do not separate into clusters")
        k, labels = best[1], best[2]

    clusters = [[i for i in range(n) if labels[i] == c] for c in set(int(x) for x in labels)]
    clusters.sort(key=lambda rows: (-len(rows), features.ids[rows[0]]))
    earlier = [p for p in [*existing.groups, existing.global_profile] if p is not None]
    version = 1 + max((p.version for p in earlier if p.source != "declared"), default=0)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    common = {
        "version": version,
        "fingerprint": fingerprint,
        "seed": config.seed,
        "encoder": encoder.id,
        "model": f"{llm.backend}:{llm.model}",
        "created": created,
    }
    personas: list[Persona] = []
    describe = report("describing personas")
    for index, rows in enumerate(clusters, start=1):
        centroid = _unit(features.centroids[rows].mean(axis=0))
        text = _describe(llm, PERSONA_INSTRUCTION, features, rows, centroid, config)
        members = [features.ids[i] for i in rows]
        personas.append(
            Persona.model_validate(
                {
                    "id": f"discovered-{index}",
                    "description": text,
                    "members": members,
                    "metadata": {
                        **common,
                        "source": "discovered",
                        "size": len(members),
                        "centroid": [round(float(x), 6) for x in centroid],
                        "attributes": _defining_attributes(
                            [features.attributes[i] for i in rows],
                            [
                                a
                                for i, a in enumerate(features.attributes)
                                if labels[i] != labels[rows[0]]
                            ],
                        ),
                    },
                }
            )
        )
        describe(index, len(clusters) + 1)
    everyone = list(range(n))
    global_centroid = _unit(features.centroids.mean(axis=0))
    global_profile = Persona.model_validate(
        {
            "id": GLOBAL_ID,
            "description": _describe(
                llm, GLOBAL_INSTRUCTION, features, everyone, global_centroid, config
            ),
            "metadata": {
                **common,
                "source": "global",
                "size": n,
                "centroid": [round(float(x), 6) for x in global_centroid],
            },
        }
    )
    describe(len(clusters) + 1, len(clusters) + 1)
    stale = sorted({p.id for p in discovered} - {p.id for p in personas})
    store.write(WriteSet(personas=[*personas, global_profile], deleted_personas=stale))
    return DiscoveryResult(
        personas, global_profile, version, fingerprint, True, n, silhouettes, stale
    )


def _unit(vector: npt.NDArray[Any]) -> Vector:
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 0 else vector).astype(np.float32)


def _fingerprint(
    features: UserFeatures,
    matrix: npt.NDArray[Any],
    config: DiscoveryConfig,
    encoder: str,
    llm: LLM,
) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(features.ids).encode())
    digest.update(np.round(matrix, 5).astype(np.float32).tobytes())
    digest.update(config.model_dump_json(exclude={"users"}).encode())
    digest.update(f"{encoder}|{llm.backend}|{llm.model}|{PERSONA_INSTRUCTION}".encode())
    return digest.hexdigest()[:20]


def _defining_attributes(
    members: Sequence[Mapping[str, str]], others: Sequence[Mapping[str, str]]
) -> dict[str, JsonValue]:
    """Attribute values held by more than half of the members and at most half of everyone else:
    what places a newcomer here (a value every user shares places nobody)."""
    if not others:  # a single persona: nothing tells its members apart from anyone
        return {}
    inside = Counter((key, value) for attributes in members for key, value in attributes.items())
    outside = Counter((key, value) for attributes in others for key, value in attributes.items())
    defining: dict[str, JsonValue] = {}
    for (key, value), count in sorted(inside.items()):
        if count * 2 > len(members) and outside[key, value] * 2 <= len(others):
            defining.setdefault(key, value)
    return defining


def _describe(
    llm: LLM,
    instruction: str,
    features: UserFeatures,
    rows: Sequence[int],
    centroid: Vector,
    config: DiscoveryConfig,
) -> str:
    """The LLM's description of a group, from the text of each of its most central members that
    is closest to the group's centroid."""
    central = sorted(
        rows, key=lambda i: (-float(features.centroids[i] @ centroid), features.ids[i])
    )
    central = central[: config.sample_members]
    per_text = max(16, config.max_source_tokens // max(1, len(central)))
    lines = []
    for i in central:
        best = int(np.argmax(features.vectors[i] @ centroid))
        lines.append(quote(llm.tokenizer.truncate(features.texts[i][best], per_text)))
    messages: list[ChatMessage] = [
        {"role": "system", "content": instruction},
        {"role": "user", "content": "\n".join(lines)},
    ]
    options = GenerationOptions(max_new_tokens=config.max_new_tokens, seed=config.seed)
    text = _whole_sentences(llm.generate(messages, options).text, config.max_sentences)
    if not text:
        raise DiscoveryError(
            f"the LLM ({llm.backend}:{llm.model}) wrote an empty description for a group of "
            f"{len(rows)} users"
        )
    return text


def _whole_sentences(text: str, most: int = 2) -> str:
    """The first ``most`` whole sentences (the instruction asks for two; a small model writes on
    and repeats itself), without one the token limit cut off mid-way."""
    sentences = re.findall(r"[^.!?]+[.!?]+(?=\s|$)", " ".join(text.split()))
    if not sentences:
        return " ".join(text.split())
    return " ".join(s.strip() for s in sentences[:most])
