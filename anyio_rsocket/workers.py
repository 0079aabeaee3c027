"""Reusable tasks for running responder handlers.

Starting a task per inbound request is the largest fixed cost of answering one, so a connection keeps
worker tasks instead:

- a request goes to an idle worker (one event set) when there is one;
- otherwise up to ``burst`` new workers are started, and further requests wait in a backlog that
  every worker drains before going idle, so a burst of cheap requests costs no task switch each;
- after each batch of frames the reader calls :meth:`WorkerPool.relieve`: it lets the workers run
  once, and if requests are still waiting then, the workers are busy in slow handlers, so each
  waiting request gets a task of its own. A slow handler therefore never holds up other requests
  for longer than one turn of the event loop.

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
#: New workers started for one batch of requests before further requests queue in the backlog.
BURST = 64
#: Jobs a worker runs back to back from the backlog before letting other tasks run.
_DRAIN_SLICE = 128


class _Slot:
    __slots__ = ("event", "job")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.job: Job | None = None


class WorkerPool:
    """Runs jobs (coroutine functions returning None, which must not raise) on reused tasks."""

    __slots__ = ("_backlog", "_idle", "_starting", "_task_group", "active")

    def __init__(self, task_group: TaskGroup) -> None:
        self._task_group = task_group
        self._idle: list[_Slot] = []
        self._backlog: deque[Job] = deque()
        self._starting = 0  # workers started but not yet running
        self.active = 0  # jobs submitted and not finished (running or waiting)

    @property
    def backlog(self) -> int:
        """Jobs waiting for a worker."""
        return len(self._backlog)

    def submit(self, function: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run ``function(*args)`` on a worker."""
        self.active += 1
        if self._idle:
            slot = self._idle.pop()
            slot.job = (function, args)
            slot.event.set()
        elif self._starting < BURST:
            self._starting += 1
            self._task_group.start_soon(self._work, function, args)
        else:
            self._backlog.append((function, args))

    async def relieve(self) -> None:
        """Give workers a turn; then start a task for every job still waiting (see module doc)."""
        await anyio.lowlevel.checkpoint()
        backlog = self._backlog
        while backlog:
            function, args = backlog.popleft()
            self._starting += 1
            self._task_group.start_soon(self._work, function, args)

    async def _work(self, function: Callable[..., Awaitable[None]], args: tuple[Any, ...]) -> None:
        self._starting -= 1
        backlog = self._backlog
        ran = 0
        while True:
            try:
                await function(*args)
            finally:
                self.active -= 1
            if backlog:
                function, args = backlog.popleft()
                ran += 1
                if ran % _DRAIN_SLICE == 0:
                    await anyio.lowlevel.checkpoint()
                continue
            if len(self._idle) >= MAX_IDLE_WORKERS:
                return
            slot = _Slot()
            self._idle.append(slot)
            await slot.event.wait()
            assert slot.job is not None
            function, args = slot.job
            ran = 0
