"""The one-shot waiters behind request-response calls and idle workers (``peer/waiter.py``)."""

from __future__ import annotations

import anyio
import pytest

from anyio_rsocket.peer.waiter import waiter_factory

pytestmark = pytest.mark.anyio

TIMEOUT = 5


async def test_the_backend_gets_its_own_kind(anyio_backend_name: str) -> None:
    waiter = waiter_factory()()
    assert type(waiter).__name__ == {"asyncio": "_FutureWaiter", "trio": "_TrioWaiter"}[anyio_backend_name]


async def test_set_wakes_the_waiting_task() -> None:
    waiter = waiter_factory()()
    woken: list[bool] = []

    async def wait() -> None:
        await waiter.wait()
        woken.append(True)

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            assert not woken and not waiter.is_set()
            waiter.set()
            waiter.set()  # a second set() changes nothing
        assert woken == [True] and waiter.is_set()


async def test_waiting_on_a_set_waiter_returns_at_once_after_a_checkpoint() -> None:
    waiter = waiter_factory()()
    waiter.set()
    with anyio.fail_after(TIMEOUT):
        await waiter.wait()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await waiter.wait()  # a checkpoint: the pending cancellation is delivered
        pytest.fail("wait() on a set waiter was not a checkpoint")  # pragma: no cover


async def test_a_cancelled_wait_leaves_the_waiter_usable() -> None:
    waiter = waiter_factory()()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await waiter.wait()
    assert scope.cancelled_caught and not waiter.is_set()
    waiter.set()  # after the cancelled wait: remembered for the next one
    with anyio.fail_after(TIMEOUT):
        await waiter.wait()

    other = waiter_factory()()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await other.wait()
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(other.wait)  # waits again after its cancelled wait
            await anyio.wait_all_tasks_blocked()
            other.set()


async def test_cancelling_the_waiting_task_raises_the_backends_cancellation() -> None:
    waiter = waiter_factory()()
    cancelled: list[bool] = []

    async def wait() -> None:
        try:
            await waiter.wait()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    assert cancelled == [True]
    waiter.set()  # harmless after the waiter's task is gone
