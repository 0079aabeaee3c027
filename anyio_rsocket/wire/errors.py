"""Exception hierarchy and RSocket error codes (checklist section 11).

Every error a peer can send maps to one class, so user code catches ``ApplicationError`` or
``RejectedError`` rather than inspecting integers. Codes are unsigned 32-bit values (E1); unknown and
application-defined codes survive as a plain :class:`RSocketError` carrying the original ``code``.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """The error codes defined by the RSocket 1.0 protocol."""

    RESERVED = 0x00000000
    INVALID_SETUP = 0x00000001
    UNSUPPORTED_SETUP = 0x00000002
    REJECTED_SETUP = 0x00000003
    REJECTED_RESUME = 0x00000004
    CONNECTION_ERROR = 0x00000101
    CONNECTION_CLOSE = 0x00000102
    APPLICATION_ERROR = 0x00000201
    REJECTED = 0x00000202
    CANCELED = 0x00000203
    INVALID = 0x00000204
    RESERVED_EXTENSION = 0xFFFFFFFF


#: Codes that concern the whole connection (sent on stream 0).
CONNECTION_ERROR_CODES = frozenset(
    {
        ErrorCode.INVALID_SETUP,
        ErrorCode.UNSUPPORTED_SETUP,
        ErrorCode.REJECTED_SETUP,
        ErrorCode.REJECTED_RESUME,
        ErrorCode.CONNECTION_ERROR,
        ErrorCode.CONNECTION_CLOSE,
    }
)


class RSocketError(Exception):
    """Base class of every error this library raises for protocol-level failures.

    ``code`` is the RSocket error code (an unsigned 32-bit integer) and ``message`` the text that
    travelled with it; ``str(error)`` is the message.
    """

    code: int = ErrorCode.APPLICATION_ERROR

    def __init__(self, message: str = "", code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code=0x{self.code:08X}, message={self.message!r})"


# --- stream-level errors: they end one interaction only (E2) ---------------------------------


class ApplicationError(RSocketError):
    """The responder's application failed the request (APPLICATION_ERROR, 0x201).

    Raise it (or any exception) from a handler to answer with ERROR; a requester receives it.
    """

    code = ErrorCode.APPLICATION_ERROR

    def __init__(self, message: str = "") -> None:
        super().__init__(message)


class RejectedError(RSocketError):
    """The responder refused the request without processing it (REJECTED, 0x202): safe to retry."""

    code = ErrorCode.REJECTED

    def __init__(self, message: str = "") -> None:
        super().__init__(message)


class CanceledError(RSocketError):
    """The responder gave up on the request, possibly after side effects (CANCELED, 0x203)."""

    code = ErrorCode.CANCELED

    def __init__(self, message: str = "") -> None:
        super().__init__(message)


class InvalidError(RSocketError):
    """The request was malformed or broke the protocol's rules for one stream (INVALID, 0x204)."""

    code = ErrorCode.INVALID

    def __init__(self, message: str = "") -> None:
        super().__init__(message)


# --- connection-level errors ------------------------------------------------------------------


class ConnectionClosedError(RSocketError):
    """The connection is gone: closed locally, closed by the peer, or failed.

    Every call still pending on a connection raises this (or a subclass) once the connection ends,
    and every call made afterwards raises it at once.
    """

    code = ErrorCode.CONNECTION_CLOSE


class ConnectionLostError(ConnectionClosedError):
    """The transport went away (EOF, reset, a WebSocket closed) without the peer closing RSocket first."""


class PeerClosedError(ConnectionClosedError):
    """The peer closed the connection in order: ERROR[CONNECTION_CLOSE] on stream 0 (E2), after
    letting live streams finish; also raised for new requests while it is closing."""


class ConnectTimeoutError(ConnectionClosedError):
    """No usable connection within ``connect_timeout`` seconds.

    Its ``__cause__`` is a ``TimeoutError`` naming the step that stalled: "TCP connect",
    "TLS handshake", "WebSocket upgrade" or "SETUP confirmation".
    """


class ConnectionErrorReceived(ConnectionClosedError):
    """The peer ended the connection with ERROR[CONNECTION_ERROR] (0x101)."""

    code = ErrorCode.CONNECTION_ERROR


class ProtocolError(ConnectionClosedError):
    """The peer broke the protocol (for example a malformed frame); we sent CONNECTION_ERROR and closed."""

    code = ErrorCode.CONNECTION_ERROR


class SetupError(ConnectionClosedError):
    """Base class for a refused connection setup (INVALID, UNSUPPORTED or REJECTED SETUP)."""

    code = ErrorCode.INVALID_SETUP


class InvalidSetupError(SetupError):
    """The SETUP frame was invalid (INVALID_SETUP, 0x001)."""

    code = ErrorCode.INVALID_SETUP


class UnsupportedSetupError(SetupError):
    """Some SETUP parameter is unsupported by the server (UNSUPPORTED_SETUP, 0x002)."""

    code = ErrorCode.UNSUPPORTED_SETUP


class RejectedSetupError(SetupError):
    """The server refused the connection (REJECTED_SETUP, 0x003).

    A server's handler factory raises ``RejectedSetupError(message)`` to refuse a client; the client's
    ``connect_*`` raises the same class with that message.
    """

    code = ErrorCode.REJECTED_SETUP

    def __init__(self, message: str = "") -> None:
        super().__init__(message)


class RejectedResumeError(SetupError):
    """The server refused to resume a session (REJECTED_RESUME, 0x004)."""

    code = ErrorCode.REJECTED_RESUME


# --- local codec errors -----------------------------------------------------------------------


class FrameError(RSocketError):
    """A frame could not be encoded or decoded.

    ``ignorable`` is true when the offending frame carried the IGNORE flag, in which case a receiver
    may drop it instead of failing the connection (MD2, U1).
    """

    code = ErrorCode.CONNECTION_ERROR

    def __init__(self, message: str, *, ignorable: bool = False) -> None:
        super().__init__(message)
        self.ignorable = ignorable


class MalformedFrameError(FrameError):
    """Received bytes do not form a valid frame (too short, lengths overrunning the frame, ...)."""


class UnknownFrameTypeError(FrameError):
    """The frame type is reserved or unassigned (U1)."""

    def __init__(self, frame_type: int, *, ignorable: bool) -> None:
        super().__init__(f"unknown frame type 0x{frame_type:02X}", ignorable=ignorable)
        self.frame_type = frame_type


class FrameTooLargeError(FrameError, ValueError):
    """A frame would exceed the 16,777,215-byte limit (T3): refused, never truncated."""


_STREAM_ERRORS: dict[int, type[RSocketError]] = {
    ErrorCode.APPLICATION_ERROR: ApplicationError,
    ErrorCode.REJECTED: RejectedError,
    ErrorCode.CANCELED: CanceledError,
    ErrorCode.INVALID: InvalidError,
}

_CONNECTION_ERRORS: dict[int, type[ConnectionClosedError]] = {
    ErrorCode.INVALID_SETUP: InvalidSetupError,
    ErrorCode.UNSUPPORTED_SETUP: UnsupportedSetupError,
    ErrorCode.REJECTED_SETUP: RejectedSetupError,
    ErrorCode.REJECTED_RESUME: RejectedResumeError,
    ErrorCode.CONNECTION_ERROR: ConnectionErrorReceived,
    ErrorCode.CONNECTION_CLOSE: PeerClosedError,
}


def error_from_code(code: int, message: str) -> RSocketError:
    """Build the exception matching an ERROR frame's code (unknown codes keep their value)."""
    stream_cls = _STREAM_ERRORS.get(code)
    if stream_cls is not None:
        return stream_cls(message)
    connection_cls = _CONNECTION_ERRORS.get(code)
    if connection_cls is not None:
        error: RSocketError = connection_cls(message)
        error.code = code
        return error
    return RSocketError(message, code)
