"""The responder interface: what a peer does with the requests it receives.

Clients and servers answer requests through the same :class:`RequestHandler`. Subclass it and
override the interactions you support; the others answer ERROR[REJECTED] (nothing was processed, so
the requester may safely retry elsewhere).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..wire.errors import RejectedError
from ..wire.payload import Payload


class RequestHandler:
    """Base responder. Each inbound request runs in its own task inside the connection's task group.

    Raising :class:`~anyio_rsocket.errors.ApplicationError` (or any exception) from a method sends
    ERROR to the requester: an ``RSocketError`` keeps its code and message; anything else becomes
    APPLICATION_ERROR carrying only the exception's type name (its text too with
    ``expose_errors=True``). When the requester cancels, the task running the method is cancelled.
    """

    async def request_response(self, payload: Payload) -> Payload | None:
        """Answer one request with one payload (``None`` completes without a value)."""
        raise RejectedError("request-response is not supported by this responder")

    async def fire_and_forget(self, payload: Payload) -> None:
        """Handle a request that expects no answer (errors are logged, never sent)."""
        raise RejectedError("fire-and-forget is not supported by this responder")

    async def metadata_push(self, metadata: bytes) -> None:
        """Handle connection-level metadata pushed by the peer (errors are logged, never sent)."""

    def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        """Answer with a stream of payloads: write this as an async generator.

        The library pulls the next item only while the requester has credit, so a generator that
        produces items lazily gets back-pressure for free.
        """
        raise RejectedError("request-stream is not supported by this responder")

    def request_channel(self, payload: Payload, inbound: AsyncIterator[Payload]) -> AsyncIterator[Payload]:
        """Answer a channel: ``payload`` is the requester's first element, ``inbound`` the rest.

        Write it as an async generator yielding the outbound elements. Iterating ``inbound`` grants
        the requester credit as elements are consumed; when the generator returns while ``inbound``
        is still open, the requester is told to stop sending (CANCEL).
        """
        raise RejectedError("request-channel is not supported by this responder")
