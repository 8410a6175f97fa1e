"""Where every benchmark job reports that it ran, the same way for all three libraries.

A job calls ``record(seq)`` first thing. That appends one fixed-width line,
``SEQ TIME\\n`` (29 bytes: the job's sequence number and ``time.time()`` when it
started), to ``$BENCH_OUT_DIR/<pid>.rec`` with a single unbuffered ``write``.
Each worker process has its own file, so nothing is shared or locked, and the
benchmark counts finished jobs from the files' sizes without querying any
library and without touching the database.
"""

from __future__ import annotations

import os
import time

LINE_BYTES = 29  # b"%010d %17.6f\n"

_files: dict[int, int] = {}  # pid -> open file descriptor (a fork gets a file of its own)


def record(seq: int) -> None:
    started = time.time()
    pid = os.getpid()
    fd = _files.get(pid)
    if fd is None:
        path = os.path.join(os.environ["BENCH_OUT_DIR"], f"{pid}.rec")
        fd = _files[pid] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, b"%010d %17.6f\n" % (seq, started))


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
