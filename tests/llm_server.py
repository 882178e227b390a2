"""A real uvicorn server on loopback, in a background thread, for HTTP tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def free_port() -> socket.socket:
    """A TCP socket bound to a free loopback port and not listening: connecting to it is refused,
    and no one else can take the port while the socket stays open."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve(app: Any, *, start_timeout: float = 30.0, stop_timeout: float = 60.0) -> Iterator[str]:
    """Serve the ASGI ``app`` on 127.0.0.1 (a free port) and yield its base URL, ``.../v1``.

    The socket is bound here and handed to uvicorn, so the port is known before the server starts
    and nothing can take it in between. On exit the server finishes its in-flight requests and
    stops; the thread must be gone within ``stop_timeout`` seconds.
    """
    sock = free_port()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"uvicorn on {host}:{port} exited before it started")
            if time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn on {host}:{port} did not start in {start_timeout} s")
            time.sleep(0.01)
        yield f"http://{host}:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(stop_timeout)
        sock.close()
        if thread.is_alive():
            raise RuntimeError(f"uvicorn on {host}:{port} did not stop in {stop_timeout} s")
