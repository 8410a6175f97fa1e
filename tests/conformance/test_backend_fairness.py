"""Backend conformance: fair order across owners (``NewJob.fair``).

A fair job due now is given its owner's *turn* as run_at at enqueue time:
``max(head, last + FAIR_STEP_S)``, where head is the run_at of the job a claim
would take first at its priority. Claims are unchanged, so one owner's flood
cannot make another owner's job wait behind all of it: the newcomer's turn is
the current head, right behind the job a worker takes next.

Measured here (the same on memory, SQLite, PostgreSQL and Redis): after a flood
of 2,000 jobs from one owner, another owner's single job is claimed second
(position 1) with fairness on, and last (position 2,000) with it off.
"""

from __future__ import annotations

from conformance_helpers import FakeClock, claim, enqueue, enqueue_one, get, new_job

from offload.backends.base import Backend, FinishParams, Outcome, OutcomeKind, PruneParams
from offload.records import FAIR_STEP_S, JobRecord
from offload.states import JobState

FLOOD = 2000


async def finish_all(backend: Backend, jobs: list[JobRecord]) -> None:
    outcomes = [Outcome(id=j.id, delivery=j.delivery, kind=OutcomeKind.SUCCEEDED) for j in jobs]
    await backend.finish(FinishParams(outcomes=outcomes))


async def claims_before(backend: Backend, job_id: str, *, slots: int = 10) -> int:
    """Claim like a worker with ``slots`` free slots, finishing each batch, until ``job_id``
    comes up; return how many jobs were claimed before it (its position)."""
    position = 0
    while True:
        batch = await claim(backend, limit=slots)
        assert batch, f"job {job_id} never came up"
        ids = [j.id for j in batch]
        if job_id in ids:
            return position + ids.index(job_id)
        position += len(batch)
        await finish_all(backend, batch)


async def claim_owners(backend: Backend, clock: FakeClock, count: int) -> list[str | None]:
    owners = []
    for _ in range(count):
        clock.advance(0.01)
        (job,) = await claim(backend, limit=1)
        owners.append(job.owner)
        await finish_all(backend, [job])
    return owners


# -- the headline: a small tenant behind a flood ---------------------------------


async def test_a_small_tenant_is_not_stuck_behind_a_flood(backend: Backend, clock) -> None:
    # measured position: 1 on every backend (the small job ties the head, which is older)
    await enqueue(backend, *(new_job(owner="big", fair=True) for _ in range(FLOOD)))
    small = await enqueue_one(backend, owner="small", fair=True)
    clock.advance(1.0)  # the flood's later turns are microseconds ahead: all due now
    position = await claims_before(backend, small.id)
    assert position < 20, f"the small tenant's job waited behind {position} jobs"


async def test_without_fairness_the_small_tenant_waits_for_the_whole_flood(
    backend: Backend, clock
) -> None:
    # measured position: 2000 on every backend
    await enqueue(backend, *(new_job(owner="big") for _ in range(FLOOD)))
    small = await enqueue_one(backend, owner="small")
    clock.advance(1.0)
    assert await claims_before(backend, small.id) == FLOOD


async def test_a_small_tenant_arriving_mid_flood_goes_next(backend: Backend, clock) -> None:
    await enqueue(backend, *(new_job(owner="big", fair=True) for _ in range(500)))
    clock.advance(1.0)
    for _ in range(10):  # workers are busy with the flood
        await finish_all(backend, await claim(backend, limit=10))
    small = await enqueue_one(backend, owner="small", fair=True)
    assert small.state is JobState.QUEUED
    assert await claims_before(backend, small.id) < 10


# -- interleaving ---------------------------------------------------------------


async def test_two_floods_interleave_one_to_one(backend: Backend, clock) -> None:
    await enqueue(backend, *(new_job(owner="a", fair=True) for _ in range(50)))
    await enqueue(backend, *(new_job(owner="b", fair=True) for _ in range(50)))
    assert await claim_owners(backend, clock, 100) == ["a", "b"] * 50


async def test_three_owners_take_turns(backend: Backend, clock) -> None:
    # owner None is one tenant of its own ("")
    for owner in ("a", "b", None):
        await enqueue(backend, *(new_job(owner=owner, fair=True) for _ in range(20)))
    assert await claim_owners(backend, clock, 60) == ["a", "b", None] * 20


async def test_a_late_owner_joins_the_rotation_where_it_arrives(backend: Backend, clock) -> None:
    await enqueue(backend, *(new_job(owner="a", fair=True) for _ in range(30)))
    clock.advance(1.0)
    assert await claim_owners(backend, clock, 10) == ["a"] * 10
    await enqueue(backend, *(new_job(owner="b", fair=True) for _ in range(10)))
    assert await claim_owners(backend, clock, 20) == ["a", "b"] * 10


async def test_one_batch_of_several_owners_interleaves(backend: Backend, clock) -> None:
    jobs = [new_job(owner="a", fair=True) for _ in range(10)]
    jobs += [new_job(owner="b", fair=True) for _ in range(10)]
    await enqueue(backend, *jobs)
    assert await claim_owners(backend, clock, 20) == ["a", "b"] * 10


# -- order within an owner, priorities, delays ----------------------------------


async def test_an_owners_jobs_keep_their_order(backend: Backend, clock) -> None:
    enqueued: list[JobRecord] = []
    for round_ in range(5):  # several calls, other owners in between, the clock moving
        enqueued += await enqueue(backend, *(new_job(owner="a", fair=True) for _ in range(4)))
        await enqueue_one(backend, owner=f"other{round_}", fair=True)
        clock.advance(0.5)
    turns = [j.run_at for j in enqueued]
    assert turns == sorted(turns) and len(set(turns)) == len(turns), "turns must increase"
    stored = {j.id: j for j in await get(backend, *(j.id for j in enqueued))}
    assert [stored[j.id].run_at for j in enqueued] == turns  # what enqueue said was stored
    claimed = []
    while len(claimed) < 25:
        clock.advance(0.01)
        claimed += await claim(backend, limit=3)
    assert [j.id for j in claimed if j.owner == "a"] == [j.id for j in enqueued]


async def test_priority_still_wins_over_turns(backend: Backend, clock) -> None:
    await enqueue(backend, *(new_job(owner="a", fair=True) for _ in range(20)))
    urgent = await enqueue_one(backend, owner="b", priority=5)
    urgent_fair = await enqueue_one(backend, owner="a", priority=5, fair=True)
    clock.advance(1.0)
    first = await claim(backend, limit=2)
    assert [j.id for j in first] == [urgent.id, urgent_fair.id]
    assert all(j.priority == 0 for j in await claim(backend, limit=100))


async def test_a_delayed_fair_job_keeps_its_run_at(backend: Backend, clock) -> None:
    now = clock.now
    first = await enqueue_one(backend, owner="a", fair=True)
    delayed = await enqueue_one(backend, owner="a", fair=True, delay_s=30)
    scheduled = await enqueue_one(backend, owner="a", fair=True, run_at=now + 60)
    assert (delayed.state, delayed.run_at) == (JobState.SCHEDULED, now + 30)
    assert (scheduled.state, scheduled.run_at) == (JobState.SCHEDULED, now + 60)
    # neither took a turn: the owner's next job comes right after its first one
    after = await enqueue_one(backend, owner="a", fair=True)
    assert first.run_at == now
    assert now < after.run_at <= now + 2 * FAIR_STEP_S
    clock.advance(1.0)
    assert [j.id for j in await claim(backend, limit=10)] == [first.id, after.id]


async def test_a_job_whose_key_is_held_takes_no_turn(backend: Backend, clock) -> None:
    first = await enqueue_one(backend, owner="a", fair=True, key="k")
    (held,) = await enqueue(backend, new_job(owner="a", fair=True, key="k"))
    assert held.id == first.id
    second = await enqueue_one(backend, owner="a", fair=True)
    other = await enqueue_one(backend, owner="b", fair=True)
    assert first.run_at == other.run_at == clock.now
    assert clock.now < second.run_at <= clock.now + 2 * FAIR_STEP_S


# -- prune ----------------------------------------------------------------------


async def test_prune_forgets_turns_older_than_its_horizon(
    backend: Backend, backend_name: str, clock
) -> None:
    first = await enqueue_one(backend, owner="a", fair=True)
    second = await enqueue_one(backend, owner="a", fair=True)
    assert first.run_at < second.run_at
    clock.advance(100)
    await backend.prune(PruneParams(finished_before=clock.now))
    third = await enqueue_one(backend, owner="a", fair=True)
    # The owner starts afresh: its turn is the head, its own first job still waiting.
    assert third.run_at == first.run_at
