"""The worker pool that runs responder handlers: cheap bursts share tasks, slow handlers never block."""

from __future__ import annotations

import anyio
import pytest

from anyio_rsocket.workers import WorkerPool

pytestmark = pytest.mark.anyio


async def test_a_burst_of_cheap_jobs_shares_a_few_tasks() -> None:
    tasks: set[int] = set()
    done = 0

    async def cheap() -> None:
        nonlocal done
        tasks.add(anyio.get_current_task().id)
        done += 1

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            pool = WorkerPool(tg)
            for _ in range(1000):
                pool.submit(cheap)
            await pool.relieve()
            await anyio.wait_all_tasks_blocked()
            assert done == 1000 and pool.active == 0
            assert len(tasks) <= 2  # one worker drained the whole burst
            tg.cancel_scope.cancel()


async def test_blocked_jobs_each_get_a_worker() -> None:
    """Jobs that wait on each other: all must run at once, or none could finish."""
    count = 200
    started = 0
    all_started = anyio.Event()

    async def gated() -> None:
        nonlocal started
        started += 1
        if started == count:
            all_started.set()
        await all_started.wait()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            pool = WorkerPool(tg)
            for _ in range(count):
                pool.submit(gated)
            await pool.relieve()
            await all_started.wait()
            tg.cancel_scope.cancel()
    assert started == count


async def test_idle_workers_are_reused_across_batches() -> None:
    tasks: set[int] = set()

    async def job() -> None:
        tasks.add(anyio.get_current_task().id)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            pool = WorkerPool(tg)
            for _ in range(50):
                pool.submit(job)
                await anyio.wait_all_tasks_blocked()
            assert len(tasks) == 1
            tg.cancel_scope.cancel()
