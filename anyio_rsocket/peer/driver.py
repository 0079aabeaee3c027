"""The AnyIO driver of the sans-IO protocol core: the machinery under :class:`~.connection.RSocket`.

A :class:`CoreDriver` owns a :class:`~anyio_rsocket.protocol.ProtocolConnection` (stream ids, credit,
reassembly, dispatch, keepalive and lease bookkeeping) and does the I/O around it with three tasks
in the task group of the ``async with`` that opened the connection:

- the reader hands each batch of received frames to ``core.receive_frames`` and acts on the events
  (starts responder handlers on the :class:`~.workers.WorkerPool`, wakes requester objects, ends the
  connection). Whole PAYLOADs skip the events: the core calls the stream's sink directly;
- the writer hands everything ``core.data_to_send()`` holds to the transport in one ``send``, so
  frames that become ready together are written together;
- the timer sleeps until ``core.next_deadline()`` and runs ``core.handle_timer`` (K1 keepalives, K3
  silence, lease renewal).

Interaction objects reach the wire only through the :class:`~.link.StreamLink` methods.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import sys
from collections.abc import Callable
from typing import Any, cast

import anyio
from anyio.abc import TaskGroup

from ..protocol import (
    CancelReceived,
    ConnectionClosingError,
    ConnectionEndedError,
    ConnectionEstablished,
    ConnectionTerminated,
    ErrorReceived,
    Event,
    InteractionKind,
    LeaseReceived,
    LocalProtocolError,
    MetadataPushReceived,
    PayloadReceived,
    ProtocolConfig,
    ProtocolConnection,
    RemoteProtocolError,
    RequestNReceived,
    RequestReceived,
    StreamEnded,
    StreamFailed,
    TerminationCause,
)
from ..transports.base import Transport
from ..wire.errors import (
    ConnectionClosedError,
    ConnectionLostError,
    ErrorCode,
    FrameError,
    PeerClosedError,
    ProtocolError,
    RejectedResumeError,
    RSocketError,
    error_from_code,
)
from ..wire.frames import FLAG_COMPLETE, FLAG_NEXT, MAX_REQUEST_N
from ..wire.payload import Payload
from .handler import RequestHandler
from .link import StreamOwner
from .responder import (
    RESPONDER_CHANNEL_WINDOW,
    ResponderChannel,
    ResponderStream,
    ResponderTask,
    run_fire_and_forget,
    run_metadata_push,
    run_request_response,
    run_stream,
)
from .settings import WRITE_HIGH_WATER, PeerOptions
from .setup_info import SetupInfo
from .workers import WorkerPool

logger = logging.getLogger("anyio_rsocket")

#: Queued outbound bytes above which the reader stops reading: a peer that floods us with frames
#: needing answers (keepalives, requests) while not reading our answers gets its input throttled.
READER_PAUSE_BYTES = 8 << 20
#: How long closing may spend flushing queued frames before the transport is closed regardless.
CLOSE_FLUSH_TIMEOUT = 2.0
#: The core's own admission limit is off: the driver counts running handler tasks instead (see
#: ``_on_request``), which also covers fire-and-forget and metadata-push handlers.
_NO_CORE_LIMIT = sys.maxsize

_RR = InteractionKind.REQUEST_RESPONSE
_FNF = InteractionKind.FIRE_AND_FORGET
_STREAM = InteractionKind.REQUEST_STREAM
_CHANNEL = InteractionKind.REQUEST_CHANNEL


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


def loop_clock() -> Callable[[], float]:
    """The running event loop's clock as one cheap callable.

    It is what ``anyio.current_time`` returns, without looking up the backend on every call (the
    reader reads the clock once per batch of frames).
    """
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:
        pass
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_root_task()
        except RuntimeError:
            pass
        else:
            return cast("Callable[[], float]", trio.current_time)
    return anyio.current_time


def local_error(exc: LocalProtocolError, closed: ConnectionClosedError | None) -> BaseException:
    """The exception the public API has always raised for what the core refused.

    ``closed`` is why the connection ended, if it did.
    """
    if isinstance(exc, ConnectionEndedError):
        return copy.copy(closed) if closed is not None else ConnectionClosedError(str(exc))
    if isinstance(exc, ConnectionClosingError):
        return PeerClosedError("the peer is closing the connection (CONNECTION_CLOSE)")
    if isinstance(exc, RSocketError):
        # A refused lease, every stream id in use (both RejectedError: nothing was sent, retry
        # later or elsewhere), an item too large (FrameTooLargeError): raised as they are.
        return exc
    cause = exc.__cause__
    if isinstance(cause, (FrameError, TypeError, ValueError)):
        return cause  # an item that cannot be encoded: the encoder's own error
    return exc


def lost(error: ConnectionClosedError) -> ConnectionClosedError:
    """A transport's plain ConnectionClosedError means the transport went away: ConnectionLostError."""
    if type(error) is not ConnectionClosedError:
        return error
    wrapped = ConnectionLostError(error.message)
    wrapped.__cause__ = error.__cause__ or error
    return wrapped


def termination_error(event: ConnectionTerminated) -> ConnectionClosedError:
    """What every pending call raises once the core ended the connection."""
    code, message = event.error_code, event.message
    if event.cause is TerminationCause.PEER_VIOLATION:
        return RemoteProtocolError(f"protocol error: {message}")
    if event.cause is TerminationCause.RESUME_REJECTED:
        return RejectedResumeError(message)
    if event.cause is TerminationCause.PEER_CLOSED:
        received = error_from_code(code, message)
        if isinstance(received, ConnectionClosedError):
            return received
        return ConnectionClosedError(f"peer sent ERROR 0x{code:08X}: {message}", code)
    return ConnectionClosedError(message)


class CoreDriver:
    """One connection's I/O around its protocol core; :class:`~.connection.RSocket` adds the public API.

    It is the :class:`~.link.StreamLink` of every interaction object on the connection.
    """

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
        self._streams: dict[int, StreamOwner] = {}  # the objects behind the core's live streams
        self._workers = WorkerPool(task_group)
        self._produced = 0  # frames queued by producers, for cheap periodic cancellation checks
        self._writer_wakeup: anyio.Event | None = None
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
        self._reading_paused = False  # the reader waits for our consumers or handlers (not K3 silence)
        self._congested_streams = 0  # requester streams whose unread buffer is over high water
        self._uncongested: anyio.Event | None = None
        self._reader_scope = anyio.CancelScope()
        self._timer_scope = anyio.CancelScope()
        self._writer_scope = anyio.CancelScope()
        self._on_event: dict[type, Callable[[Any], None]] = {
            RequestReceived: self._on_request,
            RequestNReceived: self._on_request_n,
            CancelReceived: self._on_cancel,
            ErrorReceived: self._on_stream_error,
            StreamFailed: self._on_stream_error,
            PayloadReceived: self._on_payload,
            MetadataPushReceived: self._on_metadata_push,
            LeaseReceived: self._on_lease,
            ConnectionEstablished: self._on_established,
            ConnectionTerminated: self._on_terminated,
        }

    @property
    def is_closed(self) -> bool:
        """True once the connection has ended, for whatever reason."""
        return self._error is not None

    # --- the StreamLink interface (used by requester and responder objects) ---------------------

    @property
    def expose_errors(self) -> bool:
        return self._options.expose_errors

    @property
    def write_backlog(self) -> int:
        """Bytes waiting to be written; past the high-water mark while a resume store is full,
        so producers wait for the peer's confirmation as they wait for a slow socket."""
        core = self._core
        if core.store_full:
            return max(core.bytes_to_send, WRITE_HIGH_WATER + 1)
        return core.bytes_to_send

    async def admit(self) -> None:
        """Wait until a new request may go out.

        With leasing, until the peer's lease allows one (L2, S6; only with ``lease_wait``, otherwise
        the request itself fails with RejectedError). Cancelling the wait sends nothing.
        """
        if self._core.lease_enabled:
            await self._acquire_lease()

    async def _acquire_lease(self) -> None:
        core = self._core
        while True:
            self._check_open()
            now = anyio.current_time()
            if core.lease_allows_request(now) or not self._options.lease_wait:
                return
            event = self._lease_event
            if event is None:
                event = self._lease_event = anyio.Event()
            with anyio.move_on_after(max(0.0, core.lease_expires_at - now)):
                await event.wait()

    def open_stream(
        self,
        owner: StreamOwner | None,
        kind: InteractionKind,
        payload: Payload,
        initial_n: int = 0,
        complete: bool = False,
    ) -> int:
        core = self._core
        now = self._clock() if self._setup.lease else None
        try:
            if owner is None:
                stream_id = core.fire_and_forget(payload, now=now)
            elif kind is _RR:
                stream_id = core.request_response(payload, now=now, sink=owner.on_payload)
            elif kind is _STREAM:
                stream_id = core.request_stream(payload, initial_n, now=now, sink=owner.on_payload)
            else:
                stream_id = core.request_channel(payload, initial_n, complete, now=now, sink=owner.on_payload)
        except LocalProtocolError as exc:
            raise self._local_error(exc) from None
        if owner is not None:
            self._streams[stream_id] = owner
        wakeup = self._writer_wakeup  # _wake_writer, inlined (once per request)
        if wakeup is not None:
            self._writer_wakeup = None
            wakeup.set()
        return stream_id

    def send_next(self, stream_id: int, payload: Payload) -> bool:
        try:
            sent = self._core_send_next(stream_id, payload)
        except LocalProtocolError as exc:
            raise self._local_error(exc) from None
        wakeup = self._writer_wakeup
        if wakeup is not None:
            self._writer_wakeup = None
            wakeup.set()
        return sent

    def queue_metadata_push(self, metadata: bytes) -> None:
        """Queue METADATA_PUSH (MP1)."""
        try:
            self._core.metadata_push(metadata)
        except LocalProtocolError as exc:
            raise self._local_error(exc) from None
        self._wake_writer()

    def send_payload(self, stream_id: int, payload: Payload, complete: bool = False) -> None:
        try:
            self._core.send_payload(stream_id, payload, complete)
        except LocalProtocolError as exc:
            raise self._local_error(exc) from None
        if complete:
            events = self._core.pop_events()
            if len(events) == 1:  # the usual: our answer ended its stream (StreamEnded)
                event = events[0]
                if type(event) is StreamEnded:
                    self._streams.pop(event.stream_id, None)
                else:
                    self._handle_events(events)
            else:
                self._handle_events(events)
        wakeup = self._writer_wakeup
        if wakeup is not None:
            self._writer_wakeup = None
            wakeup.set()

    def send_complete(self, stream_id: int) -> None:
        self._lenient(self._core.send_complete, stream_id)

    def send_error(self, stream_id: int, error_code: int, message: str) -> None:
        self._lenient(self._core.send_error, stream_id, error_code, message)

    def request_n(self, stream_id: int, n: int) -> None:
        self._lenient(self._core.request_n, stream_id, n)

    def cancel(self, stream_id: int) -> None:
        self._lenient(self._core.cancel, stream_id)

    def send_credit(self, stream_id: int) -> int:
        return self._core.send_credit(stream_id)

    def recv_unbounded(self, stream_id: int) -> bool:
        return self._core.recv_credit(stream_id) >= MAX_REQUEST_N

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

    def stream_congested(self) -> None:
        self._congested_streams += 1

    def stream_relieved(self) -> None:
        self._congested_streams -= 1
        event = self._uncongested
        if event is not None and not self._congested_streams:
            self._uncongested = None
            event.set()

    # --- local intents: error mapping ------------------------------------------------------------

    def _lenient(self, intent: Callable[..., object], *args: Any) -> None:
        """Run a core intent whose refusal means "the stream is already over": then do nothing."""
        try:
            intent(*args)
        except LocalProtocolError:
            return
        self._handle_events(self._core.pop_events())
        self._wake_writer()

    def _local_error(self, exc: LocalProtocolError) -> BaseException:
        return local_error(exc, self._error)

    def _check_open(self) -> None:
        if self._error is not None:
            raise copy.copy(self._error)
        if self._core.draining:
            raise PeerClosedError("the peer is closing the connection (CONNECTION_CLOSE)")

    # --- events from the core --------------------------------------------------------------------

    def _handle_events(self, events: list[Event]) -> None:
        on_event = self._on_event
        streams = self._streams
        for event in events:
            if type(event) is StreamEnded:  # the most frequent event: one per stream
                streams.pop(event.stream_id, None)
                continue
            handler = on_event.get(type(event))
            if handler is not None:
                handler(event)

    def _on_payload(self, event: PayloadReceived) -> None:
        owner = self._streams.get(event.stream_id)
        if owner is not None:
            payload = event.payload
            flags = (FLAG_NEXT if event.next else 0) | (FLAG_COMPLETE if event.complete else 0)
            if payload is None:
                owner.on_payload(b"", None, flags)
            else:
                owner.on_payload(payload.data, payload.metadata, flags)

    def _on_request_n(self, event: RequestNReceived) -> None:
        owner = self._streams.get(event.stream_id)
        if owner is not None:
            owner.on_request_n(event.n)

    def _on_cancel(self, event: CancelReceived) -> None:
        owner = self._streams.get(event.stream_id)
        if owner is not None:
            owner.on_cancel()

    def _on_stream_error(self, event: ErrorReceived | StreamFailed) -> None:
        owner = self._streams.get(event.stream_id)
        if owner is not None:
            owner.on_error(error_from_code(event.error_code, event.message))

    def _on_request(self, event: RequestReceived) -> None:
        kind, stream_id, payload = event.kind, event.stream_id, event.payload
        handler = self._handler
        workers = self._workers
        if kind is _FNF:
            # Fire-and-forget cannot be refused: over the limit it is still taken and the reader
            # pauses until the handlers catch up.
            workers.submit(run_fire_and_forget, handler, payload)
            return
        if workers.active >= self._options.max_concurrent_requests:
            # A request we can refuse is refused (the requester may retry elsewhere).
            self.send_error(stream_id, ErrorCode.REJECTED, "too many concurrent requests on this connection")
            return
        if kind is _RR:
            task = ResponderTask(self, stream_id)
            self._streams[stream_id] = task
            workers.submit(run_request_response, self, handler, task, payload)
        elif kind is _STREAM:
            stream = ResponderStream(self, stream_id)
            self._streams[stream_id] = stream
            workers.submit(run_stream, self, handler, stream, payload, None)
        else:
            channel = ResponderChannel(self, stream_id, event.complete)
            self._streams[stream_id] = channel
            if self._core.stream_state(stream_id) is not None:  # a later frame of the batch may have ended it
                self._core.set_payload_sink(stream_id, channel.on_payload)
            workers.submit(run_stream, self, handler, channel, payload, channel.inbound)

    def _on_metadata_push(self, event: MetadataPushReceived) -> None:
        # Over the concurrency limit a push is still taken (it cannot be refused); the reader then
        # pauses until the handlers catch up.
        self._workers.submit(run_metadata_push, self._handler, event.metadata)

    def _on_lease(self, event: LeaseReceived) -> None:
        waiters = self._lease_event
        if waiters is not None:
            self._lease_event = None
            waiters.set()

    def _on_established(self, event: ConnectionEstablished) -> None:
        self._established.set()

    def _on_terminated(self, event: ConnectionTerminated) -> None:
        self._terminate(termination_error(event))

    # --- tasks -----------------------------------------------------------------------------------

    def _wake_writer(self) -> None:
        wakeup = self._writer_wakeup
        if wakeup is not None:
            self._writer_wakeup = None
            wakeup.set()

    async def _write_loop(self, transport: Transport) -> None:
        core = self._core
        self._writer_running = True
        try:
            with self._writer_scope:
                while True:
                    batch = core.data_to_send()
                    if not batch:
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
        except ConnectionClosedError as exc:
            self._transport_lost(transport, lost(exc))
        except Exception as exc:  # a bug or a transport error we did not map: never crash the group
            logger.exception("writer failed")
            self._terminate(ConnectionClosedError(f"writer failed: {exc!r}"))
        finally:
            with anyio.move_on_after(CLOSE_FLUSH_TIMEOUT, shield=True):
                await transport.aclose()
            if transport is self._transport:
                self._writer_running = False
                if self._error is not None:
                    self._writer_done.set()

    async def _read_loop(self, transport: Transport, initial_frames: list[bytes] | None = None) -> None:
        core = self._core
        limit = self._options.max_concurrent_requests
        try:
            with self._reader_scope:
                if initial_frames:
                    self._receive(initial_frames)
                receive = transport.receive
                while self._error is None:
                    if core.bytes_to_send > READER_PAUSE_BYTES:
                        await self.wait_writable(READER_PAUSE_BYTES)
                    self._receive(await receive())
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

    def _receive(self, frames: list[bytes]) -> None:
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

    def _wake_timer(self) -> None:
        wakeup = self._timer_wakeup
        if wakeup is not None:
            self._timer_wakeup = None
            wakeup.set()

    # --- start and stop --------------------------------------------------------------------------

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
