"""The transport interface the connection layer drives."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager, AsyncExitStack

#: Default bound on reaching a usable connection (connect, TLS, upgrade, SETUP confirmation).
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Default limit on receiving one whole frame once its first byte has arrived.
DEFAULT_FRAME_TIMEOUT = 60.0


class Transport(ABC):
    """A bidirectional carrier of RSocket frames (each frame is the bytes of one frame, unprefixed).

    Implementations raise :class:`~anyio_rsocket.errors.ConnectionClosedError` from ``send`` and
    ``receive`` once the underlying connection is gone. ``send`` is only ever called by one task at a
    time (the connection's writer), and ``receive`` only by the reader.
    """

    @abstractmethod
    async def send(self, frames: list[bytes]) -> None:
        """Write ``frames`` in order, as few writes as the medium allows (one for byte streams)."""

    @abstractmethod
    async def receive(self) -> list[bytes]:
        """Wait for and return at least one complete frame."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close the transport; further sends and receives fail with ConnectionClosedError."""


class OwnedTransport(Transport):
    """A transport that an async context manager opened, closed by leaving that manager.

    A redialled transport outlives the call that opened it (the driver closes it when it is lost),
    so the manager is entered into an exit stack that :meth:`aclose` unwinds.
    """

    def __init__(self, transport: Transport, stack: AsyncExitStack) -> None:
        self._transport = transport
        self._stack = stack

    @classmethod
    async def enter(cls, manager: AbstractAsyncContextManager[Transport]) -> OwnedTransport:
        """Enter ``manager`` and own the transport it yields; a failure leaves nothing open."""
        stack = AsyncExitStack()
        try:
            transport = await stack.enter_async_context(manager)
        except BaseException:
            await stack.aclose()
            raise
        return cls(transport, stack)

    async def send(self, frames: list[bytes]) -> None:
        await self._transport.send(frames)

    async def receive(self) -> list[bytes]:
        return await self._transport.receive()

    async def aclose(self) -> None:
        await self._stack.aclose()
