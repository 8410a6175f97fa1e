"""One measurement, in one offload version: run as a child of ``events_bench.py`` with
that version's ``src`` first on ``PYTHONPATH``; prints one JSON object.

  drain URL N        N jobs queued first, 2 workers (-c 50) drain them: jobs/s
  latency URL N      N jobs sent one every 20 ms to 1 idle worker: enqueue-to-start ms
  events URL N       as latency, while this process subscribes to the store's events:
                     state change in the worker to event here, ms (current version only)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import jobsink  # noqa: E402
from benchlib import (  # noqa: E402
    Workers,
    chunks,
    latency_summary,
    percentile,
    send_paced,
    wait_for,
)

PACE_S = 0.02


def _argv(concurrency: int) -> list[str]:
    return [sys.executable, "-m", "offload", "worker", "events_app:app", "-q", "bench",
            "-c", str(concurrency), "--log-level", "WARNING"]  # fmt: skip


def _env(url: str, out_dir: str) -> dict[str, str]:
    return dict(os.environ, OFFLOAD_URL=url, BENCH_OUT_DIR=out_dir)


async def drain(url: str, n: int) -> dict[str, float]:
    import events_app

    events_app.app.use_url(url)
    for part in chunks(n, 1000):
        events_app.noop.enqueue_many(events_app.noop.s(i) for i in part)
    out_dir = tempfile.mkdtemp(prefix="offload-events-")
    started = time.perf_counter()
    argv = _argv(50)
    with Workers("offload", [argv, argv], 50, out_dir, _env(url, out_dir)) as workers:
        await wait_for("drained", lambda: jobsink.count_records(out_dir) >= n, workers, 300, 0.005)
        elapsed = time.perf_counter() - started
    return {"drain_jobs_per_s": n / elapsed}


async def latency(url: str, n: int, subscribe: bool) -> dict[str, Any]:
    import events_app

    app = events_app.app
    app.use_url(url)
    app.backend.blocking.migrate()
    out_dir = tempfile.mkdtemp(prefix="offload-events-")
    received: list[tuple[str, float, float]] = []  # (kind, at, received)

    async def listen(ready: asyncio.Event) -> None:
        async with app.backend.subscribe() as stream:
            ready.set()
            async for events in stream:
                now = time.time()
                received.extend((e.kind.value, e.at, now) for e in events)

    with Workers("offload", [_argv(10)], 10, out_dir, _env(url, out_dir)) as workers:
        await asyncio.sleep(2.0)  # the worker starts and goes idle
        listener = None
        if subscribe:
            ready = asyncio.Event()
            listener = asyncio.create_task(listen(ready))
            await asyncio.wait_for(ready.wait(), 30)

        async def send(i: int) -> None:
            await events_app.noop.enqueue_async(i)

        sent = await send_paced(send, n, PACE_S)
        await wait_for("all ran", lambda: jobsink.count_records(out_dir) >= n, workers, 120, 0.01)
        await asyncio.sleep(0.5)  # the last acknowledgements and their events
        if listener is not None:
            listener.cancel()
    out: dict[str, Any] = latency_summary(jobsink.read_records(out_dir), sent)
    for kind in ("started", "succeeded"):
        delays = sorted((got - at) * 1000 for k, at, got in received if k == kind)
        if delays:
            out[f"event_{kind}_p50_ms"] = percentile(delays, 50)
            out[f"event_{kind}_p99_ms"] = percentile(delays, 99)
            out[f"event_{kind}_count"] = len(delays)
    await app.backend.close()
    return out


def main() -> int:
    mode, url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "drain":
        result = asyncio.run(drain(url, n))
    else:
        result = asyncio.run(latency(url, n, subscribe=mode == "events"))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
