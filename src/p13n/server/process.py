"""``p13n serve`` in a child process, for tests and benchmarks that need the real server (its
own process, killable, restartable on the same store) rather than an app in this process.

Each start imports torch, transformers and spaCy (through presidio) again: seconds. Tests that
restart many times start their servers from ``ServerForks``, a process that has imported them
once and forks each server from itself; the server then starts as ``python -m p13n`` would,
opening the store only once forked."""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import httpx

PRELOAD: tuple[str, ...] = (
    "p13n.cli",
    "p13n.server.app",
    "uvicorn",
    "presidio_analyzer",
    "presidio_analyzer.predefined_recognizers",
    "phonenumbers",
    "tldextract",
    "p13n.llm.hf",
    "transformers.models.llama.modeling_llama",
    "p13n.llm.openai",
    "openai",
    "p13n.encode",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql.psycopg",
)
"""What ``p13n serve`` imports before it is ready (seconds). Importing them reads no store and
starts no thread, so forking after it is safe; the fork server checks the threads. Not
onnxruntime: its import starts a thread (and takes milliseconds once numpy is there)."""

# The fork server's process: ``run_fork_server`` returns only in a child, which then runs the CLI at
# top level, as ``python -m p13n ARGS`` would.
_FORK_SERVER = (
    "import runpy, sys\n"
    "from p13n.server.process import run_fork_server\n"
    "sys.argv = ['p13n', *run_fork_server(sys.argv[1:])]\n"
    "runpy.run_module('p13n', run_name='__main__', alter_sys=True)\n"
)


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ChildProcess(Protocol):
    """What a server's process offers: ``subprocess.Popen`` or ``ForkedProcess``."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


@dataclass
class ServerProcess:
    """A running ``p13n serve``: its process, base URL and log file."""

    process: ChildProcess
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self, last: int = 4000) -> str:
        """The end of what the server printed (for failure messages)."""
        return self.log.read_text(encoding="utf-8", errors="replace")[-last:]


class ForkedProcess:
    """A server forked by ``ServerForks``, watched and stopped as with ``Popen`` (its exit
    status comes from the fork server, its parent)."""

    def __init__(self, forks: ServerForks, pid: int) -> None:
        self.forks, self.pid = forks, pid

    @property
    def returncode(self) -> int | None:
        return self.forks.exit_code(self.pid)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        return self.forks.wait(self.pid, timeout)

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:  # not reaped yet, so the pid is still this process's
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ServerForks:
    """A process with ``p13n serve``'s modules imported (``preload``) that forks servers from
    itself (``serve_in_subprocess(..., forks=)``): a start costs the server's own start-up, not
    the imports. Linux only (it watches its children through pidfds)."""

    def __init__(
        self,
        folder: Path,
        *,
        env: Mapping[str, str] | None = None,
        preload: Sequence[str] = PRELOAD,
    ) -> None:
        self.folder = folder
        self.log = folder / "forks.log"
        self._exits: dict[int, int] = {}
        self._started: list[int] = []
        self._changed = threading.Condition()
        self._closed = False
        self._request = threading.Lock()
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _FORK_SERVER, *preload],
                cwd=folder,
                env={**os.environ, **(env or {})},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=sink,
            )
        assert self.process.stdout is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()

    @staticmethod
    def supported() -> bool:
        """Whether this platform can run a fork server (Linux)."""
        return hasattr(os, "pidfd_open") and Path("/proc/self/task").is_dir()

    def output(self, last: int = 4000) -> str:
        """The end of what the fork server printed (an import failing, for instance)."""
        return self.log.read_text(encoding="utf-8", errors="replace")[-last:]

    def fork(self, arguments: Sequence[str], log: Path, *, timeout: float = 90.0) -> ForkedProcess:
        """``python -m p13n ARGUMENTS``, forked, its output in ``log``; waits for the imports."""
        assert self.process.stdin is not None
        request = json.dumps({"args": list(arguments), "log": str(log)}).encode() + b"\n"
        with self._request:
            try:
                self.process.stdin.write(request)
                self.process.stdin.flush()
            except BrokenPipeError:
                pass  # it died: reported below
            with self._changed:
                self._changed.wait_for(lambda: bool(self._started) or self._closed, timeout)
                if not self._started:
                    raise RuntimeError(f"the fork server did not fork:\n{self.output()}")
                return ForkedProcess(self, self._started.pop())

    def exit_code(self, pid: int) -> int | None:
        """How ``pid`` (forked here) exited, None while it runs."""
        return self._exits.get(pid)

    def wait(self, pid: int, timeout: float | None = None) -> int:
        """``pid``'s exit code once it exits; ``subprocess.TimeoutExpired`` after ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: pid in self._exits or self._closed, timeout):
                raise subprocess.TimeoutExpired(f"p13n (pid {pid})", timeout or 0.0)
        code = self.exit_code(pid)
        if code is None:
            raise RuntimeError(f"the fork server exited before pid {pid}:\n{self.output()}")
        return code

    def close(self) -> None:
        """Stop the fork server, and with it every server it forked that still runs."""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    def _read(self, lines: IO[bytes]) -> None:
        for line in lines:
            kind, pid, *code = line.split()
            with self._changed:
                if kind == b"started":
                    self._started.append(int(pid))
                else:
                    self._exits[int(pid)] = int(code[0])
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()


@contextmanager
def server_forks(
    folder: Path, *, env: Mapping[str, str] | None = None, preload: Sequence[str] = PRELOAD
) -> Iterator[ServerForks]:
    """A fork server on ``folder`` (the servers' working directory) with ``env`` (fixed now:
    the imports may read it), stopped on exit with whatever it still runs."""
    forks = ServerForks(folder, env=env, preload=preload)
    try:
        yield forks
    finally:
        forks.close()


@contextmanager
def serve_in_subprocess(
    store: str,
    folder: Path,
    *,
    name: str = "server",
    options: Sequence[str] = ("--dev",),
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 90.0,
    forks: ServerForks | None = None,
) -> Iterator[ServerProcess]:
    """Start ``p13n --store STORE serve OPTIONS`` on a free port with ``folder`` as its working
    directory (so no project ``p13n.toml`` is read) and its output in ``folder/NAME.log``; yield
    once ``/readyz`` answers 200. On exit the server is stopped if it still runs.

    With ``forks`` (on ``folder``, with the environment the server needs: ``env`` must be None)
    the server is forked from it rather than started afresh."""
    port = free_port()
    log = folder / f"{name}.log"
    arguments = ["--store", store, "serve", "--port", str(port), *options]
    process: ChildProcess
    if forks is None:
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "p13n", *arguments],
                cwd=folder,
                env={**os.environ, **(env or {})},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
    elif env is not None or forks.folder != folder:
        raise ValueError("a forked server runs in the fork server's folder and environment")
    else:
        process = forks.fork(arguments, log, timeout=ready_timeout)
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


def run_fork_server(preload: Sequence[str]) -> list[str]:
    """The fork server: import ``preload``, then fork on each request line from stdin (JSON:
    ``args``, ``log``), reporting ``started PID`` and ``exited PID CODE``; at the end of stdin,
    stop the children still running and exit. In a child, returns its arguments."""
    for module in preload:
        importlib.import_module(module)
    threads = os.listdir("/proc/self/task")
    if len(threads) != 1:
        raise RuntimeError(f"importing {list(preload)} started threads: unsafe to fork")
    replies = os.dup(1)
    os.dup2(2, 1)  # whatever the imported code prints goes to the log, not among the replies
    children: dict[int, int] = {}  # pidfd → pid
    pending = b""
    while True:
        ready, _, _ = select.select([0, *children], [], [])
        for fd in ready:
            if fd != 0:
                pid = children.pop(fd)
                os.close(fd)
                _, status = os.waitpid(pid, 0)
                os.write(replies, f"exited {pid} {os.waitstatus_to_exitcode(status)}\n".encode())
                continue
            chunk = os.read(0, 65536)
            if not chunk:
                for pid in children.values():
                    os.kill(pid, signal.SIGTERM)
                for pid in children.values():
                    os.waitpid(pid, 0)
                raise SystemExit(0)
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    for other in (replies, *children):
                        os.close(other)
                    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    null = os.open(os.devnull, os.O_RDONLY)
                    os.dup2(null, 0)
                    os.dup2(log, 1)
                    os.dup2(log, 2)
                    os.close(null)
                    os.close(log)
                    arguments: list[str] = request["args"]
                    return arguments
                children[os.pidfd_open(pid)] = pid
                os.write(replies, f"started {pid}\n".encode())


def _ready(server: ServerProcess) -> bool:
    try:
        return httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
