"""What every benchmark job does and how it reports that it ran, the same way for all libraries.

A job calls ``record(seq)`` first thing (``sleepy``: last). That appends one
fixed-width line, ``SEQ TIME\\n`` (29 bytes: the job's sequence number and
``time.time()`` when it started), to ``$BENCH_OUT_DIR/<pid>.rec`` with a single
unbuffered ``write``. Each worker process has its own file, so nothing is
shared or locked, and the benchmark counts finished jobs from the files' sizes
without querying any library and without touching the store.

Then the job makes one real round trip, ``INCR bench:incr`` on the side
redis-server (``$BENCH_SIDE_REDIS_URL``, never the store's server), so that
it does I/O as a real job does: ``def`` jobs with a sync redis-py client (one
per process, made on first use; its pool is thread-safe), ``async def`` jobs
with ``redis.asyncio`` (one client per event loop). The benchmark reads the
counter to check that every job made its round trip. The apps' tasks call the
four bodies below, so that every library's jobs do exactly the same.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from typing import Any

LINE_BYTES = 29  # b"%010d %17.6f\n"
SIDE_KEY = "bench:incr"
SLEEPY_S = 0.01  # the mixed workload's jobs wait this long (I/O, say)

_files: dict[int, int] = {}  # pid -> open file descriptor (a fork gets a file of its own)
_sync: dict[int, Any] = {}  # pid -> redis.Redis (a fork makes its own)
_async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def record(seq: int) -> None:
    started = time.time()
    pid = os.getpid()
    fd = _files.get(pid)
    if fd is None:
        path = os.path.join(os.environ["BENCH_OUT_DIR"], f"{pid}.rec")
        fd = _files[pid] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, b"%010d %17.6f\n" % (seq, started))


def incr() -> None:
    """The job's round trip, from a ``def`` task (any thread)."""
    client = _sync.get(os.getpid())
    if client is None:
        import redis

        with _lock:
            client = _sync.get(os.getpid())
            if client is None:
                url = os.environ["BENCH_SIDE_REDIS_URL"]
                client = _sync[os.getpid()] = redis.Redis.from_url(url)
    client.incr(SIDE_KEY)


async def incr_async() -> None:
    """The job's round trip, from an ``async def`` task."""
    loop = asyncio.get_running_loop()
    client = _async.get(loop)
    if client is None:
        import redis.asyncio

        client = _async[loop] = redis.asyncio.Redis.from_url(os.environ["BENCH_SIDE_REDIS_URL"])
    await client.incr(SIDE_KEY)


def noop_def(seq: int) -> None:
    record(seq)  # first: the record marks the job's start, for the latency workload
    incr()


async def noop_async(seq: int) -> None:
    record(seq)
    await incr_async()


def sleepy_def(seq: int) -> None:
    time.sleep(SLEEPY_S)
    incr()
    record(seq)  # last: the mixed workload's record marks the job's end


async def sleepy_async(seq: int) -> None:
    await asyncio.sleep(SLEEPY_S)
    await incr_async()
    record(seq)


def read_records(folder: str) -> list[tuple[int, float]]:
    """Every (seq, start time) the workers wrote to ``folder``."""
    out: list[tuple[int, float]] = []
    for entry in os.scandir(folder):
        if entry.name.endswith(".rec"):
            with open(entry.path, "rb") as handle:
                for line in handle.read().splitlines():
                    seq, started = line.split()
                    out.append((int(seq), float(started)))
    return out


def count_records(folder: str) -> int:
    """How many jobs have started so far (cheap: one stat per worker file)."""
    total = 0
    for entry in os.scandir(folder):
        if entry.name.endswith(".rec"):
            total += entry.stat().st_size // LINE_BYTES
    return total
