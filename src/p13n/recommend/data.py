"""Interactions as a validated user x item table, the input of every recommender."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from p13n.data import FLOAT32_MAX, Interaction, Item, User
from p13n.errors import RecDataError, UnknownItemError

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


def item_text(item: Item) -> str:
    """What an encoder or an LLM reads about an item: title, then its text (genres, ...)."""
    return f"{item.title}. {item.text}".strip() if item.text else item.title


@dataclass(frozen=True, eq=False)
class RecData:
    """Interactions as parallel arrays of row (user) and column (item) indices.

    ``user_ids`` and ``item_ids`` fix the index spaces; subsets made by ``subset`` keep them, so a
    model fitted on a training subset scores the same columns as the held-out data refers to.
    ``times`` are Unix seconds (the record order where a timestamp is missing).
    """

    user_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    rows: IntArray
    cols: IntArray
    values: FloatArray
    times: IntArray
    catalog: Mapping[str, Item] = field(repr=False)
    user_attributes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)
    skipped: Mapping[str, int] = field(default_factory=dict)
    """Interactions left out by ``build(invalid="skip")``, counted by reason."""

    @classmethod
    def build(
        cls,
        interactions: Iterable[Interaction],
        items: Iterable[Item],
        users: Iterable[User] = (),
        *,
        kinds: Sequence[str] | None = ("rate",),
        duplicates: Literal["error", "latest"] = "error",
        invalid: Literal["error", "skip"] = "error",
    ) -> RecData:
        """Validate and index interactions against the catalog.

        Every interaction must name a catalog item and carry a value float32 can hold; one that
        does not is an error naming it, or, with ``invalid="skip"`` (a store shared by many
        users, whose items may since have been deleted), left out and counted in ``skipped``.
        A user who interacted with the same item twice is an error unless
        ``duplicates="latest"`` keeps the latest one (ties: the later record). Users with
        attributes but no interactions are kept (they get the fallback).
        """
        catalog = {item.id: item for item in items}
        if not catalog:
            raise RecDataError("the catalog is empty: a recommender needs items to rank")
        attributes = {user.id: dict(user.attributes) for user in users}
        latest: dict[tuple[str, str], tuple[int, int, float, str]] = {}
        skipped: dict[str, int] = {}

        def reject(reason: str, message: str) -> None:
            if invalid == "error":
                raise RecDataError(message)
            skipped[reason] = skipped.get(reason, 0) + 1

        for order, interaction in enumerate(interactions):
            if kinds is not None and interaction.kind not in kinds:
                continue
            label = interaction.id or f"#{order}"
            if interaction.item_id not in catalog:
                reject(
                    "item not in the catalog",
                    f"interaction {label} (user {interaction.user_id!r}): item "
                    f"{interaction.item_id!r} is not in the catalog",
                )
                continue
            when = _seconds(interaction.timestamp, order)
            value = 1.0 if interaction.value is None else float(interaction.value)
            if not abs(value) <= FLOAT32_MAX:  # also NaN
                reject(
                    "value beyond float32",
                    f"interaction {label}: value {interaction.value!r} is not a finite float32",
                )
                continue
            key = (interaction.user_id, interaction.item_id)
            seen = latest.get(key)
            if seen is not None:
                if duplicates == "error":
                    raise RecDataError(
                        f"interaction {label}: user {key[0]!r} already interacted with item "
                        f"{key[1]!r} (interaction {seen[3]}); pass duplicates='latest' to keep "
                        "the latest one"
                    )
                if (seen[0], seen[1]) > (when, order):
                    continue
            latest[key] = (when, order, value, label)
        user_ids = tuple(sorted(set(attributes) | {user for user, _ in latest}))
        item_ids = tuple(sorted(catalog))
        user_index = {user: row for row, user in enumerate(user_ids)}
        item_index = {item: col for col, item in enumerate(item_ids)}
        keys = sorted(latest, key=lambda key: (user_index[key[0]], latest[key][:2]))
        return cls(
            user_ids=user_ids,
            item_ids=item_ids,
            rows=np.array([user_index[u] for u, _ in keys], dtype=np.int64),
            cols=np.array([item_index[i] for _, i in keys], dtype=np.int64),
            values=np.array([latest[k][2] for k in keys], dtype=np.float32),
            times=np.array([latest[k][0] for k in keys], dtype=np.int64),
            catalog=catalog,
            user_attributes=attributes,
            skipped=skipped,
        )

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @cached_property
    def user_index(self) -> dict[str, int]:
        return {user: row for row, user in enumerate(self.user_ids)}

    @cached_property
    def item_index(self) -> dict[str, int]:
        return {item: col for col, item in enumerate(self.item_ids)}

    def subset(self, keep: npt.NDArray[np.bool_]) -> RecData:
        """The interactions where ``keep`` is true, in the same index spaces."""
        return RecData(
            self.user_ids,
            self.item_ids,
            self.rows[keep],
            self.cols[keep],
            self.values[keep],
            self.times[keep],
            self.catalog,
            self.user_attributes,
            self.skipped,
        )

    def matrix(self, *, binary: bool = True) -> Any:
        """The users x items ``scipy.sparse.csr_matrix`` (1 per interaction, or the value)."""
        from scipy.sparse import csr_matrix

        data = np.ones(len(self), dtype=np.float32) if binary else self.values
        return csr_matrix((data, (self.rows, self.cols)), shape=(self.n_users, self.n_items))

    @cached_property
    def counts(self) -> IntArray:
        """Interactions per user row."""
        return np.bincount(self.rows, minlength=self.n_users).astype(np.int64)

    @cached_property
    def _by_user(self) -> list[IntArray]:
        order = np.lexsort((self.cols, self.times, self.rows))
        bounds = np.searchsorted(self.rows[order], np.arange(self.n_users + 1))
        return [order[bounds[row] : bounds[row + 1]] for row in range(self.n_users)]

    def history(self, row: int) -> IntArray:
        """Positions (into ``cols``/``values``/``times``) of a user's interactions, oldest first."""
        return self._by_user[row]

    def seen(self, row: int) -> IntArray:
        """Item columns the user interacted with."""
        return self.cols[self._by_user[row]]

    def item(self, col: int) -> Item:
        return self.catalog[self.item_ids[col]]

    def col(self, item_id: str) -> int:
        try:
            return self.item_index[item_id]
        except KeyError:
            raise UnknownItemError(item_id) from None


def _seconds(timestamp: datetime | None, order: int) -> int:
    return order if timestamp is None else int(timestamp.timestamp())
