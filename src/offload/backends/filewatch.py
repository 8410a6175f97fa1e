"""Wake-ups when another process writes a file, for stores that cannot notify (SQLite).

On Linux an inotify watch on SQLite's WAL file makes every commit, from any
process, wake the waiting worker at once, and an idle worker costs nothing
between commits. Elsewhere (or if the kernel refuses a watch) callers fall back
to polling the file's ``stat``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

try:
    from inotify_simple import INotify, flags
except ImportError:  # not Linux: callers poll
    INotify = None

#: Whether this platform can watch files at all.
CAN_WATCH_FILES = INotify is not None

#: Written, or replaced: either way the waiter should look again.
_EVENTS = (flags.MODIFY | flags.DELETE_SELF | flags.MOVE_SELF) if INotify else 0


def watch_file(
    path: str, loop: asyncio.AbstractEventLoop, on_change: Callable[[], None]
) -> Callable[[], None] | None:
    """Call ``on_change`` on ``loop`` whenever ``path`` is written; returns the function
    that ends the watch, or None where files cannot be watched (poll instead)."""
    if INotify is None:
        return None
    try:
        notify = INotify(nonblocking=True)
    except OSError:  # e.g. fs.inotify.max_user_instances reached
        return None
    try:
        notify.add_watch(path, _EVENTS)
    except OSError:  # the file is gone, or max_user_watches reached
        notify.close()
        return None
    fd = notify.fileno()

    def readable() -> None:
        with contextlib.suppress(OSError):
            notify.read(timeout=0)  # drain, so the loop does not call again for these
        on_change()

    loop.add_reader(fd, readable)

    def close() -> None:
        loop.remove_reader(fd)
        notify.close()

    return close
