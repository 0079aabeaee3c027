"""Our client against a scripted raw-frame server: exactly which frames go out and how input is handled."""

from __future__ import annotations

import anyio
import pytest

from anyio_rsocket import (
    ApplicationError,
    ConnectionClosedError,
    ConnectionErrorReceived,
    Payload,
    ProtocolError,
    RejectedSetupError,
    RSocketError,
    UnsupportedSetupError,
)
from anyio_rsocket.client import open_client
from anyio_rsocket.errors import ErrorCode
from anyio_rsocket.frames import (
    MAX_REQUEST_N,
    CancelFrame,
    ErrorFrame,
    ExtFrame,
    KeepaliveFrame,
    PayloadFrame,
    RequestChannelFrame,
    RequestFireAndForgetFrame,
    RequestNFrame,
    RequestResponseFrame,
    RequestStreamFrame,
    SetupFrame,
    encode_frame,
)
from anyio_rsocket.transports.memory import memory_transport_pair

from .rawpeer import RawPeer, raw_server

pytestmark = pytest.mark.anyio


async def test_setup_frame_contents_S2_F1_F2() -> None:
    """SETUP is the first frame, on stream 0, version 1.0, with MIME strings, times in ms, payload."""
    client_transport, server_transport = memory_transport_pair()
    peer = RawPeer(server_transport)
    with anyio.fail_after(5):
        async with open_client(client_transport, confirm_setup=False, setup_payload=Payload(b"d", b"m")):
            setup = await peer.expect(SetupFrame)
    assert (setup.major_version, setup.minor_version) == (1, 0)
    assert setup.keepalive_interval == 20_000 and setup.max_lifetime == 90_000
    assert setup.data_mime_type == setup.metadata_mime_type == "application/octet-stream"
    assert (setup.data, setup.metadata) == (b"d", b"m")
    assert setup.resume_token is None and not setup.lease


async def _connect_against(peer_script, **options):  # type: ignore[no-untyped-def]
    """Run ``open_client`` with SETUP confirmation against a scripted server; return the error."""
    client_transport, server_transport = memory_transport_pair()
    peer = RawPeer(server_transport)
    async with anyio.create_task_group() as tg:
        tg.start_soon(peer_script, peer)
        try:
            async with open_client(client_transport, **options):
                raise AssertionError("the connection should have been refused")
        except RSocketError as error:
            return error


async def test_rejected_setup_raises_from_connect_S3_S4() -> None:
    async def reject(peer: RawPeer) -> None:
        await peer.expect(SetupFrame)
        await peer.send(ErrorFrame(0, ErrorCode.REJECTED_SETUP, b"not today"))

    with anyio.fail_after(5):
        error = await _connect_against(reject)
    assert isinstance(error, RejectedSetupError)
    assert error.message == "not today" and error.code == ErrorCode.REJECTED_SETUP


async def test_unsupported_setup_is_accepted_as_rejection_S7() -> None:
    async def reject(peer: RawPeer) -> None:
        await peer.expect(SetupFrame)
        await peer.send(ErrorFrame(0, ErrorCode.UNSUPPORTED_SETUP, b"no resume"))

    with anyio.fail_after(5):
        error = await _connect_against(reject)
    assert isinstance(error, UnsupportedSetupError)


async def test_setup_confirmed_by_keepalive_echo_S4_K2() -> None:
    client_transport, server_transport = memory_transport_pair()
    peer = RawPeer(server_transport)

    async def accept() -> None:
        await peer.expect(SetupFrame)
        probe = await peer.expect(KeepaliveFrame)
        assert probe.respond
        await peer.send(KeepaliveFrame(False, 0, probe.data))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(accept)
            async with open_client(client_transport) as rs:
                assert not rs.is_closed


async def test_setup_errors_are_ignored_after_establishment_S10() -> None:
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            await peer.round_trip()  # establishes: the server answered
            await peer.send(ErrorFrame(0, ErrorCode.REJECTED_SETUP, b"late"))
            await peer.round_trip()
            assert not rs.is_closed


@pytest.mark.virtual_time
async def test_keepalive_sent_every_interval_K1() -> None:
    with anyio.fail_after(5):
        async with raw_server(keepalive_interval=0.02) as (_rs, peer):
            for _ in range(3):
                keepalive = await peer.expect(KeepaliveFrame)
                assert keepalive.respond and keepalive.last_received_position == 0
                await peer.send(KeepaliveFrame(False))


async def test_keepalive_echo_is_identical_and_never_answers_answers_K2() -> None:
    with anyio.fail_after(5):
        async with raw_server() as (_rs, peer):
            await peer.send(KeepaliveFrame(False, 0, b"no reply expected"))
            await peer.send(KeepaliveFrame(True, 7, b"\x00\x01binary"))
            echo = await peer.expect(KeepaliveFrame)
            assert not echo.respond and echo.data == b"\x00\x01binary"


@pytest.mark.virtual_time
async def test_silent_peer_ends_connection_after_max_lifetime_K3() -> None:
    """A peer that says nothing for max-lifetime is dead: pending calls fail, the block exits."""
    with anyio.fail_after(5):
        async with raw_server(keepalive_interval=0.05, max_lifetime=0.3) as (rs, _peer):
            with pytest.raises(ConnectionClosedError, match="no frame from the peer"):
                await rs.request_response(Payload(b"anyone?"))
            assert rs.is_closed


async def test_cancelled_request_response_sends_cancel_IX1() -> None:
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(rs.request_response, Payload(b"slow"))
                    request = await peer.expect(RequestResponseFrame)
                    scope.cancel()
            cancel = await peer.expect(CancelFrame)
            assert cancel.stream_id == request.stream_id
            assert not rs._streams
            await peer.round_trip()  # CANCEL and nothing else: no ERROR, no second CANCEL
            # A late answer for the cancelled stream is dropped silently (edge case 1).
            await peer.send(PayloadFrame(request.stream_id, b"late", next=True, complete=True))
            await peer.round_trip()
            assert not rs.is_closed


async def test_leaving_stream_early_sends_cancel_IX4() -> None:
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            async with rs.request_stream(Payload(b"q"), initial_n=5) as stream:
                request = await peer.expect(RequestStreamFrame)
                assert request.initial_request_n == 5
                await peer.send(PayloadFrame(request.stream_id, b"1", next=True))
                assert (await stream.receive()).data == b"1"
            cancel = await peer.expect(CancelFrame)
            assert cancel.stream_id == request.stream_id
            await peer.round_trip()  # exactly one CANCEL
            assert not rs._streams


async def test_cancelled_consumer_sends_cancel_IX4() -> None:
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            with anyio.CancelScope() as scope:
                async with rs.request_stream(Payload(b"q")) as stream:
                    request = await peer.expect(RequestStreamFrame)
                    scope.cancel()
                    await stream.receive()
            assert (await peer.expect(CancelFrame)).stream_id == request.stream_id
            await peer.round_trip()  # exactly one CANCEL


async def test_completed_stream_sends_no_cancel_IX4() -> None:
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            async with rs.request_stream(Payload(b"q")) as stream:
                request = await peer.expect(RequestStreamFrame)
                await peer.send(PayloadFrame(request.stream_id, b"only", next=True, complete=True))
                assert [item.data async for item in stream] == [b"only"]
            await peer.round_trip()  # the echo is the next frame: no CANCEL was queued before it
            assert not rs._streams


async def test_stream_left_early_after_completion_sends_nothing_IX4() -> None:
    """Leaving the block with items still buffered, after COMPLETE arrived: the stream is over on the
    wire, so no CANCEL (nor anything else) goes out for it."""
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            async with rs.request_stream(Payload(b"q")) as stream:
                request = await peer.expect(RequestStreamFrame)
                sid = request.stream_id
                await peer.send(
                    PayloadFrame(sid, b"1", next=True),
                    PayloadFrame(sid, b"2", next=True),
                    PayloadFrame(sid, complete=True),
                )
                assert (await stream.receive()).data == b"1"
                await peer.round_trip()  # COMPLETE has reached the stream; nothing was sent yet
            await peer.round_trip()  # leaving after completion queued no CANCEL
            assert not rs._streams


async def test_stream_ended_by_error_sends_nothing_E2() -> None:
    """A stream the responder ends with ERROR is over: the requester sends no CANCEL after it."""
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            async with rs.request_stream(Payload(b"q")) as stream:
                request = await peer.expect(RequestStreamFrame)
                await peer.send(ErrorFrame(request.stream_id, ErrorCode.APPLICATION_ERROR, b"no"))
                with pytest.raises(ApplicationError, match="no"):
                    await stream.receive()
            await peer.round_trip()
            assert not rs._streams


async def test_answered_request_response_sends_nothing_more_IX2() -> None:
    """Once the answer arrived, the requester sends nothing more for that stream (no CANCEL)."""
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            async with anyio.create_task_group() as tg:
                tg.start_soon(rs.request_response, Payload(b"q"))
                request = await peer.expect(RequestResponseFrame)
                await peer.send(PayloadFrame(request.stream_id, b"a", next=True, complete=True))
            await peer.round_trip()
            assert not rs._streams


async def test_manual_credit_frames_RN1_RN5() -> None:
    """initial_n=2, request(3): REQUEST_STREAM(2) then REQUEST_N(3); huge requests are clamped."""
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            async with rs.request_stream(Payload(b""), initial_n=2, auto_request=False) as stream:
                request = await peer.expect(RequestStreamFrame)
                assert request.initial_request_n == 2
                stream.request(3)
                assert (await peer.expect(RequestNFrame)).request_n == 3
                stream.request(2**40)  # RN5: clamped; credit saturates (RN4)
                assert (await peer.expect(RequestNFrame)).request_n == MAX_REQUEST_N - 5
                stream.request(10)  # already unbounded: nothing more is sent
                await peer.round_trip()
                with pytest.raises(ValueError):
                    stream.request(0)


async def test_automatic_credit_refills_half_the_window() -> None:
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            async with rs.request_stream(Payload(b""), initial_n=4) as stream:
                request = await peer.expect(RequestStreamFrame)
                sid = request.stream_id
                await peer.send(*(PayloadFrame(sid, b"%d" % i, next=True) for i in range(4)))
                await stream.receive()
                await stream.receive()
                assert (await peer.expect(RequestNFrame)).request_n == 2
                assert stream.buffered == 2


async def test_request_response_completion_variants_IX2() -> None:
    """PAYLOAD N without C ends request-response; C-only gives an empty payload (edge case 7)."""
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            async with anyio.create_task_group() as tg:
                results: list[Payload] = []

                async def call() -> None:
                    results.append(await rs.request_response(Payload(b"x")))

                tg.start_soon(call)
                first = await peer.expect(RequestResponseFrame)
                await peer.send(PayloadFrame(first.stream_id, b"value", next=True))
                tg.start_soon(call)
                second = await peer.expect(RequestResponseFrame)
                await peer.send(PayloadFrame(second.stream_id, complete=True))
            assert results == [Payload(b"value"), Payload(b"")]
            assert not rs._streams


async def test_frames_for_unknown_streams_are_ignored_U2() -> None:
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            await peer.send(
                PayloadFrame(99, b"x", next=True),
                RequestNFrame(99, 5),
                CancelFrame(99),
                ErrorFrame(99, ErrorCode.APPLICATION_ERROR, b"?"),
                PayloadFrame(0, b"x", next=True),
                CancelFrame(0),
            )
            await peer.round_trip()
            assert not rs.is_closed


async def test_peer_connection_error_fails_pending_calls_E2() -> None:
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            async with rs.request_stream(Payload(b"")) as stream:
                await peer.expect(RequestStreamFrame)
                await peer.send(ErrorFrame(0, ErrorCode.CONNECTION_ERROR, b"dying"))
                with pytest.raises(ConnectionErrorReceived, match="dying"):
                    await stream.receive()
            assert rs.is_closed


async def test_malformed_frame_gets_connection_error_MD2() -> None:
    """Metadata length overrunning the frame: ERROR[CONNECTION_ERROR] and close (edge case 9)."""
    bad = bytes.fromhex("00000001292000ffff") + b"x"  # PAYLOAD M|N declaring 65535 bytes
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            await peer.send_raw(bad)
            error = await peer.expect_next(ErrorFrame)
            assert error.stream_id == 0 and error.error_code == ErrorCode.CONNECTION_ERROR
            assert "metadata" in error.message
            await peer.expect_closed()
            assert isinstance(rs.close_reason, ProtocolError)


async def test_malformed_frame_with_ignore_flag_is_dropped_MD2() -> None:
    bad = bytes.fromhex("000000012b2000ffff") + b"x"  # same, with I (0x200) set
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            await peer.send_raw(bad)
            await peer.round_trip()
            assert not rs.is_closed


async def test_unknown_frame_types_U1() -> None:
    unknown_ignorable = bytes.fromhex("000000004200")  # type 0x10 with I
    unknown = bytes.fromhex("000000004000")  # type 0x10 without I
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            await peer.send_raw(unknown_ignorable)
            await peer.send(ExtFrame(0, 7, b"ext", ignore=True))
            await peer.round_trip()
            assert not rs.is_closed
            await peer.send_raw(unknown)
            error = await peer.expect_next(ErrorFrame)
            assert error.error_code == ErrorCode.CONNECTION_ERROR
            await peer.expect_closed()


async def test_connection_loss_mid_stream_fails_fast() -> None:
    """The peer vanishing fails every pending call within a second; the block exits cleanly."""
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            async with rs.request_stream(Payload(b"")) as stream:
                request = await peer.expect(RequestStreamFrame)
                await peer.send(PayloadFrame(request.stream_id, b"1", next=True))
                assert (await stream.receive()).data == b"1"
                with anyio.fail_after(1):
                    await peer.transport.aclose()
                    with pytest.raises(ConnectionClosedError):
                        await stream.receive()
            with pytest.raises(ConnectionClosedError):
                await rs.request_response(Payload(b"x"))


async def test_channel_second_element_waits_for_credit_IX5() -> None:
    """The first element is free; the second waits for REQUEST_N however late (edge case 14)."""
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            async with rs.request_channel(Payload(b"first")) as channel:
                request = await peer.expect(RequestChannelFrame)
                assert request.data == b"first" and not request.complete
                sent = anyio.Event()

                async def send_second() -> None:
                    await channel.send(Payload(b"second"))
                    sent.set()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(send_second)
                    await peer.round_trip()
                    assert not sent.is_set()
                    await peer.send(RequestNFrame(request.stream_id, 1))
                    second = await peer.expect(PayloadFrame)
                assert second.data == b"second" and second.next and not second.complete
                await channel.send_eof()
                eof = await peer.expect(PayloadFrame)
                assert eof.complete and not eof.next
                await peer.send(PayloadFrame(request.stream_id, complete=True))
                assert [item async for item in channel] == []
            await peer.round_trip()  # both halves complete: nothing (no CANCEL) was sent on exit
            assert not rs._streams


async def test_channel_responder_cancel_stops_only_our_half_IX5() -> None:
    """[java] RS-sent CANCEL: our sends fail with BrokenResourceError, receiving goes on."""
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            async with rs.request_channel(Payload(b"first")) as channel:
                request = await peer.expect(RequestChannelFrame)
                sid = request.stream_id
                await peer.send(CancelFrame(sid), PayloadFrame(sid, b"reply", next=True))
                assert (await channel.receive()).data == b"reply"
                with pytest.raises(anyio.BrokenResourceError):
                    await channel.send(Payload(b"more"))
                await peer.send(PayloadFrame(sid, complete=True))
                with pytest.raises(anyio.EndOfStream):
                    await channel.receive()
            await peer.round_trip()  # both halves ended: leaving the block sent nothing
            assert not rs._streams


async def test_channel_credit_overflow_saturates_RN4() -> None:
    """Two REQUEST_N(2^31-1) neither wrap nor fail (edge case 3)."""
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            async with rs.request_channel(Payload(b"first")) as channel:
                request = await peer.expect(RequestChannelFrame)
                await peer.send(
                    RequestNFrame(request.stream_id, MAX_REQUEST_N),
                    RequestNFrame(request.stream_id, MAX_REQUEST_N),
                    RequestNFrame(request.stream_id, 0),  # RN6: ignored
                )
                for index in range(3):
                    await channel.send(Payload(b"%d" % index))
                for index in range(3):
                    assert (await peer.expect(PayloadFrame)).data == b"%d" % index


async def test_peer_connection_close_drains_live_streams_E2() -> None:
    """CONNECTION_CLOSE: live streams finish, new requests are refused, then the connection closes."""
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            async with rs.request_stream(Payload(b"")) as stream:
                request = await peer.expect(RequestStreamFrame)
                await peer.send(ErrorFrame(0, ErrorCode.CONNECTION_CLOSE, b"bye"))
                await peer.round_trip()
                with pytest.raises(ConnectionClosedError):
                    await rs.request_response(Payload(b"new"))
                await peer.send(PayloadFrame(request.stream_id, b"last", next=True, complete=True))
                assert [item.data async for item in stream] == [b"last"]
            await rs.wait_closed()


async def test_request_with_wrong_parity_is_a_protocol_error_ID5() -> None:
    """Our rule for the ID5 gap: a server may not open odd (client) stream ids."""
    with anyio.fail_after(5):
        async with raw_server() as (_rs, peer):
            await peer.send(RequestResponseFrame(1, b"odd"))
            error = await peer.expect_next(ErrorFrame)
            assert error.error_code == ErrorCode.CONNECTION_ERROR and error.stream_id == 0
            await peer.expect_closed()


async def test_setup_received_by_client_is_ignored_S9() -> None:
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            await peer.send_raw(encode_frame(SetupFrame(1000, 1000, "a/b", "c/d")))
            await peer.round_trip()
            assert not rs.is_closed


async def test_stream_ids_are_odd_and_wrap_ID1_ID2() -> None:
    with anyio.fail_after(5):
        async with raw_server(max_stream_id=7) as (rs, peer):
            ids = []
            for _ in range(5):
                await rs.fire_and_forget(Payload(b""))
            for _ in range(5):
                ids.append((await peer.expect_next(RequestFireAndForgetFrame)).stream_id)
    assert ids == [1, 3, 5, 7, 1]
