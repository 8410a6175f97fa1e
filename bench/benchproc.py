"""CPU, wake-ups, threads and memory of process trees, read from /proc.

The benchmarks charge each library the CPU its own processes used, from the
kernel's accounts rather than wall time, so that contention from other
programs on the machine does not count. ``benchlib.py`` (workers, the idle
window) and ``benchrun.py`` (CPU per job) read them here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as handle:
        data = handle.read()
    return data[data.rindex(")") + 2 :].split()  # fields from "state" (3rd) on


def process_cpu_s(pids: Iterable[int]) -> float:
    """User + system CPU seconds of these processes (and their reaped children)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = _stat(pid)
            total += sum(int(v) for v in fields[11:15])
    return total * TICK_S


def descendants(pids: Iterable[int]) -> set[int]:
    """These processes and every live process below them (pool children, forked job runners)."""
    parent_of: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent_of[int(entry.name)] = int(_stat(int(entry.name))[1])
    tree = set(pids)
    grew = True
    while grew:
        below = {pid for pid, parent in parent_of.items() if parent in tree} - tree
        tree |= below
        grew = bool(below)
    return tree


def tree_cpu_s(pids: Iterable[int]) -> float:
    """CPU seconds of these processes and all their descendants, live or reaped.

    A child's time moves into its parent's "children" fields when it is reaped,
    so summing self + reaped children over the live tree counts every process
    once, whether it lived through the window, was forked in it or died in it.
    """
    return process_cpu_s(descendants(pids))


def tree_runtime_s(pids: Iterable[int]) -> float | None:
    """CPU seconds the live threads of these process trees have run, to the nanosecond.

    From ``/proc/<pid>/task/*/schedstat`` (the scheduler's own account), where
    ``tree_cpu_s`` samples at clock ticks of 10 ms: a process that wakes for
    half a millisecond now and then is charged a whole tick or nothing, which
    over an idle window is mostly noise. Threads and processes that exit are
    no longer counted, so this suits idle workers, not busy ones. None where
    the kernel has no schedstat.
    """
    total_ns = 0
    for pid in descendants(pids):
        with contextlib.suppress(OSError):
            for task in os.scandir(f"/proc/{pid}/task"):
                with (
                    contextlib.suppress(OSError, ValueError, IndexError),
                    open(f"{task.path}/schedstat") as handle,
                ):
                    total_ns += int(handle.read().split()[0])
    if total_ns == 0 and not os.path.exists("/proc/self/schedstat"):
        return None
    return total_ns / 1e9


_SWITCHES = ("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")


def tree_switches(pids: Iterable[int]) -> int:
    """Context switches, voluntary and involuntary, of every thread of these process trees.

    Each one is a wake-up: a thread that blocked (voluntary) or was preempted
    (involuntary) and later ran again. ``/proc/<pid>/status`` counts one
    thread, so this sums ``/proc/<pid>/task/*/status`` over every thread of
    every live process; a thread or process that has exited no longer counts.
    """
    total = 0
    for pid in descendants(pids):
        with contextlib.suppress(OSError):
            for task in os.scandir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError), open(f"{task.path}/status") as handle:
                    for line in handle:
                        if line.startswith(_SWITCHES):
                            total += int(line.split()[1])
    return total


def tree_threads(pids: Iterable[int]) -> int:
    """Live threads of these process trees."""
    total = 0
    for pid in descendants(pids):
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{pid}/task"))
    return total


def tree_memory_mb(pids: Iterable[int]) -> tuple[float, float]:
    """(RSS, PSS) in MB, summed over these process trees.

    RSS counts a page shared by forked processes (a prefork pool's children)
    once per process; PSS splits it among them, so it sums to what the tree
    really holds.
    """
    rss_kb = pss_kb = 0
    for pid in descendants(pids):
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        rss_kb += int(line.split()[1])
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                for line in handle:
                    if line.startswith("Pss:"):
                        pss_kb += int(line.split()[1])
    return rss_kb / 1024, pss_kb / 1024
