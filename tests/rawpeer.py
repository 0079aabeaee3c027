"""A scripted raw-frame peer: drives our client or server frame by frame over the memory transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar, get_args

import anyio

from anyio_rsocket import RSocket
from anyio_rsocket.client import open_client
from anyio_rsocket.connection import HandlerFactory
from anyio_rsocket.frames import Frame, KeepaliveFrame, SetupFrame, decode_frame, encode_frame
from anyio_rsocket.server import serve_connection, serve_tcp
from anyio_rsocket.transports.base import Transport
from anyio_rsocket.transports.memory import memory_transport_pair
from anyio_rsocket.transports.tcp import ByteStreamTransport

F = TypeVar("F")

#: A SETUP a well-behaved client would send.
DEFAULT_SETUP = SetupFrame(
    keepalive_interval=20_000,
    max_lifetime=90_000,
    metadata_mime_type="application/octet-stream",
    data_mime_type="application/octet-stream",
)


#: Pass as ``allow`` to tolerate every frame (for tests whose peer provokes arbitrary answers).
ANY_FRAME: tuple[type, ...] = tuple(get_args(Frame))


def _describe(frame: Frame) -> str:
    text = repr(frame)
    return text if len(text) <= 200 else text[:200] + "...)"


class RawPeer:
    """The other end of a connection, speaking raw frames and asserting what comes back.

    The peer is strict: every method that looks past a frame fails the test on a frame it did not
    expect. The only frames ever skipped silently are KEEPALIVEs with the respond flag, which the
    library sends on its own schedule (K1); anything else must be expected or explicitly allowed.
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._pending: list[bytes] = []
        self._sync_counter = 0

    async def send(self, *frames: Frame) -> None:
        await self.transport.send([encode_frame(frame) for frame in frames])

    async def send_raw(self, *frames: bytes) -> None:
        await self.transport.send(list(frames))

    async def receive(self, timeout: float = 5.0) -> Frame:
        """The next frame from our library (fails the test if none arrives in time)."""
        if not self._pending:
            with anyio.fail_after(timeout):
                self._pending.extend(await self.transport.receive())
        return decode_frame(self._pending.pop(0))

    async def expect(self, frame_type: type[F], timeout: float = 5.0) -> F:
        """Receive the next frame and assert its type."""
        frame = await self.receive(timeout)
        assert isinstance(frame, frame_type), f"expected {frame_type.__name__}, got {_describe(frame)}"
        return frame

    async def expect_next(self, frame_type: type[F], timeout: float = 5.0) -> F:
        """Receive the next frame that is not a library-initiated KEEPALIVE(R); assert its type.

        Only KEEPALIVEs asking for an answer (sent by the library's keepalive timer) are skipped;
        a keepalive *answer*, or any other frame, fails the test.
        """
        while True:
            frame = await self.receive(timeout)
            if isinstance(frame, KeepaliveFrame) and frame.respond and frame_type is not KeepaliveFrame:
                continue
            assert isinstance(frame, frame_type), f"expected {frame_type.__name__}, got {_describe(frame)}"
            return frame

    async def expect_closed(self, timeout: float = 5.0, *, allow: tuple[type, ...] = ()) -> list[Frame]:
        """Assert that the library closes the connection and sends nothing more before it does.

        Frames of the ``allow`` types (and library-initiated KEEPALIVE(R)s) may precede the close
        and are returned; any other frame fails the test.
        """
        from anyio_rsocket.errors import ConnectionClosedError

        seen: list[Frame] = []
        with anyio.fail_after(timeout):
            while True:
                if not self._pending:
                    try:
                        self._pending.extend(await self.transport.receive())
                    except ConnectionClosedError:
                        return seen
                    continue
                frame = decode_frame(self._pending.pop(0))
                if isinstance(frame, allow):
                    seen.append(frame)
                elif not (isinstance(frame, KeepaliveFrame) and frame.respond):
                    raise AssertionError(f"unexpected frame before the connection closed: {_describe(frame)}")

    async def round_trip(self, data: bytes | None = None, *, allow: tuple[type, ...] = ()) -> list[Frame]:
        """Send KEEPALIVE(R) and wait for its echo: everything the library sent before is now seen.

        Strict: the echo must be the next frame, apart from library-initiated KEEPALIVE(R)s and
        frames of the ``allow`` types (returned, in order). Any other frame in between fails the
        test, so ``await peer.round_trip()`` proves that nothing was sent since the last frame the
        test consumed. Pass ``allow=ANY_FRAME`` only where arbitrary answers are expected.
        """
        if data is None:
            self._sync_counter += 1
            data = b"sync-%d" % self._sync_counter
        await self.send(KeepaliveFrame(True, 0, data))
        seen: list[Frame] = []
        while True:
            frame = await self.receive()
            if isinstance(frame, KeepaliveFrame):
                if not frame.respond and frame.data == data:
                    return seen
                if frame.respond:
                    continue  # the library's own keepalive timer (K1)
            if isinstance(frame, allow):
                seen.append(frame)
                continue
            raise AssertionError(f"unexpected frame before the keepalive echo: {_describe(frame)}")


@asynccontextmanager
async def raw_server(**client_options: Any) -> AsyncIterator[tuple[RSocket, RawPeer]]:
    """Our client connected to a raw peer acting as the server (SETUP already read)."""
    client_transport, server_transport = memory_transport_pair()
    peer = RawPeer(server_transport)
    client_options.setdefault("confirm_setup", False)
    async with open_client(client_transport, **client_options) as rsocket:
        setup = await peer.expect(SetupFrame)
        assert setup.stream_id == 0
        yield rsocket, peer


#: Transport ``raw_client`` uses: "memory" (default) or "tcp" (set per module by a fixture).
RAW_TRANSPORT = "memory"


@asynccontextmanager
async def raw_client(
    handler_factory: HandlerFactory, setup: SetupFrame | None = DEFAULT_SETUP, **server_options: Any
) -> AsyncIterator[RawPeer]:
    """Our server serving one connection whose client is a raw peer (SETUP sent unless None).

    Over "memory" the peer talks to ``serve_connection`` directly; over "tcp" it connects a real
    socket to ``serve_tcp`` and speaks length-prefixed frames, byte for byte.
    """
    async with anyio.create_task_group() as task_group:
        if RAW_TRANSPORT == "tcp":
            port = await task_group.start(
                lambda task_status: serve_tcp(
                    handler_factory, "127.0.0.1", 0, task_status=task_status, **server_options
                )
            )
            peer = RawPeer(ByteStreamTransport(await anyio.connect_tcp("127.0.0.1", port)))
        else:
            client_transport, server_transport = memory_transport_pair()
            peer = RawPeer(client_transport)
            task_group.start_soon(
                lambda: serve_connection(server_transport, handler_factory, **server_options)
            )
        try:
            if setup is not None:
                await peer.send(setup)
            yield peer
        finally:
            await peer.transport.aclose()
            task_group.cancel_scope.cancel()
