"""The asyncio Redis client: one connection pool for commands, and the blocking
connection idle workers wait on (BLPOP on wake-up lists, with the claim pipelined)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import redis.asyncio
import redis.exceptions

from offload.backends.base import BackendError, ClaimParams, WaitParams
from offload.backends.redis_config import WAIT_MAX_S, WAIT_SLACK_S, RedisConfig, async_client
from offload.backends.redis_errors import TRANSIENT, detail, translate, unreachable
from offload.backends.redis_plans import (
    IdleHint,
    Plan,
    Script,
    Scripts,
    plan_claim_with_hint,
    plan_peek,
    plan_preflight,
    plan_unclaim,
)
from offload.backends.redis_sync import RedisSync, Runner, acall
from offload.records import JobRecord

log = logging.getLogger("offload.redis")
UNCLAIM_TIMEOUT_S = 5.0
MAX_ABANDONED = 100
#: One try at handing back an abandoned claim, on a connection of its own: a store that
#: does not answer within it is taken for unreachable on that path, and tried afresh.
UNCLAIM_TRY_S = 1.0
#: How long an abandoned wait, then the store's close() at a worker's stop, keep trying to
#: hand back a claim (well within a worker's grace): its jobs never started.
HAND_BACK_S = 5.0

T = TypeVar("T")


class AsyncRunner(Runner):
    """Connects on first use in the running loop, drives plans, logs an outage once."""

    def __init__(self, config: RedisConfig, clock: Callable[[], float] | None = None) -> None:
        scripts = Scripts()
        super().__init__(config, scripts, clock)
        self._sync = RedisSync(config, scripts, clock)
        self._client: redis.asyncio.Redis | None = None
        self._waiter: redis.asyncio.Redis | None = None
        self._idle_hint: tuple[tuple[str, ...], IdleHint] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: tuple[asyncio.Lock, asyncio.AbstractEventLoop] | None = None
        self._outage = False
        #: Tokens of pipelined claims abandoned midway whose jobs are not handed back yet.
        self._abandoned: list[str] = []
        self._handing_back: tuple[asyncio.Lock, asyncio.AbstractEventLoop] | None = None
        self._hand_back_until = 0.0  # time.monotonic(): HAND_BACK_S after the last abandon

    async def _get_client(self) -> redis.asyncio.Redis:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        if self._opening is None or self._opening[1] is not loop:
            self._opening = (asyncio.Lock(), loop)
        async with self._opening[0]:  # a worker's first calls come at once: connect once
            if self._client is None or self._loop is not loop:
                client = async_client(self.config)
                try:
                    await self._drive(client, plan_preflight(self.keys))
                except TRANSIENT as exc:
                    await client.aclose()
                    raise unreachable(exc) from exc
                except BaseException:
                    await client.aclose()
                    raise
                self._client, self._loop, self._waiter = client, loop, None
        return self._client

    async def _drive(self, client: redis.asyncio.Redis, plan: Plan[T]) -> T:
        try:
            command = next(plan)
            while True:
                try:
                    reply = await acall(client, self._command(command))
                except redis.exceptions.NoScriptError:  # a restarted server forgot the scripts
                    assert isinstance(command, Script)
                    await acall(client, ("SCRIPT", "LOAD", self._scripts.source[command.name]))
                    reply = await acall(client, self._command(command))
                command = plan.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def run(self, plan: Plan[T]) -> T:
        try:
            result = await self._drive(await self._get_client(), plan)
        except Exception as exc:
            self._note_outage(exc)
            translated = translate(exc)
            if translated is exc:
                raise
            raise translated from exc
        if self._outage:
            self._outage = False
            log.warning("Redis is reachable again")
        return result

    def _note_outage(self, exc: BaseException) -> None:
        """Log an outage once, in the driver's words, however many calls fail during it."""
        cause = exc.__cause__ if isinstance(exc, BackendError) else exc
        if isinstance(cause, TRANSIENT) and not self._outage:
            self._outage = True
            log.warning("Redis is unreachable (%s); retrying", detail(cause))

    async def wait(self, params: WaitParams) -> list[JobRecord] | None:
        """Block in BLPOP on the queues' wake-up lists until a token, the next due job, or
        the timeout. Enqueues, retries and claims that leave work behind push the token.

        With ``params.claim`` the claim is pipelined behind the BLPOP on the same
        connection, so Redis runs it the moment the token arrives: waking up and taking
        the work cost one round trip, not two.
        """
        queues = list(params.queues)
        if not queues:
            await asyncio.sleep(max(params.timeout_s, 0.0))
            return None
        if self._abandoned and not await self._hand_back(UNCLAIM_TRY_S):
            log.warning("cannot hand back the jobs of %d abandoned claim(s) yet; trying again "
                        "before the next wait", len(self._abandoned))  # fmt: skip
        hint, self._idle_hint = self._idle_hint, None
        if hint is not None and hint[0] == tuple(queues):
            # The claim just before ran the queues dry and said when the next job falls due;
            # a job stored since then pushes a wake-up token, so the BLPOP below sees it.
            (now, next_at), ready = hint[1], False
        else:
            now, ready, next_at = await self.run(plan_peek(queues))
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # redis-py can finish a command whose task was cancelled meanwhile and drop the
            # cancellation: without this the worker's stop would wait for the BLPOP below.
            raise asyncio.CancelledError
        if ready:
            return None
        timeout_s = params.timeout_s
        if next_at is not None:
            timeout_s = min(timeout_s, next_at - now)
        if timeout_s < 0.001:
            return None
        waiter = await self._get_waiter()
        wake_keys = [self.keys.wake(q) for q in queues]
        # A bounded BLPOP, and a deadline a little past it: a connection that died without
        # a word (failover, host gone, dropped flow) is given up within that time.
        timeout_s = min(timeout_s, WAIT_MAX_S)
        try:
            async with asyncio.timeout(timeout_s + WAIT_SLACK_S):
                if params.claim is None:
                    await waiter.blpop(wake_keys, timeout=round(timeout_s, 3))
                    return None
                return await self._wake_and_claim(waiter, wake_keys, timeout_s, params.claim)
        except BaseException as exc:
            await self._drop_waiter()  # its state is unknown: a reply may still be on the way
            if isinstance(exc, TimeoutError | redis.exceptions.TimeoutError):
                await self._reset_connections()
            if isinstance(exc, TimeoutError):
                exc = redis.exceptions.TimeoutError(
                    f"no answer to a {timeout_s:.0f} s BLPOP within {WAIT_SLACK_S:.0f} s more"
                )
            elif not isinstance(exc, Exception):
                raise
            self._note_outage(exc)
            translated = translate(exc)
            if translated is exc:
                raise
            raise translated from exc

    async def _wake_and_claim(
        self,
        waiter: redis.asyncio.Redis,
        wake_keys: list[str],
        timeout_s: float,
        claim: ClaimParams,
    ) -> list[JobRecord] | None:
        if claim.limit <= 0 or not claim.queues:  # nothing to claim into: just wait
            await waiter.blpop(wake_keys, timeout=round(timeout_s, 3))
            return None
        # The claim runs on the server whether or not its reply is read: a token names it,
        # so that one abandoned midway (a stop, a deadline, a lost connection) is handed back.
        token = uuid.uuid4().hex
        plan = plan_claim_with_hint(claim, token)
        command = next(plan)
        pipe = waiter.pipeline(transaction=False)
        pipe.blpop(wake_keys, timeout=round(timeout_s, 3))
        pipe.execute_command(*self._command(command))
        try:
            _, reply = await pipe.execute()
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # redis-py can hold a cancellation until the BLPOP answers, then drop it:
                # the caller has gone (a paused queue, a stop), so the claim is handed back.
                raise asyncio.CancelledError
        except redis.exceptions.NoScriptError:  # a restarted server forgot the scripts
            jobs, hint = await self.run(plan_claim_with_hint(claim))
        except BaseException as exc:
            await self._abandon(token, exc)
            raise
        else:
            try:
                plan.send(reply)
                raise AssertionError("a claim is one command")
            except StopIteration as done:
                jobs, hint = done.value
        self._idle_hint = None if hint is None else (tuple(claim.queues), hint)
        return jobs

    async def _abandon(self, token: str, exc: BaseException) -> None:
        """Hand back what the claim ``token`` took, if it ran, and stop it if it has not:
        the worker never saw those jobs, so no attempt or crash is charged. A cancelled
        call (a worker stopping, a deadline) keeps trying for HAND_BACK_S, shielded from
        the cancellation; a failed one tries once. What is left is tried again before the
        next claim or wait, and by close()."""
        self._abandoned.append(token)
        del self._abandoned[:-MAX_ABANDONED]
        if not isinstance(exc, asyncio.CancelledError):
            await self._hand_back(UNCLAIM_TRY_S)
            return
        self._hand_back_until = time.monotonic() + HAND_BACK_S
        handing = asyncio.ensure_future(self._hand_back(HAND_BACK_S))
        try:
            await asyncio.shield(handing)
        except asyncio.CancelledError:
            with contextlib.suppress(BaseException):
                await handing  # bounded by its budget
            raise

    def _hand_back_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._handing_back is None or self._handing_back[1] is not loop:
            self._handing_back = (asyncio.Lock(), loop)
        return self._handing_back[0]

    async def _hand_back(self, budget_s: float) -> bool:
        """Run unclaim.lua for each abandoned claim until all are handed back or
        ``budget_s`` is spent; return whether none is left. Each try has a connection of
        its own and short deadlines: the pooled ones may sit on the silent path that lost
        the claim's reply, and would keep a stopping worker for their 30 s timeout. Trying
        again is safe: unclaim.lua is idempotent, and the claim's note outlives the budget."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget_s
        lock = self._hand_back_lock()
        try:
            async with asyncio.timeout_at(deadline):  # another caller may be at it already
                await lock.acquire()
        except TimeoutError:
            return not self._abandoned
        try:
            pause_s, failed = 0.05, False
            while self._abandoned:
                if deadline - loop.time() <= 0:
                    return False
                try:
                    await self._unclaim_all(deadline)
                except Exception as exc:
                    if not failed:
                        log.info("handing back an abandoned claim failed (%s); trying again "
                                 "on a new connection", detail(exc))  # fmt: skip
                    failed = True
                    if isinstance(exc, TimeoutError):  # silent: the pool's may be too
                        await self._reset_connections()
                    await asyncio.sleep(max(0.0, min(pause_s, deadline - loop.time())))
                    pause_s = min(2 * pause_s, 0.5)
            return True
        finally:
            lock.release()

    async def _unclaim_all(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        client = async_client(self.config)
        try:
            for token in list(self._abandoned):
                async with asyncio.timeout(min(UNCLAIM_TRY_S, deadline - loop.time())):
                    back = await self._drive(client, plan_unclaim(token))
                if token in self._abandoned:  # (close() may have given up meanwhile)
                    self._abandoned.remove(token)
                if back:
                    log.info("handed back %d job(s) of a claim whose reply was abandoned", back)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), UNCLAIM_TRY_S)

    async def _reset_connections(self) -> None:
        """A connection that went silent suggests its siblings did too (the same path to
        the server): close them all, so that the next command connects afresh rather than
        waiting out its own timeout."""
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.connection_pool.disconnect()

    async def _drop_waiter(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(waiter.aclose(), UNCLAIM_TIMEOUT_S)

    async def _get_waiter(self) -> redis.asyncio.Redis:
        await self._get_client()  # same loop, preflight done
        if self._waiter is None:
            self._waiter = async_client(self.config, blocking=True)
        return self._waiter

    async def close(self) -> None:
        """Hand back the claims still pending (a worker's stop: their jobs never started),
        until HAND_BACK_S after the last was abandoned, then close the connections."""
        budget_s = max(UNCLAIM_TRY_S, self._hand_back_until - time.monotonic())
        if self._abandoned and not await self._hand_back(budget_s):
            log.warning(
                "could not reach Redis to hand back the jobs of %d claim(s) abandoned as "
                "this worker stopped: they go back to the queue when their leases expire",
                len(self._abandoned),
            )
            self._abandoned.clear()
        for client in (self._waiter, self._client):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        self._client = self._waiter = None
        await asyncio.to_thread(self._sync.close)
