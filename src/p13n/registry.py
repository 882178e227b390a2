"""A registry of implementations keyed by name: one per concept (backends, encoders, loaders)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from p13n.errors import RegistryError, UnknownNameError

T = TypeVar("T")

_NAME = re.compile(r"^[a-z][a-z0-9_\-]{0,63}$")


class Registry(Generic[T]):
    """Maps names to factories. Built-ins register through the same path a plugin would."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        if not _NAME.match(name):
            raise RegistryError(
                f"{self.kind} name {name!r} is malformed: use lowercase letters, digits, '_' or '-'"
            )
        if name in self._entries:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str) -> Callable[[T], T]:
        def register(entry: T) -> T:
            return self.register(name, entry)

        return register

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, sorted(self._entries)) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
