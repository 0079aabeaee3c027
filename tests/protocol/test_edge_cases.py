"""Checklist section 18 ("edge cases peers get wrong") against the core; numbers are the list's.

Cases covered in the other files of this package: 2 (test_setup_and_ids), 3, 4, 5 (test_credit),
12, 13 (test_fragmentation), 15 (test_interactions), 16, 19 (test_time), 17, 18 (test_setup_and_ids).
Cases 10 and 22 are codec and extension rules with no connection state (tests/test_frames_codec.py,
tests/test_extensions.py).
"""

from __future__ import annotations

import pytest

from anyio_rsocket.errors import ErrorCode
from anyio_rsocket.frames import (
    MAX_FRAME_SIZE,
    CancelFrame,
    ErrorFrame,
    ExtFrame,
    KeepaliveFrame,
    PayloadFrame,
    RequestNFrame,
    ResumeOkFrame,
    encode_frame,
)
from anyio_rsocket.framing import prefix_frames
from anyio_rsocket.payload import Payload
from anyio_rsocket.protocol import (
    ConnectionTerminated,
    ErrorReceived,
    LocalProtocolError,
    PayloadReceived,
    ProtocolConfig,
    RequestReceived,
    StreamEnded,
    TerminationCause,
)

from .helpers import Pair, client_started, of_type, outbox, server_after_setup


def test_edge_1_frames_for_unknown_or_finished_ids_are_dropped_U2() -> None:
    pair = Pair()
    stream_id = pair.client.request_response(Payload(b""))
    pair.client.cancel(stream_id)
    pair.pump()
    pair.clear()
    for frame in (
        PayloadFrame(stream_id, b"late", next=True, complete=True),
        ErrorFrame(stream_id, ErrorCode.APPLICATION_ERROR, b"late"),
        PayloadFrame(99, b"never used", next=True),
        RequestNFrame(99, 5),
        CancelFrame(99),
        ErrorFrame(99, ErrorCode.APPLICATION_ERROR, b""),
        CancelFrame(0),
        PayloadFrame(0, b"", next=True),
    ):
        assert pair.inject("client", frame) == []
    assert not pair.client.closed and pair.client.data_to_send() == []


def test_edge_6_payload_without_n_or_c_is_ignored_on_streams_U4() -> None:
    client = client_started()
    stream_id = client.request_stream(Payload(b""), 2)
    assert client.receive_frames([encode_frame(PayloadFrame(stream_id, b"no flags"))], 0.0) == []
    assert client.recv_credit(stream_id) == 2 and client.stream_ids() == [stream_id]


def test_edge_7_request_response_completions_IX2() -> None:
    client = client_started()
    a, b, c = (client.request_response(Payload(b"")) for _ in range(3))
    events = client.receive_frames(
        [
            encode_frame(PayloadFrame(a, b"value", next=True)),  # N without C: final anyway
            encode_frame(PayloadFrame(a, b"after", next=True)),  # ignored: the stream is over
            encode_frame(PayloadFrame(b, complete=True)),  # C only: no value
            encode_frame(PayloadFrame(c)),  # neither: an empty answer, like the AnyIO peer
        ],
        0.0,
    )
    assert of_type(events, PayloadReceived) == [
        PayloadReceived(a, Payload(b"value"), True, True),
        PayloadReceived(b, None, False, True),
        PayloadReceived(c, None, False, True),
    ]
    assert of_type(events, StreamEnded) == [StreamEnded(a), StreamEnded(b), StreamEnded(c)]


def test_edge_8_empty_and_absent_metadata_stay_distinct_MD3_MD4() -> None:
    pair = Pair()
    stream_id = pair.client.request_channel(Payload(b"", b""), 10)
    pair.pump()
    [request] = of_type(pair.server_events, RequestReceived)
    assert request.payload.metadata == b"" and request.payload.data == b""
    pair.server.send_payload(stream_id, Payload(b""))
    pair.server.send_payload(stream_id, Payload(b"", b""))
    pair.pump()
    items = [e.payload for e in of_type(pair.client_events, PayloadReceived)]
    assert [(p.data, p.metadata) for p in items if p is not None] == [(b"", None), (b"", b"")]


def test_edge_9_metadata_overrunning_the_frame_MD2() -> None:
    client = client_started()
    stream_id = client.request_stream(Payload(b""), 2)
    client.data_to_send()
    bad = stream_id.to_bytes(4, "big") + b"\x29\x20" + b"\x00\x00\x09ab"  # M|N, 9 bytes declared, 2 there
    ignorable = stream_id.to_bytes(4, "big") + b"\x2b\x20" + b"\x00\x00\x09ab"  # the same with I
    assert client.receive_frames([ignorable], 0.0) == []
    assert not client.closed
    events = client.receive_frames([bad, encode_frame(PayloadFrame(stream_id, b"never", next=True))], 0.0)
    assert [type(e) for e in events] == [ConnectionTerminated]  # nothing after the violation
    [error] = outbox(client)
    assert isinstance(error, ErrorFrame) and error.error_code == ErrorCode.CONNECTION_ERROR


def test_edge_11_max_size_frames_are_fragmented_when_enabled_T3_FG8() -> None:
    pair = Pair(ProtocolConfig(fragment_size=MAX_FRAME_SIZE))
    pair.client.fire_and_forget(Payload(b"x" * MAX_FRAME_SIZE))
    pair.pump()
    [request] = of_type(pair.server_events, RequestReceived)
    assert len(request.payload.data) == MAX_FRAME_SIZE
    assert len(pair.sent("c>s")) >= 3  # SETUP, probe, then two fragments


def test_edge_14_channel_first_element_is_free_IX5() -> None:
    pair = Pair(server_config=ProtocolConfig(responder_channel_window=0))
    stream_id = pair.client.request_channel(Payload(b"free"), 1)
    pair.pump()
    assert of_type(pair.server_events, RequestReceived)[0].payload == Payload(b"free")
    assert pair.client.send_credit(stream_id) == 0


def test_edge_16_keepalive_echo_works_from_the_server_too_K2() -> None:
    client = client_started()
    client.receive_frames([encode_frame(KeepaliveFrame(True, 0, b"srv"))], 1.0)
    assert outbox(client) == [KeepaliveFrame(False, 0, b"srv")]


def test_edge_20_unknown_frame_types_U1() -> None:
    server = server_after_setup()
    unknown_with_ignore = b"\x00\x00\x00\x00" + (0x20 << 10 | 0x200).to_bytes(2, "big")
    assert server.receive_frames([unknown_with_ignore], 0.0) == []
    assert server.receive_frames([encode_frame(ExtFrame(0, 7, b"x", ignore=True))], 0.0) == []
    assert not server.closed
    events = server.receive_frames([encode_frame(ExtFrame(0, 7, b"x"))], 0.0)
    assert of_type(events, ConnectionTerminated)[0].message == "unsupported extension frame type 7"
    for word in (0x20 << 10, 0x0000):  # unknown type without I; type 0x00 is never valid
        other = server_after_setup()
        ended = of_type(
            other.receive_frames([b"\x00\x00\x00\x00" + word.to_bytes(2, "big")], 0.0), ConnectionTerminated
        )
        assert ended[0].cause is TerminationCause.PEER_VIOLATION


def test_edge_20_resume_frames_without_resumption_are_violations_R7() -> None:
    server = server_after_setup()
    events = server.receive_frames([encode_frame(ResumeOkFrame(0))], 0.0)
    assert (
        of_type(events, ConnectionTerminated)[0].message == "resumption was not negotiated on this connection"
    )


def test_edge_21_error_codes_are_unsigned_and_survive_E1() -> None:
    pair = Pair()
    stream_id = pair.client.request_response(Payload(b""))
    pair.pump()
    pair.server.send_error(stream_id, 0xFFFFFFFE, "custom")
    pair.pump()
    assert ErrorReceived(stream_id, 0xFFFFFFFE, "custom") in pair.client_events
    other = pair.server.request_response(Payload(b""))
    pair.pump()
    for code in (0, ErrorCode.CONNECTION_CLOSE, 1 << 32):
        with pytest.raises(LocalProtocolError, match="stream-level"):
            pair.client.send_error(other, code, "")


def test_bytes_from_a_tcp_stream_split_anywhere_T1() -> None:
    server = server_after_setup()
    pair_client = client_started()
    pair_client.request_stream(Payload(b"abc", b"m"), 3)
    pair_client.metadata_push(b"push")
    data = prefix_frames(pair_client.data_to_send())
    events = []
    for index in range(len(data)):
        events.extend(server.receive_data(data[index : index + 1], 0.0))
    assert [type(e).__name__ for e in events] == ["RequestReceived", "MetadataPushReceived"]


def test_bad_length_prefix_is_a_protocol_error_T1() -> None:
    server = server_after_setup()
    good = prefix_frames([encode_frame(KeepaliveFrame(False))])
    events = server.receive_data(good + b"\x00\x00\x02", 0.0)  # a 2-byte frame cannot exist
    assert of_type(events, ConnectionTerminated)[0].cause is TerminationCause.PEER_VIOLATION
    assert server.receive_data(good, 1.0) == []
