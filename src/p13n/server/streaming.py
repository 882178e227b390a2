"""Server-sent events from a model that decodes in a worker thread: the events, an error inside
a started stream, and ``drained``, which carries a blocking iterator's items to the event loop."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from anyio import CancelScope

from p13n.errors import LLMError, P13nError, QueueFullError


def sse(data: Any) -> str:
    """One server-sent event holding ``data`` as JSON."""
    return f"data: {json.dumps(data)}\n\n"


def stream_error(error: P13nError) -> str:
    """An error inside a started stream, in the shape OpenAI's clients read from a stream."""
    kind = (
        "overloaded"
        if isinstance(error, QueueFullError)
        else "model_error"
        if isinstance(error, LLMError)
        else "error"
    )
    return sse({"error": {"message": str(error), "type": kind, "param": None, "code": None}})


_END = object()
T = TypeVar("T")


async def drained(make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """The items of ``make()``, made and consumed in one worker thread (the iterator may hold a
    thread's lock across items, as a user's adapter does), passed on as they come. When the
    consumer stops early (the client went away), the iterator is closed in its thread, which
    stops the model."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()

    def run() -> None:
        iterator: Iterator[T] | None = None
        try:
            iterator = make()
            for item in iterator:
                loop.call_soon_threadsafe(queue.put_nowait, item)
                if stop.is_set():
                    break
        except BaseException as error:  # raised again in the consumer
            loop.call_soon_threadsafe(queue.put_nowait, _Failed(error))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
            loop.call_soon_threadsafe(queue.put_nowait, _END)

    worker = loop.run_in_executor(None, run)
    try:
        while (item := await queue.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        with CancelScope(shield=True):  # even when cancelled: the model is free before the slot
            await worker


@dataclass(frozen=True)
class _Failed:
    error: BaseException
