"""Transports: how frames travel between two peers.

A transport sends batches of encoded frames and receives frames, hiding whether the wire is a TCP byte
stream with length prefixes, a message-oriented WebSocket or an in-process memory channel. Every
transport maps its own I/O errors to :class:`~anyio_rsocket.errors.ConnectionClosedError`.
"""

from .base import Transport
from .memory import MemoryTransport, memory_transport_pair
from .tcp import ByteStreamTransport

__all__ = ["ByteStreamTransport", "MemoryTransport", "Transport", "memory_transport_pair"]
