"""The sans-IO RSocket core: protocol state without I/O, event loops or clocks.

Feed it received frames (or bytes) and the current time; take frames to send and events. See
:class:`ProtocolConnection`. Nothing in this package imports an event loop, a socket or ``time``
(``tests/protocol/test_import_purity.py`` keeps it so).
"""

from .config import ProtocolConfig
from .connection import ProtocolConnection
from .core import Phase
from .credit import Credit
from .errors import (
    ConnectionClosingError,
    ConnectionEndedError,
    InvalidArgumentError,
    InvalidStateError,
    LeaseRefusedError,
    LocalProtocolError,
    PayloadTooLargeError,
    RemoteProtocolError,
    StreamIdsExhaustedError,
)
from .events import (
    CancelReceived,
    ConnectionDraining,
    ConnectionEstablished,
    ConnectionTerminated,
    ErrorReceived,
    Event,
    KeepaliveReceived,
    LeaseReceived,
    MetadataPushReceived,
    PayloadReceived,
    RequestNReceived,
    RequestReceived,
    RequestRejected,
    ResumeReceived,
    SessionDetached,
    SessionResumed,
    SetupReceived,
    StreamEnded,
    StreamFailed,
    TerminationCause,
)
from .ids import StreamIdAllocator
from .streams import TRANSITIONS, InteractionKind, PayloadSink, StreamInput, StreamState

__all__ = [
    "TRANSITIONS",
    "CancelReceived",
    "ConnectionClosingError",
    "ConnectionDraining",
    "ConnectionEndedError",
    "ConnectionEstablished",
    "ConnectionTerminated",
    "Credit",
    "ErrorReceived",
    "Event",
    "InteractionKind",
    "InvalidArgumentError",
    "InvalidStateError",
    "KeepaliveReceived",
    "LeaseReceived",
    "LeaseRefusedError",
    "LocalProtocolError",
    "MetadataPushReceived",
    "PayloadReceived",
    "PayloadSink",
    "PayloadTooLargeError",
    "Phase",
    "ProtocolConfig",
    "ProtocolConnection",
    "RemoteProtocolError",
    "RequestNReceived",
    "RequestReceived",
    "RequestRejected",
    "ResumeReceived",
    "SessionDetached",
    "SessionResumed",
    "SetupReceived",
    "StreamEnded",
    "StreamFailed",
    "StreamIdAllocator",
    "StreamIdsExhaustedError",
    "StreamInput",
    "StreamState",
    "TerminationCause",
]
