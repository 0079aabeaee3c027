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

Each worker runs its jobs inside a cancel scope of its own, which :data:`WORKER_SCOPE` names while a
job runs. A job that must be cancellable by somebody else (a request-response whose CANCEL may
arrive) hands that scope to whoever cancels it, instead of entering a cancel scope per job: most
jobs end without ever being cancelled, and a cancel scope costs more than a simple handler. A scope
that was cancelled is replaced before the worker's next job, so a cancellation never reaches a job
it was not meant for.

A job may also leave its interaction unfinished without keeping a task (a responder stream parked
while it waits for credit, see :mod:`.responder`): :meth:`WorkerPool.hold` keeps the interaction
counted in ``active``, and :meth:`WorkerPool.resume` or :meth:`WorkerPool.finalize` later runs its
continuation or its clean-up.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from .waiter import Waiter

Job = tuple[Callable[..., Awaitable[None]], tuple[Any, ...]]

#: Idle workers kept per connection; beyond this a finished worker simply ends.
MAX_IDLE_WORKERS = 64
#: Jobs a worker runs back to back from the backlog before letting other tasks run.
_DRAIN_SLICE = 128


#: What a worker's run of jobs returns when its cancel scope was used up by a cancellation.
_SPENT = object()


class WorkerScope:
    """A worker's cancel scope, as a job hands it to whoever may cancel that job."""

    __slots__ = ("scope", "used")

    def __init__(self, scope: anyio.CancelScope) -> None:
        self.scope = scope
        self.used = False  # cancelled: the worker takes a fresh scope before its next job

    def cancel(self) -> None:
        self.used = True
        self.scope.cancel()


#: The cancel scope around the job running in this task, when the task is a worker.
WORKER_SCOPE: ContextVar[WorkerScope] = ContextVar("WORKER_SCOPE")


class _Slot:
    __slots__ = ("event", "job")

    def __init__(self, event: Waiter) -> None:
        self.event = event
        self.job: Job | None = None


class WorkerPool:
    """Runs jobs (coroutine functions returning None, which must not raise) on reused tasks."""

    __slots__ = (
        "_backlog",
        "_below",
        "_below_limit",
        "_cleaning",
        "_cleanups",
        "_idle",
        "_new_waiter",
        "_task_group",
        "_waking",
        "active",
    )

    def __init__(self, task_group: TaskGroup) -> None:
        self._task_group = task_group
        self._idle: list[_Slot] = []
        self._backlog: deque[Job] = deque()
        self._waking = 0  # workers handed a job (woken or started) that have not run yet
        self.active = 0  # jobs submitted and not finished (running or waiting)
        self._below: anyio.Event | None = None
        self._below_limit = 0
        self._cleanups: deque[Job] = deque()  # clean-ups of held work, for the cleaner task
        self._cleaning = False  # the cleaner task is running
        self._new_waiter: Callable[[], Waiter] = anyio.Event

    def use_waiters(self, new_waiter: Callable[[], Waiter]) -> None:
        """Wake idle workers with waiters from ``new_waiter`` (cheaper than ``anyio.Event``)."""
        self._new_waiter = new_waiter

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

    def hold(self) -> None:
        """The running job leaves its interaction unfinished, to be continued by a later
        :meth:`resume` or cleaned up by :meth:`finalize`: it stays counted in ``active`` until then."""
        self.active += 1

    def resume(self, function: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run ``function(*args)``, the continuation of held work, on a worker (it is already counted
        in ``active`` by :meth:`hold`, and leaves it when it finishes)."""
        if self._waking:
            self._backlog.append((function, args))
        else:
            self._dispatch(function, args)

    def finalize(self, function: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run ``function(*args)``, the clean-up of held work, even if the task group is cancelled.

        Clean-ups run shielded from cancellation (each must bound its own time) on a task started
        now, never queued behind other jobs: the connection may be ending, and its task group about
        to be cancelled. One that blocks gets a task of its own after a turn, so it never holds up
        the others. The held work leaves ``active`` when its clean-up has finished.
        """
        self._cleanups.append((function, args))
        if not self._cleaning:
            self._cleaning = True
            self._task_group.start_soon(self._clean)

    async def _clean(self) -> None:
        # Shielded from the first statement: a task started in a cancelled task group still runs up
        # to its first checkpoint, on both backends.
        cleanups = self._cleanups
        try:
            with anyio.CancelScope(shield=True):
                while cleanups:  # tested again with no checkpoint before _cleaning is reset
                    async with anyio.create_task_group() as task_group:
                        pool = WorkerPool(task_group)
                        while cleanups:
                            while cleanups:
                                function, args = cleanups.popleft()
                                pool.submit(self._finish_held, function, args)
                            await pool.relieve()
                            await pool.wait_below(1)
                        task_group.cancel_scope.cancel()  # every clean-up is over: stop idle workers
        finally:
            self._cleaning = False

    async def _finish_held(self, function: Callable[..., Awaitable[None]], args: tuple[Any, ...]) -> None:
        try:
            await function(*args)
        finally:
            self._finished_one()

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
        job: Job | None = (function, args)
        while job is not None:
            outcome: object = _SPENT  # also when a job's cancellation ends the scope
            with anyio.CancelScope() as scope:
                worker_scope = WorkerScope(scope)
                WORKER_SCOPE.set(worker_scope)
                outcome = await self._run_jobs(job, worker_scope)
            job = await self._next_job(0) if outcome is _SPENT else None

    async def _run_jobs(self, job: Job, scope: WorkerScope) -> object:
        """Run ``job`` and the jobs after it: until the worker retires (None), or until ``scope``
        has been cancelled (:data:`_SPENT`: the job that was running ended, the caller gets the
        next one with a fresh scope)."""
        backlog = self._backlog
        ran = 0
        while True:
            function, args = job
            try:
                await function(*args)
            finally:
                self._finished_one()
            if scope.used:  # (a flag: Trio's cancel_called reads the clock)
                return _SPENT
            ran += 1
            if backlog and ran % _DRAIN_SLICE:  # the usual next job of a burst, without a call
                job = backlog.popleft()
                continue
            next_job = await self._next_job(ran)
            if next_job is None:
                return None
            job = next_job

    async def _next_job(self, ran: int) -> Job | None:
        """The backlog's next job, else the job an idle wait brings; None: the worker retires."""
        backlog = self._backlog
        if backlog:
            if ran % _DRAIN_SLICE == 0 and ran:
                self._waking += 1  # pausing between jobs is not a stall
                try:
                    await anyio.lowlevel.checkpoint()
                finally:
                    self._waking -= 1
            if backlog:
                return backlog.popleft()
        if len(self._idle) >= MAX_IDLE_WORKERS:
            return None
        slot = _Slot(self._new_waiter())
        self._idle.append(slot)
        await slot.event.wait()
        self._waking -= 1
        assert slot.job is not None
        return slot.job
