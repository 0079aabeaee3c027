"""Client-side route binding: name the route once, then make requests to it.

::

    users = route_requester(rs, "user.get")          # or rs.route("user.get")
    reply = await users.request_response({"id": 7})  # data encoded by the connection's data MIME codec
    user = users.decode(reply, User)

The metadata is composite metadata (the routing entry, then any extra entries such as per-request
authentication) when the connection's metadata MIME is ``message/x.rsocket.composite-metadata.v0``, and
bare routing metadata when it is ``message/x.rsocket.routing.v0``.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterable, Iterable
from typing import Any, Protocol, TypedDict, TypeVar, overload

from .codecs import Codec, CodecRegistry, default_codecs
from .extensions import (
    MESSAGE_COMPOSITE_METADATA,
    MESSAGE_ROUTING,
    Authentication,
    CompositeEntry,
    CompositeMetadata,
    MetadataDecodeError,
    MimeType,
    accept_mime,
    authentication_entry,
    composite,
    data_mime,
    encode_routing,
    route,
)
from .peer.requester import DEFAULT_INITIAL_N, RequestChannel, RequestStream
from .peer.setup_info import SetupInfo
from .wire.payload import Payload

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Unpack

T = TypeVar("T")


class Requester(Protocol):
    """What a routed requester needs of a connection (:class:`~anyio_rsocket.RSocket` is one)."""

    @property
    def setup(self) -> SetupInfo: ...

    async def request_response(self, payload: Payload) -> Payload: ...

    async def fire_and_forget(self, payload: Payload) -> None: ...

    async def metadata_push(self, metadata: bytes) -> None: ...

    def request_stream(
        self, payload: Payload, *, initial_n: int = ..., auto_request: bool = ...
    ) -> RequestStream: ...

    def request_channel(
        self,
        payload: Payload,
        *,
        initial_n: int = ...,
        auto_request: bool = ...,
        complete: bool = ...,
        outbound: AsyncIterable[Payload] | None = ...,
    ) -> RequestChannel: ...


class RouteOptions(TypedDict, total=False):
    """The keyword options of :class:`RoutedRequester` (and of ``RSocket.route``)."""

    codec: Codec | None
    codecs: CodecRegistry | None
    data_mime_type: str | None
    accept: Iterable[MimeType]
    authentication: Authentication | None
    metadata: Iterable[CompositeEntry]


class RoutedRequester:
    """Requests to one route of one connection, with the route's metadata built once.

    ``data`` arguments are sent as they are when they are ``bytes``; a :class:`Payload` keeps its data
    and its metadata is appended (composite metadata only); any other value is encoded with ``codec``,
    else the codec of ``data_mime_type`` (which also adds a per-stream data MIME entry, X9), else the
    codec of the connection's data MIME type. ``accept`` adds an accept-mime-types entry (X10),
    ``authentication`` a per-request authentication entry (X6-X8) and ``metadata`` further entries.
    """

    def __init__(
        self,
        rsocket: Requester,
        route_tag: str,
        *more_tags: str,
        codec: Codec | None = None,
        codecs: CodecRegistry | None = None,
        data_mime_type: str | None = None,
        accept: Iterable[MimeType] = (),
        authentication: Authentication | None = None,
        metadata: Iterable[CompositeEntry] = (),
    ) -> None:
        self.rsocket = rsocket
        self.route = route_tag
        self.tags = (route_tag, *more_tags)
        self.data_mime_type = data_mime_type or rsocket.setup.data_mime_type
        self._codecs = codecs if codecs is not None else default_codecs
        self._codec = codec
        extra: list[CompositeEntry] = []
        if data_mime_type is not None:
            extra.append(data_mime(data_mime_type))
        accepted = tuple(accept)
        if accepted:
            extra.append(accept_mime(*accepted))
        if authentication is not None:
            extra.append(authentication_entry(authentication))
        extra.extend(metadata)
        metadata_mime_type = rsocket.setup.metadata_mime_type
        if metadata_mime_type == MESSAGE_COMPOSITE_METADATA:
            self._composite = True
            self.metadata = composite(route(route_tag, *more_tags), *extra)
        elif metadata_mime_type == MESSAGE_ROUTING:
            if extra:
                raise ValueError(
                    "this connection's metadata MIME is message/x.rsocket.routing.v0: it carries only "
                    "routing tags (connect with composite metadata for more entries)"
                )
            self._composite = False
            self.metadata = encode_routing(*self.tags)
        else:
            raise ValueError(
                f"routed requests need composite or routing metadata, but this connection's metadata "
                f"MIME is {metadata_mime_type!r}; connect with "
                f"metadata_mime_type={MESSAGE_COMPOSITE_METADATA!r}"
            )

    def __repr__(self) -> str:
        return f"RoutedRequester({self.route!r})"

    # --- payloads -------------------------------------------------------------------------------

    def encode(self, data: Any) -> bytes:
        """The data bytes for ``data`` (bytes pass through; see the class docstring)."""
        if isinstance(data, bytes | bytearray | memoryview):
            return bytes(data)
        if self._codec is not None:
            return self._codec.encode(data)
        return self._codecs.encode(data, self.data_mime_type)

    def payload(self, data: Any = b"") -> Payload:
        """The request payload for ``data``, with this route's metadata."""
        if isinstance(data, Payload):
            if data.metadata is None:
                return Payload(data.data, self.metadata)
            if not self._composite:
                raise ValueError("extra metadata needs a connection with composite metadata")
            return Payload(data.data, self.metadata + data.metadata)
        return Payload(self.encode(data), self.metadata)

    @overload
    def decode(self, payload: Payload, into: type[T]) -> T: ...

    @overload
    def decode(self, payload: Payload, into: Any = ...) -> Any: ...

    def decode(self, payload: Payload, into: Any = object) -> Any:
        """Decode an answer's data into ``into`` with the codec of the answer's MIME type.

        The answer's MIME type is the one its composite metadata declares (X11), else the request's.
        """
        mime_type = self.data_mime_type
        if self._composite and payload.metadata:
            try:
                declared = CompositeMetadata.decode(payload.metadata).data_mime_type
            except MetadataDecodeError:
                declared = None
            if isinstance(declared, str) and declared != mime_type:
                return self._codecs.decode(payload.data, declared, into)
        if self._codec is not None:
            return self._codec.decode(payload.data, into)
        return self._codecs.decode(payload.data, mime_type, into)

    # --- interactions ---------------------------------------------------------------------------

    async def request_response(self, data: Any = b"") -> Payload:
        """Request-response to this route; returns the raw answer (see :meth:`retrieve`)."""
        return await self.rsocket.request_response(self.payload(data))

    @overload
    async def retrieve(self, data: Any, into: type[T]) -> T: ...

    @overload
    async def retrieve(self, data: Any = ..., *, into: type[T]) -> T: ...

    @overload
    async def retrieve(self, data: Any = ..., into: Any = ...) -> Any: ...

    async def retrieve(self, data: Any = b"", into: Any = object) -> Any:
        """Request-response, with the answer decoded into ``into``.

        ``await users.retrieve(into=User)`` and ``await users.retrieve({"id": 7}, User)`` are typed
        ``User`` (``into=list[User]``: ``list[User]``); without ``into`` the answer is ``Any``."""
        return self.decode(await self.request_response(data), into)

    async def fire_and_forget(self, data: Any = b"") -> None:
        """Fire-and-forget to this route."""
        await self.rsocket.fire_and_forget(self.payload(data))

    async def metadata_push(self) -> None:
        """Push this route's metadata (for ``@router.metadata_push`` handlers)."""
        await self.rsocket.metadata_push(self.metadata)

    def request_stream(
        self, data: Any = b"", *, initial_n: int = DEFAULT_INITIAL_N, auto_request: bool = True
    ) -> RequestStream:
        """Request-stream to this route; use the result as an async context manager."""
        return self.rsocket.request_stream(self.payload(data), initial_n=initial_n, auto_request=auto_request)

    def request_channel(
        self,
        data: Any = b"",
        *,
        initial_n: int = DEFAULT_INITIAL_N,
        auto_request: bool = True,
        complete: bool = False,
    ) -> RequestChannel:
        """Request-channel to this route (``data`` is the first element); send later elements with
        ``channel.send(requester.element(value))``."""
        return self.rsocket.request_channel(
            self.payload(data), initial_n=initial_n, auto_request=auto_request, complete=complete
        )

    def element(self, data: Any) -> Payload:
        """A later channel element for ``data`` (encoded, no metadata)."""
        if isinstance(data, Payload):
            return data
        return Payload(self.encode(data))


def route_requester(
    rsocket: Requester, route: str, *more_tags: str, **options: Unpack[RouteOptions]
) -> RoutedRequester:
    """Bind ``route`` on ``rsocket``: ``route_requester(rs, "user.get").request_response(data)``.

    Options are those of :class:`RoutedRequester`.
    """
    return RoutedRequester(rsocket, route, *more_tags, **options)


__all__ = ["RouteOptions", "RoutedRequester", "Requester", "route_requester"]
