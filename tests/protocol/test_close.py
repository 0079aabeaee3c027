"""Closing, draining (E2), peer errors on stream 0 and the admission limit."""

from __future__ import annotations

import pytest

from anyio_rsocket.errors import ErrorCode
from anyio_rsocket.frames import (
    ErrorFrame,
    RequestChannelFrame,
    RequestFireAndForgetFrame,
    RequestResponseFrame,
    encode_frame,
)
from anyio_rsocket.payload import Payload
from anyio_rsocket.protocol import (
    ConnectionClosingError,
    ConnectionDraining,
    ConnectionEndedError,
    ConnectionTerminated,
    InteractionKind,
    LocalProtocolError,
    PayloadReceived,
    ProtocolConfig,
    RequestReceived,
    RequestRejected,
    TerminationCause,
)

from .helpers import Pair, of_type, outbox, server_after_setup


def test_peer_connection_close_lets_live_streams_finish_E2() -> None:
    pair = Pair()
    stream_id = pair.client.request_stream(Payload(b""), 5)
    pair.pump()
    pair.clear()
    pair.server.close(drain=True)
    pair.pump()
    assert of_type(pair.client_events, ConnectionDraining) == [ConnectionDraining("")]
    assert pair.client.draining and pair.server.draining
    with pytest.raises(ConnectionClosingError):
        pair.client.request_response(Payload(b"new"))
    with pytest.raises(ConnectionClosingError):
        pair.server.request_response(Payload(b"new"))
    pair.server.send_payload(stream_id, Payload(b"last"), complete=True)  # live streams finish
    pair.pump()
    assert PayloadReceived(stream_id, Payload(b"last"), True, True) in pair.client_events
    [client_end] = of_type(pair.client_events, ConnectionTerminated)
    assert client_end.cause is TerminationCause.PEER_CLOSED
    [server_end] = of_type(pair.server_events, ConnectionTerminated)
    assert server_end.cause is TerminationCause.LOCAL


def test_new_requests_while_draining_are_rejected_remotely_E2() -> None:
    server = server_after_setup()
    server.receive_frames([encode_frame(RequestResponseFrame(1, b"live"))], 0.0)
    events = server.receive_frames(
        [
            encode_frame(ErrorFrame(0, ErrorCode.CONNECTION_CLOSE, b"bye")),
            encode_frame(RequestResponseFrame(3, b"new")),
            encode_frame(RequestFireAndForgetFrame(5, b"new fnf")),
        ],
        0.0,
    )
    assert events == [
        ConnectionDraining("bye"),
        RequestRejected(InteractionKind.REQUEST_RESPONSE, 3, "connection is closing", True),
        RequestRejected(InteractionKind.FIRE_AND_FORGET, 5, "connection is closing", False),
    ]
    assert outbox(server) == [ErrorFrame(3, ErrorCode.REJECTED, b"connection is closing")]
    server.send_payload(1, Payload(b"answer"))
    [ended] = of_type(server.pop_events(), ConnectionTerminated)
    assert ended.message == "connection closed by peer (CONNECTION_CLOSE)"


def test_connection_close_without_streams_ends_at_once_E2() -> None:
    pair = Pair()
    pair.clear()
    events = pair.server.close(ErrorCode.CONNECTION_CLOSE, "done")
    assert of_type(events, ConnectionTerminated)[0].cause is TerminationCause.LOCAL
    pair.pump()
    assert pair.client_events == [
        ConnectionTerminated(ErrorCode.CONNECTION_CLOSE, "done", TerminationCause.PEER_CLOSED)
    ]


def test_connection_error_fails_every_live_stream_E2() -> None:
    pair = Pair()
    ids = [pair.client.request_stream(Payload(b""), 1), pair.client.request_response(Payload(b""))]
    pair.pump()
    pair.clear()
    pair.server.close(ErrorCode.CONNECTION_ERROR, "broken")
    pair.pump()
    assert pair.client.stream_ids() == [] and pair.client.closed
    assert pair.client_events == [
        ConnectionTerminated(ErrorCode.CONNECTION_ERROR, "broken", TerminationCause.PEER_CLOSED)
    ]
    with pytest.raises(ConnectionEndedError, match="broken"):
        pair.client.request_n(ids[0], 1)
    assert pair.client.receive_frames([encode_frame(ErrorFrame(0, 0x201, b""))], 1.0) == []


def test_silent_local_close_sends_nothing() -> None:
    pair = Pair()
    pair.client.request_stream(Payload(b""), 1)
    pair.client.data_to_send()
    events = pair.client.close()
    assert events == [
        ConnectionTerminated(ErrorCode.CONNECTION_CLOSE, "connection closed locally", TerminationCause.LOCAL)
    ]
    assert pair.client.data_to_send() == [] and pair.client.close() == []
    for call in (
        lambda: pair.client.request_response(Payload(b"")),
        lambda: pair.client.metadata_push(b""),
        lambda: pair.client.send_payload(1, Payload(b"")),
    ):
        with pytest.raises(ConnectionEndedError):
            call()


def test_close_argument_misuse() -> None:
    pair = Pair()
    with pytest.raises(LocalProtocolError):
        pair.client.close(ErrorCode.CONNECTION_ERROR, drain=True)
    with pytest.raises(LocalProtocolError):
        pair.client.close(-1)
    assert not pair.client.closed


def test_admission_limit_rejects_requests_but_takes_fire_and_forget() -> None:
    server = server_after_setup(ProtocolConfig(max_concurrent_requests=2))
    events = server.receive_frames(
        [
            encode_frame(RequestResponseFrame(1, b"")),
            encode_frame(RequestChannelFrame(3, 1, b"")),
            encode_frame(RequestResponseFrame(5, b"")),
            encode_frame(RequestFireAndForgetFrame(7, b"")),
        ],
        0.0,
    )
    reason = "too many concurrent requests on this connection"
    assert [type(e) for e in events] == [RequestReceived, RequestReceived, RequestRejected, RequestReceived]
    assert events[2] == RequestRejected(InteractionKind.REQUEST_RESPONSE, 5, reason, True)
    assert ErrorFrame(5, ErrorCode.REJECTED, reason.encode()) in outbox(server)
    assert server.inbound_requests == 2
    server.send_payload(1, Payload(b""))  # one finishes: room again
    events = server.receive_frames([encode_frame(RequestResponseFrame(9, b""))], 0.0)
    assert of_type(events, RequestReceived)[0].stream_id == 9
