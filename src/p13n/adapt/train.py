"""Training from the store: a user's (or a persona's members') documents and preference pairs
become examples, a trainer learns from them, and the result is registered in the store.

Every stored adapter records the owner's data version it was trained from and its settings, so a
rerun can tell a current adapter (skipped) from a stale one (retrained)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from p13n.adapt.adapters import OwnerKind, find, is_current, register, require, weights
from p13n.adapt.base import (
    MIN_CONTINUATION_WORDS,
    BaseModelInfo,
    TrainingExample,
    examples_from_documents,
    load_tokenizer,
    require_examples,
)
from p13n.adapt.dpo import DpoSettings, Pair, train_dpo
from p13n.adapt.embedding import (
    EmbeddingExample,
    EmbeddingSettings,
    ProjectorTrainer,
    pool_history,
)
from p13n.adapt.finetune import FinetuneSettings, finetune, recipe_digest, recipe_of
from p13n.adapt.lora import LoraSettings, LoraTrainer, Progress
from p13n.adapt.methods import FINETUNE, STEERING_VECTOR
from p13n.adapt.runtime import user_history
from p13n.adapt.steering import SteeringVectorSettings, train_steering_vector
from p13n.datasets.lamp import LampExample
from p13n.encode import Encoder
from p13n.errors import ConfigError, UnknownUserError
from p13n.llm.base import Tokenizer
from p13n.llm.hf import HFLLM, HFTokenizer
from p13n.prompt import NON_PERSONALIZED, templates
from p13n.store import Store, StoredAdapter

USABLE = (
    "documents (a titled text, input → title; or an untitled one of "
    f"{MIN_CONTINUATION_WORDS} words or more, opening → continuation)"
)


def user_examples(
    store: Store,
    user_id: str,
    task: str,
    tokenizer: HFTokenizer,
    settings: LoraSettings | SteeringVectorSettings,
) -> list[TrainingExample]:
    """The user's newest documents as the task's examples (``examples_from_documents``); too few
    is an ``InsufficientDataError`` saying how many are needed."""
    if store.data_version(user_id) is None:
        raise UnknownUserError(user_id, store.tenant)
    documents = store.documents(user_id)
    examples = examples_from_documents(
        documents,
        task,
        tokenizer,
        max_input_tokens=settings.max_input_tokens,
        untitled=settings.untitled,
    )[: settings.max_examples]
    require_examples(
        examples,
        settings.min_examples,
        owner=f"user {user_id!r}",
        task=task,
        what=USABLE if settings.untitled else "titled documents",
    )
    return examples


def persona_members(store: Store, persona_id: str) -> list[str]:
    for persona in store.personas():
        if persona.id == persona_id:
            return list(persona.members)
    raise ConfigError(f"no persona {persona_id!r} in tenant {store.tenant!r}")


def group_version(store: Store, users: Sequence[str]) -> str:
    """One data version for a group of users (a persona's members, a projector's users): it
    changes when any member's data does."""
    versions = [f"{m}={store.data_version(m)}" for m in sorted(users)]
    return hashlib.sha256("\n".join(versions).encode()).hexdigest()[:32]


def train_user_lora(
    store: Store,
    user_id: str,
    task: str,
    trainer: LoraTrainer,
    *,
    from_persona: str | None = None,
    progress: Progress | None = None,
) -> StoredAdapter:
    """Train and register the user's LoRA adapter (OPPU); ``from_persona`` starts from that
    persona's adapter for the task instead of the seeded initialisation."""
    version = store.data_version(user_id)
    if version is None:
        raise UnknownUserError(user_id, store.tenant)
    tokenizer = HFTokenizer(trainer.tokenizer, trainer.base.name)
    examples = user_examples(store, user_id, task, tokenizer, trainer.settings)
    init = None
    if from_persona is not None:
        entry = require(store, "persona", from_persona, task, "lora", trainer.base)
        init = weights(store, entry)
    trained = trainer.train(examples, init=init, progress=progress)
    if from_persona is not None:
        trained.config["from_persona"] = from_persona
    return register(
        store,
        trained,
        data_version=version,
        settings=trainer.settings,
        kind="user",
        owner=user_id,
        task=task,
        method="lora",
        base=trainer.base,
    )


def train_user_steering_vector(
    store: Store,
    user_id: str,
    task: str,
    llm: HFLLM,
    base: BaseModelInfo,
    settings: SteeringVectorSettings | None = None,
) -> StoredAdapter:
    """Compute and register the user's steering vector (StyleVector) from their newest
    documents, on ``llm`` (the base model ``base``, in torch)."""
    settings = settings or SteeringVectorSettings()
    version = store.data_version(user_id)
    if version is None:
        raise UnknownUserError(user_id, store.tenant)
    examples = user_examples(store, user_id, task, llm.tokenizer, settings)
    return register(
        store,
        train_steering_vector(llm, base, examples, settings),
        data_version=version,
        settings=settings,
        kind="user",
        owner=user_id,
        task=task,
        method=STEERING_VECTOR,
        base=base,
    )


def member_examples(
    store: Store,
    members: Sequence[str],
    task: str,
    tokenizer: HFTokenizer,
    max_input_tokens: int,
    *,
    untitled: bool,
    per_member: int,
) -> list[TrainingExample]:
    """Up to ``per_member`` newest documents of each member, as the task's examples."""
    examples: list[TrainingExample] = []
    for member in members:
        examples += examples_from_documents(
            store.documents(member, limit=per_member),
            task,
            tokenizer,
            max_input_tokens=max_input_tokens,
            untitled=untitled,
        )
    return examples


def train_persona_lora(
    store: Store,
    persona_id: str,
    task: str,
    trainer: LoraTrainer,
    *,
    per_member: int = 20,
    progress: Progress | None = None,
) -> StoredAdapter:
    """A persona's LoRA adapter, trained on up to ``per_member`` newest documents of each member:
    the starting point for a member's own adapter, or an adapter for members with little data."""
    members = persona_members(store, persona_id)
    tokenizer = HFTokenizer(trainer.tokenizer, trainer.base.name)
    examples = member_examples(
        store, members, task, tokenizer, trainer.settings.max_input_tokens,
        untitled=trainer.settings.untitled, per_member=per_member,
    )  # fmt: skip
    require_examples(
        examples,
        trainer.settings.min_examples,
        owner=f"persona {persona_id!r} ({len(members)} members)",
        task=task,
        what=USABLE if trainer.settings.untitled else "titled documents",
    )
    trained = trainer.train(examples, progress=progress)
    return register(
        store,
        trained,
        data_version=group_version(store, members),
        settings=trainer.settings,
        kind="persona",
        owner=persona_id,
        task=task,
        method="lora",
        base=trainer.base,
    )


def preference_pairs(store: Store, kind: OwnerKind, owner: str) -> list[Pair]:
    preferences = store.preferences(owner) if kind == "user" else store.persona_preferences(owner)
    return [Pair(p.id or "", p.prompt, p.chosen, p.rejected) for p in preferences]


def train_owner_dpo(
    store: Store,
    kind: OwnerKind,
    owner: str,
    task: str,
    base: BaseModelInfo,
    settings: DpoSettings | None = None,
    *,
    from_persona: str | None = None,
) -> StoredAdapter:
    """DPO on the owner's stored preference pairs (ingested, or given with ``p13n feedback``)."""
    settings = settings or DpoSettings()
    if kind == "user":
        version = store.data_version(owner)
        if version is None:
            raise UnknownUserError(owner, store.tenant)
    else:
        version = group_version(store, persona_members(store, owner))
    pairs = preference_pairs(store, kind, owner)
    require_examples(
        pairs, settings.min_pairs, owner=f"{kind} {owner!r}", task=task, what="preference pairs"
    )
    init = None
    if from_persona is not None:
        init = weights(store, require(store, "persona", from_persona, task, "dpo", base))
    trained = train_dpo(base, pairs, settings, init=init)
    return register(
        store,
        trained,
        data_version=version,
        settings=settings,
        kind=kind,
        owner=owner,
        task=task,
        method="dpo",
        base=base,
    )


def embedding_examples(
    store: Store,
    users: Sequence[str],
    task: str,
    tokenizer: HFTokenizer,
    encoder: Encoder,
    settings: EmbeddingSettings,
) -> list[EmbeddingExample]:
    """For each user's newest titled documents: the example, and the user's embedding pooled
    from their *other* documents against the input (so the answer never leaks into it)."""
    examples: list[EmbeddingExample] = []
    for user_id in users:
        ids, vectors = user_history(store, user_id, encoder)
        row = {doc_id: n for n, doc_id in enumerate(ids)}
        documents = [d for d in store.documents(user_id) if d.id in row]
        own = examples_from_documents(
            documents, task, tokenizer, max_input_tokens=settings.max_input_tokens
        )[: settings.max_examples_per_user]
        if len(ids) < 2 or not own:
            continue
        texts = {d.id: d.text for d in documents}
        queries = encoder.encode([texts[example.source_id] for example in own])
        for example, query in zip(own, queries, strict=True):
            others = np.delete(vectors, row[example.source_id], axis=0)
            pooled = pool_history(others, np.asarray(query, dtype=np.float32), settings.temperature)
            examples.append(EmbeddingExample(pooled, example))
    return examples


def train_projector(
    store: Store,
    users: Sequence[str],
    task: str,
    base: BaseModelInfo,
    encoder: Encoder,
    settings: EmbeddingSettings | None = None,
    *,
    progress: Progress | None = None,
) -> StoredAdapter:
    """Train the tenant's projector for ``task`` across ``users`` and register it."""
    settings = settings or EmbeddingSettings()
    trainer = ProjectorTrainer(base, settings)
    tokenizer = HFTokenizer(trainer.tokenizer, base.name)
    examples = embedding_examples(store, users, task, tokenizer, encoder, settings)
    require_examples(
        examples,
        settings.min_examples,
        owner=f"tenant {store.tenant!r} ({len(users)} users)",
        task=task,
        what="examples (titled documents of users with at least two documents)",
    )
    _, trained = trainer.train(examples, encoder_id=encoder.id, progress=progress)
    return register(
        store,
        trained,
        data_version=group_version(store, users),
        settings=settings,
        kind="tenant",
        owner=store.tenant,
        task=task,
        method="embedding",
        base=base,
    )


def task_examples(
    examples: Sequence[LampExample], task: str, tokenizer: Tokenizer, settings: FinetuneSettings
) -> list[TrainingExample]:
    """A task split's first ``max_examples`` examples with a gold, as input → gold in the task's
    non-personalized prompt (the input cut to ``max_input_tokens``)."""
    template = templates.get(task)
    cast = []
    for example in examples:
        if example.output is None or not example.output.strip():
            continue
        text = tokenizer.truncate(example.input, settings.max_input_tokens)
        prompt = NON_PERSONALIZED.build(template, text, tokenizer, 1 << 30)
        cast.append(TrainingExample(example.id, prompt.messages, example.output))
        if len(cast) == settings.max_examples:
            break
    return cast


def train_task_finetune(
    store: Store,
    examples: Sequence[LampExample],
    task: str,
    base: BaseModelInfo,
    settings: FinetuneSettings | None = None,
    *,
    split: str = "train",
    progress: Progress | None = None,
) -> StoredAdapter:
    """Fine-tune every weight on a task split's examples (``split``: their name, for messages)
    and register the model as the tenant's for ``task``: one model for all its users. The
    model built before from the same recipe is reused."""
    settings = settings or FinetuneSettings()
    tokenizer = HFTokenizer(load_tokenizer(base.path), base.name)
    cast = task_examples(examples, task, tokenizer, settings)
    require_examples(
        cast,
        settings.min_examples,
        owner=f"the {split} split",
        task=task,
        what="examples with a gold output",
    )
    return _register_finetuned(store, "tenant", store.tenant, task, base, cast, settings, progress)


def train_persona_finetune(
    store: Store,
    persona_id: str,
    task: str,
    base: BaseModelInfo,
    settings: FinetuneSettings | None = None,
    *,
    per_member: int = 20,
    untitled: bool = True,
    progress: Progress | None = None,
) -> StoredAdapter:
    """Fine-tune every weight on up to ``per_member`` newest documents of each of the persona's
    members (cast as ``train_persona_lora`` casts them) and register it as the persona's."""
    settings = settings or FinetuneSettings()
    members = persona_members(store, persona_id)
    tokenizer = HFTokenizer(load_tokenizer(base.path), base.name)
    cast = member_examples(
        store, members, task, tokenizer, settings.max_input_tokens,
        untitled=untitled, per_member=per_member,
    )[: settings.max_examples]  # fmt: skip
    require_examples(
        cast,
        settings.min_examples,
        owner=f"persona {persona_id!r} ({len(members)} members)",
        task=task,
        what=USABLE if untitled else "titled documents",
    )
    return _register_finetuned(store, "persona", persona_id, task, base, cast, settings, progress)


def _register_finetuned(
    store: Store,
    kind: OwnerKind,
    owner: str,
    task: str,
    base: BaseModelInfo,
    examples: Sequence[TrainingExample],
    settings: FinetuneSettings,
    progress: Progress | None,
) -> StoredAdapter:
    """The fine-tuned model, registered unless the owner's entry already names it."""
    version = recipe_digest(recipe_of(base, examples, settings))[:32]
    entry = find(store, kind, owner, task, FINETUNE)
    built = entry is not None and Path(entry.config["path"], "config.json").exists()
    if built and is_current(entry, version, settings):
        assert entry is not None
        return entry
    return register(
        store,
        finetune(base, examples, settings, progress=progress),
        data_version=version,
        settings=settings,
        kind=kind,
        owner=owner,
        task=task,
        method=FINETUNE,
        base=base,
    )
