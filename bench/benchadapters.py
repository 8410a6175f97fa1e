"""The libraries as the engine benchmarks drive them, and the throwaway Redis they use.

``Library`` is what a workload needs from a job queue (clients, worker
commands, counts of queued and finished jobs); ``OffloadLib``, ``HueyLib`` and
``SaqLib`` run on more than one store, so every engine file shares them and
adds its own. ``RedisServer`` is the jobs' side server in every benchmark and
the Redis benchmark's store.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, cast

from benchlib import chunks, tail

WORKER_PROCESSES = 2  # processes running jobs, for every library
Client = Callable[[int], Any]
AsyncClient = Callable[[int], Awaitable[Any]]


class RedisServer:
    """A throwaway redis-server on a free port in a temp folder, without persistence.

    Every benchmark starts one for the jobs' round trips (the side server);
    the Redis benchmark starts a second one as the store. The benchmark's own
    rather than the tests' helper: it needs the server's pid, for its CPU.
    """

    CONFIG = ("--save", "", "--appendonly", "no")

    def __init__(self, what: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found; bench/run_<engine>.sh installs it")
        self.binary = binary
        self.root = tempfile.mkdtemp(prefix=f"offload-bench-{what}-redis-")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)

    def start(self) -> None:
        import redis

        log_path = os.path.join(self.root, "server.log")
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.root, "--logfile", log_path,
                "--daemonize", "no", *self.CONFIG]  # fmt: skip
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        client = self.client()
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start:\n{tail(log_path)}")
            time.sleep(0.05)
        self.version = str(cast(dict[str, Any], client.info("server"))["redis_version"])
        client.close()

    def destroy(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


# -- the libraries ----------------------------------------------------------------


class Library:
    """What the benchmark needs from each library: clients, worker commands, two counts.

    Clients and workers take a task name: ``noop_<kind>``, or ``sleepy_<kind>``
    for the mixed workload (``task``).
    """

    name = ""
    dist = ""  # the distribution whose version is reported
    has_sync = True
    has_async = False
    has_bulk = False
    runs_async = True  # False: no ``async def`` tasks, so its ``def`` ones run in both kinds
    note = ""  # printed under the tables; " C" becomes the concurrency

    def __init__(self, url: str) -> None:
        self.url = url

    def task(self, workload: str, kind: str) -> str:
        return f"{workload}_{kind if self.runs_async else 'def'}"

    async def prepare(self) -> None:
        """Make a new or emptied store ready for the library (schema, bindings)."""

    def sync_client(self, task: str) -> contextlib.AbstractContextManager[Client]:
        raise NotImplementedError

    def bulk_client(
        self, task: str
    ) -> contextlib.AbstractContextManager[Callable[[list[int]], Any]]:
        raise NotImplementedError

    def async_client(self, task: str) -> contextlib.AbstractAsyncContextManager[AsyncClient]:
        raise NotImplementedError

    async def prequeue(self, n: int, task: str) -> None:
        """Enqueue jobs 0..n-1 of ``task`` by the fastest API the library has (untimed)."""
        if self.has_bulk:
            with self.bulk_client(task) as enqueue_many:
                for seqs in chunks(n, 1000):
                    enqueue_many(seqs)
        elif self.has_sync:
            with self.sync_client(task) as enqueue:
                for i in range(n):
                    enqueue(i)
        else:
            async with self.async_client(task) as enqueue_async:
                for i in range(n):
                    await enqueue_async(i)

    @contextlib.asynccontextmanager
    async def latency_client(self, task: str) -> AsyncIterator[AsyncClient]:
        """The async API where there is one, else the sync API called from the loop."""
        if self.has_async:
            async with self.async_client(task) as enqueue:
                yield enqueue
            return
        with self.sync_client(task) as enqueue_sync:

            async def enqueue(i: int) -> None:
                enqueue_sync(i)

            yield enqueue

    def worker_argv(self, concurrency: int, kind: str) -> list[str]:
        """One worker process's command (started twice), unless ``worker_argvs`` says else."""
        raise NotImplementedError

    def worker_argvs(self, concurrency: int, kind: str) -> list[list[str]]:
        return [self.worker_argv(concurrency, kind)] * WORKER_PROCESSES

    def queued(self) -> int:
        """Jobs waiting in the store (checked before a drain)."""
        raise NotImplementedError

    def settled(self, n: int) -> bool:
        """Nothing queued or in flight, and all n recorded finished where the library does."""
        raise NotImplementedError

    def noise(self, line: str) -> bool:
        """A line the workers print on every start even at WARNING."""
        return False

    async def close(self) -> None:
        pass


class OffloadLib(Library):
    """offload on any store: the URL is ``$OFFLOAD_URL``, set before ``offload_app`` is imported."""

    name = dist = "offload"
    has_async = has_bulk = True

    def __init__(self, url: str) -> None:
        super().__init__(url)
        import offload_app

        self.module = offload_app
        self.app = offload_app.app

    async def prepare(self) -> None:
        self.app.backend.blocking.migrate()  # what offload's first use does on a new store

    def _counts(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for queue in self.app.backend.blocking.stats():
            for state, count in queue.counts.items():
                totals[str(state)] = totals.get(str(state), 0) + count
        return totals

    def queued(self) -> int:
        return self._counts().get("queued", 0)

    def settled(self, n: int) -> bool:
        return self._counts().get("succeeded", 0) >= n

    @contextlib.contextmanager
    def sync_client(self, task: str) -> Iterator[Client]:
        self.app.backend.blocking.now()  # connected and warm before the clock starts
        yield getattr(self.module, task).enqueue

    @contextlib.contextmanager
    def bulk_client(self, task: str) -> Iterator[Callable[[list[int]], Any]]:
        self.app.backend.blocking.now()
        chosen = getattr(self.module, task)
        yield lambda seqs: chosen.enqueue_many([chosen.s(i) for i in seqs])

    @contextlib.asynccontextmanager
    async def async_client(self, task: str) -> AsyncIterator[AsyncClient]:
        await self.app.backend.now()
        yield getattr(self.module, task).enqueue_async

    def worker_argv(self, concurrency: int, kind: str) -> list[str]:
        return [sys.executable, "-m", "offload", "worker", "offload_app:app",
                "-c", str(concurrency), "--log-level", "WARNING"]  # fmt: skip

    async def close(self) -> None:
        await self.app.aclose()


class HueyLib(Library):
    """Huey (no asyncio API, ``def`` tasks only); the engine picks its storage's instance."""

    name = dist = "huey"
    runs_async = False
    instance = ""  # "huey" or "sqlite_huey" in peers.huey_app
    worker_type = "thread"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        from peers import huey_app

        self.huey = getattr(huey_app, self.instance)
        self.tasks = (
            huey_app.sqlite_tasks if self.instance == "sqlite_huey" else huey_app.redis_tasks
        )

    @property
    def note(self) -> str:  # type: ignore[override]
        if self.worker_type == "process":
            return "huey: 1 consumer, --workers 2 --worker-type process (1 job at a time each)"
        return "huey: 2 consumers, C thread workers each"

    def queued(self) -> int:
        return int(self.huey.pending_count())

    def settled(self, n: int) -> bool:
        return self.queued() == 0  # a worker takes a job off the queue; no in-flight record

    @contextlib.contextmanager
    def sync_client(self, task: str) -> Iterator[Client]:
        self.huey.pending_count()  # connected and warm before the clock starts
        yield self.tasks[task]

    def worker_argvs(self, concurrency: int, kind: str) -> list[list[str]]:
        base = [sys.executable, "-m", "huey.bin.huey_consumer", f"peers.huey_app.{self.instance}"]
        if self.worker_type == "process":
            return [[*base, "--workers", str(WORKER_PROCESSES), "--worker-type", "process",
                     "--quiet"]]  # fmt: skip
        argv = [*base, "--workers", str(concurrency), "--worker-type", "thread", "--quiet"]
        return [argv] * WORKER_PROCESSES


class SaqLib(Library):
    """SAQ (async API only) on PostgreSQL or Redis, by its URL; the engine adds the counts."""

    name = dist = "saq"
    has_sync = False
    has_async = True

    @contextlib.asynccontextmanager
    async def queue(self) -> AsyncIterator[Any]:
        from saq import Queue

        queue = Queue.from_url(self.url)
        await queue.connect()  # on PostgreSQL, creates or migrates SAQ's tables
        try:
            yield queue
        finally:
            await queue.disconnect()

    @contextlib.asynccontextmanager
    async def async_client(self, task: str) -> AsyncIterator[AsyncClient]:
        async with self.queue() as queue:
            yield lambda i: queue.enqueue(task, i=i)

    def worker_argv(self, concurrency: int, kind: str) -> list[str]:
        return [sys.executable, "-m", "saq", "peers.saq_app.settings"]
