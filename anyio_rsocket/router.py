"""Routing for responders: one decorated function per route, Spring-style.

::

    router = Router()

    @router.response("user.{id}")
    async def user(id: int, ctx: RequestContext) -> dict:
        return {"id": id}

    @router.stream("ticks")
    async def ticks(count: int):          # the data, decoded by the connection's data MIME codec
        for i in range(count):
            yield {"tick": i}

    await serve_tcp(router, "127.0.0.1", 7000)

A :class:`Router` is a handler factory: the server calls it with each connection's
:class:`~anyio_rsocket.RSocket` and it builds a :class:`RouterHandler` that dispatches every request on
the first routing tag of its metadata (composite metadata, or bare routing metadata when the
connection's metadata MIME is ``message/x.rsocket.routing.v0``). See ``_route_binding`` for how handler
parameters are filled.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar

from ._route_binding import Endpoint, RequestContext, caller_namespace
from ._route_pattern import RoutePattern
from .codecs import CodecRegistry, default_codecs
from .extensions import (
    MESSAGE_AUTHENTICATION,
    MESSAGE_COMPOSITE_METADATA,
    MESSAGE_ROUTING,
    Authentication,
    CompositeEntry,
    CompositeMetadata,
    MetadataDecodeError,
    decode_authentication,
)
from .peer.connection import RSocket
from .peer.handler import RequestHandler
from .peer.setup_info import SetupInfo
from .wire.errors import InvalidError, RejectedError, RejectedSetupError, RSocketError, SetupError
from .wire.payload import Payload

logger = logging.getLogger("anyio_rsocket.router")

Interaction = Literal["response", "stream", "channel", "fire_and_forget", "metadata_push"]
INTERACTIONS: tuple[Interaction, ...] = ("response", "stream", "channel", "fire_and_forget", "metadata_push")

F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class AuthRequest:
    """What the router's authentication hook sees, once at SETUP and once per request.

    ``authentication`` is what this SETUP or request carried (``None`` if nothing). At SETUP
    ``is_setup`` is true and ``route``/``interaction`` are ``None``; per request ``principal`` is what
    the hook returned at SETUP.
    """

    authentication: Authentication | None
    setup: SetupInfo
    rsocket: RSocket
    is_setup: bool
    route: str | None = None
    interaction: Interaction | None = None
    principal: Any = None


#: ``hook(request) -> principal``: raise (or return ``False``) to reject; anything else accepts and
#: becomes ``RequestContext.principal``. May be async.
AuthHook = Callable[[AuthRequest], Any]


class _RouteTable:
    """The endpoints of one interaction: exact routes first, then patterns in registration order."""

    __slots__ = ("exact", "fallback", "patterns")

    def __init__(self) -> None:
        self.exact: dict[str, Endpoint] = {}
        self.patterns: list[tuple[RoutePattern, Endpoint]] = []
        self.fallback: Endpoint | None = None

    def add(self, pattern: RoutePattern, endpoint: Endpoint) -> None:
        if pattern.pattern in self.exact or any(p.pattern == pattern.pattern for p, _ in self.patterns):
            raise ValueError(f"route {pattern.pattern!r} is already registered for {endpoint.interaction}")
        if pattern.is_literal:
            self.exact[pattern.pattern] = endpoint
        else:
            self.patterns.append((pattern, endpoint))

    def lookup(self, route: str | None) -> tuple[Endpoint, dict[str, str]] | None:
        if route is not None:
            endpoint = self.exact.get(route)
            if endpoint is not None:
                return endpoint, {}
            for pattern, endpoint in self.patterns:
                variables = pattern.match(route)
                if variables is not None:
                    return endpoint, variables
        if self.fallback is not None:
            return self.fallback, {}
        return None


_INTERACTION_NAMES = {
    "response": "request-response",
    "stream": "request-stream",
    "channel": "request-channel",
    "fire_and_forget": "fire-and-forget",
    "metadata_push": "metadata-push",
}


class Router:
    """Routes requests to decorated handlers by the first routing tag of their metadata (X5).

    Use it wherever a handler factory is expected: ``serve_tcp(router, host, port)``. ``codecs``
    decodes handler arguments and encodes results (default: :data:`~anyio_rsocket.codecs.default_codecs`).
    ``authenticate`` is an :data:`AuthHook` (also settable with the :meth:`authenticator` decorator):
    raising from it at SETUP refuses the connection (``RejectedSetupError``), per request answers
    ERROR[REJECTED].
    """

    def __init__(self, *, codecs: CodecRegistry | None = None, authenticate: AuthHook | None = None) -> None:
        self.codecs = codecs if codecs is not None else default_codecs
        self._authenticate = authenticate
        self._tables: dict[str, _RouteTable] = {name: _RouteTable() for name in INTERACTIONS}

    # --- registration -----------------------------------------------------------------------------

    def _decorator(self, interaction: Interaction, pattern: str) -> Callable[[F], F]:
        compiled = RoutePattern(pattern)
        localns = caller_namespace()

        def register(function: F) -> F:
            endpoint = Endpoint(function, interaction, pattern, compiled.variables, localns)
            self._tables[interaction].add(compiled, endpoint)
            return function

        return register

    def response(self, pattern: str) -> Callable[[F], F]:
        """Register a request-response handler for ``pattern``; its return value is the answer.

        Return a :class:`Payload` to answer as is, ``None`` to complete without a value, or any value
        to encode with the response MIME codec.
        """
        return self._decorator("response", pattern)

    def stream(self, pattern: str) -> Callable[[F], F]:
        """Register a request-stream handler: an async generator whose items are the answers."""
        return self._decorator("stream", pattern)

    def channel(self, pattern: str) -> Callable[[F], F]:
        """Register a request-channel handler: an async generator yielding the outbound elements.

        A parameter annotated ``AsyncIterator[T]`` receives the inbound elements, decoded as ``T``:
        all of them, or all but the first when another parameter takes the first payload.
        """
        return self._decorator("channel", pattern)

    def fire_and_forget(self, pattern: str) -> Callable[[F], F]:
        """Register a fire-and-forget handler (its result is ignored; errors are logged)."""
        return self._decorator("fire_and_forget", pattern)

    def metadata_push(self, pattern: str) -> Callable[[F], F]:
        """Register a metadata-push handler, routed by the pushed metadata (errors are logged)."""
        return self._decorator("metadata_push", pattern)

    def fallback(self, *interactions: Interaction) -> Callable[[F], F]:
        """Register a handler for requests whose route matches nothing (all interactions by default).

        Without a fallback such requests get ERROR[INVALID] naming the route. Declare a
        ``RequestContext`` parameter to see the route (``None`` when the request had none).
        """
        chosen = interactions or INTERACTIONS
        for interaction in chosen:
            if interaction not in self._tables:
                raise ValueError(f"unknown interaction {interaction!r}; use one of {', '.join(INTERACTIONS)}")
        localns = caller_namespace()

        def register(function: F) -> F:
            for interaction in chosen:
                self._tables[interaction].fallback = Endpoint(function, interaction, None, (), localns)
            return function

        return register

    def authenticator(self, hook: F) -> F:
        """Decorator form of the ``authenticate`` option."""
        self._authenticate = hook
        return hook

    def routes(self) -> dict[str, list[str]]:
        """The registered route patterns by interaction (for diagnostics)."""
        return {
            name: [*table.exact, *(pattern.pattern for pattern, _ in table.patterns)]
            for name, table in self._tables.items()
        }

    # --- handler factory --------------------------------------------------------------------------

    async def __call__(self, rsocket: RSocket) -> RequestHandler:
        """Build the handler of one connection; runs the authentication hook on SETUP's credentials."""
        principal = None
        if self._authenticate is not None:
            try:
                authentication = _setup_authentication(rsocket.setup)
            except MetadataDecodeError as exc:
                raise RejectedSetupError(f"malformed SETUP metadata: {exc}") from None
            request = AuthRequest(authentication, rsocket.setup, rsocket, is_setup=True)
            try:
                principal = await self._check(request)
            except SetupError:
                raise
            except Exception as exc:
                raise RejectedSetupError(str(exc) or "authentication failed") from None
        return self.handler_for(rsocket, principal)

    def handler_for(self, rsocket: RSocket, principal: Any = None) -> RouterHandler:
        """The handler of one connection without SETUP authentication (e.g. as a client's handler)."""
        return RouterHandler(self, rsocket, principal)

    async def _check(self, request: AuthRequest) -> Any:
        assert self._authenticate is not None
        result = self._authenticate(request)
        if inspect.isawaitable(result):
            result = await result
        if result is False:
            raise RejectedError("authentication failed")
        return result


def _setup_authentication(setup: SetupInfo) -> Authentication | None:
    metadata = setup.payload.metadata if setup.payload is not None else None
    if not metadata:
        return None
    if setup.metadata_mime_type == MESSAGE_COMPOSITE_METADATA:
        return CompositeMetadata.decode(metadata).authentication
    if setup.metadata_mime_type == MESSAGE_AUTHENTICATION:
        return decode_authentication(metadata)
    return None


class RouterHandler(RequestHandler):
    """The per-connection handler a :class:`Router` builds: decodes metadata, authenticates, dispatches."""

    def __init__(self, router: Router, rsocket: RSocket, principal: Any = None) -> None:
        self.router = router
        self.rsocket = rsocket
        self.principal = principal
        self._metadata_mime_type = rsocket.setup.metadata_mime_type

    # --- the interactions -------------------------------------------------------------------------

    async def request_response(self, payload: Payload) -> Payload | None:
        """Dispatch to the ``@router.response`` handler of the route."""
        endpoint, context = await self._prepare("response", payload)
        result = endpoint.function(**endpoint.arguments(context))
        if inspect.isawaitable(result):
            result = await result
        return None if result is None else context.encode(result)

    async def fire_and_forget(self, payload: Payload) -> None:
        """Dispatch to the ``@router.fire_and_forget`` handler; refusals are logged, never sent."""
        try:
            endpoint, context = await self._prepare("fire_and_forget", payload)
            arguments = endpoint.arguments(context)
        except RSocketError as exc:
            logger.warning("fire-and-forget dropped: %s", exc)
            return
        result = endpoint.function(**arguments)
        if inspect.isawaitable(result):
            await result

    async def metadata_push(self, metadata: bytes) -> None:
        """Dispatch to the ``@router.metadata_push`` handler of the route in ``metadata``."""
        try:
            endpoint, context = await self._prepare("metadata_push", Payload(b"", metadata))
            arguments = endpoint.arguments(context)
        except RSocketError as exc:
            logger.warning("metadata-push dropped: %s", exc)
            return
        result = endpoint.function(**arguments)
        if inspect.isawaitable(result):
            await result

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        """Dispatch to the ``@router.stream`` handler; its items are encoded as they come."""
        endpoint, context = await self._prepare("stream", payload)
        async with _items(endpoint.function(**endpoint.arguments(context)), endpoint) as items:
            async for item in items:
                yield context.encode(item)

    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        """Dispatch to the ``@router.channel`` handler with the inbound elements."""
        endpoint, context = await self._prepare("channel", payload)
        async with _items(endpoint.function(**endpoint.arguments(context, inbound)), endpoint) as items:
            async for item in items:
                yield context.encode(item)

    # --- dispatch ---------------------------------------------------------------------------------

    def _metadata(self, raw: bytes | None) -> CompositeMetadata | None:
        """The request's metadata as composite metadata (bare routing metadata becomes one entry)."""
        mime_type = self._metadata_mime_type
        try:
            if mime_type == MESSAGE_COMPOSITE_METADATA:
                return CompositeMetadata.decode(raw or b"")
            if mime_type == MESSAGE_ROUTING:
                metadata = CompositeMetadata([CompositeEntry(MESSAGE_ROUTING, raw or b"")])
                metadata.routes  # noqa: B018 - validate now, so malformed tags are INVALID
                return metadata
        except MetadataDecodeError as exc:
            raise InvalidError(f"malformed {mime_type} metadata: {exc}") from None
        return None

    async def _prepare(self, interaction: Interaction, payload: Payload) -> tuple[Endpoint, RequestContext]:
        router = self.router
        metadata = self._metadata(payload.metadata)
        try:
            route = metadata.route if metadata is not None else None
            authentication = metadata.authentication if metadata is not None else None
            data_mime = metadata.data_mime_type if metadata is not None else None
            accepted = metadata.accept_mime_types if metadata is not None else ()
        except MetadataDecodeError as exc:
            raise InvalidError(f"malformed metadata: {exc}") from None
        principal = self.principal
        if router._authenticate is not None:
            request = AuthRequest(
                authentication,
                self.rsocket.setup,
                self.rsocket,
                is_setup=False,
                route=route,
                interaction=interaction,
                principal=principal,
            )
            try:
                principal = await router._check(request)
            except RSocketError:
                raise
            except Exception as exc:
                raise RejectedError(str(exc) or "authentication failed") from None
        found = router._tables[interaction].lookup(route)
        if found is None:
            name = _INTERACTION_NAMES[interaction]
            if route is None:
                raise InvalidError(f"no route in the {name} metadata and no fallback handler")
            raise InvalidError(f"no {name} route {route!r}")
        endpoint, variables = found
        data_mime_type = data_mime if isinstance(data_mime, str) else self.rsocket.setup.data_mime_type
        context = RequestContext(
            route=route,
            variables=variables,
            payload=payload,
            metadata=metadata,
            authentication=authentication,
            principal=principal,
            rsocket=self.rsocket,
            interaction=interaction,
            data_mime_type=data_mime_type,
            response_mime_type=_response_mime_type(accepted, data_mime_type, router.codecs),
            codecs=router.codecs,
            composite_responses=self._metadata_mime_type == MESSAGE_COMPOSITE_METADATA,
        )
        return endpoint, context


def _response_mime_type(accepted: Iterable[object], data_mime_type: str, codecs: CodecRegistry) -> str:
    """The first accepted MIME type (X10) a codec can encode, else the request's data MIME type."""
    names = [mime for mime in accepted if isinstance(mime, str)]
    if not names or data_mime_type in names:
        return data_mime_type
    for mime_type in names:
        if codecs.supports(mime_type):
            return mime_type
    return data_mime_type


@asynccontextmanager
async def _items(result: Any, endpoint: Endpoint) -> AsyncIterator[AsyncIterator[Any]]:
    """The items of a stream/channel handler's result (an async iterable, an awaitable of one, or a
    plain iterable); an async generator is closed on exit, so its ``finally`` runs on CANCEL."""
    if inspect.isawaitable(result) and not isinstance(result, AsyncIterable):
        result = await result
    if isinstance(result, AsyncIterable):
        iterator = aiter(result)
        try:
            yield iterator
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
    elif isinstance(result, Iterable) and not isinstance(result, bytes | str | Payload):
        yield _from_iterable(result)
    else:
        where = getattr(endpoint.function, "__qualname__", endpoint.function)
        raise TypeError(f"{endpoint.interaction} handler {where!r} must be an async generator")


async def _from_iterable(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


__all__ = ["AuthHook", "AuthRequest", "Interaction", "RequestContext", "Router", "RouterHandler"]
