"""anyio_rsocket: RSocket for Trio and asyncio, with structured concurrency.

Connections are scoped to an ``async with``; every interaction is scoped to the call or block that
started it. See README.md for a tour and docs/architecture.md for the layers.
"""

import importlib
from typing import TYPE_CHECKING, Any

from .peer.client import connect_tcp, open_client
from .peer.connection import RSocket
from .peer.deadlines import DEADLINE_MIME_TYPE
from .peer.handler import RequestHandler
from .peer.interaction import Interaction, Interceptor, Side
from .peer.requester import DEFAULT_INITIAL_N, RequestChannel, RequestStream
from .peer.server import serve_connection, serve_stream, serve_tcp
from .peer.session import ConnectionState
from .peer.sessions import SessionRegistry
from .peer.setup_info import SetupInfo
from .peer.shutdown import ServerShutdown
from .peer.stats import ConnectionStats
from .pool import LeastLoaded, Pool, RoundRobin, TargetState, TargetStats, connect_pool
from .protocol.errors import (
    InvalidArgumentError,
    InvalidStateError,
    LeaseRefusedError,
    LocalProtocolError,
    PayloadTooLargeError,
    RemoteProtocolError,
    StreamIdsExhaustedError,
)
from .protocol.policy import Backoff, Resume
from .router import Router
from .transports import memory_transport_pair
from .wire.errors import (
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
from .wire.payload import NO_VALUE, Payload

if TYPE_CHECKING:  # imported on first use (module __getattr__ below): they load httpx and wsproto
    from .peer.asgi import RSocketASGIApp
    from .peer.url import connect
    from .peer.websocket import connect_websocket, serve_websocket, serve_websocket_stream

__version__ = "0.1.0"

#: Public names whose modules import the WebSocket stack (httpx, wsproto): loaded on first access, so
#: that ``import anyio_rsocket`` (and with it ``anyio_rsocket.wire`` or ``anyio_rsocket.protocol``)
#: stays light.
_LAZY = {
    "RSocketASGIApp": ".peer.asgi",
    "connect": ".peer.url",
    "connect_websocket": ".peer.websocket",
    "serve_websocket": ".peer.websocket",
    "serve_websocket_stream": ".peer.websocket",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "NO_VALUE",
    "DEFAULT_INITIAL_N",
    "ApplicationError",
    "Backoff",
    "ConnectionState",
    "ConnectionStats",
    "DEADLINE_MIME_TYPE",
    "Interaction",
    "Interceptor",
    "Side",
    "LeastLoaded",
    "Pool",
    "RoundRobin",
    "TargetState",
    "TargetStats",
    "connect_pool",
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
    "Resume",
    "SessionRegistry",
    "RSocket",
    "RSocketASGIApp",
    "RSocketError",
    "RemoteProtocolError",
    "RejectedError",
    "RejectedResumeError",
    "RejectedSetupError",
    "RequestChannel",
    "RequestHandler",
    "RequestStream",
    "Router",
    "ServerShutdown",
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
