"""anyio_rsocket: RSocket for Trio and asyncio, with structured concurrency.

Connections are scoped to an ``async with``; every interaction is scoped to the call or block that
started it. See README.md for a tour and docs/architecture.md for the layers.
"""

from .client import connect_tcp, open_client
from .connection import RSocket
from .errors import (
    ApplicationError,
    CanceledError,
    ConnectionClosedError,
    ConnectionErrorReceived,
    ConnectionLostError,
    ConnectTimeoutError,
    ErrorCode,
    FrameError,
    FrameTooLargeError,
    InvalidError,
    InvalidSetupError,
    MalformedFrameError,
    PeerClosedError,
    ProtocolError,
    RejectedError,
    RejectedResumeError,
    RejectedSetupError,
    RSocketError,
    SetupError,
    UnsupportedSetupError,
)
from .handler import RequestHandler
from .payload import Payload
from .protocol.errors import (
    InvalidArgumentError,
    InvalidStateError,
    LeaseRefusedError,
    LocalProtocolError,
    PayloadTooLargeError,
    RemoteProtocolError,
    StreamIdsExhaustedError,
)
from .requester import DEFAULT_INITIAL_N, RequestChannel, RequestStream
from .router import Router
from .server import serve_connection, serve_stream, serve_tcp
from .setup_info import SetupInfo
from .transports import memory_transport_pair
from .url import connect
from .websocket import connect_websocket, serve_websocket, serve_websocket_stream

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_INITIAL_N",
    "ApplicationError",
    "CanceledError",
    "ConnectionClosedError",
    "ConnectTimeoutError",
    "ConnectionErrorReceived",
    "ConnectionLostError",
    "ErrorCode",
    "FrameError",
    "FrameTooLargeError",
    "InvalidArgumentError",
    "InvalidError",
    "InvalidSetupError",
    "InvalidStateError",
    "LeaseRefusedError",
    "LocalProtocolError",
    "MalformedFrameError",
    "Payload",
    "PayloadTooLargeError",
    "PeerClosedError",
    "ProtocolError",
    "RSocket",
    "RSocketError",
    "RemoteProtocolError",
    "RejectedError",
    "RejectedResumeError",
    "RejectedSetupError",
    "RequestChannel",
    "RequestHandler",
    "RequestStream",
    "Router",
    "SetupError",
    "SetupInfo",
    "StreamIdsExhaustedError",
    "UnsupportedSetupError",
    "__version__",
    "connect",
    "connect_tcp",
    "connect_websocket",
    "memory_transport_pair",
    "open_client",
    "serve_connection",
    "serve_stream",
    "serve_tcp",
    "serve_websocket",
    "serve_websocket_stream",
]
