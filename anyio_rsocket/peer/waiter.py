"""One-shot wake-ups for one waiting task, cheaper than ``anyio.Event`` on the hot paths.

A request-response caller waiting for its answer, or an idle worker waiting for a job, is one task
waiting for one ``set()``. ``anyio.Event`` serves any number of waiters and looks up the running
loop (a ``getpid()`` system call on asyncio) on every wait; per round trip that was a measurable
share of the time. :func:`waiter_factory` picks, once per connection, the cheapest equivalent for
the running backend:

* asyncio (and uvloop): a bare future of the running loop, which is what ``asyncio.Event.wait``
  awaits anyway;
* Trio: the task parks itself with ``wait_task_rescheduled``, which is what ``trio.Event`` does
  through a parking lot;
* anything else: ``anyio.Event``.

Cancellation is the backend's own in every case: a cancelled :meth:`Waiter.wait` raises the
backend's cancellation exception and leaves the waiter unset (a later ``set()`` does nothing
harmful). ``wait()`` on a waiter already set returns after a checkpoint, as ``anyio.Event`` does.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol

import anyio
import anyio.lowlevel


class Waiter(Protocol):
    """What the three kinds have in common."""

    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    async def wait(self) -> None: ...


class _FutureWaiter:
    __slots__ = ("_flag", "_future", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._flag = False
        self._future: asyncio.Future[None] | None = None

    def set(self) -> None:
        if self._flag:
            return
        self._flag = True
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    def is_set(self) -> bool:
        return self._flag

    async def wait(self) -> None:
        if self._flag:
            await anyio.lowlevel.checkpoint()
            return
        future = self._future = self._loop.create_future()
        await future


class _TrioWaiter:
    __slots__ = ("_done", "_task")

    def __init__(self) -> None:
        self._done = False
        self._task: Any = None

    def set(self) -> None:
        if self._done:
            return
        self._done = True
        task = self._task
        if task is not None:
            self._task = None
            _trio_lowlevel().reschedule(task)

    def is_set(self) -> bool:
        return self._done

    async def wait(self) -> None:
        if self._done:
            await anyio.lowlevel.checkpoint()
            return
        lowlevel = _trio_lowlevel()
        self._task = lowlevel.current_task()

        def abort(raise_cancel: object) -> Any:
            self._task = None
            return lowlevel.Abort.SUCCEEDED

        await lowlevel.wait_task_rescheduled(abort)


def _trio_lowlevel() -> Any:
    return sys.modules["trio"].lowlevel


def running_backend() -> asyncio.AbstractEventLoop | ModuleType | None:
    """What runs the calling code: the asyncio loop, the ``trio`` module, or None (neither)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_root_task()
        except RuntimeError:
            return None
        return trio
    return None


def waiter_factory() -> Callable[[], Waiter]:
    """A maker of waiters for the backend running now (call it from async code)."""
    backend = running_backend()
    if isinstance(backend, asyncio.AbstractEventLoop):
        loop = backend

        def future_waiter() -> Waiter:
            return _FutureWaiter(loop)

        return future_waiter
    if backend is not None:
        return _TrioWaiter
    return anyio.Event
