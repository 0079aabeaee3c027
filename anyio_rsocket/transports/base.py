"""The transport interface the connection layer drives."""

from __future__ import annotations

from abc import ABC, abstractmethod

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
