"""The two kinds of protocol error of the sans-IO core (the h11 habit).

- :class:`LocalProtocolError`: *our* side misused the API (sending without credit, completing a half
  that is already complete, opening a request after the connection ended, ...). It is raised at the
  call, and nothing was queued or changed.
- :class:`RemoteProtocolError`: the *peer* broke the protocol. It never escapes the core: the core
  answers it (ERROR[CONNECTION_ERROR] and :class:`~.events.ConnectionTerminated` for a connection
  violation, CANCEL or ERROR[INVALID] and :class:`~.events.StreamFailed` for a stream violation) and
  reports it as events.
"""

from __future__ import annotations

from ..wire.errors import ErrorCode, FrameTooLargeError, ProtocolError, RejectedError


class LocalProtocolError(Exception):
    """Our own side misused the core; raised at the call, with no state changed.

    Subclasses that the AnyIO peer raises to its users also inherit the exception type those calls
    raised before the distinction existed (``ValueError``, ``RejectedError``, ...), so existing
    ``except`` clauses keep working.
    """


class InvalidArgumentError(LocalProtocolError, ValueError):
    """An argument out of range: a request-n or initial-n that is not a positive integer, ..."""


class InvalidStateError(LocalProtocolError, RuntimeError):
    """A call the interaction's state does not allow (asking for items before the request went out)."""


class ConnectionEndedError(LocalProtocolError):
    """The connection has terminated (or has not started): nothing more can be sent."""


class ConnectionClosingError(LocalProtocolError):
    """The connection is draining after CONNECTION_CLOSE (E2): live streams finish, new ones are refused."""


class LeaseRefusedError(LocalProtocolError, RejectedError):
    """Leasing is on and the peer's lease allows no request now (S6, L2); nothing went out."""


class StreamIdsExhaustedError(LocalProtocolError, RejectedError):
    """Every stream id of our parity is in use (ID2): a new connection is needed."""


class PayloadTooLargeError(LocalProtocolError, FrameTooLargeError):
    """The item cannot be encoded (over the frame limit without fragmentation, T3); ``__cause__`` says why."""


class RemoteProtocolError(ProtocolError):
    """The peer violated the protocol.

    ``stream_id`` 0 means the whole connection (answered with ERROR[CONNECTION_ERROR]); otherwise the
    violation concerns one stream only (for example more items than credit allows, RN6) and ends just
    that stream.
    """

    def __init__(self, message: str, *, stream_id: int = 0, code: int = ErrorCode.CONNECTION_ERROR) -> None:
        super().__init__(message, code)
        self.stream_id = stream_id


__all__ = [
    "ConnectionClosingError",
    "ConnectionEndedError",
    "InvalidArgumentError",
    "InvalidStateError",
    "LeaseRefusedError",
    "LocalProtocolError",
    "PayloadTooLargeError",
    "RemoteProtocolError",
    "StreamIdsExhaustedError",
]
