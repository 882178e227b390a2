"""Learned personalization policies: per tenant and task, the personalization that served the
task's dev split best (under the one-standard-error rule toward the simpler choice, the
non-personalized prompt simplest of all), saved in the store with its evidence and served by a
``Personalizer`` configured with ``policy="auto"``.

A policy is learned by the benchmark runner (``method = "auto"``: ``p13n bench run``), which
writes it to the store its examples live in and to its output folder; ``p13n policy set`` copies
one into a tenant's store. The evidence is aggregate (per-candidate means and errors over the
dev examples): a policy holds no user's data, so ``forget`` has nothing of it to delete.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from p13n.adapt import adapters, methods
from p13n.errors import ConfigError
from p13n.retrieve import RetrieverConfig
from p13n.store import PolicyStore, Store, StoredPolicy


class LabelPolicy(BaseModel):
    """How a label or rating task's answer is read from the model's label scores."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    calibration: Literal["none", "contextual", "task"] = "none"
    fusion_weight: float = Field(
        0.0, ge=0, description="times the user's own label history to this power (inf: history)"
    )


class CandidateEvidence(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    mean: float
    gap: float = Field(description="below the best mean, in the metric's better direction")
    standard_error: float = Field(description="of the paired per-example difference from the best")


class PolicyEvidence(BaseModel):
    """Why the policy chose what it did: every candidate's dev score, simplest first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str
    higher_is_better: bool
    split: str
    examples: int
    best: str
    rule: str = "one standard error toward the simpler choice"
    candidates: list[CandidateEvidence]

    def of(self, label: str) -> CandidateEvidence:
        return next(c for c in self.candidates if c.label == label)


class ServedSettings(BaseModel):
    """The ``PersonalizerConfig`` fields one candidate of a policy sets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    choice: str = Field(description="the chosen candidate's label")
    prompt: str = Field(description="prompt builder φ_p ('none': the non-personalized prompt)")
    retriever: RetrieverConfig = RetrieverConfig()
    max_item_tokens: int = Field(256, gt=0)
    decoding: str = "standard"
    steering: float = Field(1.0, ge=0)
    labels: LabelPolicy = LabelPolicy()
    adapter: str = Field(
        "none", description="the learned user's method that answers (none: the base model)"
    )

    def overrides(self) -> dict[str, Any]:
        """The ``PersonalizerConfig`` fields it sets: prompt, retriever, excerpt length,
        decoding, how label answers are read, and the learned user's adapter."""
        return {
            "prompt": self.prompt,
            "retriever": self.retriever,
            "max_item_tokens": self.max_item_tokens,
            "decoding": self.decoding,
            "steering": self.steering,
            "labels": self.labels,
            "adapter": self.adapter,
        }


class Policy(ServedSettings):
    """What a ``Personalizer`` with ``policy="auto"`` serves for one task. A policy whose choice
    answers with the learned user's adapter carries a ``fallback`` (the best choice without
    one, by the same rule), served to users who have no such adapter."""

    task: str = Field(description="the task template it serves (PersonalizerConfig.task)")
    source: str = Field(description="where it was learned, e.g. the benchmark task's name")
    fallback: ServedSettings | None = Field(
        None, description="for users without the adapter the choice needs"
    )
    model: str = Field(description="the model it was learned with")
    evidence: PolicyEvidence
    learned_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @model_validator(mode="after")
    def _choices_have_evidence(self) -> Policy:
        labels = {c.label for c in self.evidence.candidates}
        if self.choice not in labels:
            raise ValueError(f"choice {self.choice!r} is not among the evidence's candidates")
        if self.adapter != "none" and self.fallback is None:
            raise ValueError(
                f"choice {self.choice!r} answers with the user's {self.adapter} adapter and "
                "needs a fallback for users without one"
            )
        if self.fallback is not None:
            if self.fallback.adapter != "none":
                raise ValueError(f"fallback {self.fallback.choice!r} needs no adapter")
            if self.fallback.choice not in labels:
                raise ValueError(
                    f"fallback {self.fallback.choice!r} is not among the evidence's candidates"
                )
        return self

    def missing_adapter(self, store: Store, user_id: str) -> str | None:
        """Why ``user_id`` gets the fallback: they (or the tenant, for a tenant-owned method)
        have no adapter of the kind the choice needs. None: the choice serves them."""
        if self.fallback is None:
            return None
        kind = methods.get(self.adapter).owner
        owner = store.tenant if kind == "tenant" else user_id
        if adapters.find(store, kind, owner, self.task, self.adapter) is not None:
            return None
        return (
            f"{kind} {owner!r} has no {self.adapter} adapter for task {self.task!r}: served "
            f"the policy's fallback {self.fallback.choice!r}"
        )

    def summary(self) -> dict[str, Any]:
        """What the trace and ``p13n show`` say of it."""
        chosen = self.evidence.of(self.choice)
        baseline = self.evidence.candidates[0]
        fallback = None
        if self.fallback is not None:
            fallback = {
                "choice": self.fallback.choice,
                "dev_value": self.evidence.of(self.fallback.choice).mean,
            }
        return {
            "task": self.task,
            "source": self.source,
            "choice": self.choice,
            "adapter": None if self.adapter == "none" else self.adapter,
            "fallback": fallback,
            "labels": self.labels.model_dump() if self.labels != LabelPolicy() else None,
            "metric": self.evidence.metric,
            "dev_examples": self.evidence.examples,
            "dev_value": chosen.mean,
            "dev_baseline": {"label": baseline.label, "value": baseline.mean},
            "best": self.evidence.best,
            "model": self.model,
            "learned_at": self.learned_at.isoformat(),
        }

    def to_json(self) -> dict[str, Any]:
        # JSON has no infinity: the history-only weight is written as the string "inf".
        plain = self.model_dump(mode="json")
        for settings, written in ((self, plain), (self.fallback, plain["fallback"])):
            if settings is not None and math.isinf(settings.labels.fusion_weight):
                written["labels"]["fusion_weight"] = "inf"
        return plain


def save_policy(store: PolicyStore, policy: Policy) -> None:
    store.put_policy(StoredPolicy(policy.task, policy.to_json(), policy.learned_at))


def read_policy(raw: dict[str, Any], where: str) -> Policy:
    """A policy from its JSON; ``where`` names it in the error."""
    try:
        return Policy.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{where}: policy field {field}: {first['msg']}") from None


def load_policy(store: PolicyStore, task: str) -> Policy | None:
    """The task's stored policy, if one was learned for this tenant."""
    stored = store.get_policy(task)
    if stored is None:
        return None
    return read_policy(stored.policy, f"stored policy of task {task!r} (tenant {store.tenant!r})")
