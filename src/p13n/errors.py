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


# --- benchmark formats and runners -------------------------------------------------------------


class TaskFormatError(P13nError, ValueError):
    """A LaMP-format file that cannot be read: names the file, the example and the problem."""
