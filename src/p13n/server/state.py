"""What one service process holds: the store, tenants and keys, the shared model behind a fair
bounded queue, per-tenant personalizers and recommenders, and every cache a forget must clear."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from anyio import CapacityLimiter
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr

from p13n.adapt import methods
from p13n.errors import (
    ConfigError,
    QueueFullError,
    RateLimitedError,
    RateLimiterUnavailableError,
)
from p13n.llm import LLM, LLMConfig, get_llm
from p13n.personalize import Personalizer, PersonalizerConfig
from p13n.privacy.redact import RedactionConfig, Redactor
from p13n.server.metrics import Metrics
from p13n.server.tenants import TenantRegistry, TenantSettings
from p13n.store import Store, StoredAdapter, open_store

if TYPE_CHECKING:
    from p13n.encode import Encoder
    from p13n.recommend.service import FittedRecommender

logger = logging.getLogger(__name__)

DEV_ADMIN_KEY = "p13n-dev-admin-key"
"""The admin key of ``environment="development"``; refused anywhere else."""


_CHAT_ADAPTERS = [n for n in methods.names("per_user") if not methods.get(n).steers]


def _chat_adapter(name: str) -> str:
    """A per-user method chat completions can answer with: a steering vector serves only
    through its decoding method, which chat completions do not set."""
    methods.check(name, purpose="per_user", none=True)
    if name != methods.NONE and name not in _CHAT_ADAPTERS:
        raise ConfigError(
            f"chat_adapter {name!r} serves only through decoding {name!r}: choose from "
            f"{['none', *_CHAT_ADAPTERS]}"
        )
    return name


class ServerConfig(BaseModel):
    """How ``p13n serve`` runs: validated once at start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: str = "sqlite:///.p13n/p13n.db"
    environment: Literal["development", "production"] = "production"
    admin_key: SecretStr | None = None
    llm: LLMConfig = LLMConfig()
    encoder: str = "minilm"
    embed: bool = Field(True, description="embed documents at ingest (dense retrieval)")
    generation_slots: int = Field(1, ge=1, description="generations run at once on the model")
    generation_queue: int = Field(64, ge=0, description="requests waiting for a slot; then 503")
    write_concurrency: int = Field(
        1,
        gt=0,
        description="writes (redaction, embedding, the transaction) run at once; more only "
        "crowd the CPU the model needs (see docs/BENCHMARKS.md, the service)",
    )
    max_new_tokens: int = Field(256, gt=0, description="cap on any request's answer length")
    rate_limit_redis: str | None = Field(
        None,
        description="redis://... to share rate limits among server processes; "
        "by default each process counts its own",
    )
    max_batch_records: int = Field(10_000, gt=0)
    reports_dir: Path = Path("bench/out")
    chat_adapter: Annotated[str, AfterValidator(_chat_adapter)] = Field(
        "lora",
        json_schema_extra={"enum": ["none", *_CHAT_ADAPTERS]},
        description="chat completions answer with the user's adapter of this method for the "
        "chat task when they have one (the trace says which); otherwise with the base model",
    )
    defaults: PersonalizerConfig = PersonalizerConfig(policy="auto")

    def checked(self) -> ServerConfig:
        """Refuses to run outside development without a real admin secret."""
        key = self.admin_key.get_secret_value() if self.admin_key else None
        if self.environment != "development":
            if key is None:
                raise ConfigError(
                    "no admin key: set P13N_ADMIN_KEY (at least 24 characters), "
                    "or run with --dev on a development machine"
                )
            if key == DEV_ADMIN_KEY or len(key) < 24:
                raise ConfigError(
                    "the admin key is the development default or shorter than 24 characters; "
                    "outside development set a real secret in P13N_ADMIN_KEY"
                )
        elif key is None:
            return self.model_copy(update={"admin_key": SecretStr(DEV_ADMIN_KEY)})
        return self


class GenerationGate:
    """At most ``slots`` generations at once; up to ``queue`` more wait, first come first served
    (asyncio's semaphore wakes waiters in order); beyond that, ``QueueFullError`` at once."""

    def __init__(self, slots: int, queue: int) -> None:
        self.slots, self.queue = slots, queue
        self._semaphore = asyncio.Semaphore(slots)
        self._admitted = 0
        self._recent: deque[float] = deque(maxlen=32)

    @property
    def waiting(self) -> int:
        return max(0, self._admitted - self.slots)

    @property
    def admitted(self) -> int:
        return self._admitted

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead times recent generation time."""
        mean = sum(self._recent) / len(self._recent) if self._recent else 2.0
        return max(1, math.ceil(mean * (self.waiting + 1) / self.slots))

    def admit(self) -> Admission:
        """A place in the queue, held from now (``QueueFullError`` at once when there is
        none): a stream takes it before its response starts, while a refusal can still be a
        503, and no request admitted meanwhile can take it."""
        if self._admitted >= self.slots + self.queue:
            raise QueueFullError(self.retry_after())
        self._admitted += 1
        return Admission(self)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Admitted now, then the model once a slot is free."""
        async with self.admit().slot():
            yield


class Admission:
    """A place in ``GenerationGate``'s queue, given back once (after its generation, or by
    ``release`` when the generation never runs: a stream whose client left before it began)."""

    def __init__(self, gate: GenerationGate) -> None:
        self._gate = gate
        self._released = False

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        try:
            async with self._gate._semaphore:
                started = time.perf_counter()
                try:
                    yield
                finally:
                    self._gate._recent.append(time.perf_counter() - started)
        finally:
            self.release()

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._gate._admitted -= 1


class RateLimiter:
    """A token bucket per API key (in this process): ``per_minute`` requests a minute, bursts
    up to the same number."""

    backend = "memory"

    def check(self) -> None:
        """Nothing to reach: the buckets are in this process."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key_id: str, per_minute: int) -> None:
        now = time.monotonic()
        rate = per_minute / 60.0
        with self._lock:
            tokens, last = self._buckets.get(key_id, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + (now - last) * rate)
            if tokens < 1.0:
                self._buckets[key_id] = (tokens, now)
                raise RateLimitedError(max(1, math.ceil((1.0 - tokens) / rate)))
            self._buckets[key_id] = (tokens - 1.0, now)


class RedisRateLimiter:
    """The same token buckets kept in Redis, so every server process on one Redis shares each
    key's budget. One Lua script reads, refills and takes atomically, on Redis's clock."""

    backend = "redis"
    # Hand-written: redis-py ships no rate limiter, and the libraries that do (limits,
    # slowapi) count fixed or moving windows rather than refilling a bucket like RateLimiter.
    _SCRIPT = """
local capacity, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or capacity
local at = tonumber(bucket[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
return {allowed, tostring(tokens)}
"""

    def __init__(self, url: str, *, prefix: str = "p13n:rate:") -> None:
        import redis

        self.url, self.prefix = url, prefix
        try:
            self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            self._client.ping()
        except (redis.RedisError, ValueError) as error:
            raise ConfigError(f"rate limits: cannot use Redis at {url!r}: {error}") from None
        self._take = self._client.register_script(self._SCRIPT)

    def check(self) -> None:
        """Raises ``RateLimiterUnavailableError`` when Redis does not answer."""
        import redis

        try:
            self._client.ping()
        except redis.RedisError as error:
            raise RateLimiterUnavailableError(self.url, error) from None

    def take(self, key_id: str, per_minute: int) -> None:
        import redis

        rate = per_minute / 60.0
        try:
            allowed, tokens = self._take(keys=[self.prefix + key_id], args=[per_minute, rate])
        except redis.RedisError as error:  # no silent switch to per-process limits
            raise RateLimiterUnavailableError(self.url, error) from None
        if not int(allowed):
            raise RateLimitedError(max(1, math.ceil((1.0 - float(tokens)) / rate)))


@dataclass
class TenantCaches:
    """Per-tenant objects built on demand and dropped by ``ServerState.forget_caches``."""

    personalizers: OrderedDict[str, Personalizer] = field(default_factory=OrderedDict)
    recommenders: dict[str, FittedRecommender] = field(default_factory=dict)
    redactor: tuple[str, Redactor] | None = None


class ServerState:
    """Everything the app's handlers share. One model, loaded on first use."""

    def __init__(
        self, config: ServerConfig, store: Store | None = None, *, metrics: Metrics
    ) -> None:
        self.config = config.checked()
        self.metrics = metrics
        self.store = store or open_store(self.config.store)
        engine = getattr(self.store, "engine", None)
        if engine is None:
            raise ConfigError("the service needs an SQL store (sqlite:// or postgresql://)")
        self.tenants = TenantRegistry(engine)
        self.gate = GenerationGate(self.config.generation_slots, self.config.generation_queue)
        self.write_limiter = CapacityLimiter(self.config.write_concurrency)
        self.limiter: RateLimiter | RedisRateLimiter = (
            RedisRateLimiter(self.config.rate_limit_redis)
            if self.config.rate_limit_redis
            else RateLimiter()
        )
        self._llm: LLM | None = None
        self._encoder: Encoder | None = None
        self._caches: dict[str, TenantCaches] = {}
        self._lock = threading.RLock()
        self.started = time.time()
        self.warmed = False
        self.warm_up_error: str | None = None

    def warm_up(self) -> None:
        """Load what the first requests would otherwise wait for (seconds each): the model, the
        encoder and the redaction engine. ``/readyz`` answers 503 until this is done."""
        try:
            _ = self.llm
            if self.encoder is not None:
                self.encoder.encode(["warm up"])
            Redactor(RedactionConfig())
        except Exception as error:  # reported by /readyz and the log; the server stays up
            self.warm_up_error = f"{type(error).__name__}: {error}"
            logger.exception("warm-up failed")
            return
        self.warmed = True

    @property
    def admin_key(self) -> str:
        assert self.config.admin_key is not None  # checked() sets one
        return self.config.admin_key.get_secret_value()

    @property
    def model_loaded(self) -> bool:
        """Whether the model is loaded (it is on first use, or by ``warm_up``)."""
        return self._llm is not None

    @property
    def llm(self) -> LLM:
        with self._lock:
            if self._llm is None:
                self._llm = get_llm(self.config.llm)
            return self._llm

    @property
    def encoder(self) -> Encoder | None:
        if not self.config.embed:
            return None
        from p13n.encode import get_encoder

        with self._lock:
            if self._encoder is None:
                self._encoder = get_encoder(self.config.encoder)
            return self._encoder

    def tenant_store(self, tenant: str) -> Store:
        return self.store.with_tenant(tenant)

    def tenant_settings(self, tenant: str) -> TenantSettings:
        found = self.tenants.tenant(tenant)
        return found.settings if found is not None else TenantSettings()

    def caches(self, tenant: str) -> TenantCaches:
        with self._lock:
            return self._caches.setdefault(tenant, TenantCaches())

    def redactor(self, tenant: str, config: RedactionConfig) -> Redactor:
        """The tenant's redactor for ``config`` (its current settings), rebuilt when they change."""
        key = config.model_dump_json()
        caches = self.caches(tenant)
        with self._lock:
            if caches.redactor is None or caches.redactor[0] != key:
                caches.redactor = (key, Redactor(config))
            return caches.redactor[1]

    def personalizer(self, tenant: str, config: PersonalizerConfig) -> Personalizer:
        """A personalizer over the tenant's data, sharing the process's model and encoder."""
        config = config.model_copy(update={"llm": self.config.llm, "encoder": self.config.encoder})
        key = config.model_dump_json()
        if config.policy == "auto":  # a policy learned or replaced since takes effect at once
            stored = self.tenant_store(tenant).get_policy(config.task)
            key += f"|policy {stored.created_at.isoformat() if stored else None}"
        caches = self.caches(tenant)
        with self._lock:
            found = caches.personalizers.get(key)
            if found is not None:
                caches.personalizers.move_to_end(key)
                return found
            encoder = self.encoder if config.needs_encoder() else None
            if config.needs_encoder() and encoder is None:
                raise ConfigError(
                    f"retriever {config.retriever.name!r} needs embeddings, and this server "
                    "runs with embed=false"
                )
            made = Personalizer(self.tenant_store(tenant), config, llm=self.llm, encoder=encoder)
            caches.personalizers[key] = made
            while len(caches.personalizers) > 16:
                caches.personalizers.popitem(last=False)
            return made

    def recommender(self, tenant: str, model: str) -> FittedRecommender:
        """The tenant's fitted model, refitted when its interactions or catalog changed."""
        from p13n.encode import get_encoder
        from p13n.recommend.service import data_from_store, fingerprint, fit_recommender

        data = data_from_store(self.tenant_store(tenant))
        caches = self.caches(tenant)
        with self._lock:
            fitted = caches.recommenders.get(model)
            if fitted is None or fitted.fingerprint != fingerprint(data):
                fitted = fit_recommender(
                    data,
                    model,
                    self.encoder or get_encoder(self.config.encoder),
                    thin_data="popularity",
                )
                caches.recommenders[model] = fitted
            return fitted

    def forget_caches(
        self, tenant: str, user_id: str, adapters: Sequence[StoredAdapter]
    ) -> list[str]:
        """Drop every in-memory trace of a user: corpora, loaded ``adapters`` (theirs, read
        before the rows went), fitted recommenders that saw them. Returns what was cleared."""
        cleared: list[str] = []
        with self._lock:
            caches = self._caches.get(tenant)
            if caches is None:
                return cleared
            for personalizer in caches.personalizers.values():
                if personalizer.loader.forget(user_id):
                    cleared.append("corpus")
                if personalizer.adapted is not None:
                    for entry in adapters:
                        if personalizer.adapted.unload(entry):
                            cleared.append(f"adapter:{entry.adapter_id}")
            for model, fitted in list(caches.recommenders.items()):
                if user_id in fitted.data.user_index:
                    del caches.recommenders[model]
                    cleared.append(f"recommender:{model}")
        return sorted(set(cleared))

    def close(self) -> None:
        self.store.close()
