"""Run worker processes against a store, break something, and count what became of every job.

A ``Scenario`` enqueues jobs of ``fault_app``, runs a ``Fleet`` of worker processes (a
supervisor restarts any that exit, as systemd would), lets the test inject its fault,
then waits a bounded time for every job to reach a final state and tallies one row of
the fault table:

- lost: a job that should have succeeded is missing, ended otherwise, or never ran;
- stuck: a job not in a final state when the deadline after the fault passed;
- run twice: a job meant to run once whose body completed more than once;
- overlap: a job whose body ran in two places at the same time (leases forbid it);
- charged: a job charged a crash, or more attempts than it started (graceful stops must not);
- exits: worker processes that exited by themselves (not killed by the test).

Executions are counted outside the library, from the lines ``fault_app`` logs.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import fault_app

from offload.backends.base import IdsParams
from offload.records import JobRecord
from offload.states import JobState

FINAL = {JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED}
HERE = os.path.dirname(os.path.abspath(__file__))


@dataclasses.dataclass
class Row:
    store: str
    fault: str
    jobs: int = 0
    lost: int = 0
    stuck: int = 0
    run_twice: int = 0
    overlap: int = 0
    charged: int = 0
    exits: int = 0
    notes: str = ""


class Fleet:
    """Worker processes of ``fault_app``; ``supervise()`` restarts the ones that exited."""

    def __init__(
        self, url: str, env: dict[str, str], work_dir: Path, *, size: int = 2,
        concurrency: int = 4, grace_s: float | None = None,
    ) -> None:  # fmt: skip
        self.url = url
        self.env = env
        self.work_dir = work_dir
        self.concurrency = concurrency
        self.grace_s = grace_s
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * size
        self.exits = 0  # exited by themselves
        self.exit_codes: list[int] = []
        self.started = 0
        self.slowest_stop_s = 0.0
        self._stop_sent = 0.0
        self.stop_failures = 0

    def start(self, i: int | None = None) -> None:
        for k in range(len(self.procs)) if i is None else [i]:
            argv = [
                sys.executable, "-m", "offload", "worker", "fault_app:app",
                "-c", str(self.concurrency), "--url", self.url, "--log-level", "WARNING",
            ]  # fmt: skip
            if self.grace_s is not None:
                argv += ["--grace", str(self.grace_s)]
            log = open(self.work_dir / f"worker-{self.started}.log", "wb")
            self.procs[k] = subprocess.Popen(argv, env=self.env, stdout=log, stderr=log)
            log.close()
            self.started += 1

    def supervise(self) -> None:
        for k, proc in enumerate(self.procs):
            if proc is not None and proc.poll() is not None:
                self.exits += 1
                self.exit_codes.append(proc.returncode)
                self.start(k)

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.start(i)

    def signal_stop(self, i: int) -> None:
        """Send SIGTERM (a graceful stop) to worker ``i``; ``await_stop`` waits for it."""
        proc = self.procs[i]
        assert proc is not None
        self._stop_sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)

    def await_stop(self, i: int, restart: bool = True) -> None:
        """Wait for worker ``i`` to exit (killed after 30 s) and note how long it took."""
        proc = self.procs[i]
        assert proc is not None
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.stop_failures += 1
            proc.kill()
            proc.wait()
        self.slowest_stop_s = max(self.slowest_stop_s, time.monotonic() - self._stop_sent)
        self.procs[i] = None
        if restart:
            self.start(i)

    def terminate(self, i: int, restart: bool = True) -> None:
        self.signal_stop(i)
        self.await_stop(i, restart)

    def stop(self) -> None:
        self.supervise()
        for proc in self.procs:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
        for k, proc in enumerate(self.procs):
            if proc is None:
                continue
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.stop_failures += 1
                proc.kill()
                proc.wait()
            self.procs[k] = None

    def log_tail(self, lines: int = 15) -> str:
        """The last lines the workers logged, for a failure's message."""
        out: list[str] = []
        for path in sorted(self.work_dir.glob("worker-*.log")):
            text = path.read_text(errors="replace").strip()
            if text:
                out.append(f"--- {path.name}\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(out[-4:])


class Scenario:
    """One row of the table: ``with Scenario(...) as s:`` enqueue, start, break, then exit."""

    def __init__(
        self, table: list[Row], store: str, fault: str, url: str, tmp_path: Path, *,
        lease_s: float = 20.0, max_crashes: int = 5, long_s: float = 2.0,
        grace_s: float | None = None, concurrency: int = 4, settle_s: float = 45.0,
        worker_url: str | None = None, workers: int = 2,
    ) -> None:  # fmt: skip
        self.row = Row(store=store, fault=fault)
        table.append(self.row)
        self.url = url
        self.settle_s = settle_s
        self.long_s = long_s
        self.logs = tmp_path / "executions"
        self.logs.mkdir(exist_ok=True)
        env = {**os.environ, "FAULT_LOG_DIR": str(self.logs), "FAULT_LEASE_S": str(lease_s),
               "FAULT_MAX_CRASHES": str(max_crashes), "FAULT_LONG_S": str(long_s),
               "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", "")}  # fmt: skip
        self.fleet = Fleet(
            worker_url or url, env, tmp_path, size=workers, grace_s=grace_s,
            concurrency=concurrency,
        )  # fmt: skip
        self.app = fault_app.app
        self.app._backend = None  # one module-level app, pointed at each store in turn
        self.app.url = url
        self.must_succeed: dict[str, int] = {}  # job id -> its n
        self.must_end: dict[str, int] = {}  # jobs that only need a final state
        self.may_wait: set[str] = set()  # may also stay scheduled (a retry far in the future)
        self.notes: list[str] = []
        self.error: str | None = None
        self._next_n = 0
        self.long_ns: set[int] = set()  # jobs of long_job (a run lasts long_s, not 0.03 s)

    # -- jobs ----------------------------------------------------------------
    def enqueue(self, count: int, task: Any = None, chunk: int = 200) -> list[str]:
        """``count`` jobs of ``task`` (short_job by default) that must all succeed."""
        task = task or fault_app.short_job
        ids: list[str] = []
        for start in range(0, count, chunk):
            ns = range(self._next_n, self._next_n + min(chunk, count - start))
            self._next_n += len(ns)
            jobs = task.enqueue_many([task.s(n) for n in ns])
            for n, job in zip(ns, jobs, strict=True):
                self.must_succeed[job.id] = n
                if task is fault_app.long_job:
                    self.long_ns.add(n)
                ids.append(job.id)
        return ids

    def enqueue_bad(self, kind: str) -> str:
        n = self._next_n
        self._next_n += 1
        job = fault_app.bad_outcome.enqueue(n, kind)
        self.must_end[job.id] = n
        if kind == "huge_delay":
            self.may_wait.add(job.id)
        return job.id

    def counts(self) -> collections.Counter[str] | None:
        """Jobs per state from the store, or None while the store does not answer."""
        try:
            counts = collections.Counter[str]()
            for row in self.app.backend.blocking.stats():
                counts.update(row.counts)
            return counts
        except Exception:
            return None

    def idle(self) -> bool:
        counts = self.counts()
        return counts is not None and counts["queued"] + counts["running"] == 0

    def done(self) -> int:
        counts = self.counts()
        return 0 if counts is None else counts["succeeded"] + counts["dead"]

    def wait_for(self, predicate: Any, timeout_s: float) -> bool:
        """Supervise the workers until ``predicate()`` or the time is up."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.fleet.supervise()
            if predicate():
                return True
            time.sleep(0.2)
        return False

    def settle(self) -> bool:
        """After the fault: wait (bounded) until every job is final."""
        total = len(self.must_succeed) + len(self.must_end)

        def all_final() -> bool:
            counts = self.counts()
            if counts is None:
                return False
            ended = counts["succeeded"] + counts["dead"] + counts["cancelled"]
            return ended + min(counts["scheduled"], len(self.may_wait)) >= total

        return self.wait_for(all_final, self.settle_s)

    # -- the run ---------------------------------------------------------------
    def __enter__(self) -> Scenario:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        try:
            if exc is None:
                self.settle()
            else:
                self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.fleet.stop()
            self._tally()
            self.app._backend = None  # a store restarted mid-run may refuse a clean close
            with contextlib.suppress(Exception):
                self.app.close()

    def _records(self, ids: list[str]) -> tuple[dict[str, JobRecord], set[str]]:
        """Every job the store returns, and the ids it cannot read back."""
        found: dict[str, JobRecord] = {}
        unreadable: set[str] = set()
        backend = self.app.backend.blocking

        def get(chunk: list[str]) -> list[JobRecord]:
            for _ in range(20):  # the store may still be coming back
                try:
                    return backend.get(IdsParams(ids=chunk))
                except Exception as exc:
                    if not _is_outage(exc):
                        raise
                    time.sleep(0.5)
            return backend.get(IdsParams(ids=chunk))

        for start in range(0, len(ids), 100):
            chunk = ids[start : start + 100]
            try:
                records = get(chunk)
            except Exception:
                records = []
                for job_id in chunk:
                    try:
                        records += get([job_id])
                    except Exception:
                        unreadable.add(job_id)
            found.update((r.id, r) for r in records)
        return found, unreadable

    def _tally(self) -> None:
        row = self.row
        ids = [*self.must_succeed, *self.must_end]
        row.jobs = len(ids)
        try:
            records, unreadable = self._records(ids)
        except Exception as exc:
            self.notes.append(f"store unreadable at the end ({type(exc).__name__}: {exc})")
            records, unreadable = {}, set(ids)
        if unreadable:
            self.notes.append(f"{len(unreadable)} rows unreadable by get()")
        started, completed, overlap = self._executions()
        for job_id in ids:
            record = records.get(job_id)
            n = self.must_succeed.get(job_id, self.must_end.get(job_id, -1))
            if record is None:
                if job_id in unreadable:
                    row.stuck += 1
                else:
                    row.lost += 1
                continue
            final = record.state in FINAL or (
                job_id in self.may_wait and record.state is JobState.SCHEDULED
            )
            if not final:
                row.stuck += 1
            elif job_id in self.must_succeed and (
                record.state is not JobState.SUCCEEDED or completed[n] == 0
            ):
                row.lost += 1
            if job_id in self.must_succeed:
                row.run_twice += completed[n] > 1
                row.charged += record.crashes > 0 or record.attempt > max(started[n], 1)
            row.overlap += n in overlap
        states = collections.Counter(r.state.value for r in records.values())
        self.notes.append("states " + ",".join(f"{k}={v}" for k, v in sorted(states.items())))
        row.exits = self.fleet.exits
        if self.fleet.exit_codes:
            self.notes.append(f"exit codes {sorted(set(self.fleet.exit_codes))}")
        if self.fleet.slowest_stop_s:
            self.notes.append(f"slowest graceful stop {self.fleet.slowest_stop_s:.1f} s")
        if self.fleet.stop_failures:
            self.notes.append(f"{self.fleet.stop_failures} workers ignored SIGTERM for 30 s")
        if self.error:
            self.notes.append("ERROR " + self.error)
        row.notes = "; ".join(self.notes)

    def _executions(self) -> tuple[collections.Counter[int], collections.Counter[int], set[int]]:
        """Starts and completed runs per n, and the n whose runs overlapped in time."""
        starts: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
        ends: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
        for log in self.logs.iterdir():
            for line in log.read_text().splitlines():
                kind, n, at = line.split()
                (starts if kind == "S" else ends)[(log.name, int(n))].append(float(at))
        started = collections.Counter[int]()
        completed = collections.Counter[int]()
        spans: dict[int, list[tuple[float, float]]] = collections.defaultdict(list)
        for (pid, n), begun in starts.items():
            started[n] += len(begun)
            finished = ends.get((pid, n), [])
            completed[n] += len(finished)
            for k, at in enumerate(sorted(begun)):
                # a run cut short by a kill has no end line: assume it lasted its nominal time
                nominal_s = self.long_s if n in self.long_ns else 0.03
                end = sorted(finished)[k] if k < len(finished) else at + nominal_s
                spans[n].append((at, end))
        overlap = {n for n, runs in spans.items() if _overlaps(runs)}
        return started, completed, overlap

    def check(self, *, run_twice: bool = True, charged: bool = False, exits: bool = True) -> None:
        """The promises: nothing lost, nothing stuck, no overlap, and those the fault keeps."""
        row = self.row
        problems = [f"{name}={getattr(row, name)}" for name, wanted in (
            ("lost", True), ("stuck", True), ("overlap", True), ("run_twice", run_twice),
            ("charged", charged), ("exits", exits)) if wanted and getattr(row, name)]  # fmt: skip
        if self.error:
            problems.append(self.error)
        where = f"{row.store} / {row.fault}"
        assert not problems, (
            f"{where}: {', '.join(problems)} ({row.notes})\n{self.fleet.log_tail()}"
        )


def _overlaps(runs: Iterable[tuple[float, float]]) -> bool:
    latest_end = None
    for begin, end in sorted(runs):
        if latest_end is not None and begin < latest_end - 0.001:
            return True
        latest_end = end if latest_end is None else max(latest_end, end)
    return False


def _is_outage(exc: BaseException) -> bool:
    from offload.backends.base import BackendError

    return isinstance(exc, (BackendError, OSError, ConnectionError))


def format_table(rows: list[Row]) -> str:
    head = ("store", "fault", "jobs", "lost", "stuck", "run twice", "overlap", "charged", "exits")
    counted = ("jobs", "lost", "stuck", "run_twice", "overlap", "charged", "exits")
    body = [(r.store, r.fault, *(str(getattr(r, f)) for f in counted)) for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
             for line in [head, *body]]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {r.store} / {r.fault}: {r.notes}" for r in rows if r.notes]
    return "\n".join([*lines, "notes:", *notes])
