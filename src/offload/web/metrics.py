"""``GET /metrics`` in Prometheus's text format, every figure read from the store (never
one process's memory), so any server process answers alike.

Gauges: jobs by queue and state, the oldest ready job's age, paused queues, live
workers. Counters and histograms: the running totals of the per-minute counts
(``admin/totals.py``): enqueued, started, ended by outcome, wait and run time; and the
HTTP requests timed by ``offload.requests`` (the one-minute rule), per app. The
histograms carry buckets and counts but no ``_sum`` (the counts keep buckets only):
``histogram_quantile`` needs no more.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from offload.admin import RequestTotal, Total
from offload.records import DURATION_BUCKETS_MS
from offload.web.deps import ERRORS, CallerDep, Settings

router = APIRouter(tags=["health"], responses=ERRORS)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


class Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, text: str) -> None:
        self.lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]

    def sample(self, name: str, value: float, **labels: str) -> None:
        shown = repr(float(value)) if isinstance(value, float) else str(value)
        self.lines.append(f"{name}{_labels(**labels) if labels else ''} {shown}")

    def histogram(self, name: str, totals: Iterable[Total], field: str) -> None:
        for total in totals:
            self.buckets(name, getattr(total, field), queue=total.queue, task=total.task)

    def buckets(self, name: str, counts: list[int], **where: str) -> None:
        """One histogram's cumulative buckets from counts per ``DURATION_BUCKETS_MS``."""
        seen = 0
        for index, bound_ms in enumerate(DURATION_BUCKETS_MS):
            seen += counts[index] if index < len(counts) else 0
            self.sample(f"{name}_bucket", seen, **where, le=repr(bound_ms / 1000))
        seen += sum(counts[len(DURATION_BUCKETS_MS) :])
        self.sample(f"{name}_bucket", seen, **where, le="+Inf")
        self.sample(f"{name}_count", seen, **where)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(web: Settings, caller: CallerDep) -> PlainTextResponse:
    """Prometheus metrics (an operator or admin token)."""
    caller.require_staff("read metrics")
    admin = web.app.admin.aio
    queues, workers, totals = await admin.queues(), await admin.workers(), await admin.totals()
    out = Exposition()
    out.family("offload_jobs", "gauge", "Jobs stored, by queue and state.")
    for queue in queues:
        for state, count in sorted(queue.counts.items()):
            out.sample("offload_jobs", count, queue=queue.name, state=state)
    out.family("offload_queue_oldest_ready_age_seconds", "gauge",
               "How long the oldest ready job of the queue has waited.")  # fmt: skip
    for queue in queues:
        out.sample("offload_queue_oldest_ready_age_seconds",
                   float(queue.oldest_ready_age_s or 0.0), queue=queue.name)  # fmt: skip
    out.family("offload_queue_paused", "gauge", "1 while the queue is paused.")
    for queue in queues:
        out.sample("offload_queue_paused", int(queue.paused), queue=queue.name)
    out.family("offload_workers", "gauge", "Live workers.")
    out.sample("offload_workers", len(workers))
    out.family("offload_jobs_enqueued_total", "counter", "Jobs enqueued.")
    for t in totals:
        out.sample("offload_jobs_enqueued_total", t.enqueued, queue=t.queue, task=t.task)
    out.family("offload_jobs_started_total", "counter", "Attempts started.")
    for t in totals:
        out.sample("offload_jobs_started_total", t.started, queue=t.queue, task=t.task)
    out.family("offload_jobs_ended_total", "counter",
               "Attempts ended, by outcome (succeeded, retried, dead).")  # fmt: skip
    for t in totals:
        for outcome, count in (("succeeded", t.succeeded), ("retried", t.retried),
                               ("dead", t.dead)):  # fmt: skip
            out.sample("offload_jobs_ended_total", count, queue=t.queue, task=t.task,
                       outcome=outcome)  # fmt: skip
    out.family("offload_job_wait_seconds", "histogram", "From due to started.")
    out.histogram("offload_job_wait_seconds", totals, "wait_ms")
    out.family("offload_job_run_seconds", "histogram", "From started to ended.")
    out.histogram("offload_job_run_seconds", totals, "run_ms")
    _requests(out, await admin.request_totals())
    return PlainTextResponse(out.text(), media_type=CONTENT_TYPE)


def _requests(out: Exposition, totals: list[RequestTotal]) -> None:
    """The one-minute rule's figures, per app name given to ``offload.requests``."""
    out.family("offload_http_requests_total", "counter",
               "HTTP requests timed (event streams left out).")  # fmt: skip
    for t in totals:
        out.sample("offload_http_requests_total", t.requests, app=t.app)
    out.family("offload_http_requests_over_threshold_total", "counter",
               "HTTP requests slower than the app's threshold (60 s by default).")  # fmt: skip
    for t in totals:
        out.sample("offload_http_requests_over_threshold_total", t.over_threshold, app=t.app)
    out.family("offload_http_request_duration_seconds", "histogram",
               "From the call until the response's last byte was sent.")  # fmt: skip
    for t in totals:
        out.buckets("offload_http_request_duration_seconds", t.duration_ms, app=t.app)
