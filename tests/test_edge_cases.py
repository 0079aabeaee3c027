"""Checklist section 18 cases not covered elsewhere (docs/conformance.md maps all 22 to tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from anyio_rsocket import ApplicationError, Payload, RejectedError, RequestHandler
from anyio_rsocket.errors import ErrorCode
from anyio_rsocket.frames import (
    MAX_FRAME_SIZE,
    ErrorFrame,
    KeepaliveFrame,
    LeaseFrame,
    PayloadFrame,
    RequestFireAndForgetFrame,
    RequestNFrame,
    RequestResponseFrame,
    RequestStreamFrame,
    SetupFrame,
)
from anyio_rsocket.lease import LeaseStrategy
from anyio_rsocket.testing import connected_pair

from .rawpeer import raw_client, raw_server

pytestmark = pytest.mark.anyio


class Counting(RequestHandler):
    async def request_response(self, payload: Payload) -> Payload:
        return payload

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        index = 0
        while True:
            index += 1
            yield Payload(b"%d" % index)


async def test_edge_4_top_bit_request_n_is_masked_H2_F5() -> None:
    """REQUEST_N with the reserved top bit set counts as the low 31 bits."""
    with anyio.fail_after(5):
        async with raw_client(lambda rs: Counting()) as peer:
            await peer.send(RequestStreamFrame(1, 1, b""))
            await peer.expect(PayloadFrame)
            await peer.send_raw(bytes.fromhex("00000001200080000002"))
            assert [(await peer.expect(PayloadFrame)).data for _ in range(2)] == [b"2", b"3"]
            await peer.round_trip()  # exactly two more, not 2^31+2


async def test_edge_6_payload_without_n_or_c_is_ignored_U4() -> None:
    """Our U4 rule: a PAYLOAD with neither N nor C carries nothing and ends nothing."""
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            async with rs.request_stream(Payload(b"")) as stream:
                request = await peer.expect(RequestStreamFrame)
                await peer.send(PayloadFrame(request.stream_id, b"no flags"))
                await peer.round_trip()  # nothing in reaction: no credit refill, no CANCEL
                assert stream.buffered == 0 and rs._streams
                await peer.send(PayloadFrame(request.stream_id, b"real", next=True, complete=True))
                assert [item.data async for item in stream] == [b"real"]
            await peer.round_trip()  # completed normally: nothing more for the stream


async def test_edge_11_payload_over_the_frame_limit_is_fragmented_T3_FG8() -> None:
    """A payload needing more than 16,777,215 bytes goes out in fragments when enabled."""
    big = b"\xab" * (MAX_FRAME_SIZE + 10)
    with anyio.fail_after(20):
        async with raw_server(fragment_size=MAX_FRAME_SIZE) as (rs, peer):
            async with anyio.create_task_group() as tg:
                tg.start_soon(rs.fire_and_forget, Payload(big))
                first = await peer.expect(RequestFireAndForgetFrame)
                second = await peer.expect(PayloadFrame)
            assert first.follows and not second.follows and second.next
            assert len(first.data) + len(second.data) == len(big)
            await peer.round_trip()  # exactly two fragments


async def test_edge_15_responder_error_tears_down_both_halves_IX5() -> None:
    class Failing(RequestHandler):
        async def request_channel(
            self, payload: Payload, inbound: AsyncIterator[Payload]
        ) -> AsyncIterator[Payload]:
            yield Payload(b"first")
            raise ApplicationError("channel broke")

    with anyio.fail_after(5):
        async with connected_pair(lambda rs: Failing()) as rs:
            async with rs.request_channel(Payload(b"go")) as channel:
                assert (await channel.receive()).data == b"first"
                with pytest.raises(ApplicationError, match="channel broke"):
                    await channel.receive()
                with pytest.raises(ApplicationError):
                    await channel.send(Payload(b"too late"))
            assert not rs._streams


async def test_edge_19_zero_ttl_lease_rejects_every_request_L4() -> None:
    with anyio.fail_after(5):
        async with raw_client(
            lambda rs: Counting(), setup=None, lease=LeaseStrategy(ttl=0.0, number_of_requests=5)
        ) as peer:
            await peer.send(SetupFrame(20_000, 90_000, "a/b", "c/d", lease=True))
            await peer.send(RequestResponseFrame(1, b"x"))
            while not isinstance(frame := await peer.receive(), ErrorFrame):
                assert isinstance(frame, LeaseFrame)  # refreshed leases, all with TTL 0
            error = frame
            assert error.stream_id == 1 and error.error_code == ErrorCode.REJECTED


async def test_stream_id_wrap_skips_live_ids_ID2() -> None:
    """After the maximum id the requester wraps to 1 and skips ids that are still live."""
    with anyio.fail_after(5):
        async with raw_server(max_stream_id=7) as (rs, peer):
            async with rs.request_stream(Payload(b"")) as live:  # id 1 stays live
                assert live.stream_id == 1
                await peer.expect(RequestStreamFrame)
                for _ in range(4):
                    await rs.fire_and_forget(Payload(b""))
                ids = [(await peer.expect_next(RequestFireAndForgetFrame)).stream_id for _ in range(4)]
            assert ids == [3, 5, 7, 3]


@pytest.mark.virtual_time
async def test_server_keepalives_are_optional_K1() -> None:
    with anyio.fail_after(5):
        async with raw_client(
            lambda rs: Counting(), setup=SetupFrame(20, 90_000, "a/b", "c/d"), send_keepalives=True
        ) as peer:
            keepalive = await peer.expect(KeepaliveFrame)
            assert keepalive.respond


@pytest.mark.virtual_time
async def test_silent_client_is_dropped_by_server_after_lifetime_K3() -> None:
    with anyio.fail_after(5):
        async with raw_client(lambda rs: Counting(), setup=SetupFrame(1000, 200, "a/b", "c/d")) as peer:
            await peer.expect_closed()


async def test_request_n_on_request_response_has_no_effect_RN7() -> None:
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            async with anyio.create_task_group() as tg:
                tg.start_soon(rs.request_response, Payload(b"q"))
                request = await peer.expect(RequestResponseFrame)
                await peer.send(RequestNFrame(request.stream_id, 5))
                await peer.send(PayloadFrame(request.stream_id, b"a", next=True, complete=True))
            assert not rs._streams


async def test_rejected_error_type_from_responder() -> None:
    class Rejecting(RequestHandler):
        async def request_response(self, payload: Payload) -> Payload:
            raise RejectedError("busy, try elsewhere")

    with anyio.fail_after(5):
        async with connected_pair(lambda rs: Rejecting()) as rs:
            with pytest.raises(RejectedError, match="busy") as raised:
                await rs.request_response(Payload(b""))
    assert raised.value.code == ErrorCode.REJECTED
