"""Our server against a scripted raw-frame client: SETUP handling, responder credit, cancellation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from anyio_rsocket import ApplicationError, Payload, RejectedSetupError, RequestHandler, RSocket
from anyio_rsocket.errors import ErrorCode
from anyio_rsocket.frames import (
    CancelFrame,
    ErrorFrame,
    KeepaliveFrame,
    MetadataPushFrame,
    PayloadFrame,
    RequestChannelFrame,
    RequestNFrame,
    RequestResponseFrame,
    RequestStreamFrame,
    ResumeFrame,
    SetupFrame,
)

from .rawpeer import DEFAULT_SETUP, RawPeer, raw_client

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True, params=["memory", "tcp"])
def raw_transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs twice: over the memory transport and over a real TCP socket."""
    from . import rawpeer

    monkeypatch.setattr(rawpeer, "RAW_TRANSPORT", request.param)
    return str(request.param)


class Recorder(RequestHandler):
    """Endless streams, echoing channels, and events that tests can wait on."""

    def __init__(self) -> None:
        self.produced = 0
        self.cancelled = anyio.Event()
        self.started = anyio.Event()
        self.pushed: list[bytes] = []
        self.channel_inbound: list[bytes] = []
        self.channel_done = anyio.Event()

    async def request_response(self, payload: Payload) -> Payload | None:
        if payload.data == b"hang":
            self.started.set()
            try:
                await anyio.sleep_forever()
            finally:
                self.cancelled.set()
        if payload.data == b"none":
            return None
        return Payload(b"echo:" + payload.data)

    async def metadata_push(self, metadata: bytes) -> None:
        self.pushed.append(metadata)

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        try:
            while True:
                self.produced += 1
                yield Payload(b"%d" % self.produced)
        finally:
            self.cancelled.set()

    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        try:
            self.channel_inbound.append(payload.data)
            async for item in inbound:
                self.channel_inbound.append(item.data)
            yield Payload(b"seen %d" % len(self.channel_inbound))
        finally:
            self.channel_done.set()


async def _expect_setup_error(peer: RawPeer, code: int) -> ErrorFrame:
    error = await peer.expect(ErrorFrame)
    assert error.stream_id == 0
    assert error.error_code == code, error
    await peer.expect_closed()
    return error


async def test_request_before_setup_is_invalid_setup_S1() -> None:
    with anyio.fail_after(5):
        async with raw_client(lambda rs: Recorder(), setup=None) as peer:
            await peer.send(RequestResponseFrame(1, b"too early"))
            await _expect_setup_error(peer, ErrorCode.INVALID_SETUP)


async def test_setup_on_nonzero_stream_is_invalid_setup_S1() -> None:
    with anyio.fail_after(5):
        async with raw_client(lambda rs: Recorder(), setup=None) as peer:
            await peer.send(SetupFrame(1000, 1000, "a/b", "c/d", stream_id=1))
            await _expect_setup_error(peer, ErrorCode.INVALID_SETUP)


async def test_unsupported_version_is_invalid_setup_S2() -> None:
    with anyio.fail_after(5):
        async with raw_client(lambda rs: Recorder(), setup=None) as peer:
            await peer.send(SetupFrame(1000, 1000, "a/b", "c/d", major_version=2))
            error = await _expect_setup_error(peer, ErrorCode.INVALID_SETUP)
            assert "2.0" in error.message


async def test_resume_setups_are_refused_S7_R5() -> None:
    with anyio.fail_after(5):
        async with raw_client(lambda rs: Recorder(), setup=None) as peer:
            await peer.send(SetupFrame(1000, 1000, "a/b", "c/d", resume_token=b"token"))
            await _expect_setup_error(peer, ErrorCode.REJECTED_SETUP)
        async with raw_client(lambda rs: Recorder(), setup=None) as peer:
            await peer.send(ResumeFrame(b"token", 0, 0))
            await _expect_setup_error(peer, ErrorCode.REJECTED_RESUME)


async def test_handler_factory_rejects_setup_S3() -> None:
    def factory(rs: RSocket) -> RequestHandler:
        raise RejectedSetupError("members only")

    with anyio.fail_after(5):
        async with raw_client(factory) as peer:
            error = await _expect_setup_error(peer, ErrorCode.REJECTED_SETUP)
            assert error.message == "members only"


async def test_second_setup_is_ignored_S9() -> None:
    with anyio.fail_after(5):
        async with raw_client(lambda rs: Recorder()) as peer:
            await peer.send(DEFAULT_SETUP)
            await peer.round_trip()
            await peer.send(RequestResponseFrame(1, b"still fine"))
            assert (await peer.expect(PayloadFrame)).data == b"echo:still fine"


async def test_server_echoes_keepalive_K2() -> None:
    with anyio.fail_after(5):
        async with raw_client(lambda rs: Recorder()) as peer:
            await peer.send(KeepaliveFrame(True, 0, b"ping"))
            echo = await peer.expect(KeepaliveFrame)
            assert not echo.respond and echo.data == b"ping"


async def test_responder_respects_credit_exactly_RN2() -> None:
    """With initial n=3 exactly 3 PAYLOADs go out, then nothing until REQUEST_N (edge case 5)."""
    handler = Recorder()
    with anyio.fail_after(5):
        async with raw_client(lambda rs: handler) as peer:
            await peer.send(RequestStreamFrame(1, 3, b""))
            for index in range(1, 4):
                item = await peer.expect(PayloadFrame)
                assert item.data == b"%d" % index and item.next and not item.complete
            await peer.round_trip()
            # The generator runs one item ahead of the credit (held, not sent), to notice its end.
            assert handler.produced == 4
            await peer.send(RequestNFrame(1, 2))
            assert [(await peer.expect(PayloadFrame)).data for _ in range(2)] == [b"4", b"5"]
            await peer.round_trip()
            assert handler.produced == 6


async def test_zero_initial_request_n_waits_for_request_n_RN6() -> None:
    handler = Recorder()
    with anyio.fail_after(5):
        async with raw_client(lambda rs: handler) as peer:
            await peer.send(RequestStreamFrame(1, 0, b""))
            await peer.round_trip()
            await peer.send(RequestNFrame(1, 0))  # RN6: ignored
            await peer.round_trip()
            assert handler.produced == 1  # pulled ahead and held: nothing was sent without credit
            await peer.send(RequestNFrame(1, 1))
            assert (await peer.expect(PayloadFrame)).data == b"1"


async def test_cancel_stops_the_stream_handler_IX4() -> None:
    handler = Recorder()
    with anyio.fail_after(5):
        async with raw_client(lambda rs: handler) as peer:
            await peer.send(RequestStreamFrame(1, 1, b""))
            await peer.expect(PayloadFrame)
            await peer.send(CancelFrame(1))
            await handler.cancelled.wait()
            await peer.send(RequestNFrame(1, 10))  # for a finished stream: ignored (RN7)
            await peer.round_trip()


async def test_cancel_cancels_the_request_response_handler_IX1() -> None:
    handler = Recorder()
    with anyio.fail_after(5):
        async with raw_client(lambda rs: handler) as peer:
            await peer.send(RequestResponseFrame(1, b"hang"))
            await handler.started.wait()
            await peer.send(CancelFrame(1))
            await handler.cancelled.wait()
            await peer.round_trip()  # no answer was sent for the cancelled request


async def test_request_response_without_value_sends_complete_only_IX1() -> None:
    with anyio.fail_after(5):
        async with raw_client(lambda rs: Recorder()) as peer:
            await peer.send(RequestResponseFrame(1, b"none"))
            reply = await peer.expect(PayloadFrame)
            assert reply.complete and not reply.next
            await peer.round_trip()


async def test_answered_request_response_sends_nothing_more_IX1() -> None:
    with anyio.fail_after(5):
        async with raw_client(lambda rs: Recorder()) as peer:
            await peer.send(RequestResponseFrame(1, b"q"))
            reply = await peer.expect(PayloadFrame)
            assert (reply.stream_id, reply.data, reply.next, reply.complete) == (1, b"echo:q", True, True)
            await peer.send(CancelFrame(1), RequestNFrame(1, 3))  # too late: the stream is over
            await peer.round_trip()


class Finite(RequestHandler):
    """Streams of three items; channels that answer one element and complete without reading."""

    def __init__(self) -> None:
        self.closed = anyio.Event()

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        try:
            for index in range(3):
                yield Payload(b"%d" % index)
        finally:
            self.closed.set()

    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        try:
            yield Payload(b"only " + payload.data)
        finally:
            self.closed.set()


async def _collect_until_complete(peer: RawPeer, stream_id: int) -> list[bytes]:
    """PAYLOADs of one stream up to and including its COMPLETE; any other frame fails the test."""
    items: list[bytes] = []
    while True:
        frame = await peer.expect(PayloadFrame)
        assert frame.stream_id == stream_id, frame
        if frame.next:
            items.append(frame.data)
        if frame.complete:
            return items


async def test_completed_stream_sends_nothing_more_IX4() -> None:
    """After its COMPLETE a stream is over: no CANCEL, no ERROR, nothing more for its id."""
    handler = Finite()
    with anyio.fail_after(5):
        async with raw_client(lambda rs: handler) as peer:
            await peer.send(RequestStreamFrame(1, 10, b""))
            assert await _collect_until_complete(peer, 1) == [b"0", b"1", b"2"]
            await handler.closed.wait()
            await peer.round_trip()
            await peer.send(RequestNFrame(1, 5), CancelFrame(1))  # for the finished stream: ignored
            await peer.round_trip()


async def test_channel_completed_by_responder_cancels_our_half_once_IX5() -> None:
    """The responder completes while the requester's half is open: COMPLETE plus one CANCEL for the
    requester's half ([java]), then nothing more for the stream."""
    handler = Finite()
    with anyio.fail_after(5):
        async with raw_client(lambda rs: handler) as peer:
            await peer.send(RequestChannelFrame(1, 10, b"a"))
            assert (await peer.expect(RequestNFrame)).stream_id == 1
            frames = [await peer.receive() for _ in range(3)]
            assert frames[0] == PayloadFrame(1, b"only a", next=True)
            assert sorted(frames[1:], key=repr) == [CancelFrame(1), PayloadFrame(1, complete=True)]
            await handler.closed.wait()
            await peer.send(PayloadFrame(1, b"late", next=True, complete=True))  # after our CANCEL
            await peer.round_trip()


async def test_cancelled_request_response_never_answers_late_IX1() -> None:
    """A handler that outlives CANCEL (shielded) and then returns or raises: neither its PAYLOAD nor
    an ERROR goes out for the cancelled stream."""
    started = anyio.Event()
    release = anyio.Event()
    finished = anyio.Event()

    class Stubborn(RequestHandler):
        async def request_response(self, payload: Payload) -> Payload:
            started.set()
            try:
                with anyio.move_on_after(5, shield=True):  # bounded: a failing test still ends
                    await release.wait()
                if payload.data == b"raise":
                    raise ApplicationError("too late to fail")
                return Payload(b"too late to answer")
            finally:
                finished.set()

    for data in (b"answer", b"raise"):
        started, release, finished = anyio.Event(), anyio.Event(), anyio.Event()
        with anyio.fail_after(5):
            async with raw_client(lambda rs: Stubborn()) as peer:
                await peer.send(RequestResponseFrame(1, data))
                await started.wait()
                await peer.send(CancelFrame(1))
                try:
                    await peer.round_trip()  # the CANCEL was processed, and answered with nothing
                finally:
                    release.set()  # lets the shielded handler (and the server's teardown) finish
                await finished.wait()
                await peer.round_trip()  # the handler's late result was dropped
                await peer.send(RequestResponseFrame(3, b"next"))  # the connection still works
                assert await peer.expect(PayloadFrame) == PayloadFrame(
                    3, b"too late to answer", next=True, complete=True
                )


async def test_duplicate_request_id_is_ignored_ID5() -> None:
    """A second request on a live id is ignored; the original stream is untouched (edge case 2)."""
    handler = Recorder()
    with anyio.fail_after(5):
        async with raw_client(lambda rs: handler) as peer:
            await peer.send(RequestStreamFrame(1, 1, b""))
            assert (await peer.expect(PayloadFrame)).data == b"1"
            await peer.send(RequestResponseFrame(1, b"duplicate"))
            await peer.round_trip()
            await peer.send(RequestNFrame(1, 1))
            assert (await peer.expect(PayloadFrame)).data == b"2"


async def test_channel_responder_grants_credit_and_sees_inbound_IX5() -> None:
    handler = Recorder()
    with anyio.fail_after(5):
        async with raw_client(lambda rs: handler) as peer:
            await peer.send(RequestChannelFrame(1, 10, b"a"))
            grant = await peer.expect(RequestNFrame)  # IX5: RS MUST answer with REQUEST_N
            assert grant.stream_id == 1 and grant.request_n >= 1
            await peer.send(
                PayloadFrame(1, b"b", next=True),
                PayloadFrame(1, b"c", next=True, complete=True),
            )
            reply = await peer.expect(PayloadFrame)
            assert reply.data == b"seen 3"
            assert (await peer.expect(PayloadFrame)).complete
            await handler.channel_done.wait()
            await peer.round_trip()  # both halves complete: nothing more (no CANCEL) for the stream
    assert handler.channel_inbound == [b"a", b"b", b"c"]


async def test_channel_with_complete_flag_has_one_inbound_element_IX5() -> None:
    """REQUEST_CHANNEL with C: the responder sees exactly one element, then completion."""
    handler = Recorder()
    with anyio.fail_after(5):
        async with raw_client(lambda rs: handler) as peer:
            await peer.send(RequestChannelFrame(1, 10, b"only", complete=True))
            assert (await peer.expect_next(PayloadFrame)).data == b"seen 1"
            complete = await peer.expect(PayloadFrame)
            assert complete.complete and not complete.next
            await handler.channel_done.wait()
            await peer.round_trip()  # no REQUEST_N for a completed half, no CANCEL after COMPLETE
    assert handler.channel_inbound == [b"only"]


async def test_channel_requester_error_tears_down_responder_IX5() -> None:
    handler = Recorder()
    with anyio.fail_after(5):
        async with raw_client(lambda rs: handler) as peer:
            await peer.send(RequestChannelFrame(1, 10, b"a"))
            await peer.expect(RequestNFrame)
            await peer.send(ErrorFrame(1, ErrorCode.APPLICATION_ERROR, b"requester gave up"))
            await handler.channel_done.wait()
            await peer.round_trip()  # nothing more was sent for the stream


async def test_channel_requester_exceeding_grant_gets_invalid_RN6() -> None:
    """Our RN6 rule on the responder side: more elements than granted is ERROR[INVALID]."""
    from anyio_rsocket import responder as connection

    torn_down = anyio.Event()

    class NeverConsumes(RequestHandler):
        async def request_channel(
            self, payload: Payload, inbound: AsyncIterator[Payload]
        ) -> AsyncIterator[Payload]:
            try:
                await anyio.sleep_forever()
                yield payload
            finally:
                torn_down.set()

    window = connection.RESPONDER_CHANNEL_WINDOW
    with anyio.fail_after(5):
        async with raw_client(lambda rs: NeverConsumes()) as peer:
            await peer.send(RequestChannelFrame(1, 10, b"a"))
            assert (await peer.expect(RequestNFrame)).request_n == window
            await peer.send(*(PayloadFrame(1, b"x", next=True) for _ in range(window + 1)))
            error = await peer.expect_next(ErrorFrame)
            assert error.stream_id == 1 and error.error_code == ErrorCode.INVALID
            await torn_down.wait()


async def test_metadata_push_on_nonzero_stream_is_ignored_MP2() -> None:
    handler = Recorder()
    with anyio.fail_after(5):
        async with raw_client(lambda rs: handler) as peer:
            await peer.send(MetadataPushFrame(b"wrong stream", stream_id=3))
            await peer.send(MetadataPushFrame(b"right"))
            await peer.round_trip()
            await peer.send(RequestResponseFrame(1, b"sync"))  # handler tasks have run by the answer
            await peer.expect(PayloadFrame)
    assert handler.pushed == [b"right"]


async def test_server_stream_ids_are_even_ID1() -> None:
    """The server-side requester allocates even ids starting at 2."""
    peers: list[RSocket] = []
    ready = anyio.Event()

    def factory(rs: RSocket) -> RequestHandler:
        peers.append(rs)
        ready.set()
        return Recorder()

    with anyio.fail_after(5):
        async with raw_client(factory) as peer:
            await ready.wait()
            await peers[0].fire_and_forget(Payload(b"a"))
            await peers[0].fire_and_forget(Payload(b"b"))
            from anyio_rsocket.frames import RequestFireAndForgetFrame

            first = await peer.expect_next(RequestFireAndForgetFrame)
            second = await peer.expect_next(RequestFireAndForgetFrame)
    assert (first.stream_id, second.stream_id) == (2, 4)
