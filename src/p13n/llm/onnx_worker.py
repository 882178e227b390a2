"""ONNX Runtime GenAI in a process of its own, one per converted model and thread count.

The runtime's Python binding (0.18, the newest) holds the interpreter's lock while it computes a
token, so decoding in the server's own interpreter starved everything else it does: measured
under the 50-client load test, writes waited 20 s at p50 instead of 1 s. Here the parent keeps
tokenizing, stop strings and text; the child holds the model, its generators and its LoRA
adapters. The child sends each token as it decodes it, without waiting for the parent (which
reads them without the interpreter's lock, and would otherwise add its own thread switches to
every token); a stream the caller abandons is stopped after at most one more token. A child that
dies (killed, out of memory) fails the request in flight with a clear error and is started
again on the next one, with its adapters loaded again.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from p13n.llm.base import steered_log_probs

log = logging.getLogger(__name__)


class RuntimeProcessError(RuntimeError):
    """The runtime's process failed a request, or is gone."""


@functools.cache
def genai_runtime() -> Any:
    """onnxruntime_genai, with its usage telemetry switched off before any model loads.

    ``ORT_DISABLE_TELEMETRY`` (set by ``import p13n`` unless the user set it) keeps the runtime
    from writing a device id and an event database under ``~/.cache/Microsoft``, which
    ``disable_telemetry_events()`` alone does not: the runtime queues events at import.
    """
    import onnxruntime_genai

    onnxruntime_genai.disable_telemetry_events()
    return onnxruntime_genai


def runtime_threads() -> int:
    """The runtime's intra-op threads: ``OMP_NUM_THREADS`` when set (as torch reads it), else
    the cores this process may run on. Said explicitly: the runtime's own default decoded at
    ~60% of the speed on 2 cores, with the same logits bit for bit."""
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class RuntimeWorker:
    """The parent's handle on one child process running ``folder``'s model with ``threads``
    intra-op threads. One request at a time: ``lock`` is held for a whole answer, as the
    in-process backends hold theirs."""

    def __init__(self, folder: Path, threads: int) -> None:
        self.folder, self.threads = folder, threads
        self.lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._requests: Connection | None = None
        self._replies: Connection | None = None
        # What the child must hold, to load again into a new child: key → the adapter's inputs.
        self._adapters: dict[str, dict[str, np.ndarray]] = {}

    @property
    def pid(self) -> int | None:
        """The child's process id (None before the first request)."""
        return self._process.pid if self._process is not None else None

    def _start(self) -> None:
        child_reads, parent_writes = os.pipe()
        parent_reads, child_writes = os.pipe()
        command = [
            sys.executable, "-m", "p13n.llm.onnx_worker",
            str(self.folder), str(self.threads), str(child_reads), str(child_writes),
        ]  # fmt: skip
        try:
            self._process = subprocess.Popen(
                command, pass_fds=(child_reads, child_writes), stdin=subprocess.DEVNULL
            )
        finally:
            os.close(child_reads)
            os.close(child_writes)
        self._requests = Connection(parent_writes, readable=False)
        self._replies = Connection(parent_reads, writable=False)
        try:
            self._receive()  # the child says it has loaded the model, or why it could not
        except RuntimeProcessError:
            self._gone()
            raise
        for key, inputs in self._adapters.items():
            self._ask("load", key, inputs)

    def _receive(self) -> Any:
        assert self._replies is not None
        try:
            status, value = self._replies.recv()
        except (EOFError, OSError) as error:
            raise self._gone() from error
        if status == "error":
            raise RuntimeProcessError(value)
        return value

    def _gone(self) -> RuntimeProcessError:
        """Forget a child that stopped answering; the next request starts another."""
        process, self._process = self._process, None
        for end in (self._requests, self._replies):
            if end is not None:
                end.close()
        self._requests = self._replies = None
        code = None
        if process is not None:
            process.kill()
            code = process.wait()
        return RuntimeProcessError(
            f"the ONNX Runtime process for {self.folder.name} exited (code {code}); "
            "the next request starts it again"
        )

    def _ask(self, op: str, *args: Any) -> Any:
        """Send one request and return its answer; the caller holds ``lock``."""
        self._ask_nowait(op, *args)
        return self._receive()

    def _ask_nowait(self, op: str, *args: Any) -> None:
        if self._process is None:
            self._start()
        assert self._requests is not None
        try:
            self._requests.send((op, args))
        except OSError as error:
            raise self._gone() from error

    def decode(
        self,
        prompt: Sequence[int],
        search: Mapping[str, Any],
        adapter: str | None,
        contrast: tuple[Sequence[int], float] | None = None,
    ) -> Iterator[int]:
        """The new token ids as the child decodes them, until the runtime is done. The child
        does not wait for this process between tokens; a caller that stops early (an end token,
        a stop string, a closed stream) has it stopped after at most one more token.
        ``contrast``: context steering by this prompt (without the user's data) and strength."""
        steer = None if contrast is None else (list(contrast[0]), float(contrast[1]))
        with self.lock:
            self._ask_nowait("decode", list(prompt), dict(search), adapter, steer)
            finished = False
            try:
                while (token := self._receive()) is not None:
                    yield token
                finished = True
            except RuntimeProcessError:
                finished = True  # the child ended the answer with an error, or is gone
                raise
            finally:
                if not finished and self._process is not None:
                    self._stop_decoding()

    def _stop_decoding(self) -> None:
        assert self._requests is not None
        try:
            self._requests.send(("stop", ()))
            while self._receive() is not None:  # the tokens decoded before it stopped
                pass
        except (RuntimeProcessError, OSError):
            pass  # a child that died is started again on the next request

    def score(
        self,
        prompt: Sequence[int],
        search: Mapping[str, Any],
        adapter: str | None,
        choices: Sequence[Sequence[int]],
    ) -> list[float]:
        """Each choice's summed log-probability as the continuation of ``prompt``."""
        with self.lock:
            scores: list[float] = self._ask("score", list(prompt), dict(search), adapter, choices)
            return scores

    def load_adapter(self, key: str, inputs: Mapping[str, np.ndarray]) -> None:
        """Load a LoRA adapter (the LoRA-ready model's input tensors) under ``key``."""
        with self.lock:
            self._ask("load", key, dict(inputs))
            self._adapters[key] = dict(inputs)

    def unload_adapter(self, key: str) -> None:
        with self.lock:
            self._adapters.pop(key, None)
            if self._process is not None:
                self._ask("unload", key)

    def forget(self) -> None:
        """Close this process's ends of the pipes without a word to the child (after a fork:
        the child is the parent process's)."""
        for end in (self._requests, self._replies):
            if end is not None:
                end.close()
        self._process = self._requests = self._replies = None
        self.lock = threading.Lock()

    def close(self) -> None:
        """Stop the child (it also stops by itself when this process exits)."""
        with self.lock:
            if self._process is not None:
                assert self._requests is not None
                self._requests.close()
                try:
                    self._process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
                self._process = None
                if self._replies is not None:
                    self._replies.close()
                self._requests = self._replies = None


_workers: dict[tuple[Path, int], RuntimeWorker] = {}
_workers_lock = threading.Lock()


def runtime_worker(folder: Path, threads: int | None = None) -> RuntimeWorker:
    """The worker for ``folder`` at ``threads`` (default ``runtime_threads()``), shared by every
    model object of this process that loads it; its child starts on the first request."""
    threads = threads or runtime_threads()
    with _workers_lock:
        if (folder, threads) not in _workers:
            _workers[folder, threads] = RuntimeWorker(folder, threads)
        return _workers[folder, threads]


def _forget_workers_in_forked_child() -> None:
    # A forked process holds copies of its parent's pipe ends: it closes them (so a child still
    # sees its end of the pipe close when the parent exits) and starts its own on first use.
    global _workers_lock
    for worker in _workers.values():
        worker.forget()
    _workers.clear()
    _workers_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_workers_in_forked_child)


class _Runtime:
    """The child's side: the loaded model, its adapters and the generator of the answer in
    progress."""

    def __init__(self, folder: Path, threads: int) -> None:
        og = genai_runtime()
        settings = og.Config(str(folder))
        options = {"intra_op_num_threads": threads}
        settings.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
        self.model = og.Model(settings)
        self.adapters = og.Adapters(self.model)
        # A private folder: an adapter's file lives there only while the runtime reads it.
        self.scratch = Path(tempfile.mkdtemp(prefix="p13n-onnx-adapters-"))

    def _generator(self, prompt: list[int], search: dict[str, Any], adapter: str | None) -> Any:
        og = genai_runtime()
        params = og.GeneratorParams(self.model)
        params.set_search_options(**search)
        generator = og.Generator(self.model, params)
        if adapter is not None:
            generator.set_active_adapter(self.adapters, adapter)
        generator.append_tokens(np.asarray(prompt, dtype=np.int32))
        return generator

    def decode(
        self,
        prompt: list[int],
        search: dict[str, Any],
        adapter: str | None,
        contrast: tuple[list[int], float] | None,
        requests: Connection,
        replies: Connection,
    ) -> None:
        """Send each new token as it is decoded, then None; stop early when the parent asks.
        With ``contrast`` (a prompt and a strength), context steering: a second generator reads
        the contrast prompt and follows the chosen tokens, and each step's logits become
        ``steered_log_probs`` of the two (the runtime has no classifier-free guidance)."""
        generator = self._generator(prompt, search, adapter)
        shadow = None
        if contrast is not None:
            shadow = self._generator(
                contrast[0],
                {**search, "max_length": search["max_length"] + len(contrast[0])},
                adapter,
            )
        try:
            while not generator.is_done():
                if shadow is not None:
                    assert contrast is not None
                    own = generator.get_logits()
                    steered = steered_log_probs(
                        own.astype(np.float64), shadow.get_logits().astype(np.float64), contrast[1]
                    )
                    generator.set_logits(steered.astype(np.float32).reshape(own.shape))
                generator.generate_next_token()
                token = int(generator.get_next_tokens()[0])
                if shadow is not None:
                    shadow.append_tokens(np.asarray([token], dtype=np.int32))
                replies.send(("ok", token))
                if requests.poll():
                    request = requests.recv()
                    if request[0] != "stop":
                        raise ValueError(f"request {request[0]!r} while decoding")
                    break
        finally:
            del generator, shadow  # before any unload: an adapter in use cannot be unloaded
        replies.send(("ok", None))

    def score(
        self,
        prompt: list[int],
        search: dict[str, Any],
        adapter: str | None,
        choices: list[list[int]],
    ) -> list[float]:
        """The prompt is decoded once; the runtime rewinds to its end before each choice."""
        from scipy.special import log_softmax

        generator = self._generator(prompt, search, adapter)
        first = log_softmax(generator.get_logits().reshape(-1).astype(np.float64))
        scores: list[float] = []
        for ids in choices:
            total = float(first[ids[0]])
            if len(ids) > 1:
                generator.rewind_to(len(prompt))
                for previous, token in itertools.pairwise(ids):
                    generator.append_tokens(np.asarray([previous], dtype=np.int32))
                    logits = generator.get_logits().reshape(-1).astype(np.float64)
                    total += float(log_softmax(logits)[token])
            scores.append(total)
        return scores

    def load(self, key: str, inputs: dict[str, np.ndarray]) -> None:
        import onnxruntime

        adapter = onnxruntime.AdapterFormat()
        adapter.set_adapter_version(1)
        adapter.set_model_version(1)
        adapter.set_parameters(
            {k: onnxruntime.OrtValue.ortvalue_from_numpy(v) for k, v in inputs.items()}
        )
        path = self.scratch / "adapter.onnx_adapter"
        adapter.export_adapter(str(path))
        try:
            self.adapters.load(str(path), key)
        finally:
            path.unlink(missing_ok=True)

    def unload(self, key: str) -> None:
        self.adapters.unload(key)


OPERATIONS = ("score", "load", "unload")


def serve(folder: Path, threads: int, requests: Connection, replies: Connection) -> None:
    """Answer the parent's requests until it closes its end."""
    try:
        runtime = _Runtime(folder, threads)
    except Exception as error:
        replies.send(("error", f"loading {folder} failed: {error}"))
        return
    try:
        replies.send(("ok", os.getpid()))
        while True:
            try:
                op, args = requests.recv()
            except EOFError:
                return
            if op == "stop":
                continue  # it came after the answer it meant to stop had ended
            try:
                if op == "decode":
                    prompt, search, adapter, contrast = args
                    runtime.decode(prompt, search, adapter, contrast, requests, replies)
                    continue
                if op not in OPERATIONS:
                    raise ValueError(f"unknown request {op!r}")
                reply = ("ok", getattr(runtime, op)(*args))
            except Exception as error:
                reply = ("error", f"{type(error).__name__}: {error}")
            replies.send(reply)
    except (BrokenPipeError, ConnectionResetError):
        return  # the parent is gone
    finally:
        shutil.rmtree(runtime.scratch, ignore_errors=True)


def main(argv: Sequence[str]) -> int:
    folder, threads, read_fd, write_fd = argv
    # The parent decides when this process ends (by closing the pipe); a Ctrl-C meant for the
    # parent's process group must not kill it mid-answer first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests = Connection(int(read_fd), writable=False)
    replies = Connection(int(write_fd), readable=False)
    serve(Path(folder), int(threads), requests, replies)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    raise SystemExit(main(sys.argv[1:]))
