"""Every interaction in both directions, two cores back to back (checklist section 7)."""

from __future__ import annotations

import pytest

from anyio_rsocket.errors import ErrorCode
from anyio_rsocket.frames import (
    CancelFrame,
    MetadataPushFrame,
    PayloadFrame,
    RequestChannelFrame,
    RequestFireAndForgetFrame,
    RequestNFrame,
)
from anyio_rsocket.payload import Payload
from anyio_rsocket.protocol import (
    CancelReceived,
    ErrorReceived,
    InteractionKind,
    LocalProtocolError,
    MetadataPushReceived,
    PayloadReceived,
    ProtocolConfig,
    ProtocolConnection,
    RequestNReceived,
    RequestReceived,
    StreamEnded,
    StreamState,
)

from .helpers import Pair, of_type, outbox

SIDES = [("client", "server"), ("server", "client")]


def _conn(pair: Pair, side: str) -> ProtocolConnection:
    return pair.client if side == "client" else pair.server


@pytest.mark.parametrize(("requester", "responder"), SIDES)
def test_request_response_both_directions_IX1(requester: str, responder: str) -> None:
    pair = Pair()
    pair.clear()
    rq, rs = _conn(pair, requester), _conn(pair, responder)
    stream_id = rq.request_response(Payload(b"ping", b"md"))
    assert stream_id % 2 == (1 if requester == "client" else 0)  # ID1
    pair.pump()
    [request] = of_type(pair.take(responder), RequestReceived)
    assert request == RequestReceived(InteractionKind.REQUEST_RESPONSE, stream_id, Payload(b"ping", b"md"))
    assert rs.stream_state(stream_id) is StreamState.HALF_CLOSED_REMOTE
    rs.send_payload(stream_id, Payload(b"pong"))
    pair.pump()
    events = pair.take(requester)
    assert events == [PayloadReceived(stream_id, Payload(b"pong"), True, True), StreamEnded(stream_id)]
    assert pair.take(responder) == [StreamEnded(stream_id)]
    assert rq.stream_ids() == [] and rs.stream_ids() == []
    [answer] = pair.sent("s>c" if responder == "server" else "c>s", PayloadFrame)
    assert answer.next and answer.complete  # a request-response answer always carries C (IX2)


def test_request_response_without_value_is_complete_only_IX1() -> None:
    pair = Pair()
    stream_id = pair.client.request_response(Payload(b"q"))
    pair.pump()
    pair.server.send_complete(stream_id)
    pair.pump()
    assert of_type(pair.client_events, PayloadReceived) == [PayloadReceived(stream_id, None, False, True)]
    assert pair.sent("s>c", PayloadFrame) == [PayloadFrame(stream_id, complete=True)]


def test_request_response_requester_may_not_send_or_grant_IX1() -> None:
    pair = Pair()
    stream_id = pair.client.request_response(Payload(b"q"))
    for misuse in (
        lambda: pair.client.send_payload(stream_id, Payload(b"x")),
        lambda: pair.client.send_complete(stream_id),
        lambda: pair.client.request_n(stream_id, 1),
        lambda: pair.client.send_error(stream_id, ErrorCode.APPLICATION_ERROR, "no"),
    ):
        with pytest.raises(LocalProtocolError):
            misuse()
    assert pair.client.stream_state(stream_id) is StreamState.HALF_CLOSED_LOCAL


@pytest.mark.parametrize(("requester", "responder"), SIDES)
def test_fire_and_forget_both_directions_is_never_registered_IX3(requester: str, responder: str) -> None:
    pair = Pair()
    pair.clear()
    rq, rs = _conn(pair, requester), _conn(pair, responder)
    stream_id = rq.fire_and_forget(Payload(b"fnf"))
    assert rq.stream_ids() == []
    pair.pump()
    assert pair.take(responder) == [
        RequestReceived(InteractionKind.FIRE_AND_FORGET, stream_id, Payload(b"fnf"))
    ]
    assert rs.stream_ids() == []
    assert [type(f) for _, f in pair.wire] == [RequestFireAndForgetFrame]  # never answered
    assert rq.fire_and_forget(Payload(b"again")) == stream_id + 2  # ids still advance (ID1)


@pytest.mark.parametrize(("requester", "responder"), SIDES)
def test_request_stream_both_directions_IX4(requester: str, responder: str) -> None:
    pair = Pair()
    pair.clear()
    rq, rs = _conn(pair, requester), _conn(pair, responder)
    stream_id = rq.request_stream(Payload(b"count"), 2)
    pair.pump()
    [request] = of_type(pair.take(responder), RequestReceived)
    assert (request.kind, request.initial_n) == (InteractionKind.REQUEST_STREAM, 2)
    rs.send_payload(stream_id, Payload(b"1"))
    rs.send_payload(stream_id, Payload(b"2"))
    assert rq.request_n(stream_id, 1) == 1
    pair.pump()
    assert of_type(pair.take(responder), RequestNReceived) == [RequestNReceived(stream_id, 1, False)]
    rs.send_payload(stream_id, Payload(b"3"), complete=True)
    pair.pump()
    items = of_type(pair.take(requester), PayloadReceived)
    assert [(e.payload, e.complete) for e in items] == [
        (Payload(b"1"), False),
        (Payload(b"2"), False),
        (Payload(b"3"), True),
    ]
    assert rq.stream_ids() == [] and rs.stream_ids() == []


@pytest.mark.parametrize(("requester", "responder"), SIDES)
def test_request_channel_both_directions_IX5(requester: str, responder: str) -> None:
    pair = Pair()
    pair.clear()
    rq, rs = _conn(pair, requester), _conn(pair, responder)
    stream_id = rq.request_channel(Payload(b"first"), 5)
    pair.pump()
    [request] = of_type(pair.take(responder), RequestReceived)
    assert (request.kind, request.payload, request.complete) == (
        InteractionKind.REQUEST_CHANNEL,
        Payload(b"first"),
        False,
    )
    # IX5: the responder answers REQUEST_CHANNEL with a REQUEST_N at once (256, the peer's window).
    assert of_type(pair.take(requester), RequestNReceived) == [RequestNReceived(stream_id, 256, False)]
    rq.send_payload(stream_id, Payload(b"second"))
    rs.send_payload(stream_id, Payload(b"back"))
    pair.pump()
    assert of_type(pair.take(responder), PayloadReceived) == [
        PayloadReceived(stream_id, Payload(b"second"), True, False)
    ]
    assert of_type(pair.take(requester), PayloadReceived) == [
        PayloadReceived(stream_id, Payload(b"back"), True, False)
    ]
    rq.send_complete(stream_id)
    rs.send_complete(stream_id)
    pair.pump()
    assert StreamEnded(stream_id) in pair.take(requester)
    assert StreamEnded(stream_id) in pair.take(responder)
    assert rq.stream_ids() == [] and rs.stream_ids() == []


def test_channel_first_element_is_free_second_waits_for_credit_IX5() -> None:
    pair = Pair(server_config=ProtocolConfig(responder_channel_window=0))
    stream_id = pair.client.request_channel(Payload(b"1"), 1)
    pair.pump()
    assert pair.client.send_credit(stream_id) == 0
    with pytest.raises(LocalProtocolError, match="credit"):
        pair.client.send_payload(stream_id, Payload(b"2"))
    pair.server.request_n(stream_id, 1)
    pair.pump()
    pair.client.send_payload(stream_id, Payload(b"2"))
    with pytest.raises(LocalProtocolError, match="credit"):
        pair.client.send_payload(stream_id, Payload(b"3"))


@pytest.mark.parametrize("first", ["requester", "responder"])
def test_channel_half_close_in_both_orders_IX5(first: str) -> None:
    pair = Pair()
    stream_id = pair.client.request_channel(Payload(b"a"), 10)
    pair.pump()
    order = [pair.client, pair.server] if first == "requester" else [pair.server, pair.client]
    order[0].send_complete(stream_id)
    pair.pump()
    closed_first = StreamState.HALF_CLOSED_LOCAL
    assert order[0].stream_state(stream_id) is closed_first
    assert order[1].stream_state(stream_id) is StreamState.HALF_CLOSED_REMOTE
    # The half still open keeps flowing.
    order[1].send_payload(stream_id, Payload(b"more"))
    pair.pump()
    with pytest.raises(LocalProtocolError):
        order[0].send_payload(stream_id, Payload(b"too late"))
    order[1].send_complete(stream_id)
    pair.pump()
    assert pair.client.stream_ids() == [] and pair.server.stream_ids() == []


def test_channel_request_with_complete_has_one_inbound_element_IX5() -> None:
    pair = Pair()
    stream_id = pair.client.request_channel(Payload(b"only"), 4, complete=True)
    pair.pump()
    [request] = of_type(pair.server_events, RequestReceived)
    assert request.complete
    assert pair.sent("s>c", RequestNFrame) == []  # no grant for a half that is already complete
    assert pair.server.stream_state(stream_id) is StreamState.HALF_CLOSED_REMOTE
    pair.server.send_payload(stream_id, Payload(b"x"), complete=True)
    pair.pump()
    assert pair.client.stream_ids() == [] and pair.server.stream_ids() == []


def test_channel_responder_cancel_stops_only_requester_half_IX5() -> None:
    pair = Pair()
    stream_id = pair.client.request_channel(Payload(b"a"), 10)
    pair.pump()
    pair.clear()
    pair.server.cancel(stream_id)  # [java]: the responder stops consuming our half
    pair.pump()
    assert pair.server.stream_state(stream_id) is StreamState.HALF_CLOSED_REMOTE
    assert pair.client.stream_state(stream_id) is StreamState.HALF_CLOSED_LOCAL
    assert of_type(pair.client_events, CancelReceived) == [CancelReceived(stream_id)]
    with pytest.raises(LocalProtocolError):
        pair.client.send_payload(stream_id, Payload(b"no"))
    pair.server.send_payload(stream_id, Payload(b"still"), complete=True)  # our half goes on
    pair.pump()
    assert PayloadReceived(stream_id, Payload(b"still"), True, True) in pair.client_events
    assert pair.client.stream_ids() == [] and pair.server.stream_ids() == []


@pytest.mark.parametrize("sender", ["requester", "responder"])
def test_channel_error_from_either_side_tears_down_both_halves_IX5(sender: str) -> None:
    pair = Pair()
    stream_id = pair.client.request_channel(Payload(b"a"), 10)
    pair.pump()
    pair.clear()
    source, target = (pair.client, "server") if sender == "requester" else (pair.server, "client")
    source.send_error(stream_id, ErrorCode.APPLICATION_ERROR, "boom")
    assert source.stream_ids() == []
    pair.pump()
    events = pair.take(target)
    assert ErrorReceived(stream_id, ErrorCode.APPLICATION_ERROR, "boom") in events
    assert StreamEnded(stream_id) in events
    assert pair.client.stream_ids() == [] and pair.server.stream_ids() == []


def test_stream_requester_may_not_send_error_IX4() -> None:
    pair = Pair()
    stream_id = pair.client.request_stream(Payload(b""), 1)
    with pytest.raises(LocalProtocolError):
        pair.client.send_error(stream_id, ErrorCode.APPLICATION_ERROR, "no")
    pair.pump()
    with pytest.raises(LocalProtocolError, match="stream-level"):
        pair.server.send_error(stream_id, ErrorCode.CONNECTION_ERROR, "wrong level")


@pytest.mark.parametrize(("sender", "receiver"), SIDES)
def test_metadata_push_both_directions_MP1(sender: str, receiver: str) -> None:
    pair = Pair()
    pair.clear()
    _conn(pair, sender).metadata_push(b"routing-table")
    pair.pump()
    assert pair.take(receiver) == [MetadataPushReceived(b"routing-table")]


def test_metadata_push_on_a_stream_is_ignored_MP2() -> None:
    pair = Pair()
    pair.clear()
    assert pair.inject("server", MetadataPushFrame(b"x", stream_id=3)) == []
    assert not pair.server.closed


def test_payload_sink_gets_items_instead_of_events() -> None:
    pair = Pair()
    stream_id = pair.client.request_stream(Payload(b""), 10)
    received: list[tuple[bytes, bytes | None, int]] = []
    pair.client.set_payload_sink(
        stream_id, lambda data, metadata, flags: received.append((data, metadata, flags))
    )
    pair.pump()
    pair.clear()
    pair.server.send_payload(stream_id, Payload(b"a", b"m"))
    pair.server.send_payload(stream_id, Payload(b"b"))
    pair.server.send_complete(stream_id)
    pair.pump()
    assert received == [(b"a", b"m", 0x20), (b"b", None, 0x20), (b"", None, 0x40)]
    assert pair.client_events == [StreamEnded(stream_id)]  # no PayloadReceived; the end still reported
    assert pair.client.recv_credit(stream_id) == 0  # released


def test_payload_sink_still_enforces_credit_RN6() -> None:
    pair = Pair()
    stream_id = pair.client.request_stream(Payload(b""), 1)
    received: list[bytes] = []
    pair.client.set_payload_sink(stream_id, lambda data, metadata, flags: received.append(data))
    pair.pump()
    pair.inject("client", PayloadFrame(stream_id, b"1", next=True), PayloadFrame(stream_id, b"2", next=True))
    assert received == [b"1"]
    assert outbox(pair.client) == [CancelFrame(stream_id)]


def test_request_channel_frame_from_client_reaches_server_handler_with_credit_IX5() -> None:
    pair = Pair()
    stream_id = pair.client.request_channel(Payload(b"x"), 7)
    pair.pump()
    [frame] = pair.sent("c>s", RequestChannelFrame)
    assert frame.initial_request_n == 7
    assert pair.server.send_credit(stream_id) == 7
    assert pair.client.send_credit(stream_id) == 256
