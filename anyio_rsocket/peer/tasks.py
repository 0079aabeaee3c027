"""The tasks that move one connection's frames, under :class:`~.driver.CoreDriver`.

Three tasks run in the task group of the ``async with`` that opened the connection:

- the reader hands each batch of received frames to ``core.receive_frames`` and the driver acts on
  the events (starts responder handlers, wakes requester objects, ends the connection). Whole
  PAYLOADs skip the events: the core calls the stream's sink directly;
- the writer hands everything ``core.data_to_send()`` holds to the transport in one ``send``, so
  frames that become ready together are written together. The first frames queued after each batch
  received skip it when it is idle and the transport can write without an ``await``
  (:meth:`ConnectionTasks._frames_ready`): a request or its answer then costs no switch to the
  writer task, and everything queued after them still goes out in batches;
- the timer sleeps until ``core.next_deadline()`` and runs ``core.handle_timer`` (K1 keepalives, K3
  silence, lease renewal, the end of a detached session).

The reader and the writer belong to one transport (:meth:`ConnectionTasks._run_transport`); a
session that outlives its transport (:mod:`.session`) runs them again on the next one.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import sys
from collections.abc import Callable
from typing import cast

import anyio
from anyio.abc import TaskGroup

from ..protocol import Event, ProtocolConfig, ProtocolConnection, RemoteProtocolError
from ..transports.base import Transport
from ..wire.errors import ConnectionClosedError, ConnectionLostError, ErrorCode, FrameError, ProtocolError
from .handler import RequestHandler
from .interaction import Hooks
from .link import StreamOwner
from .responder import RESPONDER_CHANNEL_WINDOW
from .settings import WRITE_HIGH_WATER, PeerOptions
from .setup_info import SetupInfo
from .waiter import Waiter, running_backend, waiter_factory
from .workers import WorkerPool

logger = logging.getLogger("anyio_rsocket")

#: Queued outbound bytes above which the reader stops reading: a peer that floods us with frames
#: needing answers (keepalives, requests) while not reading our answers gets its input throttled.
READER_PAUSE_BYTES = 8 << 20
#: How long closing may spend flushing queued frames before the transport is closed regardless.
CLOSE_FLUSH_TIMEOUT = 2.0


def loop_clock() -> Callable[[], float]:
    """The running event loop's clock as one cheap callable.

    It is what ``anyio.current_time`` returns, without looking up the backend on every call (the
    reader reads the clock once per batch of frames).
    """
    backend = running_backend()
    if isinstance(backend, asyncio.AbstractEventLoop):
        return backend.time
    if backend is not None:
        return cast("Callable[[], float]", backend.current_time)
    return anyio.current_time


def lost(error: ConnectionClosedError) -> ConnectionClosedError:
    """A transport's plain ConnectionClosedError means the transport went away: ConnectionLostError."""
    if type(error) is not ConnectionClosedError:
        return error
    wrapped = ConnectionLostError(error.message)
    wrapped.__cause__ = error.__cause__ or error
    return wrapped


#: The core's own admission limit is off: the driver counts running handler tasks instead (see
#: ``_on_request``), which also covers fire-and-forget and metadata-push handlers.
_NO_CORE_LIMIT = sys.maxsize


def protocol_config(options: PeerOptions) -> ProtocolConfig:
    """The core's settings for a connection with these options."""
    return ProtocolConfig(
        fragment_size=options.fragment_size,
        max_reassembled_size=options.max_reassembled_size,
        max_concurrent_requests=_NO_CORE_LIMIT,
        max_stream_id=options.max_stream_id,
        send_keepalives=options.send_keepalives,
        lease_strategy=options.lease_strategy,
        max_lifetime_cap=options.max_lifetime_cap,
        keepalive_interval_cap=options.keepalive_interval_cap,
        responder_channel_window=RESPONDER_CHANNEL_WINDOW,
        resume_store_size=None if options.resume is None else options.resume.store_size,
        session_duration=60.0 if options.resume is None else options.resume.session_duration,
    )


class ConnectionTasks:
    """One connection's transport tasks and lifetime; :class:`~.driver.CoreDriver` adds the rest."""

    def __init__(
        self,
        transport: Transport,
        task_group: TaskGroup,
        *,
        is_client: bool,
        setup: SetupInfo,
        handler: RequestHandler | None = None,
        options: PeerOptions | None = None,
        core: ProtocolConnection | None = None,
    ) -> None:
        options = options or PeerOptions()
        self._transport = transport
        self._task_group = task_group
        self._is_client = is_client
        self._setup = setup
        self._handler: RequestHandler = handler if handler is not None else RequestHandler()
        self._options = options
        self._core = core or ProtocolConnection(client=is_client, config=protocol_config(options))
        self._core_send_next = self._core.send_next
        self._clock: Callable[[], float] = anyio.current_time  # loop_clock() once the tasks start
        #: One-shot wake-ups for request-response callers (waiter_factory() once the tasks start).
        self._new_waiter: Callable[[], Waiter] = anyio.Event
        self._streams: dict[int, StreamOwner] = {}  # the objects behind the core's live streams
        self._workers = WorkerPool(task_group)
        self._produced = 0  # frames queued by producers, for cheap periodic cancellation checks
        #: Set while the writer waits for frames (it is idle); whoever queues frames wakes it.
        self._writer_wakeup: anyio.Event | None = None
        #: Whether the next frames may be written by the task that queued them (_frames_ready).
        self._direct_ready = True
        self._writable: anyio.Event | None = None
        self._lease_event: anyio.Event | None = None
        self._error: ConnectionClosedError | None = None
        self._closed = anyio.Event()
        self._writer_done = anyio.Event()
        self._writer_running = False
        self._established = anyio.Event()
        #: Requests must pass :meth:`admit` first (leasing here; resumption and reconnect add theirs).
        self._gated = setup.lease
        self._timer_wakeup: anyio.Event | None = None
        #: Interceptors and travelling deadlines; None (the usual case) keeps every path plain.
        self._hooks = Hooks.build(options.interceptors, setup, options.deadlines)
        # Traffic counters (``RSocket.stats``), per batch: frames and bytes without length prefixes.
        self._frames_sent = self._bytes_sent = self._frames_received = self._bytes_received = 0
        self._reading_paused = False  # the reader waits for our consumers or handlers (not K3 silence)
        self._congested_streams = 0  # requester streams whose unread buffer is over high water
        self._uncongested: anyio.Event | None = None
        self._reader_scope = anyio.CancelScope()
        self._timer_scope = anyio.CancelScope()
        self._writer_scope = anyio.CancelScope()

    @property
    def is_closed(self) -> bool:
        """True once the connection has ended, for whatever reason."""
        return self._error is not None

    async def wait_writable(self, limit: int = WRITE_HIGH_WATER) -> None:
        """Back-pressure: wait while the outbound queue holds more than ``limit`` bytes, or while
        a resumable session's store of unconfirmed frames is full.

        Without a wait it is a cancellation point every 32nd call (never a scheduling point, so
        producers that queue many frames in a row get them written in large batches).
        """
        core = self._core
        if core.bytes_to_send <= limit and not core.store_full:
            # A cancellation check costs about a microsecond: do it every 32nd frame only.
            self._produced += 1
            if not self._produced & 31:
                await anyio.lowlevel.checkpoint_if_cancelled()
            return
        while (core.bytes_to_send > limit or core.store_full) and self._error is None:
            core = self._core
            event = self._writable
            if event is None:
                event = self._writable = anyio.Event()
            await event.wait()

    def _wake_writer(self) -> None:
        wakeup = self._writer_wakeup
        if wakeup is not None:
            self._writer_wakeup = None
            wakeup.set()

    def _frames_ready(self, wakeup: anyio.Event) -> None:
        """Frames were queued while the writer waited on ``wakeup``: write them, or wake it.

        Once per batch of frames received, the task that queued them writes them itself when the
        transport can take bytes without an ``await``: answering a request, or sending the next one
        after an answer, then needs no switch to the writer task (the sequential request-response
        round trip has two fewer). Later frames wake the writer, which writes everything queued in
        the meantime in one go, so a burst still costs one write and not one per frame. Nothing in
        here waits, so a cancelled caller cannot leave a frame half written.
        """
        transport = self._transport
        if self._direct_ready and transport.can_send_now:
            self._direct_ready = False
            core = self._core
            size = core.bytes_to_send
            batch = core.data_to_send()
            if batch:
                transport.send_now(batch)
                self._frames_sent += len(batch)
                self._bytes_sent += size
                writable = self._writable
                if writable is not None:
                    self._writable = None
                    writable.set()
            if not transport.holds_unsent:
                return
        self._writer_wakeup = None
        wakeup.set()

    async def _write_loop(self, transport: Transport) -> None:
        core = self._core
        self._writer_running = True
        try:
            with self._writer_scope:
                while True:
                    size = core.bytes_to_send
                    batch = core.data_to_send()
                    if not batch and not transport.holds_unsent:
                        if self._error is not None:
                            break
                        event = self._writer_wakeup = anyio.Event()
                        await event.wait()
                        continue
                    writable = self._writable
                    if writable is not None:
                        self._writable = None
                        writable.set()
                    await transport.send(batch)
                    self._frames_sent += len(batch)
                    self._bytes_sent += size
        except ConnectionClosedError as exc:
            self._transport_lost(transport, lost(exc))
        except Exception as exc:  # a bug or a transport error we did not map: never crash the group
            logger.exception("writer failed")
            self._terminate(ConnectionClosedError(f"writer failed: {exc!r}"))
        finally:
            if transport is self._transport:
                self._writer_wakeup = None  # no longer idle: nothing may be written to this transport
            with anyio.move_on_after(CLOSE_FLUSH_TIMEOUT, shield=True):
                await transport.aclose()
            if transport is self._transport:
                self._writer_running = False
                if self._error is not None:
                    self._writer_done.set()

    async def _read_loop(self, transport: Transport, initial_frames: list[bytes] | None = None) -> None:
        core = self._core
        limit = self._options.max_concurrent_requests
        consuming = False
        try:
            with self._reader_scope:
                if initial_frames:
                    self._receive(initial_frames)
                receive = transport.receive
                consuming = transport.set_frame_consumer(self._consume_frames)
                while self._error is None:
                    if core.bytes_to_send > READER_PAUSE_BYTES:
                        await self.wait_writable(READER_PAUSE_BYTES)
                    frames = await receive()
                    if frames:
                        self._receive(frames)
                    workers = self._workers
                    if workers.backlog:
                        await workers.relieve()
                    if self._congested_streams or workers.active > limit:
                        # TCP back-pressure for our own slowness: a consumer far behind its stream,
                        # or handlers over the limit (only requests that cannot be refused get past
                        # it, see _on_request), stop reading until they catch up. The peer is not
                        # silent meanwhile, we are deaf, so this does not count towards K3.
                        self._reading_paused = True
                        try:
                            await self._wait_uncongested()
                            await workers.wait_below(limit + 1)
                        finally:
                            self._reading_paused = False
                            core.mark_alive(anyio.current_time())
        except ConnectionClosedError as exc:
            self._transport_lost(transport, lost(exc))
        except FrameError as exc:  # the transport refused a frame (too large, text message, ...)
            self._protocol_violation(str(exc), RemoteProtocolError)
        except Exception as exc:
            logger.exception("reader failed")
            self._protocol_violation(f"internal error while reading: {exc!r}", ProtocolError)
        finally:
            if consuming:
                transport.set_frame_consumer(None)

    def _consume_frames(self, frames: list[bytes]) -> None:
        """Frames the transport handed over from its I/O callback while the reader waited.

        Taking them there saves waking the reader task (a turn of the event loop per message).
        Whatever the reader does after a batch beyond :meth:`_receive` (pausing for back-pressure,
        relieving the worker backlog) is left to it: it is poked to look.
        """
        try:
            self._receive(frames)
        except Exception as exc:
            logger.exception("reader failed")
            self._protocol_violation(f"internal error while reading: {exc!r}", ProtocolError)
            return
        workers = self._workers
        if (
            workers.backlog
            or self._congested_streams
            or workers.active > self._options.max_concurrent_requests
            or self._core.bytes_to_send > READER_PAUSE_BYTES
        ):
            self._transport.poke()

    def _receive(self, frames: list[bytes]) -> None:
        # One frame in: its answer (or the next request) is written directly. Many frames in: their
        # answers are better batched into one write (and one read on the other side).
        # One frame in (a request, an answer): what it causes is written directly. Several: their
        # answers are better batched into one write (and one read on the other side).
        self._direct_ready = len(frames) == 1
        self._frames_received += len(frames)
        self._bytes_received += sum(map(len, frames))
        core = self._core
        events = core.receive_frames(frames, self._clock())
        if events:
            self._handle_events(events)
        if core.bytes_to_send:
            self._wake_writer()

    async def _wait_uncongested(self) -> None:
        while self._congested_streams and self._error is None:
            event = self._uncongested
            if event is None:
                event = self._uncongested = anyio.Event()
            await event.wait()

    async def _timer_loop(self) -> None:
        """K1 keepalives, K3 silence, lease renewals and the end of a detached session, whenever
        the core says they are due (:meth:`_wake_timer` makes it look again)."""
        with self._timer_scope:
            while self._error is None:
                core = self._core  # a reconnect replaces it
                deadline = core.next_deadline()
                wakeup = self._timer_wakeup = anyio.Event()
                if deadline is None:
                    await wakeup.wait()
                    continue
                now = anyio.current_time()
                if now < deadline:
                    with anyio.move_on_after(deadline - now):
                        await wakeup.wait()
                    now = anyio.current_time()
                if self._reading_paused:
                    core.mark_alive(now)  # we are not listening: that is not the peer's silence
                self._handle_events(core.handle_timer(now))
                self._wake_writer()
                await anyio.lowlevel.checkpoint()  # never spin, whatever the core's next deadline

    def _wake_timer(self) -> None:
        wakeup = self._timer_wakeup
        if wakeup is not None:
            self._timer_wakeup = None
            wakeup.set()

    def _start(
        self,
        handler: RequestHandler | None = None,
        initial_frames: list[bytes] | None = None,
        *,
        probe: bool = True,
    ) -> None:
        """Start the tasks. Client: send SETUP (and with ``probe`` the KEEPALIVE that confirms it).
        Server: accept the SETUP the core reported; ``initial_frames`` followed it."""
        core = self._core
        self._clock = loop_clock()
        self._new_waiter = waiter_factory()
        self._workers.use_waiters(self._new_waiter)
        now = self._clock()
        if handler is not None:
            self._handler = handler
        if self._is_client:
            core.initiate(now, self._setup.to_frame(), probe=probe)
        else:
            self._handle_events(core.accept_setup(now))
        self._writer_running = True  # from now on, closing waits for the writer to flush
        self._task_group.start_soon(self._supervise, self._transport, initial_frames)
        self._task_group.start_soon(self._timer_loop)

    async def _supervise(self, transport: Transport, initial_frames: list[bytes] | None) -> None:
        """Drive the transport; after a loss, drive whatever :meth:`_next_transport` supplies."""
        while True:
            await self._run_transport(transport, initial_frames)
            if self._error is not None:
                return
            following = await self._next_transport()
            if following is None:
                return
            transport, initial_frames = following, None

    async def _run_transport(self, transport: Transport, initial_frames: list[bytes] | None = None) -> None:
        """Run the reader and the writer of ``transport`` until it is lost or the connection ends.

        The transport is closed when this returns.
        """
        self._transport = transport
        self._writer_running = True
        self._reader_scope = anyio.CancelScope()
        self._writer_scope = anyio.CancelScope()
        async with anyio.create_task_group() as loops:
            loops.start_soon(self._write_loop, transport)
            loops.start_soon(self._read_loop, transport, initial_frames)

    async def _next_transport(self) -> Transport | None:
        """After losing a transport, the one to continue on (resumption, reconnect); None ends."""
        return None

    def _transport_lost(self, transport: Transport, error: ConnectionClosedError) -> None:
        """``transport`` failed with ``error``; a transport already replaced changes nothing."""
        if transport is self._transport:
            self._terminate(error)

    def _drop_transport(self) -> None:
        """Stop the current transport's reader and writer (the writer closes the transport)."""
        self._reader_scope.cancel()
        self._writer_scope.cancel()
        self._wake_writer()

    async def _confirm_setup(self) -> None:
        """Client: wait until the server accepted SETUP (the probe's echo, S4) or refused it."""
        async with anyio.create_task_group() as waiters:

            async def wait(event: anyio.Event) -> None:
                await event.wait()
                waiters.cancel_scope.cancel()

            waiters.start_soon(wait, self._established)
            waiters.start_soon(wait, self._closed)
        if self._error is not None:
            raise copy.copy(self._error)

    def _protocol_violation(self, message: str, error: type[ProtocolError]) -> None:
        """Tell the peer what went wrong (ERROR[CONNECTION_ERROR] on stream 0) and close."""
        self._core.close(ErrorCode.CONNECTION_ERROR, message)
        self._terminate(error(f"protocol error: {message}"))

    def _terminate(self, error: ConnectionClosedError) -> None:
        """End the connection once: fail every live stream, stop the tasks, flush and close."""
        if self._error is not None:
            return
        self._error = error
        self._core.close()  # nothing more is sent, except what is already queued
        owners = list(self._streams.values())
        self._streams.clear()
        for owner in owners:
            owner.on_connection_closed(error)
        self._closed.set()
        self._reader_scope.cancel()
        self._timer_scope.cancel()
        self._writer_scope.deadline = anyio.current_time() + CLOSE_FLUSH_TIMEOUT
        if not self._writer_running:
            self._writer_done.set()
        for event in (self._writer_wakeup, self._writable, self._lease_event, self._uncongested):
            if event is not None:
                event.set()
        self._writer_wakeup = self._writable = self._lease_event = self._uncongested = None

    def _handle_events(self, events: list[Event]) -> None:
        """Act on what the core reported (the driver's job)."""
        raise NotImplementedError
