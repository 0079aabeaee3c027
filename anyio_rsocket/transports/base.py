"""The transport interface the connection layer drives."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
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
        """Write ``frames`` in order, in as few writes as the medium allows (one over TCP)."""

    #: Whether :meth:`send_now` may be called: the medium can take bytes without an ``await``.
    can_send_now: bool = False

    def send_now(self, frames: list[bytes]) -> None:
        """Write ``frames`` from the calling task, without waiting; only when ``can_send_now``.

        What the medium does not take at once is kept (``holds_unsent``) and goes out first with
        the next :meth:`send`, which the caller must then make (``send([])`` is enough). It is only
        called while no :meth:`send` is in progress. Being synchronous, it cannot be cancelled half
        way; I/O errors are not raised here but kept for the next :meth:`send` to report.
        """
        raise NotImplementedError

    @property
    def holds_unsent(self) -> bool:
        """True while bytes that :meth:`send_now` took wait for the next :meth:`send`."""
        return False

    def set_frame_consumer(self, consumer: Callable[[list[bytes]], None] | None) -> bool:
        """Have frames that arrive while :meth:`receive` waits handed to ``consumer`` directly,
        from the event loop's I/O callback, without waking the receiving task; ``None`` stops it.

        Returns False when the transport cannot (then nothing changes). Frames the transport does
        not hand over this way (a partial frame, for one) still come from :meth:`receive`.
        """
        return False

    def poke(self) -> None:
        """Make a waiting (or the next) :meth:`receive` return ``[]`` once; only after a
        successful :meth:`set_frame_consumer`."""
        raise NotImplementedError("poke() needs a frame consumer, which this transport has not")

    @abstractmethod
    async def receive(self) -> list[bytes]:
        """Wait for and return at least one complete frame (or ``[]`` once after :meth:`poke`)."""

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
        self.can_send_now = transport.can_send_now

    def send_now(self, frames: list[bytes]) -> None:
        self._transport.send_now(frames)

    def set_frame_consumer(self, consumer: Callable[[list[bytes]], None] | None) -> bool:
        return self._transport.set_frame_consumer(consumer)

    def poke(self) -> None:
        self._transport.poke()

    @property
    def holds_unsent(self) -> bool:
        return self._transport.holds_unsent

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
