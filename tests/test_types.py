"""Checked by mypy --strict (see pyproject): enqueue arguments and results are typed."""

from __future__ import annotations

from typing import assert_type

from offload import Job, Offload, Task


def test_task_types_flow_through_enqueue() -> None:
    app = Offload("memory://")

    @app.task
    def add(a: int, b: int = 1) -> int:
        return a + b

    @app.task(retries=2, queue="docs")
    async def shout(text: str) -> str:
        return text.upper()

    assert isinstance(add, Task)
    job = add.enqueue(1, b=2)
    assert_type(job, Job[int])
    assert_type(shout.enqueue("hi"), Job[str])
    assert_type(add.options(delay=5, priority=3).enqueue(2), Job[int])
    jobs = add.enqueue_many([add.s(1), add.s(2, 3)])
    assert_type(jobs, list[Job[int]])
    assert len(jobs) == 2
    assert add(2, 3) == 5

    def rejected_by_mypy() -> None:  # never called: mypy must flag each line
        add.enqueue("x")  # type: ignore[arg-type]
        add.enqueue(1, c=3)  # type: ignore[call-arg]
        shout.enqueue(3)  # type: ignore[arg-type]

    assert callable(rejected_by_mypy)
