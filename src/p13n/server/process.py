"""``p13n serve`` in a child process, for tests and benchmarks that need the real server (its
own process, killable, restartable on the same store) rather than an app in this process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    """A running ``p13n serve``: its process, base URL and log file."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self, last: int = 4000) -> str:
        """The end of what the server printed (for failure messages)."""
        return self.log.read_text(encoding="utf-8", errors="replace")[-last:]


@contextmanager
def serve_in_subprocess(
    store: str,
    folder: Path,
    *,
    name: str = "server",
    options: Sequence[str] = ("--dev",),
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 90.0,
) -> Iterator[ServerProcess]:
    """Start ``p13n --store STORE serve OPTIONS`` on a free port with ``folder`` as its working
    directory (so no project ``p13n.toml`` is read) and its output in ``folder/NAME.log``; yield
    once ``/readyz`` answers 200. On exit the server is stopped if it still runs."""
    port = free_port()
    log = folder / f"{name}.log"
    command = [sys.executable, "-m", "p13n", "--store", store, "serve", "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*command, *options],
            cwd=folder,
            env={**os.environ, **(env or {})},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + ready_timeout
        while not _ready(server):
            if process.poll() is not None:
                raise RuntimeError(f"the server exited ({process.returncode}):\n{server.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server was not ready in {ready_timeout} s")
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


def _ready(server: ServerProcess) -> bool:
    try:
        return httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
