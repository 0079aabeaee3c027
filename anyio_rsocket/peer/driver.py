"""The AnyIO driver of the sans-IO protocol core: the machinery under :class:`~.connection.RSocket`.

A :class:`CoreDriver` owns a :class:`~anyio_rsocket.protocol.ProtocolConnection` (stream ids, credit,
reassembly, dispatch, keepalive and lease bookkeeping). Its tasks (reader, writer, timer) are in
:mod:`.tasks`; this module is what the interaction objects talk to (the
:class:`~.link.StreamLink` methods, their only way to the wire) and how the core's events become
responder handlers, woken requesters and the end of the connection.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

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
    ErrorCode,
    FrameError,
    PeerClosedError,
    RejectedResumeError,
    RSocketError,
    error_from_code,
)
from ..wire.frames import FLAG_COMPLETE, FLAG_NEXT, MAX_REQUEST_N
from ..wire.payload import Payload
from .deadlines import remaining_time
from .handler import RequestHandler
from .interaction import Interaction, Side
from .intercepted import InterceptedHandler, run_intercepted
from .link import StreamOwner
from .responder import (
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
from .tasks import (
    CLOSE_FLUSH_TIMEOUT,
    READER_PAUSE_BYTES,
    ConnectionTasks,
    loop_clock,
    lost,
    protocol_config,
)
from .workers import WorkerPool

logger = logging.getLogger("anyio_rsocket")


_RR = InteractionKind.REQUEST_RESPONSE
_FNF = InteractionKind.FIRE_AND_FORGET
_STREAM = InteractionKind.REQUEST_STREAM
_CHANNEL = InteractionKind.REQUEST_CHANNEL


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


class CoreDriver(ConnectionTasks):
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
        super().__init__(
            transport,
            task_group,
            is_client=is_client,
            setup=setup,
            handler=handler,
            options=options,
            core=core,
        )
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
        if self._hooks is not None:
            self._on_event[RequestReceived] = self._on_hooked_request

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

    @property
    def workers(self) -> WorkerPool:
        """The pool that runs responder handlers (a parked stream is resumed or closed on it)."""
        return self._workers

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
        wakeup = self._writer_wakeup  # the writer is idle (checked inline: once per request)
        if wakeup is not None:
            self._frames_ready(wakeup)
        return stream_id

    def send_next(self, stream_id: int, payload: Payload) -> bool:
        try:
            sent = self._core_send_next(stream_id, payload)
        except LocalProtocolError as exc:
            raise self._local_error(exc) from None
        wakeup = self._writer_wakeup  # not written directly: a stream's items are batched
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
            self._frames_ready(wakeup)

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

    def _on_hooked_request(self, event: RequestReceived) -> None:
        """``_on_request`` for connections with interceptors or travelling deadlines."""
        hooks = self._hooks
        assert hooks is not None
        kind, stream_id, payload = event.kind, event.stream_id, event.payload
        deadline = None
        if hooks.honor_deadlines:
            remaining = remaining_time(payload.metadata)
            if remaining is not None:
                # The request spent about half a round trip on its way here.
                rtt = self._core.rtt
                deadline = self._clock() + remaining - (rtt / 2 if rtt is not None else 0.0)
        if not hooks.interceptors:
            self._on_request(event)
            owner = self._streams.get(stream_id)
            if deadline is not None and isinstance(owner, ResponderTask):
                owner.scope.deadline = deadline
            return
        interaction = Interaction(kind, Side.RESPONDER, payload, hooks.setup, stream_id)
        handler = InterceptedHandler(self._handler, interaction, hooks.interceptors)
        workers, interceptors = self._workers, hooks.interceptors
        if kind is _FNF:
            workers.submit(
                run_intercepted, self, interceptors, interaction, None, run_fire_and_forget, handler, payload
            )
            return
        if workers.active >= self._options.max_concurrent_requests:
            self.send_error(stream_id, ErrorCode.REJECTED, "too many concurrent requests on this connection")
            return
        state: ResponderTask
        if kind is _RR:
            state = ResponderTask(self, stream_id)
            args: tuple[Any, ...] = (run_request_response, self, handler, state, payload)
        elif kind is _STREAM:
            # pinned: the interceptors wrap the handler's whole run, so it keeps its task throughout
            state = ResponderStream(self, stream_id, pinned=True)
            args = (run_stream, self, handler, state, payload, None)
        else:
            state = channel = ResponderChannel(self, stream_id, event.complete, pinned=True)
            if self._core.stream_state(stream_id) is not None:
                self._core.set_payload_sink(stream_id, channel.on_payload)
            args = (run_stream, self, handler, channel, payload, channel.inbound)
        self._streams[stream_id] = state
        scope = state.scope  # its own, which run_intercepted reads to report a cancellation
        if deadline is not None:
            scope.deadline = deadline
        workers.submit(run_intercepted, self, interceptors, interaction, state, *args)

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

    # --- start and stop --------------------------------------------------------------------------


__all__ = [
    "CLOSE_FLUSH_TIMEOUT",
    "READER_PAUSE_BYTES",
    "CoreDriver",
    "local_error",
    "loop_clock",
    "lost",
    "protocol_config",
    "termination_error",
]
