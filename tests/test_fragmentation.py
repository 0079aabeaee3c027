"""Fragmentation and reassembly (FG1-FG8): the sans-IO splitter, and both peers end to end."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anyio_rsocket import Payload, ProtocolError, RequestHandler
from anyio_rsocket.errors import ErrorCode
from anyio_rsocket.fragmentation import (
    MIN_FRAGMENT_SIZE,
    Reassembler,
    ReassemblyError,
    fragment,
)
from anyio_rsocket.frames import (
    CancelFrame,
    ErrorFrame,
    KeepaliveFrame,
    PayloadFrame,
    RequestChannelFrame,
    RequestFireAndForgetFrame,
    RequestNFrame,
    RequestResponseFrame,
    RequestStreamFrame,
    encode_frame,
)
from anyio_rsocket.testing import connected_pair

from .rawpeer import raw_client, raw_server

optional_bytes = st.one_of(st.none(), st.binary(max_size=700))


def _reassemble(frames: list) -> object:  # type: ignore[type-arg]
    partial = Reassembler(frames[0], 1 << 20)
    result = None
    for piece in frames[1:]:
        assert result is None
        result = partial.add(piece)
    return result if len(frames) > 1 else frames[0]


@settings(max_examples=150, deadline=None)
@given(
    data=st.binary(max_size=2000),
    metadata=optional_bytes,
    size=st.integers(MIN_FRAGMENT_SIZE, 300),
    kind=st.sampled_from(["rr", "fnf", "stream", "channel", "payload"]),
    complete=st.booleans(),
)
def test_fragments_fit_and_reassemble_exactly_FG2_FG3_FG8(
    data: bytes, metadata: bytes | None, size: int, kind: str, complete: bool
) -> None:
    """Every fragment fits the budget, follows the flag rules, and reassembly restores the item."""
    original = {
        "rr": RequestResponseFrame(1, data, metadata),
        "fnf": RequestFireAndForgetFrame(1, data, metadata),
        "stream": RequestStreamFrame(1, 7, data, metadata),
        "channel": RequestChannelFrame(1, 7, data, metadata, complete=complete),
        "payload": PayloadFrame(1, data, metadata, complete=complete, next=True),
    }[kind]
    pieces = fragment(original, size)
    for index, piece in enumerate(pieces):
        assert len(encode_frame(piece)) <= size
        last = index == len(pieces) - 1
        assert piece.follows is not last  # FG2: F on all but the last
        if index > 0:
            assert isinstance(piece, PayloadFrame) and piece.next  # FG4: N on continuations
        if not last:
            assert not getattr(piece, "complete", False)  # C only on the final fragment
    seen_data = False
    for piece in pieces:  # FG3: metadata strictly before data
        if piece.metadata:
            assert not seen_data
        seen_data = seen_data or bool(piece.data)
    assert _reassemble(pieces) == original


def test_metadata_spanning_fragments_each_with_own_length_FG3() -> None:
    """Edge case 12: metadata larger than one fragment; a fragment holds its tail and data's head."""
    original = RequestStreamFrame(1, 5, b"D" * 50, b"M" * 100)
    pieces = fragment(original, 64)
    assert pieces[0].metadata == b"M" * (64 - 6 - 4 - 3)
    assert pieces[1].metadata is not None and pieces[1].data  # metadata tail and data head together
    assert _reassemble(pieces) == original


def test_empty_metadata_survives_fragmentation_MD3() -> None:
    original = PayloadFrame(1, b"x" * 500, b"", next=True)
    pieces = fragment(original, 64)
    assert pieces[0].metadata == b""
    assert _reassemble(pieces) == original


def test_fragment_size_below_minimum_is_refused() -> None:
    with pytest.raises(ValueError):
        fragment(PayloadFrame(1, b"x" * 100, next=True), 63)


def test_metadata_after_data_is_a_violation_FG3() -> None:
    partial = Reassembler(PayloadFrame(1, b"data", follows=True, next=True), 1000)
    with pytest.raises(ReassemblyError, match="metadata after data"):
        partial.add(PayloadFrame(1, b"", b"late metadata", follows=True, next=True))


def test_reassembly_cap_FG7() -> None:
    partial = Reassembler(PayloadFrame(1, b"x" * 60, follows=True, next=True), 100)
    with pytest.raises(ReassemblyError, match="100-byte limit"):
        partial.add(PayloadFrame(1, b"x" * 60, follows=True, next=True))


def test_follows_with_complete_ends_reassembly_U3() -> None:
    partial = Reassembler(PayloadFrame(1, b"a", follows=True, next=True), 100)
    whole = partial.add(PayloadFrame(1, b"b", follows=True, complete=True, next=True))
    assert whole == PayloadFrame(1, b"ab", complete=True, next=True)


class Big(RequestHandler):
    async def request_response(self, payload: Payload) -> Payload:
        return Payload(payload.data[::-1], payload.metadata)

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        for index in range(3):
            yield Payload(bytes([65 + index]) * 5000, b"m" * 300)

    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        yield payload
        async for item in inbound:
            yield item


@pytest.mark.anyio
async def test_fragmented_interactions_end_to_end_FG1_FG5() -> None:
    """Both ends fragment at 100 bytes; every interaction reassembles exactly, one credit per item."""
    data = bytes(range(256)) * 40
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            from anyio_rsocket import connect_tcp, serve_tcp

            port = await tg.start(
                lambda task_status: serve_tcp(
                    lambda rs: Big(), "127.0.0.1", 0, fragment_size=100, task_status=task_status
                )
            )
            async with connect_tcp("127.0.0.1", port, fragment_size=100) as rs:
                assert await rs.request_response(Payload(data, b"meta" * 100)) == Payload(
                    data[::-1], b"meta" * 100
                )
                async with rs.request_stream(Payload(b""), initial_n=1, auto_request=False) as stream:
                    first = await stream.receive()
                    assert first == Payload(b"A" * 5000, b"m" * 300)
                    assert stream.buffered == 0  # FG5: a fragmented item cost exactly one credit
                    stream.request(3)  # one more than remains: the generator's end is seen on a pull
                    assert [item.data[:1] async for item in stream] == [b"B", b"C"]
                async with rs.request_channel(Payload(data)) as channel:
                    await channel.send(Payload(b"z" * 3000))
                    await channel.send_eof()
                    assert [len(item.data) async for item in channel] == [len(data), 3000]
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_interleaved_fragments_reassemble_per_stream_FG6() -> None:
    """Edge case 13: fragments of two streams alternate with KEEPALIVEs and REQUEST_N."""
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            async with rs.request_stream(Payload(b"a")) as one, rs.request_stream(Payload(b"b")) as two:
                sid1 = (await peer.expect(RequestStreamFrame)).stream_id
                sid2 = (await peer.expect(RequestStreamFrame)).stream_id
                await peer.send(
                    PayloadFrame(sid1, b"1a", b"m1", follows=True, next=True),
                    PayloadFrame(sid2, b"2a", follows=True, next=True),
                    KeepaliveFrame(False),
                    PayloadFrame(sid1, b"1b", follows=True, next=True),
                    RequestNFrame(sid2, 5),
                    PayloadFrame(sid2, b"2b", next=True),
                    PayloadFrame(sid1, b"1c", next=True, complete=True),
                )
                assert await one.receive() == Payload(b"1a1b1c", b"m1")
                assert await two.receive() == Payload(b"2a2b")
                assert [item async for item in one] == []


@pytest.mark.anyio
async def test_cancel_mid_sequence_discards_partial_request_FG7() -> None:
    """A requester abandoning a fragmented request with CANCEL: nothing reaches the handler."""
    seen: list[bytes] = []

    class Recorder(RequestHandler):
        async def request_response(self, payload: Payload) -> Payload:
            seen.append(payload.data)
            return payload

    with anyio.fail_after(5):
        async with raw_client(lambda rs: Recorder()) as peer:
            await peer.send(RequestResponseFrame(1, b"part", follows=True), CancelFrame(1))
            await peer.send(RequestResponseFrame(3, b"wh", follows=True), PayloadFrame(3, b"ole", next=True))
            assert (await peer.expect(PayloadFrame)).data == b"whole"
    assert seen == [b"whole"]


@pytest.mark.anyio
async def test_oversized_reassembly_is_a_protocol_error_FG7() -> None:
    with anyio.fail_after(5):
        async with raw_client(lambda rs: Big(), max_reassembled_size=1000) as peer:
            await peer.send(RequestResponseFrame(1, b"x" * 600, follows=True))
            await peer.send(PayloadFrame(1, b"x" * 600, follows=True, next=True))
            error = await peer.expect(ErrorFrame)
            assert error.stream_id == 0 and error.error_code == ErrorCode.CONNECTION_ERROR
            assert "limit" in error.message
            await peer.expect_closed()


@pytest.mark.anyio
async def test_fragment_flood_across_streams_is_bounded_FG7() -> None:
    """Many streams each holding a partial item: the connection-wide budget stops the flood."""
    with anyio.fail_after(5):
        async with raw_client(lambda rs: Big(), max_reassembled_size=1000) as peer:
            # Four partial items of 900 bytes fit the 4 x 1000-byte budget; the fifth does not.
            await peer.send(*(RequestResponseFrame(sid, b"x" * 900, follows=True) for sid in (1, 3, 5, 7, 9)))
            error = await peer.expect(ErrorFrame)
            assert error.error_code == ErrorCode.CONNECTION_ERROR and "budget" in error.message
            await peer.expect_closed()


@pytest.mark.anyio
async def test_reassembly_cap_on_client_side_fails_pending_calls() -> None:
    with anyio.fail_after(5):
        async with raw_server(max_reassembled_size=100) as (rs, peer):
            async with anyio.create_task_group() as tg:

                async def call() -> None:
                    with pytest.raises(ProtocolError):
                        await rs.request_response(Payload(b"q"))

                tg.start_soon(call)
                request = await peer.expect(RequestResponseFrame)
                await peer.send(
                    PayloadFrame(request.stream_id, b"x" * 80, follows=True, next=True),
                    PayloadFrame(request.stream_id, b"x" * 80, next=True),
                )


@pytest.mark.anyio
async def test_request_fragments_sent_by_client_FG2() -> None:
    """Our requester's fragments as seen on the wire: REQUEST_* with F, then PAYLOADs with N."""
    with anyio.fail_after(5):
        async with raw_server(fragment_size=64) as (rs, peer):
            async with rs.request_channel(Payload(b"d" * 100, b"m" * 10), initial_n=3, complete=True):
                first = await peer.expect(RequestChannelFrame)
                assert first.follows and not first.complete and first.initial_request_n == 3
                assert first.metadata == b"m" * 10
                rest = [await peer.expect(PayloadFrame), await peer.expect(PayloadFrame)]
                assert all(piece.next for piece in rest)
                assert rest[-1].complete and not rest[-1].follows
                assert first.data + b"".join(piece.data for piece in rest) == b"d" * 100


@pytest.mark.anyio
async def test_large_payloads_round_trip_in_memory() -> None:
    with anyio.fail_after(10):
        async with connected_pair(lambda rs: Big(), fragment_size=1024) as rs:
            big = b"q" * 100_000
            assert (await rs.request_response(Payload(big))).data == big[::-1]
