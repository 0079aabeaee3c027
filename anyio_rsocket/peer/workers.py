"""Reusable tasks for running responder handlers.

Starting a task per inbound request is the largest fixed cost of answering one, so a connection keeps
worker tasks instead:

- the first request of a batch goes to an idle worker (one event set), or to a new worker when none
  is idle;
- further requests that arrive before that worker has started wait in a backlog, which every
  worker drains before going idle, so a burst of cheap requests costs no task switch each;
- after each batch of frames the reader calls :meth:`WorkerPool.relieve` when the backlog is not
  empty: it waits while workers drain the backlog, and as soon as one turn of the event loop passes
  without progress (the workers are blocked in handlers that await something), every request still
  waiting gets a worker of its own. A slow handler therefore never holds up other requests for
  longer than one turn of the event loop.

Workers live in the connection's task group and end with it. Handlers run in reused tasks: a context
variable a handler sets stays visible to later handlers on the same worker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup

Job = tuple[Callable[..., Awaitable[None]], tuple[Any, ...]]

#: Idle workers kept per connection; beyond this a finished worker simply ends.
MAX_IDLE_WORKERS = 64
#: Jobs a worker runs back to back from the backlog before letting other tasks run.
_DRAIN_SLICE = 128


class _Slot:
    __slots__ = ("event", "job")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.job: Job | None = None


class WorkerPool:
    """Runs jobs (coroutine functions returning None, which must not raise) on reused tasks."""

    __slots__ = ("_backlog", "_below", "_below_limit", "_idle", "_task_group", "_waking", "active")

    def __init__(self, task_group: TaskGroup) -> None:
        self._task_group = task_group
        self._idle: list[_Slot] = []
        self._backlog: deque[Job] = deque()
        self._waking = 0  # workers handed a job (woken or started) that have not run yet
        self.active = 0  # jobs submitted and not finished (running or waiting)
        self._below: anyio.Event | None = None
        self._below_limit = 0

    @property
    def backlog(self) -> int:
        """Jobs waiting for a worker."""
        return len(self._backlog)

    def submit(self, function: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run ``function(*args)`` on a worker."""
        self.active += 1
        if self._waking:
            self._backlog.append((function, args))  # a worker about to run will drain it
        else:
            self._dispatch(function, args)

    def _dispatch(self, function: Callable[..., Awaitable[None]], args: tuple[Any, ...]) -> None:
        self._waking += 1
        if self._idle:
            slot = self._idle.pop()
            slot.job = (function, args)
            slot.event.set()
        else:
            self._task_group.start_soon(self._work, function, args)

    async def wait_below(self, limit: int) -> None:
        """Wait until fewer than ``limit`` jobs are unfinished (the reader's back-pressure)."""
        while self.active >= limit:
            if self._below is None:
                self._below = anyio.Event()
            self._below_limit = limit
            await self._below.wait()

    def _finished_one(self) -> None:
        self.active -= 1
        below = self._below
        if below is not None and self.active < self._below_limit:
            self._below = None
            below.set()

    async def relieve(self) -> None:
        """Let workers drain the backlog; once a turn passes without progress, the workers are
        blocked in handlers, so every job still waiting gets a worker of its own."""
        backlog = self._backlog
        while backlog:
            waiting = len(backlog)
            await anyio.lowlevel.checkpoint()
            # Woken workers that have not run yet, or that paused between jobs, are not stalled.
            if len(backlog) >= waiting and not self._waking:
                while backlog:
                    function, args = backlog.popleft()
                    self._dispatch(function, args)

    async def _work(self, function: Callable[..., Awaitable[None]], args: tuple[Any, ...]) -> None:
        self._waking -= 1
        backlog = self._backlog
        ran = 0
        while True:
            try:
                await function(*args)
            finally:
                self._finished_one()
            if backlog:
                function, args = backlog.popleft()
                ran += 1
                if ran % _DRAIN_SLICE == 0:
                    self._waking += 1  # pausing between jobs is not a stall
                    try:
                        await anyio.lowlevel.checkpoint()
                    finally:
                        self._waking -= 1
                continue
            if len(self._idle) >= MAX_IDLE_WORKERS:
                return
            slot = _Slot()
            self._idle.append(slot)
            await slot.event.wait()
            self._waking -= 1
            assert slot.job is not None
            function, args = slot.job
            ran = 0
