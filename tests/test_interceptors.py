"""Interceptors, travelling deadlines and connection stats, on asyncio and trio."""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from anyio_rsocket import (
    NO_VALUE,
    ApplicationError,
    Interaction,
    Interceptor,
    Payload,
    RejectedError,
    RequestHandler,
    RSocket,
    Side,
    connect_tcp,
    serve_tcp,
)
from anyio_rsocket.extensions import MESSAGE_COMPOSITE_METADATA, CompositeMetadata
from anyio_rsocket.protocol import InteractionKind
from anyio_rsocket.setup_info import SetupInfo
from anyio_rsocket.testing import connected_pair

pytestmark = pytest.mark.anyio

COMPOSITE: dict[str, Any] = {"metadata_mime_type": MESSAGE_COMPOSITE_METADATA}


class Recorder(Interceptor):
    """Records enter/exit order, every interaction it saw and the items."""

    def __init__(self, name: str, log: list[str], *, refuse: BaseException | None = None) -> None:
        self.name = name
        self.log = log
        self.refuse = refuse
        self.seen: list[Interaction] = []
        self.items: list[tuple[bytes, bool]] = []
        self.ended = anyio.Event()

    @asynccontextmanager
    async def _around(self, interaction: Interaction) -> AsyncIterator[None]:
        self.log.append(f"{self.name} enter {interaction.side.value}")
        if self.refuse is not None:
            raise self.refuse
        self.seen.append(interaction)
        try:
            yield
        finally:
            self.log.append(f"{self.name} exit {interaction.side.value}")
            self.ended.set()

    def intercept(self, interaction: Interaction) -> Any:
        return self._around(interaction)

    def on_item(self, interaction: Interaction, payload: Payload, *, outbound: bool) -> None:
        self.items.append((payload.data, outbound))


class Service(RequestHandler):
    def __init__(self) -> None:
        self.calls = 0
        self.deadlines: list[float] = []
        self.metadata: list[bytes | None] = []
        self.cancelled = anyio.Event()
        self.fnf = anyio.Event()

    async def request_response(self, payload: Payload) -> Payload:
        self.calls += 1
        self.deadlines.append(anyio.current_effective_deadline())
        self.metadata.append(payload.metadata)
        if payload.data == b"fail":
            raise ApplicationError("broken")
        if payload.data == b"slow":
            try:
                await anyio.sleep_forever()
            finally:
                self.cancelled.set()
        return Payload(b"ok:" + payload.data)

    async def fire_and_forget(self, payload: Payload) -> None:
        self.fnf.set()

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        for index in range(int(payload.data)):
            yield Payload(b"%d" % index)

    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        async for item in inbound:
            yield Payload(b"re:" + item.data)


async def test_order_first_is_outermost_on_both_sides() -> None:
    log: list[str] = []
    service = Service()
    with anyio.fail_after(5):
        async with connected_pair(
            lambda rs: service,
            server_options={"interceptors": [Recorder("S1", log), Recorder("S2", log)]},
            interceptors=[Recorder("C1", log), Recorder("C2", log)],
        ) as rs:
            assert await rs.request_response(Payload(b"x")) == Payload(b"ok:x")
    client = [entry for entry in log if entry.startswith("C")]
    server = [entry for entry in log if entry.startswith("S")]
    assert client == ["C1 enter requester", "C2 enter requester", "C2 exit requester", "C1 exit requester"]
    assert server == ["S1 enter responder", "S2 enter responder", "S2 exit responder", "S1 exit responder"]


async def test_both_sides_see_the_interaction() -> None:
    client, server = Recorder("c", []), Recorder("s", [])
    with anyio.fail_after(5):
        async with connected_pair(
            lambda rs: Service(), server_options={"interceptors": [server]}, interceptors=[client]
        ) as rs:
            await rs.request_response(Payload(b"x"))
            await server.ended.wait()
    [mine], [theirs] = client.seen, server.seen
    assert mine.kind is theirs.kind is InteractionKind.REQUEST_RESPONSE
    assert (mine.side, theirs.side) == (Side.REQUESTER, Side.RESPONDER)
    assert mine.stream_id == theirs.stream_id == 1
    assert (mine.items_received, theirs.items_sent) == (1, 1)
    assert mine.error is None and theirs.error is None and not mine.cancelled


async def test_a_requester_interceptor_refuses_before_anything_is_sent() -> None:
    service = Service()
    with anyio.fail_after(5):
        async with connected_pair(
            lambda rs: service, interceptors=[Recorder("c", [], refuse=PermissionError("not you"))]
        ) as rs:
            with pytest.raises(PermissionError):
                await rs.request_response(Payload(b"x"))
            with pytest.raises(PermissionError):
                async with rs.request_stream(Payload(b"3")):
                    pass
    assert service.calls == 0


@pytest.mark.parametrize(
    ("refusal", "expected"),
    [(RejectedError("over quota"), "over quota"), (ValueError("secret detail"), "ValueError")],
)
async def test_a_responder_interceptor_refuses_with_rejected(refusal: BaseException, expected: str) -> None:
    service = Service()
    with anyio.fail_after(5):
        async with connected_pair(
            lambda rs: service, server_options={"interceptors": [Recorder("s", [], refuse=refusal)]}
        ) as rs:
            with pytest.raises(RejectedError) as refused:
                await rs.request_response(Payload(b"x"))
            assert refused.value.message == expected
            with pytest.raises(RejectedError):
                async with rs.request_stream(Payload(b"3")) as stream:
                    await stream.receive()
    assert service.calls == 0


async def test_errors_are_recorded_on_both_sides() -> None:
    client, server = Recorder("c", []), Recorder("s", [])
    with anyio.fail_after(5):
        async with connected_pair(
            lambda rs: Service(), server_options={"interceptors": [server]}, interceptors=[client]
        ) as rs:
            with pytest.raises(ApplicationError):
                await rs.request_response(Payload(b"fail"))
            await server.ended.wait()
    assert isinstance(client.seen[0].error, ApplicationError)
    assert isinstance(server.seen[0].error, ApplicationError)


async def test_stream_items_are_observed_and_leaving_early_is_a_cancel() -> None:
    client, server = Recorder("c", []), Recorder("s", [])
    with anyio.fail_after(5):
        async with connected_pair(
            lambda rs: Service(), server_options={"interceptors": [server]}, interceptors=[client]
        ) as rs:
            async with rs.request_stream(Payload(b"3")) as stream:
                assert [item.data async for item in stream] == [b"0", b"1", b"2"]
            async with rs.request_stream(Payload(b"1000000"), initial_n=2) as stream:
                await stream.receive()
            while len(server.seen) < 2 or not server.seen[1].cancelled:
                await server.ended.wait()
                server.ended = anyio.Event()
    complete, abandoned = client.seen
    assert complete.items_received == 3 and not complete.cancelled
    assert client.items[:3] == [(b"0", False), (b"1", False), (b"2", False)]
    assert abandoned.cancelled and server.seen[1].cancelled
    assert server.seen[0].items_sent == 3


async def test_channel_items_both_ways() -> None:
    client, server = Recorder("c", []), Recorder("s", [])

    async def outbound() -> AsyncIterator[Payload]:
        for index in range(3):
            yield Payload(b"%d" % index)

    with anyio.fail_after(5):
        async with connected_pair(
            lambda rs: Service(), server_options={"interceptors": [server]}, interceptors=[client]
        ) as rs:
            async with rs.request_channel(Payload(b"first"), outbound=outbound()) as channel:
                replies = [item.data async for item in channel]
            await server.ended.wait()
    assert replies == [b"re:0", b"re:1", b"re:2"]
    [mine], [theirs] = client.seen, server.seen
    assert (mine.items_sent, mine.items_received) == (3, 3)
    assert (theirs.items_received, theirs.items_sent) == (3, 3)


async def test_fire_and_forget_is_intercepted_on_both_sides() -> None:
    client, server = Recorder("c", []), Recorder("s", [])
    service = Service()
    with anyio.fail_after(5):
        async with connected_pair(
            lambda rs: service, server_options={"interceptors": [server]}, interceptors=[client]
        ) as rs:
            await rs.fire_and_forget(Payload(b"f"))
            await service.fnf.wait()
            await server.ended.wait()
    assert client.seen[0].kind is server.seen[0].kind is InteractionKind.FIRE_AND_FORGET


async def test_a_requester_interceptor_adds_metadata_and_both_see_the_route() -> None:
    class Tagger(Recorder):
        @asynccontextmanager
        async def _around(self, interaction: Interaction) -> AsyncIterator[None]:
            assert interaction.add_metadata("text/x.tag", b"tagged")
            self.seen.append(interaction)
            yield

    client, server = Tagger("c", []), Recorder("s", [])
    service = Service()
    with anyio.fail_after(5):
        async with connected_pair(
            lambda rs: service,
            server_options={"interceptors": [server]},
            interceptors=[client],
            **COMPOSITE,
        ) as rs:
            await rs.route("greet").request_response(b"x")
            await server.ended.wait()
    [metadata] = service.metadata
    assert metadata is not None and CompositeMetadata.decode(metadata).get("text/x.tag") == b"tagged"
    assert client.seen[0].route == server.seen[0].route == "greet"


async def test_without_composite_metadata_add_metadata_changes_nothing() -> None:
    interaction = Interaction(InteractionKind.REQUEST_RESPONSE, Side.REQUESTER, Payload(b"x"), _octet_setup())
    assert not interaction.add_metadata("text/x.tag", b"t")
    assert interaction.payload == Payload(b"x") and interaction.route is None


def _octet_setup() -> SetupInfo:
    return SetupInfo(
        data_mime_type="application/octet-stream",
        metadata_mime_type="application/octet-stream",
        keepalive_interval=20.0,
        max_lifetime=90.0,
    )


@asynccontextmanager
async def tcp_pair(
    service: Service, server_options: dict[str, Any], **client_options: Any
) -> AsyncIterator[RSocket]:
    """A server whose task group is outside the test's own deadline (handlers inherit none of it)."""
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            functools.partial(serve_tcp, lambda rs: service, "127.0.0.1", 0, **server_options)
        )
        with anyio.fail_after(5):
            async with connect_tcp("127.0.0.1", port, **COMPOSITE, **client_options) as rs:
                yield rs
        tg.cancel_scope.cancel()


async def test_deadlines_travel_to_the_handler() -> None:
    service = Service()
    async with tcp_pair(service, {}) as rs:
        with anyio.fail_after(3):
            sent_at = anyio.current_time()
            await rs.request_response(Payload(b"x"))
        with anyio.CancelScope():  # no deadline of its own: the outer fail_after(5) travels
            await rs.request_response(Payload(b"outer"))
    first, second = service.deadlines
    # The handler ran under the caller's remaining time (in-process: the same clock).
    assert sent_at < first <= sent_at + 3 + 0.05
    assert first < second < math.inf


async def test_a_handler_is_cancelled_when_the_callers_deadline_passes() -> None:
    service = Service()
    async with tcp_pair(service, {}) as rs:
        with anyio.move_on_after(0.2):
            await rs.request_response(Payload(b"slow"))
        await service.cancelled.wait()


@pytest.mark.parametrize("side", ["client", "server"])
async def test_deadlines_off_on_either_side(side: str) -> None:
    service = Service()
    server_options: dict[str, Any] = {"deadlines": False} if side == "server" else {}
    client_options: dict[str, Any] = {"deadlines": False} if side == "client" else {}
    async with tcp_pair(service, server_options, **client_options) as rs:
        await rs.request_response(Payload(b"x"))
    assert service.deadlines == [math.inf]


async def test_stats_count_traffic_and_measure_the_round_trip() -> None:
    with anyio.fail_after(5):
        async with connected_pair(lambda rs: Service()) as rs:
            before = rs.stats
            for _ in range(10):
                await rs.request_response(Payload(b"12345"))
            async with rs.request_stream(Payload(b"1000000"), initial_n=1) as stream:
                await stream.receive()
                assert rs.stats.streams_open == 1
            after = rs.stats
    assert before.rtt is not None and before.rtt >= 0  # the SETUP probe's echo
    assert after.frames_sent >= before.frames_sent + 11
    assert after.frames_received >= before.frames_received + 11
    assert after.bytes_sent >= before.bytes_sent + 10 * (6 + 5)
    assert after.bytes_received > before.bytes_received
    assert after.streams_open == 0


async def test_an_answer_without_a_value_is_no_value() -> None:
    class Quiet(RequestHandler):
        async def request_response(self, payload: Payload) -> Payload | None:
            return None if payload.data == b"none" else Payload(b"")

    with anyio.fail_after(5):
        async with connected_pair(lambda rs: Quiet()) as rs:
            nothing = await rs.request_response(Payload(b"none"))
            empty = await rs.request_response(Payload(b"empty"))
    assert nothing is NO_VALUE and nothing == Payload() and repr(nothing) == "NO_VALUE"
    assert empty is not NO_VALUE and empty == Payload(b"")
