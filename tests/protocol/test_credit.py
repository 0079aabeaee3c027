"""Request-n credit (checklist section 8) and cancellation, both cores back to back."""

from __future__ import annotations

import pytest

from anyio_rsocket.errors import ErrorCode
from anyio_rsocket.frames import (
    MAX_31,
    CancelFrame,
    ErrorFrame,
    PayloadFrame,
    RequestNFrame,
    RequestResponseFrame,
    RequestStreamFrame,
    encode_frame,
)
from anyio_rsocket.payload import Payload
from anyio_rsocket.protocol import (
    CancelReceived,
    Credit,
    LocalProtocolError,
    PayloadReceived,
    ProtocolConfig,
    RequestNReceived,
    StreamEnded,
    StreamFailed,
)

from .helpers import Pair, client_started, of_type, outbox, server_after_setup


def test_credit_type_is_additive_saturating_and_ignores_zero_RN1_RN4_RN6() -> None:
    credit = Credit(2)
    assert credit.grant(3) == 3 and credit.value == 5  # RN1
    assert credit.grant(0) == 0 and credit.grant(-4) == 0 and credit.value == 5  # RN6
    for _ in range(5):
        assert credit.consume()
    assert not credit.consume() and credit.value == 0
    assert credit.grant(MAX_31) == MAX_31 and credit.unbounded  # RN4: saturates at 2^31-1
    assert credit.grant(MAX_31) == 0
    for _ in range(3):
        assert credit.consume()
    assert credit.value == MAX_31  # unbounded: consuming costs nothing
    assert Credit(MAX_31 + 5).value == MAX_31


def test_responder_sends_exactly_n_items_and_no_more_RN2() -> None:
    pair = Pair()
    stream_id = pair.client.request_stream(Payload(b""), 3)
    pair.pump()
    for index in range(3):
        pair.server.send_payload(stream_id, Payload(b"%d" % index))
    with pytest.raises(LocalProtocolError, match="credit"):
        pair.server.send_payload(stream_id, Payload(b"one too many"))
    pair.server.send_complete(stream_id)  # RN2: COMPLETE needs no credit
    pair.pump()
    items = [e.payload for e in of_type(pair.client_events, PayloadReceived) if e.next]
    assert items == [Payload(b"0"), Payload(b"1"), Payload(b"2")]
    assert pair.client.stream_ids() == [] and pair.server.stream_ids() == []


def test_credit_is_additive_over_the_wire_RN1() -> None:
    pair = Pair()
    stream_id = pair.client.request_stream(Payload(b""), 1)
    pair.client.request_n(stream_id, 3)
    pair.client.request_n(stream_id, 2)
    pair.pump()
    assert pair.server.send_credit(stream_id) == 6
    assert pair.sent("c>s", RequestNFrame) == [RequestNFrame(stream_id, 3), RequestNFrame(stream_id, 2)]
    for _ in range(6):
        pair.server.send_payload(stream_id, Payload(b"x"))
    assert pair.server.send_credit(stream_id) == 0
    pair.pump()
    assert len(of_type(pair.client_events, PayloadReceived)) == 6
    assert not pair.client.closed and pair.client.stream_ids() == [stream_id]


def test_credit_saturates_RN4() -> None:
    """Two REQUEST_N(2^31-1) must not wrap: credit stops at 2^31-1 and counts as unbounded."""
    server = server_after_setup()
    server.receive_frames([encode_frame(RequestStreamFrame(1, 5, b""))], 0.0)
    events = server.receive_frames(
        [encode_frame(RequestNFrame(1, MAX_31)), encode_frame(RequestNFrame(1, MAX_31))], 0.0
    )
    assert of_type(events, RequestNReceived) == [RequestNReceived(1, MAX_31 - 5, True)]
    assert server.send_credit(1) == MAX_31
    for _ in range(1000):
        server.send_payload(1, Payload(b""))
    assert server.send_credit(1) == MAX_31


def test_requester_request_n_is_clamped_and_stops_at_saturation_RN4_RN5() -> None:
    pair = Pair()
    stream_id = pair.client.request_stream(Payload(b""), 10)
    assert pair.client.request_n(stream_id, 2**40) == MAX_31 - 10  # RN5: clamped
    assert pair.client.request_n(stream_id, 5) == 0  # RN4: unbounded, nothing more to ask
    pair.pump()
    assert pair.sent("c>s", RequestNFrame) == [RequestNFrame(stream_id, MAX_31 - 10)]
    for bad in (0, -1):
        with pytest.raises(LocalProtocolError):
            pair.client.request_n(stream_id, bad)
    with pytest.raises(LocalProtocolError):
        pair.client.request_stream(Payload(b""), 0)


def test_zero_request_n_is_ignored_RN6() -> None:
    server = server_after_setup()
    events = server.receive_frames([encode_frame(RequestStreamFrame(1, 0, b""))], 0.0)
    assert server.send_credit(1) == 0  # RN6: a zero initial request-n grants nothing
    with pytest.raises(LocalProtocolError):
        server.send_payload(1, Payload(b""))
    events = server.receive_frames([encode_frame(RequestNFrame(1, 0))], 0.0)
    assert events == [] and server.send_credit(1) == 0 and not server.closed
    server.receive_frames([b"\x00\x00\x00\x01\x20\x00\x80\x00\x00\x02"], 0.0)  # top bit masked (H2)
    assert server.send_credit(1) == 2


def test_responder_exceeding_credit_is_cancelled_RN6() -> None:
    client = client_started()
    stream_id = client.request_stream(Payload(b""), 1)
    client.data_to_send()
    events = client.receive_frames(
        [
            encode_frame(PayloadFrame(stream_id, b"1", next=True)),
            encode_frame(PayloadFrame(stream_id, b"2", next=True)),
        ],
        0.0,
    )
    assert events[0] == PayloadReceived(stream_id, Payload(b"1"), True, False)
    assert StreamFailed(stream_id, ErrorCode.INVALID, "responder sent more items than requested") in events
    assert events[-1] == StreamEnded(stream_id)
    assert outbox(client) == [CancelFrame(stream_id)]
    assert not client.closed  # a stream violation, not a connection one


def test_channel_requester_exceeding_grant_gets_invalid_RN6() -> None:
    pair = Pair(server_config=ProtocolConfig(responder_channel_window=1))
    stream_id = pair.client.request_channel(Payload(b"first"), 1)
    pair.pump()
    pair.clear()
    raw = encode_frame(PayloadFrame(stream_id, b"x", next=True))
    events = pair.server.receive_frames([raw, raw], 0.0)
    assert [type(e).__name__ for e in events] == ["PayloadReceived", "StreamFailed", "StreamEnded"]
    frames = outbox(pair.server)
    assert frames == [
        ErrorFrame(stream_id, ErrorCode.INVALID, b"requester sent more channel elements than granted")
    ]


def test_request_n_on_request_response_has_no_effect_RN7() -> None:
    server = server_after_setup()
    server.receive_frames([encode_frame(RequestResponseFrame(1, b"q"))], 0.0)
    assert server.receive_frames([encode_frame(RequestNFrame(1, 5))], 0.0) == []
    server.send_payload(1, Payload(b"a"))
    with pytest.raises(LocalProtocolError):
        server.send_payload(1, Payload(b"b"))


@pytest.mark.parametrize("requester", ["client", "server"])
def test_cancel_releases_the_stream_on_both_sides_IX4(requester: str) -> None:
    pair = Pair()
    rq, rs = (pair.client, pair.server) if requester == "client" else (pair.server, pair.client)
    stream_id = rq.request_stream(Payload(b""), 5)
    pair.pump()
    rs.send_payload(stream_id, Payload(b"in flight"))
    rq.cancel(stream_id)
    assert rq.stream_ids() == []
    pair.pump()
    assert rs.stream_ids() == []
    responder_events = pair.server_events if requester == "client" else pair.client_events
    assert CancelReceived(stream_id) in responder_events and StreamEnded(stream_id) in responder_events
    requester_events = pair.client_events if requester == "client" else pair.server_events
    # U2: the PAYLOAD that crossed the CANCEL is dropped silently.
    assert of_type(requester_events, PayloadReceived) == []
    with pytest.raises(LocalProtocolError):
        rs.send_payload(stream_id, Payload(b"late"))


def test_cancel_request_response_IX1() -> None:
    pair = Pair()
    stream_id = pair.client.request_response(Payload(b"slow"))
    pair.pump()
    pair.client.cancel(stream_id)
    pair.pump()
    assert pair.server.stream_ids() == [] and pair.client.stream_ids() == []
    assert CancelReceived(stream_id) in pair.server_events
    with pytest.raises(LocalProtocolError):
        pair.server.send_payload(stream_id, Payload(b"answer nobody wants"))


def test_responder_may_not_cancel_a_request_stream_IX4() -> None:
    pair = Pair()
    stream_id = pair.client.request_stream(Payload(b""), 5)
    pair.pump()
    with pytest.raises(LocalProtocolError):
        pair.server.cancel(stream_id)
    with pytest.raises(LocalProtocolError):
        pair.server.request_n(stream_id, 1)
