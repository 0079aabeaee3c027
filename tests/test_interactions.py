"""Every interaction end to end, in both directions, over the memory transport and TCP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from anyio_rsocket import (
    ApplicationError,
    ConnectionClosedError,
    InvalidError,
    Payload,
    RejectedError,
    RequestHandler,
    RSocket,
    RSocketError,
    connect_tcp,
    serve_tcp,
)
from anyio_rsocket.testing import connected_pair

pytestmark = pytest.mark.anyio


class EchoHandler(RequestHandler):
    """Echo-style responder used by most tests; records what it receives."""

    def __init__(self) -> None:
        self.fire_and_forget_received: list[Payload] = []
        self.pushed: list[bytes] = []
        self.received = anyio.Event()

    async def request_response(self, payload: Payload) -> Payload:
        if payload.data == b"fail":
            raise ApplicationError("it failed")
        if payload.data == b"custom":
            raise RSocketError("custom failure", 0x00000301)
        if payload.data == b"crash":
            raise KeyError("boom")
        return Payload(b"echo:" + payload.data, payload.metadata)

    async def fire_and_forget(self, payload: Payload) -> None:
        self.fire_and_forget_received.append(payload)
        self.received.set()

    async def metadata_push(self, metadata: bytes) -> None:
        self.pushed.append(metadata)
        self.received.set()

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        count = int(payload.data)
        for index in range(count):
            yield Payload(b"%d" % index, payload.metadata)
        if payload.metadata == b"then-fail":
            raise ApplicationError("stream failed")

    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        yield Payload(b"echo:" + payload.data)
        async for item in inbound:
            yield Payload(b"echo:" + item.data)


async def test_request_response_round_trip_IX1() -> None:
    """IX1: one request, one answer; metadata travels both ways."""
    with anyio.fail_after(5):
        async with connected_pair(lambda rs: EchoHandler()) as rs:
            reply = await rs.request_response(Payload(b"data", b"meta"))
    assert reply == Payload(b"echo:data", b"meta")


async def test_empty_and_absent_metadata_stay_distinct_MD3() -> None:
    """MD3/MD4: b"" metadata and None metadata, and empty data, all survive the round trip."""
    with anyio.fail_after(5):
        async with connected_pair(lambda rs: EchoHandler()) as rs:
            assert (await rs.request_response(Payload(b"", b""))).metadata == b""
            assert (await rs.request_response(Payload(b"x"))).metadata is None
            async with rs.request_stream(Payload(b"2", b"")) as stream:
                assert [item.metadata async for item in stream] == [b"", b""]


async def test_errors_are_typed_and_unwrapped_E2() -> None:
    """A responder's failure surfaces as the typed exception with code and message (E2)."""
    with anyio.fail_after(5):
        async with connected_pair(lambda rs: EchoHandler()) as rs:
            with pytest.raises(ApplicationError) as app_error:
                await rs.request_response(Payload(b"fail"))
            assert app_error.value.code == 0x201
            assert app_error.value.message == "it failed" == str(app_error.value)

            with pytest.raises(RSocketError) as custom:
                await rs.request_response(Payload(b"custom"))
            assert custom.value.code == 0x301 and custom.value.message == "custom failure"

            # Other exceptions are reported by type only: their text may hold secrets.
            with pytest.raises(ApplicationError) as crash:
                await rs.request_response(Payload(b"crash"))
            assert crash.value.message == "KeyError"
            # The connection survives stream-level errors.
            assert await rs.request_response(Payload(b"ok")) == Payload(b"echo:ok")


async def test_expose_errors_sends_exception_text() -> None:
    """With ``expose_errors=True`` the server sends an exception's text as well as its type."""
    with anyio.fail_after(5):
        async with connected_pair(lambda rs: EchoHandler(), server_options={"expose_errors": True}) as rs:
            with pytest.raises(ApplicationError) as crash:
                await rs.request_response(Payload(b"crash"))
            assert crash.value.message == "KeyError: 'boom'"


async def test_unimplemented_interactions_answer_rejected() -> None:
    """A bare RequestHandler rejects every request with ERROR[REJECTED]."""
    with anyio.fail_after(5):
        async with connected_pair(lambda rs: RequestHandler()) as rs:
            with pytest.raises(RejectedError):
                await rs.request_response(Payload(b"x"))
            with pytest.raises(RejectedError):
                async with rs.request_stream(Payload(b"x")) as stream:
                    await stream.receive()
            with pytest.raises(RejectedError):
                async with rs.request_channel(Payload(b"x")) as channel:
                    await channel.receive()


async def test_fire_and_forget_and_metadata_push_are_delivered_IX3_MP1() -> None:
    handler = EchoHandler()
    with anyio.fail_after(5):
        async with connected_pair(lambda rs: handler) as rs:
            await rs.fire_and_forget(Payload(b"event", b"m"))
            await handler.received.wait()
            handler.received = anyio.Event()
            await rs.metadata_push(b"pushed")
            await handler.received.wait()
    assert handler.fire_and_forget_received == [Payload(b"event", b"m")]
    assert handler.pushed == [b"pushed"]


async def test_fire_and_forget_queued_before_close_is_flushed() -> None:
    """fire_and_forget returns once queued; leaving the block still delivers it."""
    handler = EchoHandler()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_tcp, lambda rs: handler, "127.0.0.1", 0)
            async with connect_tcp("127.0.0.1", port) as rs:
                await rs.fire_and_forget(Payload(b"last words"))
            await handler.received.wait()
            tg.cancel_scope.cancel()
    assert handler.fire_and_forget_received == [Payload(b"last words")]


async def test_stream_with_automatic_credit_IX4() -> None:
    with anyio.fail_after(5):
        async with connected_pair(lambda rs: EchoHandler()) as rs:
            async with rs.request_stream(Payload(b"50"), initial_n=2) as stream:
                items = [item.data async for item in stream]
    assert items == [b"%d" % i for i in range(50)]


async def test_stream_error_after_items_IX4() -> None:
    with anyio.fail_after(5):
        async with connected_pair(lambda rs: EchoHandler()) as rs:
            received = []
            with pytest.raises(ApplicationError, match="stream failed"):
                async with rs.request_stream(Payload(b"3", b"then-fail")) as stream:
                    async for item in stream:
                        received.append(item.data)
    assert received == [b"0", b"1", b"2"]


class CountingStreamHandler(RequestHandler):
    """An endless stream whose generator counts how many items were pulled from it."""

    def __init__(self) -> None:
        self.produced = 0

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        while True:
            self.produced += 1
            yield Payload(b"%d" % self.produced)


async def test_manual_credit_is_exact_RN1_RN2() -> None:
    """initial_n=2 then request(3): exactly 2, then 5 items; the generator runs one item ahead."""
    handler = CountingStreamHandler()
    with anyio.fail_after(5):
        async with connected_pair(lambda rs: handler) as rs:
            async with rs.request_stream(Payload(b""), initial_n=2, auto_request=False) as stream:
                first = [await stream.receive(), await stream.receive()]
                assert stream.buffered == 0
                assert handler.produced == 3  # one pulled ahead and held until credit arrives
                stream.request(3)
                rest = [await stream.receive() for _ in range(3)]
                assert stream.buffered == 0
                assert handler.produced == 6
    assert [p.data for p in first + rest] == [b"1", b"2", b"3", b"4", b"5"]


async def test_channel_echo_IX5() -> None:
    with anyio.fail_after(5):
        async with connected_pair(lambda rs: EchoHandler()) as rs:
            async with rs.request_channel(Payload(b"a")) as channel:
                await channel.send(Payload(b"b"))
                await channel.send(Payload(b"c"))
                await channel.send_eof()
                items = [item.data async for item in channel]
    assert items == [b"echo:a", b"echo:b", b"echo:c"]


async def test_channel_requester_completes_first_IX5() -> None:
    """Requester completes its half; the responder keeps sending until it completes too."""

    class LateHandler(RequestHandler):
        async def request_channel(
            self, payload: Payload, inbound: AsyncIterator[Payload]
        ) -> AsyncIterator[Payload]:
            seen = [payload.data] + [item.data async for item in inbound]
            for data in seen:
                yield Payload(b"late:" + data)

    with anyio.fail_after(5):
        async with connected_pair(lambda rs: LateHandler()) as rs:
            async with rs.request_channel(Payload(b"1")) as channel:
                await channel.send(Payload(b"2"))
                await channel.send_eof()
                items = [item.data async for item in channel]
    assert items == [b"late:1", b"late:2"]


async def test_channel_responder_completes_first_IX5() -> None:
    """Responder completes its half first; the requester may still send, then completes."""
    inbound_seen: list[bytes] = []
    done = anyio.Event()

    class EarlyHandler(RequestHandler):
        async def request_channel(
            self, payload: Payload, inbound: AsyncIterator[Payload]
        ) -> AsyncIterator[Payload]:
            yield Payload(b"only")
            async for item in inbound:
                inbound_seen.append(item.data)
                if item.data == b"last":
                    done.set()
                    return

    with anyio.fail_after(5):
        async with connected_pair(lambda rs: EarlyHandler()) as rs:
            async with rs.request_channel(Payload(b"first")) as channel:
                assert (await channel.receive()).data == b"only"
                await channel.send(Payload(b"more"))
                await channel.send(Payload(b"last"))
                await done.wait()
                with pytest.raises(anyio.EndOfStream):
                    await channel.receive()
    assert inbound_seen == [b"more", b"last"]


async def test_channel_with_complete_flag_sends_one_element_IX5() -> None:
    with anyio.fail_after(5):
        async with connected_pair(lambda rs: EchoHandler()) as rs:
            async with rs.request_channel(Payload(b"solo"), complete=True) as channel:
                items = [item.data async for item in channel]
                with pytest.raises(anyio.ClosedResourceError):
                    await channel.send(Payload(b"too late"))
    assert items == [b"echo:solo"]


async def test_server_calls_the_client() -> None:
    """Both ends are full peers: the server's handler makes requests to the client's handler."""

    class ClientSide(RequestHandler):
        async def request_response(self, payload: Payload) -> Payload:
            return Payload(b"client says " + payload.data)

        async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
            for index in range(3):
                yield Payload(b"c%d" % index)

    class ServerSide(RequestHandler):
        def __init__(self, peer: RSocket) -> None:
            self.peer = peer

        async def request_response(self, payload: Payload) -> Payload:
            answer = await self.peer.request_response(Payload(b"hello"))
            async with self.peer.request_stream(Payload(b"")) as stream:
                items = b",".join([item.data async for item in stream])
            return Payload(answer.data + b" / " + items)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_tcp, ServerSide, "127.0.0.1", 0)
            async with connect_tcp("127.0.0.1", port, handler=ClientSide()) as rs:
                reply = await rs.request_response(Payload(b"go"))
            tg.cancel_scope.cancel()
    assert reply.data == b"client says hello / c0,c1,c2"


async def test_handler_factory_sees_setup() -> None:
    seen = []

    def factory(rs: RSocket) -> RequestHandler:
        seen.append(rs.setup)
        return EchoHandler()

    with anyio.fail_after(5):
        async with connected_pair(
            factory,
            data_mime_type="application/json",
            metadata_mime_type="text/plain",
            keepalive_interval=12.0,
            max_lifetime=34.0,
            setup_payload=Payload(b"hello", b"auth"),
        ) as rs:
            assert rs.setup.data_mime_type == "application/json"
    (setup,) = seen
    assert setup.data_mime_type == "application/json"
    assert setup.metadata_mime_type == "text/plain"
    assert setup.keepalive_interval == 12.0 and setup.max_lifetime == 34.0
    assert setup.payload == Payload(b"hello", b"auth")
    assert setup.version == (1, 0) and not setup.lease and setup.resume_token is None


async def test_async_handler_factory() -> None:
    async def factory(rs: RSocket) -> RequestHandler:
        await anyio.lowlevel.checkpoint()
        return EchoHandler()

    with anyio.fail_after(5):
        async with connected_pair(factory) as rs:
            assert (await rs.request_response(Payload(b"x"))).data == b"echo:x"


async def test_concurrent_requests_are_multiplexed() -> None:
    """Slow handlers do not block others: responses arrive out of order."""
    release = anyio.Event()

    class SlowFirst(RequestHandler):
        async def request_response(self, payload: Payload) -> Payload:
            if payload.data == b"slow":
                await release.wait()
            else:
                release.set()
            return payload

    order: list[bytes] = []
    with anyio.fail_after(5):
        async with connected_pair(lambda rs: SlowFirst()) as rs:

            async def call(data: bytes) -> None:
                order.append((await rs.request_response(Payload(data))).data)

            async with anyio.create_task_group() as tg:
                tg.start_soon(call, b"slow")
                tg.start_soon(call, b"fast")
    # Serial handlers would deadlock here: "slow" waits for "fast" to be handled.
    assert sorted(order) == [b"fast", b"slow"]


async def test_many_concurrent_requests_over_tcp() -> None:
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_tcp, lambda rs: EchoHandler(), "127.0.0.1", 0)
            async with connect_tcp("127.0.0.1", port) as rs:
                results: dict[int, bytes] = {}

                async def call(index: int) -> None:
                    results[index] = (await rs.request_response(Payload(b"%d" % index))).data

                async with anyio.create_task_group() as calls:
                    for index in range(200):
                        calls.start_soon(call, index)
            tg.cancel_scope.cancel()
    assert results == {index: b"echo:%d" % index for index in range(200)}


async def test_body_exception_propagates_unwrapped() -> None:
    """Errors out of the connection block are the user's own exception, not an ExceptionGroup."""
    with anyio.fail_after(5), pytest.raises(ValueError, match="mine"):
        async with connected_pair(lambda rs: EchoHandler()):
            raise ValueError("mine")


async def test_calls_after_close_raise_connection_closed() -> None:
    with anyio.fail_after(5):
        async with connected_pair(lambda rs: EchoHandler()) as rs:
            pass
        assert rs.is_closed
        with pytest.raises(ConnectionClosedError):
            await rs.request_response(Payload(b"x"))
        with pytest.raises(ConnectionClosedError):
            await rs.fire_and_forget(Payload(b"x"))
        with pytest.raises(ConnectionClosedError):
            async with rs.request_stream(Payload(b"1")):
                pass


async def test_no_task_left_behind() -> None:
    """Leaving the blocks leaves exactly the tasks that existed before (design property 1)."""
    before = len(anyio.get_running_tasks())
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_tcp, lambda rs: EchoHandler(), "127.0.0.1", 0)
            async with connect_tcp("127.0.0.1", port) as rs:
                async with rs.request_stream(Payload(b"1000"), initial_n=1) as stream:
                    await stream.receive()
                async with rs.request_channel(Payload(b"x")) as channel:
                    await channel.receive()
                await rs.request_response(Payload(b"y"))
                assert len(anyio.get_running_tasks()) > before
            tg.cancel_scope.cancel()
    assert len(anyio.get_running_tasks()) == before


async def test_server_survives_a_bad_connection() -> None:
    """Garbage on one connection never affects the others (issue: one bad connection)."""
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_tcp, lambda rs: EchoHandler(), "127.0.0.1", 0)
            async with connect_tcp("127.0.0.1", port) as good:
                bad = await anyio.connect_tcp("127.0.0.1", port)
                await bad.send(b"\x00\x00\x07garbage!")
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    while True:
                        await bad.receive()
                await bad.aclose()
                assert (await good.request_response(Payload(b"still here"))).data == b"echo:still here"
            tg.cancel_scope.cancel()


async def test_oversized_payload_is_refused_locally_T3() -> None:
    """A request that cannot fit in one frame fails locally, and the connection stays usable."""
    from anyio_rsocket import FrameTooLargeError

    with anyio.fail_after(10):
        async with connected_pair(lambda rs: EchoHandler()) as rs:
            with pytest.raises(FrameTooLargeError):
                await rs.request_response(Payload(b"x" * 16_777_216))
            assert (await rs.request_response(Payload(b"small"))).data == b"echo:small"


async def test_responder_exceeding_credit_is_an_error_RN6() -> None:
    """Our rule for RN6: a responder sending beyond credit gets CANCEL, the consumer InvalidError."""
    from anyio_rsocket.frames import CancelFrame, PayloadFrame, RequestStreamFrame

    from .rawpeer import raw_server

    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            async with rs.request_stream(Payload(b""), initial_n=1, auto_request=False) as stream:
                request = await peer.expect(RequestStreamFrame)
                await peer.send(
                    PayloadFrame(request.stream_id, b"1", next=True),
                    PayloadFrame(request.stream_id, b"2", next=True),
                )
                assert (await stream.receive()).data == b"1"
                with pytest.raises(InvalidError):
                    await stream.receive()
                assert (await peer.expect(CancelFrame)).stream_id == request.stream_id


async def test_a_burst_of_slow_handlers_all_run_concurrently() -> None:
    """More waiting handlers than the worker burst: each still runs at once (no head-of-line block)."""
    count = 300
    started = 0
    all_started = anyio.Event()

    class Gate(RequestHandler):
        async def request_response(self, payload: Payload) -> Payload:
            nonlocal started
            started += 1
            if started == count:
                all_started.set()
            await all_started.wait()  # completes only if all 300 handlers run at the same time
            return payload

    with anyio.fail_after(10):
        async with anyio.create_task_group() as server:
            port = await server.start(serve_tcp, lambda rs: Gate(), "127.0.0.1", 0)
            async with connect_tcp("127.0.0.1", port) as rs:  # TCP: requests arrive in batches
                async with anyio.create_task_group() as tg:
                    for index in range(count):
                        tg.start_soon(rs.request_response, Payload(b"%d" % index))
            server.cancel_scope.cancel()
    assert started == count


async def test_channel_outbound_source_runs_in_the_interaction_IX5() -> None:
    """``outbound=``: a task of the interaction sends the elements, then completes our half."""

    async def numbers() -> AsyncIterator[Payload]:
        for index in range(3):
            yield Payload(b"%d" % index)

    with anyio.fail_after(5):
        async with connected_pair(lambda rs: EchoHandler()) as rs:
            async with rs.request_channel(Payload(b"first"), outbound=numbers()) as channel:
                items = [item.data async for item in channel]
            assert not rs._streams
    assert items == [b"echo:first", b"echo:0", b"echo:1", b"echo:2"]


async def test_channel_outbound_failure_propagates_and_errors_the_stream_IX5() -> None:
    responder_done = anyio.Event()

    class Watching(RequestHandler):
        async def request_channel(
            self, payload: Payload, inbound: AsyncIterator[Payload]
        ) -> AsyncIterator[Payload]:
            try:
                async for item in inbound:
                    yield item
                await anyio.sleep_forever()
            finally:
                responder_done.set()

    async def failing() -> AsyncIterator[Payload]:
        yield Payload(b"ok")
        raise KeyError("source broke")

    before = len(anyio.get_running_tasks())
    with anyio.fail_after(5):
        async with connected_pair(lambda rs: Watching()) as rs:
            with pytest.raises(KeyError, match="source broke"):
                async with rs.request_channel(Payload(b"first"), outbound=failing()):
                    await anyio.sleep_forever()  # the failing source cancels the block
            await responder_done.wait()  # ERROR reached the responder and ended its handler
            assert not rs._streams
    assert len(anyio.get_running_tasks()) == before


async def test_leaving_channel_block_stops_an_endless_outbound_source() -> None:
    async def endless() -> AsyncIterator[Payload]:
        while True:
            yield Payload(b"more")

    before = len(anyio.get_running_tasks())
    with anyio.fail_after(5):
        async with connected_pair(lambda rs: EchoHandler()) as rs:
            async with rs.request_channel(Payload(b"first"), outbound=endless()) as channel:
                for _ in range(10):
                    await channel.receive()
            assert not rs._streams
    assert len(anyio.get_running_tasks()) == before
