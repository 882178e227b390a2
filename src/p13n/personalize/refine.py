"""Refined prompts (survey §5.2.4; FERMI, Kim et al. 2024, "Few-shot Personalization of LLMs with
Mis-aligned Responses"): a per-user instruction that the system writes and improves from the
user's own examples.

Refinement starts from the task's own instruction. Each iteration shows the LLM the examples
where the best instruction so far answered furthest from what the user wrote (the misaligned
responses), asks for ``candidates`` rewrites of the user's advice, and scores each candidate on
the user's held-in examples with the task metric. The best instruction is kept, and the start
is one of the candidates, so refinement never scores below it on held-in data. The work is
bounded: at most ``examples * (1 + candidates * iterations)`` answers and
``candidates * iterations`` rewrites, stated with every result.

A user's examples are their titled documents read as the task's input → output (an article and
its headline, an abstract and its title), as LaMP's profiles are. A user with too few examples
is served the instruction refined for their persona (the members' examples pooled), when they
are in one. Refined instructions are stored like profiles: per user, task, model and data
version, rewritten when the data changes, and deleted by ``forget``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from p13n.adapt.train import group_version
from p13n.errors import InsufficientDataError
from p13n.evaluate.metrics import metric_registry
from p13n.llm import LLM, ChatMessage, GenerationOptions, generate_many
from p13n.prompt import NON_PERSONALIZED, TaskTemplate
from p13n.prompt.templates import quote
from p13n.store import Store, StoredProfile

REWRITE_SYSTEM = "You write short advice for an assistant that writes on behalf of one person."
REWRITE_REQUEST = (
    "The assistant's task: {task}\n\n"
    "Its current advice for this person: {advice}\n\n"
    "Where its answers differed most from what the person wrote (quoted data):\n{examples}\n\n"
    "Write new advice, one to three sentences, that would make the assistant answer as this "
    "person does: length, tone, wording, what they focus on. Reply with the advice only."
)
NO_ADVICE = "(none yet)"
Level = Literal["user", "persona", "task"]


class RefineSettings(BaseModel):
    """How an instruction is refined, and the budget it may spend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    candidates: int = Field(3, ge=1, le=16, description="rewrites asked for per iteration")
    iterations: int = Field(2, ge=1, le=10)
    examples: int = Field(
        4, ge=1, le=64, description="held-in examples each candidate is scored on"
    )
    min_examples: int = Field(2, ge=1, description="fewer usable examples: refused")
    shown: int = Field(2, ge=1, description="misaligned examples shown in each rewrite request")
    metric: str = Field("rouge-1", description="a per-example text metric (p13n.evaluate)")
    temperature: float = Field(0.8, gt=0, le=2, description="sampling of the rewrites")
    max_advice_tokens: int = Field(64, ge=8, description="each rewrite's length")
    max_example_tokens: int = Field(96, ge=8, description="each example's input is cut to this")
    seed: int = 0

    @field_validator("metric")
    @classmethod
    def _per_example_text_metric(cls, name: str) -> str:
        metric = metric_registry.get(name)
        if not metric.decomposable or metric.kind not in ("text", "dialogue"):
            raise ValueError(
                f"metric {name!r} does not score text example by example; use one of "
                + ", ".join(
                    n
                    for n in metric_registry.names()
                    if metric_registry.get(n).decomposable
                    and metric_registry.get(n).kind in ("text", "dialogue")
                )
            )
        return name

    def max_calls(self) -> int:
        """The most LLM calls one refinement makes: answers and rewrites."""
        tries = self.candidates * self.iterations
        return self.examples * (1 + tries) + tries


@dataclass(frozen=True)
class RefineExample:
    """One input and what the user wrote for it."""

    input: str
    output: str


@dataclass(frozen=True)
class RefinedInstruction:
    """A refined instruction and what it cost. ``advice`` is put before the task's instruction
    (empty: none of the candidates beat the task's own instruction)."""

    advice: str
    score: float
    start_score: float
    level: Level
    owner: str
    examples: int
    llm_calls: int
    max_calls: int
    seconds: float

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RefinedInstruction:
        return cls(**json.loads(text))

    def trace(self, *, refreshed: bool) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "refreshed": refreshed}


def refined_template(template: TaskTemplate, advice: str) -> TaskTemplate:
    """``template`` with ``advice`` put before its instruction (``template`` when empty)."""
    if not advice:
        return template
    escaped = advice.replace("{", "{{").replace("}", "}}")
    return dataclasses.replace(template, instruction=f"{escaped}\n{template.instruction}")


def refine_instruction(
    llm: LLM,
    template: TaskTemplate,
    examples: Sequence[RefineExample],
    settings: RefineSettings,
    *,
    max_new_tokens: int,
    level: Level,
    owner: str,
) -> RefinedInstruction:
    """Refine the advice for ``template`` on ``examples`` (the first ``settings.examples``)."""
    if len(examples) < settings.min_examples:
        raise InsufficientDataError(
            f"{level} {owner!r} has {len(examples)} usable examples for refining the "
            f"{template.name} instruction; at least {settings.min_examples} are needed"
        )
    started = time.perf_counter()
    held = list(examples[: settings.examples])
    inputs = [llm.tokenizer.truncate(e.input, settings.max_example_tokens) for e in held]
    golds = [e.output for e in held]
    metric = metric_registry.get(settings.metric)
    options = GenerationOptions(max_new_tokens=max_new_tokens, seed=settings.seed)
    calls = 0

    def attempt(advice: str) -> tuple[float, list[float], list[str]]:
        nonlocal calls
        framed = refined_template(template, advice)
        prompts = [
            NON_PERSONALIZED.build(framed, text, llm.tokenizer, 1 << 30).messages for text in inputs
        ]
        answers = [c.text for c in generate_many(llm, prompts, options)]
        calls += len(prompts)
        per_example = metric.compute(answers, golds).per_example
        assert per_example is not None  # the settings allow decomposable metrics only
        return sum(per_example) / len(per_example), per_example, answers

    best_advice = ""
    best_score, per_example, answers = attempt(best_advice)
    start_score, tried = best_score, {best_advice}
    for iteration in range(settings.iterations):
        request = _rewrite_request(template, best_advice, inputs, golds, answers, per_example,
                                   settings.shown)  # fmt: skip
        for candidate in range(settings.candidates):
            sampling = GenerationOptions(
                max_new_tokens=settings.max_advice_tokens,
                temperature=settings.temperature,
                seed=settings.seed + iteration * settings.candidates + candidate + 1,
            )
            advice = " ".join(llm.generate(request, sampling).text.split())
            calls += 1
            if not advice or advice in tried:
                continue
            tried.add(advice)
            score, scores, said = attempt(advice)
            if score > best_score:
                best_advice, best_score, per_example, answers = advice, score, scores, said
    return RefinedInstruction(
        advice=best_advice,
        score=round(best_score, 6),
        start_score=round(start_score, 6),
        level=level,
        owner=owner,
        examples=len(held),
        llm_calls=calls,
        max_calls=settings.max_calls(),
        seconds=round(time.perf_counter() - started, 2),
    )


def _rewrite_request(
    template: TaskTemplate,
    advice: str,
    inputs: Sequence[str],
    golds: Sequence[str],
    answers: Sequence[str],
    scores: Sequence[float],
    shown: int,
) -> list[ChatMessage]:
    worst = sorted(range(len(scores)), key=lambda i: scores[i])[:shown]
    lines = [
        f"input: {quote(inputs[i])}\nassistant wrote: {quote(answers[i])}\n"
        f"the person wrote: {quote(golds[i])}"
        for i in worst
    ]
    task = template.instruction.format(input="…")
    content = REWRITE_REQUEST.format(
        task=task, advice=advice or NO_ADVICE, examples="\n\n".join(lines)
    )
    return [{"role": "system", "content": REWRITE_SYSTEM}, {"role": "user", "content": content}]


def user_examples(store: Store, user_id: str) -> list[RefineExample]:
    """The user's titled documents as the task's input (text) → output (title), newest first."""
    return [
        RefineExample(d.text, d.title)
        for d in store.documents(user_id)
        if d.title and d.title.strip() and d.text.strip()
    ]


class InstructionRefiner:
    """A user's refined instruction for one task and model: the stored one while the data it
    was refined from is unchanged, else refined now and stored."""

    def __init__(
        self,
        store: Store,
        llm: LLM,
        template: TaskTemplate,
        settings: RefineSettings,
        *,
        max_new_tokens: int,
    ) -> None:
        self.store, self.llm, self.template, self.settings = store, llm, template, settings
        self.max_new_tokens = max_new_tokens
        recipe = json.dumps(
            [settings.model_dump(mode="json"), template.instruction, template.system,
             max_new_tokens, REWRITE_REQUEST],
        )  # fmt: skip
        digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
        self.key = f"refine:{template.name}:{llm.backend}:{llm.model}:{digest}"[:200]
        self._groups: dict[tuple[str, str], RefinedInstruction] = {}

    def refined(self, user_id: str, version: str) -> tuple[RefinedInstruction, bool]:
        """The user's refined instruction and whether it was refined for this call: their own
        (user level), or their persona's when they have too few examples. Too little data
        for either is an ``InsufficientDataError`` saying how much is needed."""
        stored = self.store.get_profile(user_id, self.key)
        # Refined from this user version: their own (a persona-level row holds the persona's
        # version). Checked before their documents are read, which only refining needs.
        if stored is not None and stored.data_version == version:
            return RefinedInstruction.from_json(stored.text), False
        own = user_examples(self.store, user_id)
        if len(own) >= self.settings.min_examples:
            result = refine_instruction(
                self.llm, self.template, own, self.settings,
                max_new_tokens=self.max_new_tokens, level="user", owner=user_id,
            )  # fmt: skip
            self._keep(user_id, version, result)
            return result, True
        persona, members = self._persona_of(user_id)
        if persona is None:
            raise InsufficientDataError(
                f"user {user_id!r} has {len(own)} usable examples (titled documents) for "
                f"refining the {self.template.name} instruction; at least "
                f"{self.settings.min_examples} are needed, or membership of a persona"
            )
        group = "persona:" + group_version(self.store, members)  # never a user's version
        if stored is not None and stored.data_version == group:
            return RefinedInstruction.from_json(stored.text), False
        if (persona, group) not in self._groups:
            pooled = [e for member in members for e in user_examples(self.store, member)]
            self._groups[(persona, group)] = refine_instruction(
                self.llm, self.template, pooled, self.settings,
                max_new_tokens=self.max_new_tokens, level="persona", owner=persona,
            )  # fmt: skip
        result = self._groups[(persona, group)]
        self._keep(user_id, group, result)
        return result, True

    def _persona_of(self, user_id: str) -> tuple[str | None, list[str]]:
        member_of = self.store.personas_of(user_id)
        for persona in self.store.personas():
            if persona.id in member_of:
                return persona.id, list(persona.members)
        return None, []

    def _keep(self, user_id: str, version: str, result: RefinedInstruction) -> None:
        self.store.put_profile(
            StoredProfile(
                user_id=user_id,
                profile_key=self.key,
                data_version=version,
                model=self.llm.model,
                text=result.to_json(),
                created_at=datetime.now(UTC),
            )
        )
