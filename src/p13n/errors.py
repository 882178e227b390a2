"""Every exception p13n raises, under one root so callers can catch ``P13nError``.

Each subclasses the builtin that callers already catch for the same kind of problem.
"""

from __future__ import annotations


class P13nError(Exception):
    """Root of all p13n errors."""


class ConfigError(P13nError, ValueError):
    """A configuration value (flag, environment variable or config file) is invalid."""


class RegistryError(P13nError, ValueError):
    """A name could not be registered (malformed or already taken)."""


class UnknownNameError(P13nError, KeyError):
    """A registry has nothing under the requested name."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        self.kind, self.name, self.known = kind, name, known
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(known) or '(none)'}")

    def __str__(self) -> str:  # KeyError would otherwise print the repr of the message
        return str(self.args[0])


class UnknownUserError(P13nError, LookupError):
    """The store has no user with this id (in this tenant)."""

    def __init__(self, user_id: str, tenant: str) -> None:
        self.user_id, self.tenant = user_id, tenant
        super().__init__(f"no user {user_id!r} in tenant {tenant!r}")


class UnknownTenantError(P13nError, LookupError):
    """The service has no tenant of this name."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        super().__init__(f"no tenant {tenant!r}: create it first")

    def __str__(self) -> str:  # KeyError-like classes would print the repr of the message
        return str(self.args[0])


class StoreError(P13nError, RuntimeError):
    """The store cannot be opened or used as asked (bad URL, schema newer than this code, ...)."""


class IngestError(P13nError, ValueError):
    """A record of an ingest batch is invalid; nothing of the batch was stored."""

    def __init__(self, source: str, line: int | None, field: str | None, problem: str) -> None:
        self.source, self.line, self.field, self.problem = source, line, field, problem
        where = source if line is None else f"{source}:{line}"
        what = f"field {field!r}: " if field else ""
        super().__init__(f"{where}: {what}{problem}")


class LLMError(P13nError, RuntimeError):
    """A language model backend failed to answer."""


class LLMUnavailableError(LLMError, ConnectionError):
    """The backend cannot be reached (server down, wrong address)."""


class LLMTimeoutError(LLMError, TimeoutError):
    """The backend did not answer within the configured timeout."""


class PromptTooLongError(P13nError, ValueError):
    """What a prompt may never lose (instructions, the user's input) does not fit the context."""


# --- datasets and evaluation (moved from datasets/tasks.py, datasets/dsp.py, evaluate/metrics.py)


class TaskBuildError(P13nError, ValueError):
    """A task cannot be built: a bad recipe, a missing source, a record without a needed field."""


class SourceChangedError(TaskBuildError):
    """A recipe's sources are not the bytes it was built from, so a rebuild would differ."""


class DspFormatError(P13nError, ValueError):
    """A DSP file that cannot be read: names the file, the record and the problem."""


class MetricUnavailableError(P13nError, RuntimeError):
    """A metric cannot be computed faithfully here; the message names what is missing."""


# ------------------------------------------------------------------------- the service (server/)
class QueueFullError(P13nError, RuntimeError):
    """Too many generations are waiting for the model."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"the model's queue is full; retry in {retry_after} s")


class RateLimitedError(P13nError, RuntimeError):
    """An API key (or a dashboard login address) went over its rate limit."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"rate limit reached; retry in {retry_after} s")


class RateLimiterUnavailableError(P13nError, ConnectionError):
    """The rate limiter's Redis did not answer (limits are never silently dropped)."""

    def __init__(self, url: str, error: Exception) -> None:
        super().__init__(f"the rate limiter's Redis at {url!r} did not answer: {error}")


class TenantExistsError(P13nError, ValueError):
    """A tenant of that name exists already."""


# --- recommend / predict (the indirect stream) -----------------------------------------------


class RecDataError(P13nError, ValueError):
    """Interactions that cannot make a recommendation dataset (names the record and problem)."""


class UnknownItemError(P13nError, LookupError):
    """An item id the catalog does not hold."""

    def __init__(self, item_id: str) -> None:
        self.item_id = item_id
        super().__init__(f"no item {item_id!r} in the catalog")


class NotFittedError(P13nError, RuntimeError):
    """A recommender was asked to score before it was fitted (the message names the model)."""


class SavedRecommenderError(P13nError, ValueError):
    """A saved recommender folder cannot be loaded: written in another format version, or one of
    its files is missing or altered (the message names the folder and the file)."""


class IndirectDataError(P13nError, ValueError):
    """Data an indirect predictor cannot use (a malformed rating or label): names the example."""


# Learning the user (p13n.adapt) and personas (p13n.personalize).


class InsufficientDataError(P13nError, ValueError):
    """Too little data to train on: says how much is there and how much is needed."""


class AdapterNotFoundError(P13nError, LookupError):
    """No adapter of this kind is registered for the owner: says how to train one."""


class AdapterMismatchError(P13nError, ValueError):
    """An adapter was trained on another base model (or another config) than the one in use."""


class DiscoveryError(P13nError, ValueError):
    """Persona discovery cannot run on this data (too few users with data, bad settings)."""


# --- benchmark formats and runners -------------------------------------------------------------


class TaskFormatError(P13nError, ValueError):
    """A LaMP-format file that cannot be read: names the file, the example and the problem."""
