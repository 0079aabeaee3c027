"""A connection's live counters, as :attr:`RSocket.stats <anyio_rsocket.RSocket.stats>` reports them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConnectionStats:
    """A snapshot of one connection's traffic.

    - ``frames_sent`` / ``frames_received``: RSocket frames written to / read from the transport,
      across every transport a resumed session used;
    - ``bytes_sent`` / ``bytes_received``: their bytes, without the TCP length prefix;
    - ``streams_open``: streams live now (request-response included, fire-and-forget never);
    - ``rtt``: the last keepalive round trip in seconds (None until an echo came back; servers
      measure it only when they send keepalives themselves).
    """

    frames_sent: int
    frames_received: int
    bytes_sent: int
    bytes_received: int
    streams_open: int
    rtt: float | None


__all__ = ["ConnectionStats"]
