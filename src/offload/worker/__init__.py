"""The worker: runs jobs from a backend."""

from offload.worker.runner import Worker, WorkerStats, run_worker

__all__ = ["Worker", "WorkerStats", "run_worker"]
