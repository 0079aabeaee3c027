"""OpenTelemetry for RSocket interactions: spans, trace context propagation and metrics.

::

    from anyio_rsocket.telemetry import OpenTelemetry

    async with connect_tcp(host, port, interceptors=[OpenTelemetry()]) as rs: ...
    await tg.start(functools.partial(serve_tcp, factory, host, port, interceptors=[OpenTelemetry()]))

:class:`OpenTelemetry` is an :class:`~anyio_rsocket.Interceptor`: a CLIENT span around each
interaction this side requests, a SERVER span around each one it answers (the handler runs with it
as the current span, so its own calls are its children). Requests carry the trace context in
composite metadata: one entry per field of the propagator (W3C ``traceparent`` and ``tracestate``
by default, plus ``baggage`` with the default global propagator), named by the field as Micrometer's
RSocket instrumentation names them, and a Zipkin tracing entry (``message/x.rsocket.tracing-zipkin.v0``)
for peers that read only that one. Connections whose metadata is not composite metadata get spans
but carry no context. See ``docs/observability.md`` for the attribute and metric names.

Needs the ``otel`` extra (``pip install 'anyio-rsocket[otel]'``: ``opentelemetry-api`` only; install
an SDK and configure it, or pass providers, to record anything).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import Token
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, propagate, trace
    from opentelemetry.context import Context
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        "anyio_rsocket.telemetry needs OpenTelemetry: install the 'otel' extra "
        "(pip install 'anyio-rsocket[otel]', which brings opentelemetry-api)"
    ) from exc

import anyio

from . import __version__
from .extensions.composite import CompositeMetadata
from .extensions.errors import MetadataDecodeError
from .extensions.mime import MESSAGE_COMPOSITE_METADATA, MESSAGE_TRACING_ZIPKIN, encode_mime_type
from .extensions.tracing import Sampling, ZipkinTrace, decode_tracing
from .peer.interaction import Interaction, Interceptor, Side
from .wire.errors import ErrorCode, RSocketError
from .wire.payload import Payload

#: The instrumentation scope name of tracers and meters.
INSTRUMENTATION_NAME = "anyio_rsocket"

# Attribute names (OpenTelemetry RPC semantic conventions where they fit, ``rsocket.*`` otherwise).
RPC_SYSTEM = "rpc.system"  # the older name, still what most backends read
RPC_SYSTEM_NAME = "rpc.system.name"
RPC_METHOD = "rpc.method"
RPC_STATUS_CODE = "rpc.response.status_code"
ERROR_TYPE = "error.type"
INTERACTION = "rsocket.interaction"
STREAM_ID = "rsocket.stream_id"
ITEMS_SENT = "rsocket.items_sent"
ITEMS_RECEIVED = "rsocket.items_received"
ERROR_CODE = "rsocket.error_code"
OUTCOME = "rsocket.outcome"
#: The span event of an abandoned interaction (our caller left early, or the peer cancelled).
CANCELLED_EVENT = "rsocket.cancelled"

#: Outcomes (the ``rsocket.outcome`` attribute of spans and metrics).
OK, ERROR, CANCELLED = "ok", "error", "cancelled"

_ZIPKIN_ID = encode_mime_type(MESSAGE_TRACING_ZIPKIN)  # one byte: the well-known id


class OpenTelemetry(Interceptor):
    """Spans, propagation and metrics for every interaction of a connection, on either side.

    - ``tracer_provider`` / ``meter_provider``: where spans and measurements go (``None``: the
      global providers, looked up when first used);
    - ``propagate``: requests carry the trace context (requester side) and a request's context
      becomes the parent of the server span (responder side; off, server spans are roots);
    - ``propagator``: the text map propagator of the composite entries (``None``: the global one
      at the time of each request, W3C trace context and baggage unless configured otherwise);
    - ``zipkin``: also send a Zipkin tracing entry, and read one when no W3C context came;
    - ``route_name``: maps a route to the name used for spans, ``rpc.method`` and metrics (for
      example ``lambda route: route.rsplit(".", 1)[0]`` when routes carry ids), so that
      parameterised routes do not make one time series per value.

    Put it first in ``interceptors=[...]`` (outermost): it then sees refusals by the interceptors
    after it, and times them too.
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        *,
        propagate: bool = True,
        propagator: TextMapPropagator | None = None,
        zipkin: bool = True,
        route_name: Callable[[str], str] | None = None,
    ) -> None:
        self.tracer = trace.get_tracer(INSTRUMENTATION_NAME, __version__, tracer_provider)
        meter = metrics.get_meter(INSTRUMENTATION_NAME, __version__, meter_provider)
        self.propagate = propagate
        self.propagator = propagator
        self.zipkin = zipkin
        self.route_name = route_name
        self._duration = {
            Side.REQUESTER: meter.create_histogram(
                "rpc.client.call.duration", unit="s", description="Duration of outgoing RSocket interactions"
            ),
            Side.RESPONDER: meter.create_histogram(
                "rpc.server.call.duration", unit="s", description="Duration of incoming RSocket interactions"
            ),
        }
        self._requests = {
            Side.REQUESTER: meter.create_counter(
                "rsocket.client.requests", unit="{request}", description="Interactions requested, by outcome"
            ),
            Side.RESPONDER: meter.create_counter(
                "rsocket.server.requests", unit="{request}", description="Interactions answered, by outcome"
            ),
        }
        self._active = {
            Side.REQUESTER: meter.create_up_down_counter(
                "rsocket.client.active_requests",
                unit="{request}",
                description="Interactions requested and not over yet",
            ),
            Side.RESPONDER: meter.create_up_down_counter(
                "rsocket.server.active_requests",
                unit="{request}",
                description="Interactions being answered",
            ),
        }

    def intercept(self, interaction: Interaction) -> AbstractAsyncContextManager[object]:
        return self._observe(interaction)

    # --- the span around one interaction ---------------------------------------------------------

    @asynccontextmanager
    async def _observe(self, interaction: Interaction) -> AsyncIterator[None]:
        side = interaction.side
        kind = interaction.kind.value
        route = interaction.route
        if route is not None and self.route_name is not None:
            route = self.route_name(route)
        attributes: dict[str, Any] = {RPC_SYSTEM: "rsocket", RPC_SYSTEM_NAME: "rsocket", INTERACTION: kind}
        if route is not None:
            attributes[RPC_METHOD] = route
        name = route if route is not None else f"rsocket {kind}"
        token: Token[Context] | None = None
        if side is Side.REQUESTER:
            span = self.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
            if self.propagate:
                self._inject(interaction, span)
        else:
            parent = self._extract(interaction) if self.propagate else Context()
            span = self.tracer.start_span(name, parent, kind=SpanKind.SERVER, attributes=attributes)
            # The handler runs in this task: its own spans (and downstream calls) are children.
            token = otel_context.attach(trace.set_span_in_context(span, parent))
        metric_attributes = dict(attributes)
        del metric_attributes[RPC_SYSTEM]
        active = self._active[side]
        active.add(1, metric_attributes)
        started = time.perf_counter()
        raised: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            raised = exc
            raise
        finally:
            elapsed = time.perf_counter() - started
            if token is not None:
                otel_context.detach(token)
            active.add(-1, metric_attributes)
            outcome = self._finish(span, interaction, raised)
            metric_attributes[OUTCOME] = outcome
            error = raised if raised is not None else interaction.error
            if outcome == ERROR and error is not None:
                metric_attributes[ERROR_TYPE] = span_error_type(error)
            self._duration[side].record(elapsed, metric_attributes)
            self._requests[side].add(1, metric_attributes)

    def _finish(self, span: trace.Span, interaction: Interaction, raised: BaseException | None) -> str:
        """Record how the interaction ended on ``span`` and end it; return the outcome."""
        error: BaseException | None = None
        cancelled = interaction.cancelled
        if raised is not None:
            if isinstance(raised, anyio.get_cancelled_exc_class()):
                cancelled = True
            else:
                error = raised
        if error is None and interaction.error is not None:
            error = interaction.error
        span.set_attribute(STREAM_ID, interaction.stream_id)
        span.set_attribute(ITEMS_SENT, interaction.items_sent)
        span.set_attribute(ITEMS_RECEIVED, interaction.items_received)
        if error is not None:
            outcome = ERROR
            error_type = span_error_type(error)
            if isinstance(error, RSocketError):
                span.set_attribute(ERROR_CODE, error.code)
                span.set_attribute(RPC_STATUS_CODE, error_type)
            span.set_attribute(ERROR_TYPE, error_type)
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        elif cancelled:
            outcome = CANCELLED
            span.add_event(CANCELLED_EVENT)
        else:
            outcome = OK
        span.set_attribute(OUTCOME, outcome)
        span.end()
        return outcome

    # --- propagation -----------------------------------------------------------------------------

    def _inject(self, interaction: Interaction, span: trace.Span) -> None:
        """Requester side: the span's context as composite entries of the request (composite only)."""
        if interaction.setup.metadata_mime_type != MESSAGE_COMPOSITE_METADATA:
            return  # add_metadata would refuse: nothing can be carried
        propagator = self.propagator if self.propagator is not None else propagate.get_global_textmap()
        context = trace.set_span_in_context(span)
        carrier: dict[str, str] = {}
        propagator.inject(carrier, context)
        span_context = span.get_span_context()
        zipkin = self.zipkin and span_context.is_valid
        _drop_entries(interaction, set(propagator.fields), zipkin)
        for field, value in carrier.items():
            interaction.add_metadata(field, value.encode("utf-8"))
        if zipkin:
            parent = trace.get_current_span().get_span_context()
            sampled = span_context.trace_flags.sampled
            entry = ZipkinTrace(
                span_context.trace_id,
                span_context.span_id,
                parent.span_id if parent.is_valid else None,
                Sampling.SAMPLED if sampled else Sampling.NOT_SAMPLED,
                trace_id_128=True,
            )
            interaction.add_metadata(MESSAGE_TRACING_ZIPKIN, entry.encode())

    def _extract(self, interaction: Interaction) -> Context:
        """Responder side: the context the request carries (an empty one when it carries none)."""
        entries = interaction.composite_metadata
        if not entries:
            return Context()
        propagator = self.propagator if self.propagator is not None else propagate.get_global_textmap()
        fields = propagator.fields
        carrier: dict[str, str] = {}
        for entry in entries:
            if isinstance(entry.mime_type, str) and entry.mime_type in fields:
                carrier.setdefault(entry.mime_type, entry.content.decode("utf-8", "replace"))
        context = propagator.extract(carrier, Context()) if carrier else Context()
        if trace.get_current_span(context).get_span_context().is_valid or not self.zipkin:
            return context
        content = entries.get(MESSAGE_TRACING_ZIPKIN)
        if content is None:
            return context
        try:
            zipkin = decode_tracing(content)
        except MetadataDecodeError:
            return context
        if zipkin.trace_id is None or zipkin.span_id is None or zipkin.trace_id == 0 or zipkin.span_id == 0:
            return context
        sampled = zipkin.sampling in (Sampling.SAMPLED, Sampling.DEBUG)
        remote = trace.SpanContext(
            zipkin.trace_id,
            zipkin.span_id,
            is_remote=True,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED if sampled else trace.TraceFlags.DEFAULT),
        )
        return trace.set_span_in_context(trace.NonRecordingSpan(remote), context)


def span_error_type(error: BaseException) -> str:
    """``error.type`` of an error: the RSocket error code's name (hex when unknown), else the class."""
    if isinstance(error, RSocketError):
        try:
            return ErrorCode(error.code).name
        except ValueError:
            return f"0x{error.code:08X}"
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _drop_entries(interaction: Interaction, fields: set[str], zipkin: bool) -> None:
    """Remove trace context entries the request already has (ours replace them)."""
    metadata = interaction.payload.metadata
    if not metadata:
        return
    if not any(field.encode() in metadata for field in fields) and not (zipkin and _ZIPKIN_ID in metadata):
        return
    try:
        entries = CompositeMetadata.decode(metadata)
    except MetadataDecodeError:
        return
    kept = [
        entry
        for entry in entries
        if entry.mime_type not in fields and not (zipkin and entry.mime_type == MESSAGE_TRACING_ZIPKIN)
    ]
    if len(kept) != len(entries):
        interaction.payload = Payload(interaction.payload.data, CompositeMetadata(kept).encode())


__all__ = [
    "CANCELLED_EVENT",
    "ERROR_CODE",
    "INSTRUMENTATION_NAME",
    "INTERACTION",
    "ITEMS_RECEIVED",
    "ITEMS_SENT",
    "OUTCOME",
    "STREAM_ID",
    "OpenTelemetry",
]
