"""A load-balancing client: one requester over many servers (``connect_pool``)."""

from __future__ import annotations

import random
import ssl
import sys
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Generic, TypeVar

import anyio
from anyio.abc import TaskGroup

from ..peer._groups import unwrap_exception_groups
from ..peer.connection import CLOSE_FLUSH_TIMEOUT, RSocket
from ..peer.options import TargetOptions
from ..peer.requester import DEFAULT_INITIAL_N, RequestChannel, RequestStream
from ..protocol.policy import Backoff
from ..wire.errors import ConnectionClosedError, RSocketError
from ..wire.payload import Payload
from .strategies import LeastLoaded, RoundRobin, Strategy
from .target import Target, TargetState, TargetStats

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Unpack

#: Default ``reconnect`` of a pool: a lost target is dialled again after 50 ms, then up to 5 s apart.
DEFAULT_POOL_RECONNECT = Backoff(initial=0.05, maximum=5.0)
#: Default ``drain_timeout``: how long a removed target may finish its interactions before it closes.
DEFAULT_TARGET_DRAIN_TIMEOUT = 30.0
#: While some target is connected but not available (detached, out of lease), waiting callers look
#: again this often, since a lease arriving wakes nobody.
_RECHECK_INTERVAL = 0.05

Targets = Iterable[str] | AsyncIterable[Iterable[str]]
S = TypeVar("S", bound=RequestStream)


class Pool:
    """Requests spread over several servers; obtain one from :func:`connect_pool`.

    Each interaction goes to one available target chosen by the strategy; see
    :func:`connect_pool` for what happens when targets come and go.
    """

    def __init__(
        self,
        task_group: TaskGroup,
        strategy: Strategy,
        reconnect: Backoff | None,
        drain_timeout: float,
        dial: Callable[[str], AbstractAsyncContextManager[RSocket]],
    ) -> None:
        self._task_group = task_group
        self._strategy = strategy
        self._reconnect = reconnect
        self._drain_timeout = drain_timeout
        self._dial = dial
        self._targets: dict[str, Target] = {}  # the current list, in order
        self._leaving: set[Target] = set()  # removed, still draining
        self._change = anyio.Event()
        self._closed = False

    # --- what the user sees ----------------------------------------------------------------------

    @property
    def targets(self) -> list[TargetStats]:
        """A snapshot of every target, current ones in list order, then those still draining."""
        return [target.stats() for target in [*self._targets.values(), *self._leaving]]

    @property
    def strategy(self) -> Strategy:
        return self._strategy

    async def wait_available(self) -> None:
        """Return once some target takes new interactions (at once if one does)."""
        await self._choose_any()

    async def request_response(self, payload: Payload) -> Payload:
        """Send a request to one target and wait for its answer (see :meth:`RSocket.request_response`).

        Waits while no target is available. Cancelling the call cancels the request on its target.
        """
        target, rsocket = await self._start()
        start = anyio.current_time()
        try:
            reply = await rsocket.request_response(payload)
        finally:
            self._finished(target)
        target.observe(anyio.current_time() - start)
        return reply

    async def fire_and_forget(self, payload: Payload) -> None:
        """Send a fire-and-forget request to one target."""
        target, rsocket = await self._start()
        try:
            await rsocket.fire_and_forget(payload)
        finally:
            self._finished(target)

    async def metadata_push(self, metadata: bytes) -> None:
        """Push connection metadata to every available target (none: nothing is sent)."""
        for target in self._available():
            assert target.rsocket is not None
            await target.rsocket.metadata_push(metadata)

    def request_stream(
        self, payload: Payload, *, initial_n: int = DEFAULT_INITIAL_N, auto_request: bool = True
    ) -> PooledInteraction[RequestStream]:
        """A request-stream on one target, chosen when the block is entered (waiting for one)."""
        return PooledInteraction(
            self, lambda rs: rs.request_stream(payload, initial_n=initial_n, auto_request=auto_request)
        )

    def request_channel(
        self,
        payload: Payload,
        *,
        initial_n: int = DEFAULT_INITIAL_N,
        auto_request: bool = True,
        complete: bool = False,
        outbound: AsyncIterable[Payload] | None = None,
    ) -> PooledInteraction[RequestChannel]:
        """A request-channel on one target, chosen when the block is entered (waiting for one)."""
        return PooledInteraction(
            self,
            lambda rs: rs.request_channel(
                payload, initial_n=initial_n, auto_request=auto_request, complete=complete, outbound=outbound
            ),
        )

    # --- choosing ------------------------------------------------------------------------------

    def _available(self) -> list[Target]:
        return [target for target in self._targets.values() if target.available]

    async def _choose_any(self) -> Target:
        while True:
            if self._closed:
                raise ConnectionClosedError("the pool is closed")
            candidates = self._available()
            if candidates:
                return self._strategy.choose(candidates)
            change = self._change
            if any(target.state is TargetState.CONNECTED for target in self._targets.values()):
                with anyio.move_on_after(_RECHECK_INTERVAL):
                    await change.wait()
            else:
                await change.wait()

    async def _start(self) -> tuple[Target, RSocket]:
        target = await self._choose_any()
        rsocket = target.rsocket
        assert rsocket is not None
        target.outstanding += 1
        target.requests += 1
        return target, rsocket

    def _finished(self, target: Target) -> None:
        target.outstanding -= 1
        if target.removed:
            target.wake()  # a draining target may be done

    def _notify(self) -> None:
        change, self._change = self._change, anyio.Event()
        change.set()

    # --- targets -------------------------------------------------------------------------------

    def set_targets(self, urls: Iterable[str]) -> list[Target]:
        """Replace the target list; return the targets dialled for the first time."""
        wanted = list(dict.fromkeys(urls))  # duplicates share one target, order kept
        for url in [url for url in self._targets if url not in wanted]:
            target = self._targets.pop(url)
            target.removed = True
            self._leaving.add(target)
            target.wake()
        new: list[Target] = []
        for url in wanted:
            known = self._targets.get(url)
            if known is None:
                fresh = self._targets[url] = Target(url)
                new.append(fresh)
                self._task_group.start_soon(self._run_target, fresh)
            elif known.state is TargetState.DOWN and not known.running:
                self._task_group.start_soon(self._run_target, known)  # named again: dial again
        self._targets = {url: self._targets[url] for url in wanted}
        self._notify()
        return new

    async def _run_target(self, target: Target) -> None:
        """Keep one target connected: dial, serve, and after a loss dial again with backoff."""
        target.running = True
        delays = None
        try:
            with target.scope:
                while not target.removed:
                    target.state = TargetState.CONNECTING
                    lost = await self._connect_once(target)
                    if lost is None:
                        delays = None  # it was connected: the backoff starts over
                    if target.removed:
                        break
                    target.state = TargetState.DOWN
                    self._notify()
                    if self._reconnect is None:
                        break
                    if delays is None:
                        delays = self._reconnect.delays(random.random)
                    delay = next(delays, None)
                    if delay is None:
                        break  # attempts exhausted: down until a target list names it again
                    with anyio.move_on_after(delay):
                        await target.changed.wait()  # removal ends the wait
        finally:
            target.running = False
            target.first_dial_done.set()
            if target.removed:
                target.state = TargetState.CLOSED
                self._leaving.discard(target)
            self._notify()

    async def _connect_once(self, target: Target) -> BaseException | None:
        """Dial and serve until the connection ends; the dial's error if it never connected."""
        try:
            async with self._dial(target.url) as rsocket:
                target.rsocket = rsocket
                target.state = TargetState.CONNECTED
                target.connects += 1
                target.first_dial_done.set()
                self._notify()
                try:
                    await self._serve(target, rsocket)
                finally:
                    target.rsocket = None
            if not target.removed:
                target.failures += 1
                target.last_error = rsocket.close_reason
            return None
        except (RSocketError, OSError) as exc:
            target.failures += 1
            target.last_error = exc
            return exc
        finally:
            target.first_dial_done.set()

    async def _serve(self, target: Target, rsocket: RSocket) -> None:
        """While connected: tell waiters of state changes; once removed, drain, then return."""
        async with anyio.create_task_group() as watchers:

            async def watch_state() -> None:
                while True:
                    await rsocket.state_changed()
                    self._notify()

            async def wait_closed() -> None:
                await rsocket.wait_closed()
                watchers.cancel_scope.cancel()

            watchers.start_soon(watch_state)
            watchers.start_soon(wait_closed)
            while not target.removed:
                await target.changed.wait()
            target.state = TargetState.DRAINING
            with anyio.move_on_after(self._drain_timeout):
                while target.outstanding:
                    await target.changed.wait()
            watchers.cancel_scope.cancel()

    async def _close_connections(self) -> None:
        """Close every connection in order (queued frames, a last fire-and-forget, are flushed)
        before the pool's tasks are cancelled; shielded, and bounded by the flush timeout."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_FLUSH_TIMEOUT):
            async with anyio.create_task_group() as closers:
                for target in [*self._targets.values(), *self._leaving]:
                    if target.rsocket is not None:
                        closers.start_soon(target.rsocket.aclose)

    async def _follow(self, source: AsyncIterable[Iterable[str]], first: anyio.Event) -> None:
        """Apply each target list the source yields; when it ends the last list stays."""
        try:
            async for urls in source:
                new = self.set_targets(urls)
                if not first.is_set():
                    for target in new:
                        await target.first_dial_done.wait()
                    first.set()
        finally:
            first.set()


class PooledInteraction(Generic[S]):
    """A stream or channel of a pool: the target is chosen (waiting for one) when entered, and the
    interaction counts as outstanding on it until the block is left."""

    def __init__(self, pool: Pool, open_interaction: Callable[[RSocket], S]) -> None:
        self._pool = pool
        self._open = open_interaction
        self._inner: S | None = None
        self._target: Target | None = None

    async def __aenter__(self) -> S:
        target, rsocket = await self._pool._start()
        try:
            inner = self._open(rsocket)
            entered = await inner.__aenter__()
        except BaseException:
            self._pool._finished(target)
            raise
        self._inner, self._target = inner, target
        return entered  # type: ignore[return-value]  # RequestStream.__aenter__ returns itself

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._inner is not None and self._target is not None
        try:
            await self._inner.__aexit__(exc_type, exc, tb)
        finally:
            self._pool._finished(self._target)
        return None


@asynccontextmanager
async def connect_pool(
    targets: Targets,
    *,
    strategy: Strategy | None = None,
    reconnect: Backoff | None = DEFAULT_POOL_RECONNECT,
    drain_timeout: float = DEFAULT_TARGET_DRAIN_TIMEOUT,
    ssl_context: ssl.SSLContext | None = None,
    **connect_options: Unpack[TargetOptions],
) -> AsyncIterator[Pool]:
    """Connect to several RSocket servers and spread interactions over them, for one ``async with``.

    ``targets`` is a list of URLs (``tcp://``, ``tcps://``, ``ws://``, ``wss://``, as for
    :func:`~anyio_rsocket.connect`), or an async iterable yielding such lists (service
    discovery): each list replaces the target set. New targets are dialled; a target kept from one
    list to the next is left alone; a removed one gets no new interactions, finishes those in flight
    for up to ``drain_timeout`` seconds, then closes. Duplicate URLs share one connection. When the
    iterable ends the last list stays; if it raises, the error leaves this block.

    Each interaction goes to one available target picked by ``strategy`` (default
    :class:`RoundRobin`; :class:`LeastLoaded` weighs latency and outstanding requests). Streams and
    channels choose when their block is entered and count as outstanding until it is left. While
    no target is available, calls wait (bound them with ``anyio.fail_after``). A lost or
    unreachable target, or one that refuses SETUP, is down: it gets no new interactions and is
    dialled again with the ``reconnect`` backoff (which starts over after each successful
    connection); with ``reconnect=None`` it stays down until a target list names it again.
    Interactions in flight on a lost target fail with its ``ConnectionClosedError`` (with
    ``resume=`` in the options they survive instead); the pool never retries a call elsewhere.
    ``metadata_push`` goes to every available target.

    ``connect_options`` (and ``ssl_context``) are passed to every connection. Entering returns once
    every initial target's first dial has finished, successful or not; it never raises because a
    target is unreachable. Leaving closes every connection and task of the pool.
    """
    if drain_timeout < 0:
        raise ValueError("drain_timeout must not be negative")
    chosen = strategy if strategy is not None else RoundRobin()

    from ..peer.url import connect  # here: it loads the WebSocket stack (httpx, wsproto)

    def dial(url: str) -> AbstractAsyncContextManager[RSocket]:
        return connect(url, ssl_context=ssl_context, **connect_options)

    async with unwrap_exception_groups(), anyio.create_task_group() as task_group:
        pool = Pool(task_group, chosen, reconnect, drain_timeout, dial)
        try:
            if isinstance(targets, AsyncIterable):
                first = anyio.Event()
                task_group.start_soon(pool._follow, targets, first)
                await first.wait()
            else:
                for target in pool.set_targets(targets):
                    await target.first_dial_done.wait()
            yield pool
        finally:
            pool._closed = True
            pool._notify()
            await pool._close_connections()
            task_group.cancel_scope.cancel()


__all__ = [
    "DEFAULT_POOL_RECONNECT",
    "DEFAULT_TARGET_DRAIN_TIMEOUT",
    "LeastLoaded",
    "Pool",
    "PooledInteraction",
    "RoundRobin",
    "Strategy",
    "Targets",
    "connect_pool",
]
