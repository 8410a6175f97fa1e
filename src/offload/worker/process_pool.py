"""Tasks in child processes that can be killed: hard timeouts and cancellation for any code.

Children are started with ``spawn`` (a suspect's one-off child forks from a
``forkserver`` that imported the app) and import the application by its
``module:attribute`` spec, so they never inherit a half-held lock from the
worker's threads. Parent and child speak msgspec JSON over a pipe, never pickle.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import os
import threading
import time
from multiprocessing.process import BaseProcess
from typing import Any, Literal

import msgspec

from offload.context import JobContext, set_current_job
from offload.errors import OffloadError
from offload.files import FileInfo, LocalFiles
from offload.loader import load_app
from offload.records import ErrorInfo
from offload.serialize import PayloadError
from offload.worker.executors import Invocation
from offload.worker.outcomes import describe_failure, error_info

log = logging.getLogger("offload.worker")


class Request(msgspec.Struct, frozen=True):
    id: str
    task: str
    payload: msgspec.Raw
    attempt: int
    max_attempts: int


class ProgressMsg(msgspec.Struct, frozen=True, tag="progress"):
    fraction: float
    message: str | None


class ReadyMsg(msgspec.Struct, frozen=True, tag="ready"):
    """The child imported the app: its start-up is not counted in a task's timeout."""


class DoneMsg(msgspec.Struct, frozen=True, tag="done"):
    result: msgspec.Raw


class FailedMsg(msgspec.Struct, frozen=True, tag="failed"):
    error: ErrorInfo
    retryable: bool
    delay_s: float | None
    payload_error: bool = False


Message = ReadyMsg | ProgressMsg | DoneMsg | FailedMsg
_decode_message = msgspec.json.Decoder(Message).decode
_decode_request = msgspec.json.Decoder(Request).decode


class ChildFailed(OffloadError):
    """The child process reported a failure; carries its classification."""

    def __init__(self, message: FailedMsg) -> None:
        super().__init__(f"{message.error.type}: {message.error.message}")
        self.message = message


class ChildDied(OffloadError):
    pass


def _attach(files: LocalFiles, job_id: str, data: Any, name: str) -> FileInfo:
    return files.put(job_id, name, data)


def _exit_with_parent(parent_pid: int) -> None:
    """A child whose worker died (SIGKILL) must not run on: its job runs again elsewhere."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(1)


def child_main(spec: str, conn: multiprocessing.connection.Connection) -> None:
    parent_pid = os.getppid()
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    app = load_app(spec)
    loop = asyncio.new_event_loop()
    never = threading.Event()
    try:
        conn.send_bytes(msgspec.json.encode(ReadyMsg()))
    except OSError:  # the worker is gone
        return
    while True:
        try:
            request = _decode_request(conn.recv_bytes())
        except (EOFError, OSError):
            return
        task = app.tasks.get(request.task)

        def report(fraction: float, message: str | None) -> None:
            conn.send_bytes(msgspec.json.encode(ProgressMsg(fraction, message)))

        reply: Message
        try:
            if task is None:
                raise PayloadError(f"no task named {request.task!r} in {spec}")
            args, kwargs = task.codec.decode_args(bytes(request.payload))
            set_current_job(
                JobContext(
                    id=request.id,
                    task=request.task,
                    attempt=request.attempt,
                    max_attempts=request.max_attempts,
                    report=report,
                    cancelled=never,  # cancellation kills this process instead
                    attach=functools.partial(_attach, app.files, request.id),
                )
            )
            value = task.fn(*args, **kwargs)
            if task.is_async:
                value = loop.run_until_complete(value)
            reply = DoneMsg(msgspec.Raw(task.codec.encode_result(value)))
        except PayloadError as exc:
            reply = FailedMsg(error_info(exc, with_traceback=False), False, None, True)
        except BaseException as exc:
            failure = describe_failure(exc, task.defaults.retry_on if task else ())
            reply = FailedMsg(failure.error, failure.retryable, failure.delay_s)
        finally:
            set_current_job(None)
        try:
            conn.send_bytes(msgspec.json.encode(reply))
        except OSError:  # the worker is gone (BrokenPipeError): nobody to tell
            return


class _Child:
    def __init__(self, process: BaseProcess, conn: multiprocessing.connection.Connection) -> None:
        self.process = process
        self.conn = conn
        self.ready = False  # its ReadyMsg was read


class ProcessExecutor:
    """A fixed set of child processes, one job each at a time; a stuck child is killed."""

    def __init__(
        self, app_spec: str, size: int, *, respawn: bool = True, forked: bool = False
    ) -> None:
        self._spec = app_spec
        self._size = size
        self._respawn = respawn  # False for a one-off child (see isolation.py)
        self._context: (
            multiprocessing.context.SpawnContext | multiprocessing.context.ForkServerContext
        )
        if forked:
            # One-off children for suspects fork from a server that imported the app once:
            # about 10 ms each instead of a fresh interpreter's few hundred under load, so
            # a suspect spends no longer exposed to its worker's death than any other job.
            forkserver = multiprocessing.get_context("forkserver")
            forkserver.set_forkserver_preload([app_spec.partition(":")[0]])
            self._context = forkserver
        else:
            self._context = multiprocessing.get_context("spawn")
        self._idle: asyncio.Queue[_Child] = asyncio.Queue()
        self._children: set[_Child] = set()

    def _spawn(self) -> _Child:
        parent_conn, child_conn = self._context.Pipe()
        process = self._context.Process(
            target=child_main, args=(self._spec, child_conn), daemon=True, name="offload-child"
        )
        process.start()
        child_conn.close()
        child = _Child(process, parent_conn)
        self._children.add(child)
        return child

    async def start(self) -> None:
        for _ in range(self._size):
            self._idle.put_nowait(self._spawn())

    async def _receive(self, child: _Child) -> bytes:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        fd = child.conn.fileno()

        def readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        try:
            return child.conn.recv_bytes()
        except (EOFError, OSError) as exc:
            child.process.join(timeout=1)  # the pipe closed: it has exited, collect its code
            raise ChildDied(
                f"the task's process exited with code {child.process.exitcode}"
            ) from exc

    def _kill(self, child: _Child) -> None:
        self._children.discard(child)
        with contextlib.suppress(Exception):
            child.process.kill()
            child.process.join(timeout=5)
        with contextlib.suppress(Exception):
            child.conn.close()

    async def warm(self) -> None:
        """Wait until an idle child has imported the app (so a timeout counts only the task)."""
        child = await self._idle.get()
        try:
            await self._ready(child)
        except BaseException:
            self._kill(child)
            if self._respawn:
                self._idle.put_nowait(self._spawn())
            raise
        self._idle.put_nowait(child)

    async def _ready(self, child: _Child) -> None:
        while not child.ready:
            if isinstance(_decode_message(await self._receive(child)), ReadyMsg):
                child.ready = True

    async def run(self, call: Invocation) -> bytes:
        child = await self._idle.get()
        request = Request(
            id=call.context.id,
            task=call.task.name,
            payload=msgspec.Raw(call.payload),
            attempt=call.context.attempt,
            max_attempts=call.context.max_attempts,
        )
        healthy = False
        try:
            await self._ready(child)
            child.conn.send_bytes(msgspec.json.encode(request))
            while True:
                message = _decode_message(await self._receive(child))
                if isinstance(message, ReadyMsg):
                    continue
                if isinstance(message, ProgressMsg):
                    call.context.set_progress(message.fraction, message.message)
                    continue
                healthy = True
                if isinstance(message, DoneMsg):
                    return bytes(message.result)
                raise ChildFailed(message)
        finally:
            if healthy:
                self._idle.put_nowait(child)
            else:  # cancelled, timed out or died: this process is gone, start a fresh one
                self._kill(child)
                if self._respawn:
                    self._idle.put_nowait(self._spawn())

    async def close(self) -> None:
        for child in list(self._children):
            self._kill(child)


Pool = Literal["async", "thread", "process"]
