"""OpenTelemetry interceptor: spans linked over real TCP, propagation entries, errors, cancellation,
refusals and metrics, on asyncio and trio."""

from __future__ import annotations

import functools
import itertools
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id

from anyio_rsocket import (
    ApplicationError,
    Interaction,
    Interceptor,
    Payload,
    RejectedError,
    RequestHandler,
    RSocket,
    connect_tcp,
    serve_tcp,
)
from anyio_rsocket.extensions import (
    MESSAGE_COMPOSITE_METADATA,
    CompositeMetadata,
    Sampling,
    ZipkinTrace,
    composite,
    entry,
    route,
    tracing,
)
from anyio_rsocket.telemetry import OpenTelemetry

pytestmark = pytest.mark.anyio

TIMEOUT = 10
COMPOSITE = {"metadata_mime_type": MESSAGE_COMPOSITE_METADATA}


class Finished(SpanProcessor):
    """Collects ended spans and lets a test wait for some (the server's end after the client's)."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []
        self._changed: anyio.Event | None = None

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)
        if self._changed is not None:
            self._changed.set()

    async def wait_for(self, kind: SpanKind, name: str, count: int = 1) -> list[ReadableSpan]:
        while len(found := [s for s in self.spans if s.kind is kind and s.name == name]) < count:
            self._changed = anyio.Event()
            await self._changed.wait()
        return found


class Telemetry:
    """An SDK tracer provider and meter provider recording in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.finished = Finished()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer_provider.add_span_processor(self.finished)
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def interceptor(self, **options: Any) -> OpenTelemetry:
        return OpenTelemetry(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **options
        )

    def spans(self, kind: SpanKind | None = None) -> list[ReadableSpan]:
        return [span for span in self.exporter.get_finished_spans() if kind is None or span.kind is kind]

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


class Service(RequestHandler):
    """Dispatches on the route; ``downstream`` (when set) is another server ``relay`` calls."""

    def __init__(self, downstream: RSocket | None = None) -> None:
        self.downstream = downstream
        self.metadata: list[bytes | None] = []
        self.fnf = anyio.Event()
        self.calls = 0

    @staticmethod
    def route_of(payload: Payload) -> str | None:
        try:
            return CompositeMetadata.decode(payload.metadata or b"").route
        except ValueError:
            return None

    async def request_response(self, payload: Payload) -> Payload:
        self.calls += 1
        self.metadata.append(payload.metadata)
        name = self.route_of(payload)
        if name == "fail":
            raise ApplicationError("broken")
        if name == "relay":
            assert self.downstream is not None
            answer = await self.downstream.route("echo").request_response(payload.data)
            return Payload(b"relayed " + answer.data)
        return Payload(b"echo " + payload.data)

    async def fire_and_forget(self, payload: Payload) -> None:
        self.metadata.append(payload.metadata)
        self.fnf.set()

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        if self.route_of(payload) == "forever":
            index = 0
            while True:
                yield Payload(b"%d" % index)
                index += 1
        for index in range(int(payload.data)):
            yield Payload(b"%d" % index)

    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        async for item in inbound:
            yield Payload(b"re:" + item.data)
        yield Payload(b"done")


@asynccontextmanager
async def served(
    service: Service,
    server_interceptors: Sequence[Interceptor],
    client_interceptors: Sequence[Interceptor],
    **client_options: Any,
) -> AsyncIterator[RSocket]:
    async with anyio.create_task_group() as task_group:
        serve = functools.partial(
            serve_tcp, lambda rs: service, "127.0.0.1", 0, interceptors=server_interceptors
        )
        port = await task_group.start(serve)
        async with connect_tcp("127.0.0.1", port, interceptors=client_interceptors, **client_options) as rs:
            yield rs
        task_group.cancel_scope.cancel()


def linked(client: ReadableSpan, server: ReadableSpan) -> bool:
    """``server`` is the child of ``client`` in the same trace."""
    assert client.context is not None and server.context is not None
    return (
        server.context.trace_id == client.context.trace_id
        and server.parent is not None
        and server.parent.span_id == client.context.span_id
        and server.parent.is_remote
    )


async def test_request_response_spans_are_linked_and_named_by_route() -> None:
    telemetry, service = Telemetry(), Service()
    with anyio.fail_after(TIMEOUT):
        async with served(service, [telemetry.interceptor()], [telemetry.interceptor()], **COMPOSITE) as rs:
            assert (await rs.route("echo").request_response(b"hi")).data == b"echo hi"
            (server,) = await telemetry.finished.wait_for(SpanKind.SERVER, "echo")
    (client,) = telemetry.spans(SpanKind.CLIENT)
    assert client.name == server.name == "echo"
    assert linked(client, server)
    for span, sent, received in ((client, 0, 1), (server, 1, 0)):
        assert span.attributes is not None
        assert dict(span.attributes) == {
            "rpc.system": "rsocket",
            "rpc.system.name": "rsocket",
            "rpc.method": "echo",
            "rsocket.interaction": "request-response",
            "rsocket.stream_id": 1,
            "rsocket.items_sent": sent,
            "rsocket.items_received": received,
            "rsocket.outcome": "ok",
        }
        assert span.status.status_code is StatusCode.UNSET
    # What travelled: the route, then W3C trace context, then the Zipkin entry, all naming the client span.
    assert client.context is not None
    entries = CompositeMetadata.decode(service.metadata[0] or b"")
    trace_id, span_id = format_trace_id(client.context.trace_id), format_span_id(client.context.span_id)
    assert entries.route == "echo"
    assert entries.get("traceparent") == f"00-{trace_id}-{span_id}-{client.context.trace_flags:02x}".encode()
    assert entries.tracing == ZipkinTrace(
        client.context.trace_id, client.context.span_id, None, Sampling.SAMPLED, trace_id_128=True
    )


async def test_a_handler_calling_another_service_makes_one_trace() -> None:
    """client -> A (relay) -> B (echo): the handler's own call is the child of the server span."""
    telemetry = Telemetry()
    with anyio.fail_after(TIMEOUT):
        otel = [telemetry.interceptor()]
        async with served(Service(), otel, otel, **COMPOSITE) as downstream:
            relay = Service(downstream)
            async with served(relay, [telemetry.interceptor()], [telemetry.interceptor()], **COMPOSITE) as rs:
                tracer = telemetry.tracer_provider.get_tracer("test")
                with tracer.start_as_current_span("checkout"):
                    assert (await rs.route("relay").request_response(b"x")).data == b"relayed echo x"
                await telemetry.finished.wait_for(SpanKind.SERVER, "relay")
            await telemetry.finished.wait_for(SpanKind.SERVER, "echo")
    by_name = {(span.name, span.kind): span for span in telemetry.spans()}
    root = by_name["checkout", SpanKind.INTERNAL]
    chain = [
        root,
        by_name["relay", SpanKind.CLIENT],
        by_name["relay", SpanKind.SERVER],
        by_name["echo", SpanKind.CLIENT],
        by_name["echo", SpanKind.SERVER],
    ]
    for parent, child in itertools.pairwise(chain):
        assert parent.context is not None and child.parent is not None
        assert child.parent.span_id == parent.context.span_id
        assert child.context is not None and child.context.trace_id == parent.context.trace_id


async def test_stream_counts_items() -> None:
    telemetry = Telemetry()
    with anyio.fail_after(TIMEOUT):
        async with served(Service(), [telemetry.interceptor()], [telemetry.interceptor()], **COMPOSITE) as rs:
            async with rs.route("numbers").request_stream(b"3") as stream:
                assert [item.data async for item in stream] == [b"0", b"1", b"2"]
            (server,) = await telemetry.finished.wait_for(SpanKind.SERVER, "numbers")
    (client,) = telemetry.spans(SpanKind.CLIENT)
    assert linked(client, server)
    assert client.attributes is not None and server.attributes is not None
    assert client.attributes["rsocket.interaction"] == "request-stream"
    assert (client.attributes["rsocket.items_received"], client.attributes["rsocket.items_sent"]) == (3, 0)
    assert (server.attributes["rsocket.items_sent"], server.attributes["rsocket.items_received"]) == (3, 0)
    assert client.attributes["rsocket.outcome"] == server.attributes["rsocket.outcome"] == "ok"


async def test_channel_span_ends_when_both_halves_end() -> None:
    telemetry = Telemetry()
    with anyio.fail_after(TIMEOUT):
        async with served(Service(), [telemetry.interceptor()], [telemetry.interceptor()], **COMPOSITE) as rs:
            async with rs.route("chat").request_channel(b"") as channel:
                for word in (b"a", b"b"):
                    await channel.send(Payload(word))
                    assert (await channel.receive()).data == b"re:" + word
                assert telemetry.spans() == []  # both halves still open: no span over
                await channel.send_eof()  # our half ends; theirs goes on
                assert (await channel.receive()).data == b"done"
                assert telemetry.spans(SpanKind.CLIENT) == []
                assert [item async for item in channel] == []
            (server,) = await telemetry.finished.wait_for(SpanKind.SERVER, "chat")
    (client,) = telemetry.spans(SpanKind.CLIENT)
    assert linked(client, server)
    assert client.attributes is not None and server.attributes is not None
    assert (client.attributes["rsocket.items_sent"], client.attributes["rsocket.items_received"]) == (2, 3)
    assert (server.attributes["rsocket.items_received"], server.attributes["rsocket.items_sent"]) == (2, 3)
    assert client.attributes["rsocket.outcome"] == "ok"


async def test_fire_and_forget_spans() -> None:
    telemetry, service = Telemetry(), Service()
    with anyio.fail_after(TIMEOUT):
        async with served(service, [telemetry.interceptor()], [telemetry.interceptor()], **COMPOSITE) as rs:
            await rs.route("note").fire_and_forget(b"x")
            (server,) = await telemetry.finished.wait_for(SpanKind.SERVER, "note")
    (client,) = telemetry.spans(SpanKind.CLIENT)
    assert linked(client, server)
    assert server.attributes is not None and server.attributes["rsocket.interaction"] == "fire-and-forget"


async def test_errors_are_recorded_on_both_sides() -> None:
    telemetry = Telemetry()
    with anyio.fail_after(TIMEOUT):
        async with served(Service(), [telemetry.interceptor()], [telemetry.interceptor()], **COMPOSITE) as rs:
            with pytest.raises(ApplicationError):
                await rs.route("fail").request_response(b"")
            (server,) = await telemetry.finished.wait_for(SpanKind.SERVER, "fail")
    (client,) = telemetry.spans(SpanKind.CLIENT)
    assert linked(client, server)
    for span in (client, server):
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None
        assert span.attributes["rsocket.error_code"] == 0x201
        assert (
            span.attributes["rpc.response.status_code"]
            == span.attributes["error.type"]
            == "APPLICATION_ERROR"
        )
        assert span.attributes["rsocket.outcome"] == "error"
        assert [event.name for event in span.events] == ["exception"]
    assert "broken" in (server.status.description or "")


async def test_leaving_a_stream_early_is_a_cancellation_not_an_error() -> None:
    telemetry = Telemetry()
    with anyio.fail_after(TIMEOUT):
        async with served(Service(), [telemetry.interceptor()], [telemetry.interceptor()], **COMPOSITE) as rs:
            async with rs.route("forever").request_stream(b"", initial_n=2) as stream:
                assert (await stream.receive()).data == b"0"
            (server,) = await telemetry.finished.wait_for(SpanKind.SERVER, "forever")
    (client,) = telemetry.spans(SpanKind.CLIENT)
    for span in (client, server):
        assert span.status.status_code is StatusCode.UNSET
        assert span.attributes is not None and span.attributes["rsocket.outcome"] == "cancelled"
        assert [event.name for event in span.events] == ["rsocket.cancelled"]
        assert "rsocket.error_code" not in span.attributes


class Refuse(Interceptor):
    def intercept(self, interaction: Interaction) -> Any:
        raise RejectedError("not today")


async def test_a_request_refused_by_a_server_interceptor() -> None:
    """OpenTelemetry first (outermost) sees the refusal by the interceptor after it."""
    telemetry, service = Telemetry(), Service()
    with anyio.fail_after(TIMEOUT):
        async with served(
            service, [telemetry.interceptor(), Refuse()], [telemetry.interceptor()], **COMPOSITE
        ) as rs:
            with pytest.raises(RejectedError, match="not today"):
                await rs.route("echo").request_response(b"")
            (server,) = await telemetry.finished.wait_for(SpanKind.SERVER, "echo")
    (client,) = telemetry.spans(SpanKind.CLIENT)
    assert service.calls == 0
    assert linked(client, server)
    for span in (client, server):
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None and span.attributes["rsocket.error_code"] == 0x202
        assert span.attributes["error.type"] == "REJECTED"


async def test_metrics() -> None:
    telemetry = Telemetry()
    with anyio.fail_after(TIMEOUT):
        async with served(Service(), [telemetry.interceptor()], [telemetry.interceptor()], **COMPOSITE) as rs:
            for _ in range(2):
                await rs.route("echo").request_response(b"")
            with pytest.raises(ApplicationError):
                await rs.route("fail").request_response(b"")
            await telemetry.finished.wait_for(SpanKind.SERVER, "fail")
            await telemetry.finished.wait_for(SpanKind.SERVER, "echo", 2)
    for side in ("client", "server"):
        requests = {
            (
                p.attributes["rpc.method"],
                p.attributes["rsocket.outcome"],
                p.attributes.get("error.type"),
            ): p.value
            for p in telemetry.points(f"rsocket.{side}.requests")
        }
        assert requests == {("echo", "ok", None): 2, ("fail", "error", "APPLICATION_ERROR"): 1}
        durations = {
            p.attributes["rpc.method"]: p.count for p in telemetry.points(f"rpc.{side}.call.duration")
        }
        assert durations == {"echo": 2, "fail": 1}
        assert {p.value for p in telemetry.points(f"rsocket.{side}.active_requests")} == {0}
    (point, *_) = telemetry.points("rsocket.client.requests")
    assert point.attributes["rsocket.interaction"] == "request-response"
    assert point.attributes["rpc.system.name"] == "rsocket"


async def test_a_plain_connection_gets_spans_but_no_propagation() -> None:
    telemetry, service = Telemetry(), Service()
    with anyio.fail_after(TIMEOUT):
        async with served(service, [telemetry.interceptor()], [telemetry.interceptor()]) as rs:
            await rs.request_response(Payload(b"hi", b"opaque"))
            (server,) = await telemetry.finished.wait_for(SpanKind.SERVER, "rsocket request-response")
    (client,) = telemetry.spans(SpanKind.CLIENT)
    assert client.name == "rsocket request-response"
    assert service.metadata == [b"opaque"]  # untouched
    assert server.parent is None
    assert client.context is not None and server.context is not None
    assert server.context.trace_id != client.context.trace_id
    assert client.attributes is not None and "rpc.method" not in client.attributes


async def test_propagate_false_sends_nothing_and_starts_root_server_spans() -> None:
    telemetry, service = Telemetry(), Service()
    with anyio.fail_after(TIMEOUT):
        async with served(
            service,
            [telemetry.interceptor(propagate=False)],
            [telemetry.interceptor(propagate=False)],
            **COMPOSITE,
        ) as rs:
            await rs.route("echo").request_response(b"")
            (server,) = await telemetry.finished.wait_for(SpanKind.SERVER, "echo")
    entries = CompositeMetadata.decode(service.metadata[0] or b"")
    assert entries.route == "echo" and entries.tracing is None and entries.get("traceparent") is None
    assert server.parent is None


async def test_a_zipkin_entry_alone_links_the_server_span() -> None:
    """A peer that sends only the Zipkin tracing entry (older Spring Cloud Sleuth) is followed."""
    telemetry = Telemetry()
    sent = ZipkinTrace.start(trace_id_128=True)
    assert sent.trace_id is not None and sent.span_id is not None
    with anyio.fail_after(TIMEOUT):
        async with served(Service(), [telemetry.interceptor()], [], **COMPOSITE) as rs:
            await rs.request_response(Payload(b"", composite(route("echo"), tracing(sent))))
            (server,) = await telemetry.finished.wait_for(SpanKind.SERVER, "echo")
    assert server.context is not None and server.parent is not None
    assert (server.context.trace_id, server.parent.span_id) == (sent.trace_id, sent.span_id)
    assert server.context.trace_flags.sampled


async def test_stale_trace_entries_are_replaced() -> None:
    """A request forwarded with someone else's trace entries carries ours instead, once."""
    telemetry, service = Telemetry(), Service()
    stale = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    metadata = composite(route("echo"), entry("traceparent", stale.encode()), tracing(ZipkinTrace.start()))
    with anyio.fail_after(TIMEOUT):
        async with served(service, [], [telemetry.interceptor()], **COMPOSITE) as rs:
            await rs.request_response(Payload(b"", metadata))
    (client,) = telemetry.spans(SpanKind.CLIENT)
    entries = CompositeMetadata.decode(service.metadata[0] or b"")
    assert [e.mime_type for e in entries if e.mime_type == "traceparent"] == ["traceparent"]
    assert entries.get("traceparent") != stale.encode()
    assert client.context is not None and entries.tracing is not None
    assert entries.tracing.span_id == client.context.span_id


def test_importing_without_the_extra_names_it() -> None:
    code = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None\n"
        "try:\n"
        "    import anyio_rsocket.telemetry\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "'otel' extra" in result.stdout and "anyio-rsocket[otel]" in result.stdout
