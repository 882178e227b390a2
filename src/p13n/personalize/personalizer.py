"""The ``Personalizer``: x → q = φ_q(x) → top-k = R(q, D_u, k) → x̄ = φ_p(x, top-k) → ȳ = LLM(x̄),
with a trace of every step. With personalization off, the same model answers the same template
without the user's data: the baseline every personalized result is compared against."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from p13n.adapt import adapters
from p13n.adapt.embedding import Projector
from p13n.adapt.finetuned import finetuned_entry
from p13n.adapt.runtime import Adaptable, adapted_llm, user_soft_tokens
from p13n.encode import Encoder, get_encoder
from p13n.errors import ConfigError, InsufficientDataError, LLMError, UnknownUserError
from p13n.llm import (
    LLM,
    Completion,
    get_llm,
)
from p13n.llm.base import ChoiceScorer, streamed_finish_reason
from p13n.personalize.config import PersonalizerConfig
from p13n.personalize.decoding import STANDARD, decoding_methods
from p13n.personalize.labels import LabelChoice, label_history, read_labels
from p13n.personalize.policy import Policy, load_policy
from p13n.personalize.profile import ProfileWriter
from p13n.personalize.refine import InstructionRefiner, refined_template
from p13n.personalize.router import Route, Router
from p13n.personalize.trace import Generation, PartialTrace, PreparedPrompt, Timings
from p13n.prompt import NON_PERSONALIZED, TaskTemplate, builders, templates
from p13n.retrieve import (
    CorpusLoader,
    Retrieved,
    UserCorpus,
    build_query_generator,
    build_retriever,
    top_k,
)
from p13n.store import Store


class Personalizer:
    """Composes φ_q, R, φ_p and an LLM from a ``PersonalizerConfig`` over one store.

    The LLM, encoder and adapted model (for `adapter` methods) may be passed in to share them
    (they are loaded once per process anyway);
    otherwise they are built from the config, the encoder only when the retriever needs one.
    """

    def __init__(
        self,
        store: Store,
        config: PersonalizerConfig | None = None,
        *,
        llm: LLM | None = None,
        encoder: Encoder | None = None,
        loader: CorpusLoader | None = None,
        adapted: Adaptable | None = None,
    ) -> None:
        self.store = store
        config = config or PersonalizerConfig()
        self.policy: Policy | None = None
        self._fallback_config: PersonalizerConfig | None = None
        self._fallback: Personalizer | None = None
        if config.policy == "auto":
            self.policy = load_policy(store, config.task)
            if self.policy is not None:
                if self.policy.fallback is not None:
                    fixed = config.model_copy(update={"policy": "fixed"})
                    self._fallback_config = fixed.serving(self.policy.fallback, "fallback")
                config = config.serving(self.policy, "choice")
        self.config = config
        self._policy_summary = self._policy_trace()  # what every trace says of the policy
        self.llm = llm or get_llm(config.llm)
        if encoder is None and config.needs_encoder():
            encoder = get_encoder(config.encoder)
        self.encoder = encoder
        self.loader = loader or CorpusLoader(
            store,
            encoder,
            sources=config.retriever.sources,
            cache_size=config.retriever.cache_size,
        )
        self.template = refined_template(templates.get(config.task), config.advice or "")
        self.refiner = InstructionRefiner(
            store, self.llm, self.template, config.refine,
            max_new_tokens=config.generation.max_new_tokens,
        )  # fmt: skip
        self.builder = dataclasses.replace(
            builders.get(config.prompt), max_item_tokens=config.max_item_tokens
        )
        self.query_generator = build_query_generator(config.query, self.llm)
        self.retriever = build_retriever(config.retriever, encoder)
        self.profiles = ProfileWriter(store, self.loader, self.llm)
        self.router = Router(store, self.loader, config.granularity)
        self.adapted: Adaptable | None = None
        self._projector: tuple[str, Projector] | None = None
        if config.adapter_method() is not None:
            # On the process's one copy of the base model: the one ``self.llm`` runs when it is
            # the same local model.
            self.adapted = adapted or adapted_llm(config.llm, plain=self.llm, method=config.adapter)

    @property
    def budget(self) -> int:
        room = self.llm.context_window - self.config.generation.max_new_tokens
        return min(self.config.max_prompt_tokens, room)

    def generate(
        self,
        user_id: str,
        text: str,
        *,
        personalize: bool = True,
        attributes: Mapping[str, object] | None = None,
    ) -> Generation:
        """Answer ``text`` for ``user_id``; ``personalize=False`` gives the baseline (same model,
        same template, none of the user's data). An unknown user is an ``UnknownUserError`` at
        user level; the router (``granularity.level`` other than ``user``) serves them at global
        level, or at persona level when ``attributes`` place them in a persona."""
        return self.complete(
            self.prepare(user_id, text, personalize=personalize, attributes=attributes)
        )

    def complete(self, prepared: PreparedPrompt) -> Generation:
        """Run the LLM on a prompt from ``prepare`` (with the user's adapter, if configured)."""
        if self._falls_back(prepared):
            return self.fallback.complete(prepared)
        options = prepared.options(self.config.generation)
        with self._llm_for(prepared) as (llm, adapter):
            completion = llm.generate(prepared.prompt.messages, options)
        return self._finished(prepared, completion, adapter)

    def complete_stream(self, prepared: PreparedPrompt) -> Iterator[str | Generation]:
        """``complete``, streamed: the answer's pieces as the model decodes them, then the whole
        ``Generation`` with its trace. Consume it in one thread: an adapter's lock is held
        until the answer is done."""
        if self._falls_back(prepared):
            yield from self.fallback.complete_stream(prepared)
            return
        options = prepared.options(self.config.generation)
        pieces: list[str] = []
        with self._llm_for(prepared) as (llm, adapter):
            for piece in llm.stream(prepared.prompt.messages, options):
                pieces.append(piece)
                yield piece
        text = "".join(pieces)
        completion_tokens = llm.tokenizer.count(text)
        completion = Completion(
            text=text.strip(),
            prompt_tokens=llm.tokenizer.count_chat(prepared.prompt.messages),
            completion_tokens=completion_tokens,
            finish_reason=streamed_finish_reason(completion_tokens, options),
            model=llm.model,
        )
        yield self._finished(prepared, completion, adapter)

    def _finished(
        self, prepared: PreparedPrompt, completion: Completion, adapter: dict[str, Any] | None
    ) -> Generation:
        finished = time.perf_counter()
        timings = Timings(
            query_ms=prepared.query_ms,
            retrieve_ms=prepared.retrieve_ms,
            prompt_ms=prepared.prompt_ms,
            generate_ms=(finished - prepared.ready_at) * 1000,
            total_ms=(finished - prepared.started_at) * 1000,
        )
        trace = prepared.trace.finished(
            prompt=prepared.prompt,
            backend=self.llm.backend,
            completion=completion,
            timings=timings,
            adapter=adapter,
        )
        return Generation(completion.text, trace)

    @contextmanager
    def _llm_for(self, prepared: PreparedPrompt) -> Iterator[tuple[LLM, dict[str, Any] | None]]:
        """The model that answers: the adapted one (with the user's adapter swapped in, held
        until the answer is done so no other request swaps it out) when an adapter is
        configured and personalization was asked for, else the shared one."""
        if self.adapted is None or not prepared.personalize:
            yield self.llm, None
            return
        with self.adapted.lock:
            yield self.adapted, self._use_adapter(prepared)

    def _use_adapter(self, prepared: PreparedPrompt) -> dict[str, Any]:
        """Swap the user's adapter (or soft tokens) into the adapted model; its trace entry."""
        method = self.config.adapter_method()
        assert self.adapted is not None and method is not None
        user_id, task, name = prepared.trace.user_id, self.config.task, self.config.adapter
        base = self.adapted.base
        if method.weights == "model":
            entry = finetuned_entry(self.store, user_id, task, base)
        elif method.owner == "tenant":
            owner = self.store.tenant
            entry = adapters.require(self.store, "tenant", owner, task, name, base)
        else:
            entry = adapters.require(self.store, "user", user_id, task, name, base)
        if method.weights == "projector":
            key = entry.weights_sha256
            if self._projector is None or self._projector[0] != key:
                blob = adapters.weights(self.store, entry)
                self._projector = (key, Projector.from_weights(blob, entry.config))
            assert self.encoder is not None  # needs_encoder() holds for a projector's method
            started = time.perf_counter()
            soft = user_soft_tokens(
                self.store, user_id, prepared.text, self._projector[1], self.encoder
            )
            self.adapted.use_prefix(soft)
            swap_ms = (time.perf_counter() - started) * 1000
        else:
            swap_ms = self.adapted.activate(self.store, entry)
        return {
            "adapter_id": entry.adapter_id,
            "method": entry.method,
            "weights_sha256": entry.weights_sha256,
            "swap_ms": round(swap_ms, 2),
        }

    def choose(
        self,
        user_id: str,
        text: str,
        labels: Sequence[str],
        *,
        personalize: bool = True,
        attributes: Mapping[str, object] | None = None,
    ) -> LabelChoice:
        """The label (or rating) among ``labels`` the model finds likeliest as the answer to
        ``text``, read as ``config.labels`` says: calibrated (baseline included) and, when
        personalized, fused with the user's own label history. The trace is ``generate``'s."""
        if not labels or any(not label for label in labels):
            raise ConfigError(f"choose needs one or more non-empty labels, not {list(labels)!r}")
        prepared = self.prepare(user_id, text, personalize=personalize, attributes=attributes)
        serving = self.fallback if self._falls_back(prepared) else self
        return serving._choose(prepared, labels)

    def _choose(self, prepared: PreparedPrompt, labels: Sequence[str]) -> LabelChoice:
        if self.config.decoding != STANDARD:
            raise ConfigError(
                f"decoding {self.config.decoding!r} steers generated tokens; choose scores "
                "fixed labels: use decoding 'standard'"
            )
        policy = self.config.labels
        user_id = prepared.trace.user_id
        fused = prepared.personalize and policy.fusion_weight > 0
        with self._llm_for(prepared) as (llm, adapter):
            if not isinstance(llm, ChoiceScorer):
                raise LLMError(f"the {llm.backend} backend cannot score choices; generate instead")
            raw, log_probs = read_labels(
                llm,
                prepared,
                labels,
                policy,
                template=self.template,
                tokenizer=llm.tokenizer,
                budget=self.budget,
                history=label_history(self.store, user_id, labels) if fused else None,
            )
            label = labels[int(np.argmax(log_probs))]
            completion = Completion(
                text=label,
                prompt_tokens=llm.tokenizer.count_chat(prepared.prompt.messages),
                completion_tokens=0,
                finish_reason="stop",
                model=llm.model,
            )
        trace = self._finished(prepared, completion, adapter).trace
        return LabelChoice(label, [float(v) for v in log_probs], raw, trace)

    def stream(
        self,
        user_id: str,
        text: str,
        *,
        personalize: bool = True,
        attributes: Mapping[str, object] | None = None,
    ) -> Iterator[str]:
        """The answer's text in pieces as the model decodes it (``complete_stream`` without
        the final ``Generation``)."""
        prepared = self.prepare(user_id, text, personalize=personalize, attributes=attributes)
        for piece in self.complete_stream(prepared):
            if isinstance(piece, str):
                yield piece

    def compare(
        self, user_id: str, text: str, *, attributes: Mapping[str, object] | None = None
    ) -> tuple[Generation, Generation]:
        """(baseline, personalized) for the same input."""
        return (
            self.generate(user_id, text, personalize=False),
            self.generate(user_id, text, personalize=True, attributes=attributes),
        )

    def prepare(
        self,
        user_id: str,
        text: str,
        *,
        personalize: bool = True,
        attributes: Mapping[str, object] | None = None,
    ) -> PreparedPrompt:
        """Query, retrieval and prompt for ``text``, without running the LLM (``complete`` does).
        Under a learned policy whose choice needs the user's adapter, a user without one gets
        the policy's fallback, and the trace says so."""
        policy = self.policy
        reason = policy.missing_adapter(self.store, user_id) if policy and personalize else None
        if reason is not None:
            prepared = self.fallback.prepare(user_id, text, attributes=attributes)
            served = dataclasses.replace(prepared.trace, policy=self._policy_summary)
            return dataclasses.replace(prepared, trace=dataclasses.replace(served, fallback=reason))
        started = time.perf_counter()
        version = self.store.data_version(user_id)
        if version is None and not self.config.granularity.routes:
            raise UnknownUserError(user_id, self.store.tenant)
        own_version = version
        builder = self.builder if personalize else NON_PERSONALIZED
        query: str | None = None
        retrieved: Retrieved | None = None
        persona = profile = None
        template, refined = self.template, None
        persona_label = "persona"
        refreshed: bool | None = None
        route: Route | None = None
        t_query = t_retrieve = time.perf_counter()
        if builder.personalized:
            route = self.router.route(user_id, known=version is not None, attributes=attributes)
            k = self.config.retriever.k
            if route.level == "user":
                assert own_version is not None  # the router serves unknown users elsewhere
                if builder.items and k > 0:
                    query = self.query_generator.query(text)
                    t_query = time.perf_counter()
                    neighbours = self.config.retriever.collaborative_neighbours
                    corpus = (
                        self.loader.collaborative_corpus(user_id, neighbours)
                        if neighbours
                        else self.loader.corpus(user_id, version=own_version)
                    )
                    version = corpus.version
                    retrieved = self._top_k(query, corpus, k)
                t_retrieve = time.perf_counter()
                if builder.persona:
                    persona = (
                        self.config.persona_description
                        or route.description
                        or self._stored_persona(user_id)
                    )
                elif route.description:  # blended with the persona's description
                    builder, persona = dataclasses.replace(builder, persona=True), route.description
                if builder.profile:
                    result = self.profiles.profile(user_id, version=own_version)
                    profile, refreshed = result.text, result.refreshed
                if builder.refined:
                    template, refined = self._refined(user_id, version=own_version)
            elif route.level == "persona":
                builder = dataclasses.replace(
                    builder, persona=True, profile=False, items=bool(route.members)
                )
                persona = route.description
                if route.members and k > 0:
                    query = self.query_generator.query(text)
                    t_query = time.perf_counter()
                    corpus = self.loader.group_corpus(user_id, route.members)
                    retrieved = self._top_k(query, corpus, k)
                t_retrieve = time.perf_counter()
            elif route.level == "global":
                builder = dataclasses.replace(builder, persona=True, profile=False, items=False)
                persona, persona_label = route.description, "population"
            else:
                builder = NON_PERSONALIZED
        prompt = builder.build(
            template,
            text,
            self.llm.tokenizer,
            self.budget,
            retrieved=retrieved.items if retrieved else (),
            persona=persona,
            profile=profile,
            user_id=user_id,
            persona_label=persona_label,
        )
        t_prompt = time.perf_counter()
        abstained = None
        carries_data = bool(prompt.items or prompt.persona or prompt.profile)
        found = retrieved if builder.personalized and not carries_data else None
        if found is not None and found.unmatched > 0:  # nothing relevant: the bare prompt
            abstained = (
                f"none of the {found.unmatched} best items had {found.relevance_rule()} "
                f"({found.retriever}): the prompt carries no user data"
            )
        contrast = None
        method = decoding_methods.get(self.config.decoding)
        steering = self.config.steering
        steered = steering != 0 and personalize and method.option is not None
        if method.contrast:  # nothing to steer by without the user's data in the prompt
            steered = steered and carries_data and abstained is None
            if steered:
                contrast = NON_PERSONALIZED.build(
                    self.template, text, self.llm.tokenizer, self.budget, user_id=user_id
                ).messages
        trace = PartialTrace(
            user_id=user_id,
            personalized=builder.personalized,
            task=self.template.name,
            query=query,
            query_generator=self.query_generator.name if query is not None else None,
            retriever=self.retriever.name if retrieved is not None else None,
            retrieved=retrieved,
            data_version=version or "",
            profile_refreshed=refreshed,
            granularity=route,
            abstained=abstained,
            policy=self._policy_summary,
            decoding={"method": method.name, "strength": steering} if steered else None,
            refined=refined,
        )
        return PreparedPrompt(
            prompt=prompt,
            trace=trace,
            query_ms=(t_query - started) * 1000,
            retrieve_ms=(t_retrieve - t_query) * 1000,
            prompt_ms=(t_prompt - t_retrieve) * 1000,
            ready_at=t_prompt,
            started_at=started,
            text=text,
            personalize=personalize,
            contrast=contrast,
            steering=steering if steered else 0.0,
            strength_option=method.option if steered else None,
        )

    def _falls_back(self, prepared: PreparedPrompt) -> bool:
        """Whether ``prepared`` was made by this policy's fallback (which answers it)."""
        return prepared.trace.fallback is not None and self._fallback_config is not None

    @property
    def fallback(self) -> Personalizer:
        """What the policy serves users without the adapter its choice needs."""
        if self._fallback is None:
            assert self._fallback_config is not None  # only a fallback reason leads here
            config = self._fallback_config
            shares = config.retriever.sources == self.config.retriever.sources and (
                self.encoder is not None or not config.needs_encoder()
            )
            self._fallback = Personalizer(
                self.store,
                config,
                llm=self.llm,
                encoder=self.encoder,
                loader=self.loader if shares else None,
            )
        return self._fallback

    def _policy_trace(self) -> dict[str, Any] | None:
        if self.config.policy == "fixed":
            return None
        if self.policy is None:
            return {
                "task": self.config.task,
                "learned": False,
                "served": "the configured settings: no policy is learned for this task",
            }
        return {"learned": True, **self.policy.summary()}

    def _top_k(self, query: str, corpus: UserCorpus, k: int) -> Retrieved:
        rule = self.config.retriever
        return top_k(
            self.retriever,
            query,
            corpus,
            k,
            min_score=rule.min_score,
            require_match=rule.require_match,
        )

    def _refined(self, user_id: str, *, version: str) -> tuple[TaskTemplate, dict[str, Any]]:
        """The template with the user's refined instruction, and its trace entry; the task's
        own instruction, and why, for a user with too little data."""
        try:
            result, refreshed = self.refiner.refined(user_id, version)
        except InsufficientDataError as error:
            return self.template, {"advice": None, "reason": str(error)}
        return refined_template(self.template, result.advice), result.trace(refreshed=refreshed)

    def _stored_persona(self, user_id: str) -> str | None:
        member_of = set(self.store.personas_of(user_id))
        descriptions = [p.description for p in self.store.personas() if p.id in member_of]
        return " ".join(descriptions) or None
