"""How a routed handler's parameters are filled and its results turned into payloads.

Each parameter is bound by its annotation or its name, decided once when the route is registered:

* annotated ``RSocket``: the connection; ``RequestContext``: the request's context;
  ``CompositeMetadata``: the request's metadata; ``Authentication`` (or a subclass): its credentials;
* named like a route variable: the variable's text, converted to the annotation (``int``, ...);
* for channels, annotated ``AsyncIterator[T]`` / ``AsyncIterable[T]``: the inbound elements as ``T``;
* otherwise the single *body* parameter: ``Payload`` (or no annotation) gets the raw payload, ``bytes``
  the raw data, any other type the data decoded by the request's data MIME codec.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import sys
import types
import typing
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from .codecs import CodecError, CodecRegistry
from .extensions import Authentication, CompositeMetadata, composite, data_mime
from .peer.connection import RSocket
from .wire.errors import ApplicationError, InvalidError
from .wire.payload import Payload

Handler = Callable[..., Any]

_ASYNC_ITERABLES = (
    collections.abc.AsyncIterator,
    collections.abc.AsyncIterable,
    collections.abc.AsyncGenerator,
)


@dataclasses.dataclass(frozen=True)
class RequestContext:
    """Everything known about one routed request; declare a parameter annotated with it to get it.

    ``route`` is ``None`` when the request carried no routing metadata. ``principal`` is what the
    router's authentication hook returned for this request (or for the connection at SETUP).
    ``data_mime_type`` is the MIME type of the request's data (per-stream X9 entry, else SETUP's);
    ``response_mime_type`` the one answers are encoded in (the first accepted type we can encode, X10).
    """

    route: str | None
    variables: Mapping[str, str]
    payload: Payload
    metadata: CompositeMetadata | None
    authentication: Authentication | None
    principal: Any
    rsocket: RSocket
    interaction: str
    data_mime_type: str
    response_mime_type: str
    codecs: CodecRegistry
    composite_responses: bool = False

    def decode(self, into: Any = object, payload: Payload | None = None) -> Any:
        """Decode the request's data (or ``payload``'s) into ``into`` with the data MIME codec."""
        data = (payload or self.payload).data
        try:
            return self.codecs.decode(data, self.data_mime_type, into)
        except CodecError as exc:
            raise InvalidError(f"cannot decode the {self.data_mime_type} data: {exc}") from None

    def encode(self, value: Any) -> Payload:
        """A response payload for ``value`` (a :class:`Payload` is returned unchanged).

        When the answer's MIME type differs from the request's and the connection uses composite
        metadata, the response carries a mime-type entry (X11).
        """
        if isinstance(value, Payload):
            return value
        try:
            data = self.codecs.encode(value, self.response_mime_type)
        except CodecError as exc:
            raise ApplicationError(
                f"cannot encode the response as {self.response_mime_type}: {exc}"
            ) from None
        metadata = None
        if self.composite_responses and self.response_mime_type != self.data_mime_type:
            metadata = composite(data_mime(self.response_mime_type))
        return Payload(data, metadata)


def caller_namespace() -> dict[str, Any]:
    """The local names of the first frame outside this package (to resolve string annotations)."""
    frame = sys._getframe(1)
    package = __name__.rpartition(".")[0]
    while frame is not None and frame.f_globals.get("__name__", "").startswith(package + "."):
        frame = frame.f_back  # type: ignore[assignment]
    return dict(frame.f_locals) if frame is not None else {}


_UNRESOLVED = object()


def _type_hints(function: Handler, localns: Mapping[str, Any]) -> dict[str, Any]:
    target = inspect.unwrap(function)
    try:
        return typing.get_type_hints(target, localns=dict(localns))
    except Exception:  # unresolvable names: fall back to what can be resolved by hand
        hints: dict[str, Any] = {}
        for name, annotation in getattr(target, "__annotations__", {}).items():
            if isinstance(annotation, str):
                globalns = getattr(target, "__globals__", {})
                annotation = localns.get(annotation, globalns.get(annotation, _UNRESOLVED))
            hints[name] = annotation
        return hints


def _is_subclass(hint: Any, base: type) -> bool:
    # On Python 3.10 a parametrised generic such as AsyncIterator[str] passes isinstance(_, type)
    # but issubclass() rejects it, so exclude generic aliases explicitly.
    return isinstance(hint, type) and not isinstance(hint, types.GenericAlias) and issubclass(hint, base)


def _inbound_item_type(hint: Any) -> Any | None:
    """The element type of an ``AsyncIterator[T]``-like hint, or ``None`` if it is not one."""
    origin = typing.get_origin(hint)
    if origin in _ASYNC_ITERABLES:
        args = typing.get_args(hint)
        return args[0] if args else Payload
    if hint in _ASYNC_ITERABLES:
        return Payload
    return None


def _convert_variable(name: str, text: str, hint: Any) -> Any:
    if hint in (str, Any, object, inspect.Parameter.empty, _UNRESOLVED):
        return text
    try:
        if hint is bool:
            lowered = text.lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError(text)
        if callable(hint):
            return hint(text)
    except (ValueError, TypeError):
        pass
    raise InvalidError(f"route variable {name}={text!r} is not a valid {getattr(hint, '__name__', hint)}")


@dataclasses.dataclass(frozen=True)
class _Parameter:
    name: str
    source: str  # rsocket, context, metadata, authentication, variable, inbound, body
    hint: Any


class Endpoint:
    """A registered handler with its parameter binding worked out."""

    __slots__ = ("function", "interaction", "parameters", "pattern", "variables_kwargs")

    def __init__(
        self,
        function: Handler,
        interaction: str,
        pattern: str | None,
        variables: tuple[str, ...],
        localns: Mapping[str, Any],
    ) -> None:
        if not callable(function):
            raise TypeError(f"{function!r} is not callable")
        self.function = function
        self.interaction = interaction
        self.pattern = pattern
        self.parameters: list[_Parameter] = []
        self.variables_kwargs = False
        self._bind(variables, localns)

    def _bind(self, variables: tuple[str, ...], localns: Mapping[str, Any]) -> None:
        hints = _type_hints(self.function, localns)
        signature = inspect.signature(self.function)
        where = f"handler {getattr(self.function, '__qualname__', self.function)!r}"
        unbound = set(variables)
        body_seen = False
        inbound_seen = False
        for parameter in signature.parameters.values():
            kind = parameter.kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            if kind is inspect.Parameter.VAR_KEYWORD:
                self.variables_kwargs = True
                continue
            if kind is inspect.Parameter.POSITIONAL_ONLY:
                raise TypeError(f"{where}: positional-only parameter {parameter.name!r} cannot be bound")
            hint = hints.get(parameter.name, inspect.Parameter.empty)
            if _is_subclass(hint, RSocket):
                source = "rsocket"
            elif hint is RequestContext:
                source = "context"
            elif _is_subclass(hint, CompositeMetadata):
                source = "metadata"
            elif _is_subclass(hint, Authentication):
                source = "authentication"
            elif parameter.name in unbound:
                source = "variable"
                unbound.discard(parameter.name)
            elif self.interaction == "channel" and _inbound_item_type(hint) is not None:
                if inbound_seen:
                    raise TypeError(f"{where}: only one parameter can receive the inbound elements")
                inbound_seen = True
                source = "inbound"
                hint = _inbound_item_type(hint)
            elif not body_seen:
                body_seen = True
                source = "body"
            elif parameter.default is not inspect.Parameter.empty:
                continue
            else:
                raise TypeError(
                    f"{where}: cannot bind parameter {parameter.name!r} (only one parameter receives the "
                    "payload; others must be route variables or annotated RSocket, RequestContext, "
                    "CompositeMetadata or Authentication)"
                )
            self.parameters.append(_Parameter(parameter.name, source, hint))
        if unbound and not self.variables_kwargs:
            raise TypeError(f"{where} has no parameter for route variable(s) {', '.join(sorted(unbound))}")

    def arguments(
        self, context: RequestContext, inbound: AsyncIterator[Payload] | None = None
    ) -> dict[str, Any]:
        """The keyword arguments for one call (raises InvalidError when the data cannot be decoded)."""
        kwargs: dict[str, Any] = {}
        body_bound = False
        for parameter in self.parameters:
            source = parameter.source
            if source == "rsocket":
                kwargs[parameter.name] = context.rsocket
            elif source == "context":
                kwargs[parameter.name] = context
            elif source == "metadata":
                kwargs[parameter.name] = context.metadata
            elif source == "authentication":
                kwargs[parameter.name] = context.authentication
            elif source == "variable":
                kwargs[parameter.name] = _convert_variable(
                    parameter.name, context.variables[parameter.name], parameter.hint
                )
            elif source == "body":
                body_bound = True
                kwargs[parameter.name] = self._body(context, context.payload, parameter.hint)
            # "inbound" is filled below, once we know whether the body took the first element.
        for parameter in self.parameters:
            if parameter.source == "inbound":
                elements = _inbound(context, inbound, None if body_bound else context.payload)
                kwargs[parameter.name] = _decoded(context, elements, parameter.hint)
        if self.variables_kwargs:
            taken = {parameter.name for parameter in self.parameters}
            for name, text in context.variables.items():
                if name not in taken:
                    kwargs[name] = text
        return kwargs

    @staticmethod
    def _body(context: RequestContext, payload: Payload, hint: Any) -> Any:
        if hint in (Payload, inspect.Parameter.empty, _UNRESOLVED):
            return payload
        return context.decode(hint, payload)


async def _inbound(
    context: RequestContext, inbound: AsyncIterator[Payload] | None, first: Payload | None
) -> AsyncIterator[Payload]:
    if first is not None:
        yield first
    if inbound is not None:
        async for item in inbound:
            yield item


async def _decoded(
    context: RequestContext, elements: AsyncIterator[Payload], hint: Any
) -> AsyncIterator[Any]:
    async for item in elements:
        yield item if hint is Payload else context.decode(hint, item)


__all__ = ["Endpoint", "RequestContext", "caller_namespace"]
