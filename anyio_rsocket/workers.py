"""Reusable tasks for running responder handlers.

Starting a task per inbound request is the largest fixed cost of answering one. A connection keeps a
few idle worker tasks instead: a request is handed to an idle worker (one event set) and a new task
is started only when every worker is busy. Workers live in the connection's task group, so they end
with it like any other task.

Handlers therefore run in reused tasks: a context variable a handler sets stays visible to later
handlers that run on the same worker. Set context variables inside a ``contextvars`` copy if that
matters.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup

Job = tuple[Callable[..., Awaitable[None]], tuple[Any, ...]]

#: Idle workers kept per connection; beyond this a finished worker simply ends.
MAX_IDLE_WORKERS = 64


class _Slot:
    __slots__ = ("event", "job")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.job: Job | None = None


class WorkerPool:
    """Runs jobs (coroutine functions returning None, which must not raise) on reused tasks."""

    __slots__ = ("_idle", "_task_group", "active")

    def __init__(self, task_group: TaskGroup) -> None:
        self._task_group = task_group
        self._idle: list[_Slot] = []
        self.active = 0

    def submit(self, function: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run ``function(*args)`` on an idle worker, or on a new one."""
        self.active += 1
        if self._idle:
            slot = self._idle.pop()
            slot.job = (function, args)
            slot.event.set()
        else:
            self._task_group.start_soon(self._work, function, args)

    async def _work(self, function: Callable[..., Awaitable[None]], args: tuple[Any, ...]) -> None:
        while True:
            try:
                await function(*args)
            finally:
                self.active -= 1
            if len(self._idle) >= MAX_IDLE_WORKERS:
                return
            slot = _Slot()
            self._idle.append(slot)
            await slot.event.wait()
            assert slot.job is not None
            function, args = slot.job
