"""The narrow interface between a connection and the interaction objects it carries.

Requester objects (:class:`~.requester.RequestStream`, :class:`~.requester.RequestChannel`,
:class:`~.requester.PendingResponse`) and responder runners (:mod:`.responder`) act on the wire only
through a :class:`StreamLink`; the connection feeds them only through :class:`StreamOwner`. Neither
side touches the other's private members, and this module imports neither, so there is no import
cycle between them.
"""

from __future__ import annotations

from typing import Protocol

from ..protocol.streams import InteractionKind
from ..wire.payload import Payload
from .workers import WorkerPool


class StreamOwner(Protocol):
    """What the connection calls on a live interaction object (synchronously, from its reader).

    Every method must return quickly and never raise.
    """

    def on_payload(self, data: bytes, metadata: bytes | None, flags: int) -> None:
        """An item (N flag) and/or the end of the peer's half (C flag); credit was already checked."""

    def on_request_n(self, n: int) -> None:
        """The peer granted ``n`` more items (only on streams where we send)."""

    def on_cancel(self) -> None:
        """The peer sent CANCEL (responder: the stream is over; channel requester: stop sending)."""

    def on_error(self, error: BaseException) -> None:
        """The stream ended with an error: the peer's ERROR, or a stream violation we answered."""

    def on_connection_closed(self, error: BaseException) -> None:
        """The whole connection ended."""


class StreamLink(Protocol):
    """What an interaction object may ask of its connection.

    Methods that put a frame on the wire raise the connection's ``ConnectionClosedError`` once it
    has ended, except those documented as lenient (frames for a stream that may already be over).
    """

    @property
    def is_closed(self) -> bool: ...

    @property
    def expose_errors(self) -> bool:
        """Whether handler exception text may be sent to the peer (``PeerOptions.expose_errors``)."""
        ...

    @property
    def write_backlog(self) -> int:
        """Bytes queued for the writer and not yet handed to the transport."""
        ...

    @property
    def workers(self) -> WorkerPool:
        """The pool that runs responder handlers (a parked stream is resumed or closed on it)."""
        ...

    async def admit(self) -> None:
        """Wait (with ``lease_wait``) until the peer's lease allows a request; no-op without leasing."""

    def open_stream(
        self,
        owner: StreamOwner | None,
        kind: InteractionKind,
        payload: Payload,
        initial_n: int = 0,
        complete: bool = False,
    ) -> int:
        """Send a request and register ``owner`` for its stream (None for fire-and-forget); its id."""
        ...

    def send_next(self, stream_id: int, payload: Payload) -> bool:
        """Send one item if the peer's credit allows it now (spending one); False if it does not."""
        ...

    def send_payload(self, stream_id: int, payload: Payload, complete: bool = False) -> None:
        """Send one item, with C when ``complete`` (a request-response answer always has C)."""

    def send_complete(self, stream_id: int) -> None:
        """Complete our half (PAYLOAD C). Lenient: nothing happens when the stream is over."""

    def send_error(self, stream_id: int, error_code: int, message: str) -> None:
        """End the stream with ERROR. Lenient: nothing happens when the stream is over."""

    def request_n(self, stream_id: int, n: int) -> None:
        """Grant the peer ``n`` more items. Lenient: nothing happens when the peer's half is over."""

    def cancel(self, stream_id: int) -> None:
        """Send CANCEL. Lenient: nothing happens when the stream is over."""

    def send_credit(self, stream_id: int) -> int:
        """Items we may still send on the stream (2^31-1: unbounded; 0 when it is over)."""
        ...

    def recv_unbounded(self, stream_id: int) -> bool:
        """Whether the credit we granted the peer saturated at 2^31-1 (RN4)."""
        ...

    async def wait_writable(self) -> None:
        """Back-pressure: wait while the outbound queue is over its high-water mark."""

    def stream_congested(self) -> None:
        """A stream's unread buffer passed its high-water mark: stop reading after this batch."""

    def stream_relieved(self) -> None:
        """That buffer drained below its low-water mark again."""
