"""Tunables of one connection that are not part of SETUP (the entry points' options build these)."""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol.policy import Resume
from ..transports.base import DEFAULT_CONNECT_TIMEOUT, DEFAULT_FRAME_TIMEOUT
from ..wire.fragmentation import DEFAULT_MAX_REASSEMBLED_SIZE, MIN_FRAGMENT_SIZE
from ..wire.frames import MAX_31, MAX_FRAME_SIZE
from ..wire.lease import LeaseStrategy
from .interaction import Interceptor

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_FRAME_TIMEOUT",
    "DEFAULT_MAX_CONCURRENT_REQUESTS",
    "WRITE_HIGH_WATER",
    "PeerOptions",
]

#: Queued outbound bytes above which producers (responders, channel senders, fire-and-forget) wait.
WRITE_HIGH_WATER = 1 << 20
#: Default cap on requests a peer may have us working on at once (each is a task).
DEFAULT_MAX_CONCURRENT_REQUESTS = 10_000


@dataclass(frozen=True)
class PeerOptions:
    """Per-connection limits and behaviours.

    - ``fragment_size``: split outgoing requests and payloads into frames of at most this many bytes
      (not counting the TCP length prefix; at least 64). ``None`` sends each item in one frame.
    - ``max_reassembled_size``: largest payload (metadata + data) accepted from fragments; more is a
      protocol error. Fragments held for all streams together are capped at four times this.
    - ``max_concurrent_requests``: inbound requests handled at once; more are answered with
      ERROR[REJECTED]. Fire-and-forget and metadata-push cannot be refused, so beyond the limit
      they are still taken and the connection stops reading until handlers finish.
    - ``max_stream_id``: where our stream ids wrap around (ID2); lowered only by tests.
    - ``send_keepalives``: send KEEPALIVE every interval (clients always do, servers by option).
    - ``lease_strategy``: the leases our responder grants when SETUP negotiated leasing.
    - ``lease_wait``: when our requester has no lease allowance, wait for one instead of failing
      with RejectedError.
    - ``expose_errors``: when a handler raises an exception that is not an ``RSocketError``, send
      its text to the peer. Off by default: the peer sees only the exception's type name, because
      messages can hold paths, keys or SQL. ``RSocketError`` messages are always sent.
    - ``max_lifetime_cap`` / ``keepalive_interval_cap``: the most the peer's SETUP may ask for
      (servers only). Silence is judged against the capped lifetime, and when the peer's own
      keepalives would come too rarely for it, we send KEEPALIVEs asking for an echo instead.
    - ``interceptors``: run every interaction through these (see :mod:`.interaction`).
    - ``deadlines``: on connections with composite metadata, send the caller's remaining time with
      each request and run handlers under the remaining time a request carries.
    - ``resume``: the session may outlive its transport (client: SETUP carries ``resume.token``;
      server: resumable SETUPs are accepted). Its ``store_size`` and ``session_duration`` apply.
    """

    fragment_size: int | None = None
    max_reassembled_size: int = DEFAULT_MAX_REASSEMBLED_SIZE
    max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS
    max_stream_id: int = MAX_31
    send_keepalives: bool = True
    lease_strategy: LeaseStrategy | None = None
    lease_wait: bool = False
    expose_errors: bool = False
    max_lifetime_cap: float | None = None
    keepalive_interval_cap: float | None = None
    resume: Resume | None = None
    interceptors: tuple[Interceptor, ...] = ()
    deadlines: bool = True

    def __post_init__(self) -> None:
        if self.fragment_size is not None and not MIN_FRAGMENT_SIZE <= self.fragment_size <= MAX_FRAME_SIZE:
            raise ValueError(f"fragment_size must be between {MIN_FRAGMENT_SIZE} and {MAX_FRAME_SIZE} bytes")
        if self.max_reassembled_size < 1:
            raise ValueError("max_reassembled_size must be positive")
        if self.max_concurrent_requests < 1:
            raise ValueError("max_concurrent_requests must be positive")
        for cap in (self.max_lifetime_cap, self.keepalive_interval_cap):
            if cap is not None and cap <= 0:
                raise ValueError("max_lifetime_cap and keepalive_interval_cap must be positive")
        if not 3 <= self.max_stream_id <= MAX_31:
            raise ValueError(f"max_stream_id must be between 3 and {MAX_31}")
