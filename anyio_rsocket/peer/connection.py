"""The RSocket connection: one peer's end of a connection, requester and responder at once.

:class:`RSocket` is the public face of a :class:`~.driver.CoreDriver`, the AnyIO driver of the sans-IO
protocol core (:mod:`anyio_rsocket.protocol`); see :mod:`.driver` for its tasks.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterable, Awaitable, Callable

import anyio

from ..protocol import InteractionKind, LocalProtocolError
from ..routed import RoutedRequester, RouteOptions, route_requester
from ..transports.base import Transport
from ..wire.errors import ConnectionClosedError
from ..wire.payload import Payload
from . import intercepted
from .driver import CLOSE_FLUSH_TIMEOUT, READER_PAUSE_BYTES, protocol_config
from .handler import RequestHandler
from .requester import DEFAULT_INITIAL_N, PendingResponse, RequestChannel, RequestStream
from .session import ConnectionState, SessionDriver
from .settings import WRITE_HIGH_WATER
from .setup_info import SetupInfo
from .stats import ConnectionStats

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Unpack

_RR = InteractionKind.REQUEST_RESPONSE
_FNF = InteractionKind.FIRE_AND_FORGET

HandlerFactory = Callable[["RSocket"], "RequestHandler | Awaitable[RequestHandler]"]

__all__ = [
    "CLOSE_FLUSH_TIMEOUT",
    "READER_PAUSE_BYTES",
    "ConnectionState",
    "HandlerFactory",
    "RSocket",
    "protocol_config",
]


class RSocket(SessionDriver):
    """One end of an RSocket connection.

    Obtain one from :func:`~anyio_rsocket.connect_tcp` (client) or as the argument of a server's
    handler factory. Requester methods may be called from any task while the connection's block is
    open; once the connection ends they raise :class:`~anyio_rsocket.errors.ConnectionClosedError`.
    """

    # --- public surface --------------------------------------------------------------------------

    @property
    def setup(self) -> SetupInfo:
        """What the client sent in SETUP (MIME types, keepalive, lifetime, setup payload, flags)."""
        return self._setup

    @property
    def is_client(self) -> bool:
        """True on the connecting side (odd stream ids), false on the server side."""
        return self._is_client

    @property
    def close_reason(self) -> ConnectionClosedError | None:
        """Why the connection ended (``None`` while it is open)."""
        return self._error

    @property
    def stats(self) -> ConnectionStats:
        """Live counters of this connection (a snapshot; see :class:`ConnectionStats`)."""
        core = self._core
        return ConnectionStats(
            self._frames_sent,
            self._frames_received,
            self._bytes_sent,
            self._bytes_received,
            core.open_streams,
            core.rtt,
        )

    @property
    def available(self) -> bool:
        """Whether a new request would go out now: connected (not detached or reconnecting), not
        closing, and, with leasing, allowed by the peer's current lease. A load balancer's test."""
        core = self._core
        return (
            self._state is ConnectionState.CONNECTED
            and not core.draining
            and core.lease_allows_request(anyio.current_time())
        )

    @property
    def transport(self) -> Transport:
        """The transport carrying this connection's frames."""
        return self._transport

    def route(self, route: str, *more_tags: str, **options: Unpack[RouteOptions]) -> RoutedRequester:
        """Bind ``route`` once: ``rs.route("user.get").request_response(data)`` (see :mod:`.routed`).

        The bound requester builds composite metadata with the routing tag (plus optional
        authentication and per-request MIME entries) and encodes data with the codec for the
        connection's data MIME type.
        """
        return route_requester(self, route, *more_tags, **options)

    async def wait_closed(self) -> None:
        """Wait until the connection has ended (locally or by the peer)."""
        await self._closed.wait()

    async def request_response(self, payload: Payload) -> Payload:
        """Send a request and wait for its single answer.

        Raises the peer's error as an :class:`~anyio_rsocket.errors.RSocketError` subclass. If the
        waiting task is cancelled, CANCEL is sent and the cancellation propagates. A responder that
        completes without a value (its handler returned ``None``) gives :data:`~anyio_rsocket.NO_VALUE`,
        an empty payload to test for with ``is``.
        """
        hooks = self._hooks
        if hooks is not None:
            return await intercepted.request_response(self, hooks, payload)
        if self._gated:
            await self.admit()
        pending = PendingResponse(self._new_waiter())
        pending.stream_id = self.open_stream(pending, _RR, payload)
        try:
            await pending.event.wait()
        except BaseException:
            if not pending.done:
                pending.done = True
                self.cancel(pending.stream_id)
            raise
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    async def fire_and_forget(self, payload: Payload) -> None:
        """Send a request that gets no answer; returns once the frame is queued for writing."""
        hooks = self._hooks
        if hooks is not None:
            return await intercepted.fire_and_forget(self, hooks, payload)
        if self._gated:
            await self.admit()
            self.open_stream(None, _FNF, payload)
            await self.wait_writable()
            return
        # open_stream and wait_writable's no-wait path, inlined: fire-and-forget is often sent in
        # bursts, and a coroutine per call for wait_writable alone costs a few percent.
        core = self._core
        try:
            core.fire_and_forget(payload)
        except LocalProtocolError as exc:
            raise self._local_error(exc) from None
        wakeup = self._writer_wakeup
        if wakeup is not None:
            self._frames_ready(wakeup)
        if core.bytes_to_send <= WRITE_HIGH_WATER and not core.store_full:
            produced = self._produced = self._produced + 1
            if not produced & 31:
                await anyio.lowlevel.checkpoint_if_cancelled()
            return
        await self.wait_writable()

    async def metadata_push(self, metadata: bytes) -> None:
        """Push connection-level metadata to the peer; returns once the frame is queued (MP1).

        It is not kept for a resume (MP1): while a resumable session is detached, it waits for
        the session to be resumed.
        """
        if self._gated:
            await self.wait_for_state(ConnectionState.CONNECTED, ConnectionState.CLOSED)
        self.queue_metadata_push(metadata)
        await self.wait_writable()

    def request_stream(
        self, payload: Payload, *, initial_n: int = DEFAULT_INITIAL_N, auto_request: bool = True
    ) -> RequestStream:
        """Open a request-stream; use the result as an async context manager.

        ``initial_n`` is the credit sent with the request (default 256; 2^31-1 or more means
        unbounded). With ``auto_request`` credit is refilled as items are consumed, keeping at most
        ``initial_n`` outstanding; without it only ``stream.request(n)`` grants more.
        """
        if self._hooks is not None:
            return intercepted.InterceptedRequestStream(self, self._hooks, payload, initial_n, auto_request)
        return RequestStream(self, payload, initial_n, auto_request)

    def request_channel(
        self,
        payload: Payload,
        *,
        initial_n: int = DEFAULT_INITIAL_N,
        auto_request: bool = True,
        complete: bool = False,
        outbound: AsyncIterable[Payload] | None = None,
    ) -> RequestChannel:
        """Open a request-channel whose first element is ``payload``; use as an async context manager.

        Credit options are those of :meth:`request_stream`. ``complete=True`` sends only the first
        element (C flag on REQUEST_CHANNEL). ``outbound`` is an async iterable whose elements a task
        of the interaction sends after the first one (see :class:`RequestChannel`).
        """
        if self._hooks is not None:
            return intercepted.InterceptedRequestChannel(
                self, self._hooks, payload, initial_n, auto_request, complete, outbound
            )
        return RequestChannel(self, payload, initial_n, auto_request, complete, outbound)

    async def aclose(self) -> None:
        """Close the connection: every live interaction ends with ConnectionClosedError.

        Frames already queued (for example fire-and-forget requests) are flushed first, for at most
        a couple of seconds.
        """
        self._say_goodbye()
        self._terminate(ConnectionClosedError("connection closed locally"))
        with anyio.CancelScope(shield=True):
            await self._writer_done.wait()
