"""What an interceptor sees: :class:`Interaction`, and the :class:`Interceptor` base class.

An interceptor wraps the whole lifetime of one interaction as an async context manager, on the
requester side (around a call or a stream block) and on the responder side (around the handler):
a span, a timer or a permit taken on entry is released exactly when the interaction ends,
however it ends (complete, error, cancel, connection loss). Raising on entry refuses the
interaction: the caller gets the exception (requester side), or the peer gets ERROR (responder
side: the error's own code for an ``RSocketError``, REJECTED otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from enum import Enum

from ..extensions.composite import CompositeMetadata, encode_entry
from ..extensions.entry import CompositeEntry
from ..extensions.errors import MetadataDecodeError
from ..extensions.mime import MESSAGE_COMPOSITE_METADATA, MimeType
from ..protocol.streams import InteractionKind
from ..wire.payload import Payload
from .setup_info import SetupInfo


class Side(Enum):
    """Which end of an interaction an interceptor is on."""

    REQUESTER = "requester"
    RESPONDER = "responder"


class Interaction:
    """One request-response, fire-and-forget, request-stream or request-channel, as intercepted.

    - ``kind``, ``side``, ``setup`` (the connection's SETUP: MIME types and so on);
    - ``payload``: the request. On the requester side an interceptor may replace it, or call
      :meth:`add_metadata`, before the request goes out;
    - ``stream_id``: 0 until the request is sent (requester side);
    - ``items_sent`` / ``items_received``: payloads so far (the request itself not counted);
    - ``error``: the exception the interaction ended with, if any; ``cancelled``: it was
      abandoned (our caller left early, or the peer cancelled).
    """

    __slots__ = (
        "_payload",
        "_route",
        "cancelled",
        "error",
        "items_received",
        "items_sent",
        "kind",
        "setup",
        "side",
        "stream_id",
    )

    def __init__(
        self, kind: InteractionKind, side: Side, payload: Payload, setup: SetupInfo, stream_id: int = 0
    ) -> None:
        self.kind = kind
        self.side = side
        self._payload = payload
        self.setup = setup
        self.stream_id = stream_id
        self.items_sent = 0
        self.items_received = 0
        self.error: BaseException | None = None
        self.cancelled = False
        self._route: str | bool | None = False  # False: not looked up yet

    @property
    def payload(self) -> Payload:
        """The request (a requester-side interceptor may replace it before the request goes out)."""
        return self._payload

    @payload.setter
    def payload(self, value: Payload) -> None:
        self._payload = value
        self._route = False  # the route is read again from the new metadata

    @property
    def composite_metadata(self) -> CompositeMetadata | None:
        """The request's metadata as composite metadata (when the connection uses it and it parses)."""
        metadata = self.payload.metadata
        if metadata is None or self.setup.metadata_mime_type != MESSAGE_COMPOSITE_METADATA:
            return None
        try:
            return CompositeMetadata.decode(metadata)
        except MetadataDecodeError:
            return None

    @property
    def route(self) -> str | None:
        """The request's route (the first routing tag of its composite metadata), if it has one."""
        if self._route is False:
            entries = self.composite_metadata
            self._route = entries.route if entries is not None else None
        return self._route if isinstance(self._route, str) else None

    def add_metadata(self, mime_type: MimeType, content: bytes) -> bool:
        """Requester side: append a composite metadata entry to the request.

        Returns False (and changes nothing) when the connection's metadata is not composite
        metadata, where there is no way to add an entry.
        """
        if self.setup.metadata_mime_type != MESSAGE_COMPOSITE_METADATA:
            return False
        entry = encode_entry(CompositeEntry(mime_type, content))
        payload = self.payload
        self.payload = Payload(payload.data, (payload.metadata or b"") + entry)
        return True

    def __repr__(self) -> str:
        return f"Interaction({self.kind.value}, {self.side.value}, stream {self.stream_id})"


class Interceptor:
    """Base class of interceptors: override :meth:`intercept`, and :meth:`on_item` if needed.

    Interceptors are given as ``interceptors=[first, second, ...]``: the first is outermost (entered
    first, left last), on both sides.
    """

    def intercept(self, interaction: Interaction) -> AbstractAsyncContextManager[object]:
        """An async context manager around the interaction (typically an ``@asynccontextmanager``).

        Entered before the request is sent (requester) or the handler runs (responder); left when
        the interaction is over. An exception the interaction ends with is raised at its
        ``yield``; cancellation too, so ``finally`` blocks run in every case.
        """
        return nullcontext()

    def on_item(self, interaction: Interaction, payload: Payload, *, outbound: bool) -> None:
        """Called for each item of a stream or channel (``outbound``: we send it). Must not block;
        ``payload`` is the item itself, not a copy."""


@dataclass(frozen=True)
class Hooks:
    """What a connection runs its interactions through (``None`` on a connection: nothing).

    ``propagate_deadlines``: requests carry the caller's remaining time; ``honor_deadlines``:
    handlers run under the remaining time a request carries. Both need composite metadata.
    """

    interceptors: tuple[Interceptor, ...]
    setup: SetupInfo
    propagate_deadlines: bool = False
    honor_deadlines: bool = False

    @classmethod
    def build(cls, interceptors: Sequence[Interceptor], setup: SetupInfo, deadlines: bool) -> Hooks | None:
        """The hooks of a connection with these options, or None when there is nothing to run."""
        composite = setup.metadata_mime_type == MESSAGE_COMPOSITE_METADATA
        chain = tuple(interceptors)
        for interceptor in chain:
            if not isinstance(interceptor, Interceptor):
                raise TypeError(f"interceptors must be Interceptor objects, not {type(interceptor).__name__}")
        if not chain and not (deadlines and composite):
            return None
        return cls(chain, setup, deadlines and composite, deadlines and composite)


__all__ = ["Hooks", "Interaction", "Interceptor", "Side"]
