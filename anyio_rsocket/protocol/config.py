"""The core's settings: the protocol-relevant fields of ``PeerOptions`` plus keepalive timing."""

from __future__ import annotations

from dataclasses import dataclass

from ..wire.fragmentation import DEFAULT_MAX_REASSEMBLED_SIZE, MIN_FRAGMENT_SIZE
from ..wire.frames import MAX_31, MAX_FRAME_SIZE
from ..wire.lease import LeaseStrategy

#: Same default as ``options.DEFAULT_MAX_CONCURRENT_REQUESTS`` (that module is not imported here).
DEFAULT_MAX_CONCURRENT_REQUESTS = 10_000
#: Credit a channel responder grants at once (IX5), as ``responder.RESPONDER_CHANNEL_WINDOW``.
DEFAULT_CHANNEL_WINDOW = 256
#: A resumable client's store of unconfirmed frames when the config names no size (as ``Resume``).
DEFAULT_RESUME_STORE_SIZE = 1 << 20


@dataclass(frozen=True)
class ProtocolConfig:
    """Settings of one :class:`~.connection.ProtocolConnection` (times in seconds).

    - ``fragment_size``, ``max_reassembled_size``, ``max_concurrent_requests``, ``max_stream_id``,
      ``lease_strategy``, ``max_lifetime_cap``, ``keepalive_interval_cap``: as in ``PeerOptions``.
      ``max_concurrent_requests`` counts live inbound streams (fire-and-forget is never refused).
    - ``send_keepalives``: send KEEPALIVE(R) every interval (K1); ``None`` means yes for a client,
      no for a server (the servers' default).
    - ``keepalive_interval``, ``max_lifetime``, ``lease``: the client's SETUP when ``initiate`` is
      not given one.
    - ``responder_channel_window``: the REQUEST_N a channel responder sends at once (IX5); 0 leaves
      the first grant to the driver.
    - ``max_frame_size``: largest frame ``receive_data`` accepts from a byte stream.
    - ``resume_store_size``: bytes of sent frames a resumable session keeps until the peer confirms
      them. On a server, ``None`` refuses resumable SETUPs and RESUME (REJECTED_SETUP /
      REJECTED_RESUME); a client keeps a store whenever its SETUP carries a resume token
      (``DEFAULT_RESUME_STORE_SIZE`` when ``None``).
    - ``session_duration``: how long a detached session waits to be resumed before it ends.
    """

    fragment_size: int | None = None
    max_reassembled_size: int = DEFAULT_MAX_REASSEMBLED_SIZE
    max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS
    max_stream_id: int = MAX_31
    send_keepalives: bool | None = None
    keepalive_interval: float = 20.0
    max_lifetime: float = 90.0
    lease: bool = False
    lease_strategy: LeaseStrategy | None = None
    max_lifetime_cap: float | None = None
    keepalive_interval_cap: float | None = None
    responder_channel_window: int = DEFAULT_CHANNEL_WINDOW
    max_frame_size: int = MAX_FRAME_SIZE
    resume_store_size: int | None = None
    session_duration: float = 60.0

    def __post_init__(self) -> None:
        if self.fragment_size is not None and not MIN_FRAGMENT_SIZE <= self.fragment_size <= MAX_FRAME_SIZE:
            raise ValueError(f"fragment_size must be between {MIN_FRAGMENT_SIZE} and {MAX_FRAME_SIZE} bytes")
        if self.max_reassembled_size < 1:
            raise ValueError("max_reassembled_size must be positive")
        if self.max_concurrent_requests < 1:
            raise ValueError("max_concurrent_requests must be positive")
        if not 3 <= self.max_stream_id <= MAX_31:
            raise ValueError(f"max_stream_id must be between 3 and {MAX_31}")
        if self.keepalive_interval <= 0 or self.max_lifetime <= 0:
            raise ValueError("keepalive_interval and max_lifetime must be positive")
        for cap in (self.max_lifetime_cap, self.keepalive_interval_cap):
            if cap is not None and cap <= 0:
                raise ValueError("max_lifetime_cap and keepalive_interval_cap must be positive")
        if not 0 <= self.responder_channel_window <= MAX_31:
            raise ValueError(f"responder_channel_window must be between 0 and {MAX_31}")
        if self.resume_store_size is not None and self.resume_store_size < 1:
            raise ValueError("resume_store_size must be positive")
        if not self.session_duration > 0:
            raise ValueError("session_duration must be positive")
        if not 6 <= self.max_frame_size <= MAX_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be between 6 and {MAX_FRAME_SIZE}")
