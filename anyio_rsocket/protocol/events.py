"""What the core reports to its driver: small dataclasses (the h11/wsproto habit).

They are slotted and not frozen, because building a frozen dataclass costs about half a microsecond
more, once per request on the hot path; treat them as read-only all the same.

``receive_frames``, ``receive_data``, ``handle_timer``, ``accept_setup`` and ``pop_events`` return
them in the order things happened. Events never reference the transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ..wire.frames import SetupFrame
from ..wire.payload import Payload
from .streams import InteractionKind


class TerminationCause(Enum):
    """Why a connection ended."""

    PEER_VIOLATION = "peer violation"  # we sent ERROR[CONNECTION_ERROR] (or a SETUP error) and closed
    PEER_CLOSED = "peer closed"  # the peer sent ERROR on stream 0 (or its CONNECTION_CLOSE drained)
    LOCAL = "local"  # close() or reject_setup(), or our own CONNECTION_CLOSE drained
    TIMEOUT = "timeout"  # K3: nothing from the peer for max-lifetime
    #: A resumable session that cannot continue: it expired while detached, the peer refused our
    #: RESUME (or answered it wrongly), or we refused the peer's RESUME for positions we cannot meet.
    RESUME_REJECTED = "resume rejected"


@dataclass(slots=True)
class Event:
    """Base class of every event."""


@dataclass(slots=True)
class SetupReceived(Event):
    """Server: a valid SETUP arrived; call ``accept_setup(now)`` or ``reject_setup(code, message)``."""

    setup: SetupFrame


@dataclass(slots=True)
class ConnectionEstablished(Event):
    """Client: the server accepted SETUP (a KEEPALIVE, a LEASE or a request arrived, S4)."""


@dataclass(slots=True)
class RequestReceived(Event):
    """The peer opened a stream (fire-and-forget included; its stream is never registered).

    ``initial_n`` is the credit the requester granted us (0 for request-response and
    fire-and-forget); ``complete`` is the C flag of REQUEST_CHANNEL (the requester's half is done).
    """

    kind: InteractionKind
    stream_id: int
    payload: Payload
    initial_n: int = 0
    complete: bool = False


@dataclass(slots=True)
class RequestRejected(Event):
    """The core refused an inbound request itself (lease L3, admission limit, draining E2).

    ``answered`` is false for fire-and-forget, which is never answered (IX3); otherwise the core
    queued ERROR[REJECTED] with ``reason``.
    """

    kind: InteractionKind
    stream_id: int
    reason: str
    answered: bool


@dataclass(slots=True)
class PayloadReceived(Event):
    """An item (``next``) and/or the end of the peer's half (``complete``) on a stream.

    ``payload`` is None when ``next`` is false. For request-response ``complete`` is always true
    (IX2). Not emitted for streams whose driver registered a payload sink.
    """

    stream_id: int
    payload: Payload | None
    next: bool
    complete: bool


@dataclass(slots=True)
class RequestNReceived(Event):
    """The peer granted ``n`` more items on a stream where we send (after saturation, RN4: ``unbounded``)."""

    stream_id: int
    n: int
    unbounded: bool


@dataclass(slots=True)
class CancelReceived(Event):
    """The peer sent CANCEL: as responder, the stream is over; as channel requester, stop sending."""

    stream_id: int


@dataclass(slots=True)
class ErrorReceived(Event):
    """The peer ended a stream with ERROR (stream-level code, E2)."""

    stream_id: int
    error_code: int
    message: str


@dataclass(slots=True)
class StreamFailed(Event):
    """The core ended a stream because the peer broke a stream rule (RN6: items beyond credit).

    It already told the peer: CANCEL when we are the requester, ERROR[INVALID] when the responder.
    """

    stream_id: int
    error_code: int
    message: str


@dataclass(slots=True)
class StreamEnded(Event):
    """A stream is over on our side and its id is released (emitted once per registered stream)."""

    stream_id: int


@dataclass(slots=True)
class MetadataPushReceived(Event):
    """METADATA_PUSH on stream 0 (MP1)."""

    metadata: bytes


@dataclass(slots=True)
class LeaseReceived(Event):
    """A LEASE replaced the peer's allowance to us (L1); only when leasing was negotiated."""

    ttl: float
    number_of_requests: int
    metadata: bytes | None


@dataclass(slots=True)
class KeepaliveReceived(Event):
    """A KEEPALIVE; the core already queued the echo when ``respond`` is set (K2)."""

    data: bytes
    respond: bool


@dataclass(slots=True)
class ConnectionDraining(Event):
    """CONNECTION_CLOSE with live streams (E2): they may finish, new requests are refused."""

    message: str


@dataclass(slots=True)
class ConnectionTerminated(Event):
    """The connection is over; every live stream ended with it. Emitted exactly once.

    ``error_code`` is what was sent or received on stream 0 (CONNECTION_CLOSE when nothing was),
    ``message`` a human-readable reason, ``cause`` who ended it.
    """

    error_code: int
    message: str
    cause: TerminationCause


@dataclass(slots=True)
class ResumeReceived(Event):
    """Server: a new connection opened with RESUME (R4) instead of SETUP.

    The driver finds the session ``token`` names and calls its ``accept_resume``; this core (which
    only read the RESUME) then has nothing more to do, or calls ``reject_resume`` for an unknown
    token.
    """

    token: bytes
    last_received_server_position: int
    first_available_client_position: int


@dataclass(slots=True)
class SessionDetached(Event):
    """A resumable session lost its transport by silence (K3 on a resumable session): the driver
    drops the transport and the session waits, up to ``session_duration``, to be resumed."""

    reason: str


@dataclass(slots=True)
class SessionResumed(Event):
    """The session continues on a new transport: RESUME_OK was received (client) or queued
    (server), followed by the frames the peer had not received (R6)."""
