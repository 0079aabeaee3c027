"""RSocket as an ASGI application: mount it in Starlette or FastAPI, serve it with uvicorn or hypercorn.

::

    from anyio_rsocket.asgi import RSocketASGIApp

    app = RSocketASGIApp(lambda rsocket: MyHandler())          # the whole app, or
    starlette_app.mount("/rsocket", RSocketASGIApp(factory))   # one route of a bigger app

Each WebSocket connection is one RSocket connection: one frame per binary message (checklist T2),
at most 16,777,215 bytes per frame (T3). The app runs on whatever event loop the ASGI server uses
(asyncio, or Trio under hypercorn). Plain HTTP requests get ``426 Upgrade Required``; lifespan events
are acknowledged. In tests, talk to the app in-process with ``connect_websocket(url,
client=httpx.AsyncClient(transport=httpx_ws.transport.ASGIWebSocketTransport(app)))``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import anyio

from ..transports.base import Transport
from ..wire.errors import ConnectionClosedError, ErrorCode, FrameTooLargeError, ProtocolError
from ..wire.frames import MAX_FRAME_SIZE, ErrorFrame, encode_frame
from .connection import HandlerFactory
from .options import ServerOptions
from .server import registry_for, serve_connection

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Unpack

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: WebSocket close codes (RFC 6455 section 7.4.1).
_NORMAL_CLOSURE = 1000
_UNSUPPORTED_DATA = 1003
_MESSAGE_TOO_BIG = 1009


class ASGIWebSocketTransport(Transport):
    """RSocket frames over an accepted ASGI WebSocket connection (``receive`` / ``send`` callables).

    ASGI servers raise their own exception types once the client is gone, so any ``Exception`` from
    ``send`` or ``receive`` is mapped to :class:`~anyio_rsocket.errors.ConnectionClosedError`.
    """

    def __init__(self, receive: Receive, send: Send, *, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        self._receive = receive
        self._send = send
        self._max_frame_size = max_frame_size
        self._send_lock = anyio.Lock(fast_acquire=True)  # the reader sends too, on a violation
        self._error: ConnectionClosedError | None = None
        self._close_sent = False

    async def send(self, frames: list[bytes]) -> None:
        """Send each frame as one binary message."""
        for frame in frames:
            if len(frame) > self._max_frame_size:
                raise FrameTooLargeError(
                    f"frame of {len(frame)} bytes exceeds the {self._max_frame_size}-byte frame limit"
                )
        for frame in frames:
            await self._send_message({"type": "websocket.send", "bytes": frame})

    async def receive(self) -> list[bytes]:
        """Wait for the next binary message; text or oversized messages are a protocol error."""
        while True:
            if self._error is not None:
                raise self._error
            try:
                message = await self._receive()
            except Exception as exc:
                raise self._fail(ConnectionClosedError(f"connection lost: {exc!r}")) from exc
            kind = message.get("type")
            if kind == "websocket.receive":
                data = message.get("bytes")
                if data is None:
                    await self._violation(
                        "text WebSocket messages are not RSocket frames (binary only)", _UNSUPPORTED_DATA
                    )
                elif len(data) > self._max_frame_size:
                    await self._violation(
                        f"WebSocket message of {len(data)} bytes exceeds the frame limit",
                        _MESSAGE_TOO_BIG,
                    )
                else:
                    return [bytes(data)]
            elif kind == "websocket.disconnect":
                self._close_sent = True  # the connection is gone: nothing more may be sent
                code = message.get("code", 1005)
                raise self._fail(ConnectionClosedError(f"WebSocket closed by peer (code {code})"))

    async def _violation(self, message: str, close_code: int) -> None:
        self._fail(ProtocolError(message))
        error = encode_frame(ErrorFrame(0, ErrorCode.CONNECTION_ERROR, message.encode()))
        with contextlib.suppress(ConnectionClosedError):
            await self._send_message({"type": "websocket.send", "bytes": error})
        await self._close(close_code, message)

    def _fail(self, error: ConnectionClosedError) -> ConnectionClosedError:
        if self._error is None:
            self._error = error
        return error

    async def _send_message(self, message: Message) -> None:
        if self._close_sent:
            raise ConnectionClosedError(self._error.message if self._error else "the WebSocket is closed")
        try:
            async with self._send_lock:
                await self._send(message)
        except Exception as exc:
            raise self._fail(ConnectionClosedError(f"connection lost while sending: {exc!r}")) from exc

    async def _close(self, code: int, reason: str = "") -> None:
        if self._close_sent:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(1):
            with contextlib.suppress(ConnectionClosedError):
                await self._send_message({"type": "websocket.close", "code": code, "reason": reason})
        self._close_sent = True

    async def aclose(self) -> None:
        """Close the WebSocket normally (once)."""
        self._fail(ConnectionClosedError("connection closed locally"))
        await self._close(_NORMAL_CLOSURE)


class RSocketASGIApp:
    """An ASGI application serving RSocket over WebSocket, one RSocket connection per WebSocket.

    ``handler_factory(rsocket)`` is called once per connection, exactly as for
    :func:`~anyio_rsocket.serve_tcp`. Of ``subprotocols``, the first one the client offers is agreed
    on. ``options`` are those of :func:`~anyio_rsocket.serve_tcp`
    (:class:`~anyio_rsocket.options.ServerOptions`). ``max_frame_size`` refuses larger messages.
    The ASGI server owns the socket and hands over whole messages, so its own settings bound a
    message's size while it arrives and how long that may take (for example uvicorn's
    ``ws_max_size``, hypercorn's ``websocket_max_message_size``); ``frame_timeout``,
    ``max_connections`` and ``tls_handshake_timeout`` do not apply here.
    """

    def __init__(
        self,
        handler_factory: HandlerFactory,
        *,
        subprotocols: Sequence[str] = (),
        **options: Unpack[ServerOptions],
    ) -> None:
        self.handler_factory = handler_factory
        self.subprotocols = tuple(subprotocols)
        self.options = options
        #: Resumable sessions of this app (``resume=``), shared by its WebSockets.
        self.sessions = registry_for(options)
        self.max_frame_size = options.get("max_frame_size", MAX_FRAME_SIZE)
        if not 6 <= self.max_frame_size <= MAX_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be in [6, {MAX_FRAME_SIZE}]")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "http":
            await self._http(send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return  # the client left before we could accept
        offered = scope.get("subprotocols") or ()
        subprotocol = next((p for p in offered if p in self.subprotocols), None)
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        transport = ASGIWebSocketTransport(receive, send, max_frame_size=self.max_frame_size)
        await serve_connection(transport, self.handler_factory, sessions=self.sessions, **self.options)

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _http(send: Send) -> None:
        body = b"This endpoint speaks RSocket over WebSocket; send a WebSocket upgrade.\n"
        await send(
            {
                "type": "http.response.start",
                "status": 426,
                "headers": [
                    (b"upgrade", b"websocket"),
                    (b"connection", b"Upgrade"),
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


__all__ = ["ASGIWebSocketTransport", "RSocketASGIApp"]
