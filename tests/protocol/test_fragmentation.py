"""Fragmentation and reassembly in the core (checklist section 13)."""

from __future__ import annotations

import pytest

from anyio_rsocket.errors import ErrorCode
from anyio_rsocket.frames import (
    CancelFrame,
    ErrorFrame,
    KeepaliveFrame,
    PayloadFrame,
    RequestResponseFrame,
    RequestStreamFrame,
    encode_frame,
)
from anyio_rsocket.payload import Payload
from anyio_rsocket.protocol import (
    ConnectionTerminated,
    PayloadReceived,
    PayloadTooLargeError,
    ProtocolConfig,
    RequestReceived,
    StreamEnded,
    TerminationCause,
)

from .helpers import Pair, client_started, of_type, outbox, server_after_setup

SMALL = ProtocolConfig(fragment_size=64)
BIG = Payload(bytes(range(256)) * 4, b"m" * 150)


@pytest.mark.parametrize("requester", ["client", "server"])
def test_fragmented_items_reassemble_both_ways_and_cost_one_credit_FG2_FG5(requester: str) -> None:
    pair = Pair(SMALL, SMALL)
    rq, rs = (pair.client, pair.server) if requester == "client" else (pair.server, pair.client)
    pair.clear()
    stream_id = rq.request_stream(BIG, 1)
    pair.pump()
    assert all(len(encode_frame(frame)) <= 64 for _, frame in pair.wire)
    assert len(pair.wire) > 10
    responder_events = pair.take("server" if requester == "client" else "client")
    [request] = of_type(responder_events, RequestReceived)
    assert request.payload == BIG and request.initial_n == 1
    rs.send_payload(stream_id, BIG, complete=True)  # one credit for a many-fragment item (FG5)
    pair.pump()
    requester_events = pair.take(requester)
    assert of_type(requester_events, PayloadReceived) == [PayloadReceived(stream_id, BIG, True, True)]
    assert StreamEnded(stream_id) in requester_events


def test_oversized_item_without_fragmentation_is_refused_locally_T3() -> None:
    pair = Pair()
    with pytest.raises(PayloadTooLargeError):
        pair.client.request_response(Payload(b"x" * (1 << 24)))
    assert pair.client.stream_ids() == [] and pair.client.bytes_to_send == 0  # nothing registered
    assert pair.client.request_response(Payload(b"small")) == 1  # and no id was used up


def test_reassembly_cap_exceeded_is_a_connection_error_FG7() -> None:
    pair = Pair(SMALL, ProtocolConfig(max_reassembled_size=300))
    pair.clear()
    pair.client.request_response(Payload(b"y" * 400))
    pair.pump()
    [ended] = of_type(pair.server_events, ConnectionTerminated)
    assert ended.cause is TerminationCause.PEER_VIOLATION and "300-byte limit" in ended.message
    [error] = pair.sent("s>c", ErrorFrame)
    assert error.error_code == ErrorCode.CONNECTION_ERROR
    [seen] = of_type(pair.client_events, ConnectionTerminated)
    assert seen.cause is TerminationCause.PEER_CLOSED and seen.error_code == ErrorCode.CONNECTION_ERROR


def test_fragments_held_across_streams_are_bounded_FG7() -> None:
    server = server_after_setup(ProtocolConfig(max_reassembled_size=100))
    frames = [encode_frame(RequestResponseFrame(sid, b"z" * 90, follows=True)) for sid in (1, 3, 5, 7)]
    assert server.receive_frames(frames, 0.0) == []  # 360 bytes held: within 4 x 100
    events = server.receive_frames([encode_frame(RequestResponseFrame(9, b"z" * 90, follows=True))], 0.0)
    assert of_type(events, ConnectionTerminated)[0].cause is TerminationCause.PEER_VIOLATION
    assert "budget" in of_type(events, ConnectionTerminated)[0].message


def test_cancel_mid_sequence_discards_the_partial_item_FG7() -> None:
    server = server_after_setup()
    events = server.receive_frames(
        [
            encode_frame(RequestResponseFrame(1, b"abc", follows=True)),
            encode_frame(CancelFrame(1)),
            encode_frame(RequestResponseFrame(1, b"new")),
        ],
        0.0,
    )
    assert of_type(events, RequestReceived)[0].payload == Payload(b"new")


def test_interleaved_fragments_reassemble_per_stream_FG6() -> None:
    server = server_after_setup()
    events = server.receive_frames(
        [
            encode_frame(RequestStreamFrame(1, 3, b"a1", b"m1", follows=True)),
            encode_frame(RequestResponseFrame(3, b"b1", follows=True)),
            encode_frame(KeepaliveFrame(True, 0, b"ka")),
            encode_frame(PayloadFrame(3, b"b2", follows=False, next=True)),
            encode_frame(PayloadFrame(1, b"a2", next=True)),
        ],
        0.0,
    )
    requests = of_type(events, RequestReceived)
    assert [(r.stream_id, r.payload) for r in requests] == [
        (3, Payload(b"b1b2")),
        (1, Payload(b"a1a2", b"m1")),
    ]
    assert requests[1].initial_n == 3
    assert outbox(server) == [KeepaliveFrame(False, 0, b"ka")]


def test_metadata_after_data_is_a_violation_FG3() -> None:
    server = server_after_setup()
    events = server.receive_frames(
        [
            encode_frame(RequestResponseFrame(1, b"data", follows=True)),
            encode_frame(PayloadFrame(1, b"", b"late metadata", next=True)),
        ],
        0.0,
    )
    assert of_type(events, ConnectionTerminated)[0].cause is TerminationCause.PEER_VIOLATION


def test_follows_with_complete_ends_reassembly_U3() -> None:
    client = client_started()
    stream_id = client.request_stream(Payload(b""), 5)
    events = client.receive_frames(
        [
            encode_frame(PayloadFrame(stream_id, b"a", follows=True, next=True)),
            encode_frame(PayloadFrame(stream_id, b"b", follows=True, complete=True, next=True)),
        ],
        0.0,
    )
    assert of_type(events, PayloadReceived) == [PayloadReceived(stream_id, Payload(b"ab"), True, True)]
    assert client.stream_ids() == []


def test_fragments_for_unknown_streams_are_dropped_U2() -> None:
    client = client_started()
    events = client.receive_frames(
        [
            encode_frame(PayloadFrame(41, b"a", follows=True, next=True)),
            encode_frame(PayloadFrame(41, b"b", next=True)),
        ],
        0.0,
    )
    assert events == [] and not client.closed
