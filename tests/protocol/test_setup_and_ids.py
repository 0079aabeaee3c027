"""SETUP handling (section 5) and stream ids (section 6)."""

from __future__ import annotations

import pytest

from anyio_rsocket.errors import ErrorCode
from anyio_rsocket.frames import (
    ErrorFrame,
    KeepaliveFrame,
    LeaseFrame,
    PayloadFrame,
    RequestResponseFrame,
    RequestStreamFrame,
    ResumeFrame,
    SetupFrame,
    encode_frame,
)
from anyio_rsocket.payload import Payload
from anyio_rsocket.protocol import (
    ConnectionEstablished,
    ConnectionTerminated,
    LocalProtocolError,
    Phase,
    ProtocolConfig,
    ProtocolConnection,
    RequestReceived,
    SetupReceived,
    StreamIdAllocator,
    StreamIdsExhaustedError,
    TerminationCause,
)

from .helpers import Pair, client_started, of_type, outbox, server_after_setup

MIME = "application/octet-stream"
GOOD = SetupFrame(30_000, 90_000, MIME, MIME)


def _refused(first: bytes) -> tuple[ErrorFrame, ConnectionTerminated]:
    server = ProtocolConnection(client=False)
    events = server.receive_frames([first], 0.0)
    [ended] = of_type(events, ConnectionTerminated)
    [error] = outbox(server)
    assert isinstance(error, ErrorFrame) and error.stream_id == 0
    assert server.closed and ended.cause is TerminationCause.PEER_VIOLATION
    return error, ended


def test_request_before_setup_is_invalid_setup_S1() -> None:
    error, ended = _refused(encode_frame(RequestResponseFrame(1, b"hi")))
    assert error.error_code == ended.error_code == ErrorCode.INVALID_SETUP
    assert "first frame must be SETUP" in ended.message


def test_setup_on_nonzero_stream_is_invalid_setup_S1() -> None:
    error, _ = _refused(encode_frame(SetupFrame(30_000, 90_000, MIME, MIME, stream_id=1)))
    assert error.error_code == ErrorCode.INVALID_SETUP


def test_unsupported_version_is_invalid_setup_S2() -> None:
    error, ended = _refused(encode_frame(SetupFrame(30_000, 90_000, MIME, MIME, major_version=2)))
    assert error.error_code == ErrorCode.INVALID_SETUP and "2.0" in ended.message


def test_zero_keepalive_or_lifetime_is_invalid_setup_F2() -> None:
    for frame in (SetupFrame(0, 90_000, MIME, MIME), SetupFrame(30_000, 0, MIME, MIME)):
        error, _ = _refused(encode_frame(frame))
        assert error.error_code == ErrorCode.INVALID_SETUP


def test_setup_with_resume_is_rejected_setup_S7() -> None:
    error, _ = _refused(encode_frame(SetupFrame(30_000, 90_000, MIME, MIME, resume_token=b"tok")))
    assert error.error_code == ErrorCode.REJECTED_SETUP


def test_resume_is_rejected_resume_R5() -> None:
    error, _ = _refused(encode_frame(ResumeFrame(b"tok", 0, 0)))
    assert error.error_code == ErrorCode.REJECTED_RESUME


def test_malformed_first_frame_is_invalid_setup() -> None:
    error, ended = _refused(b"\x00\x00\x00\x00\x04\x00\x00")
    assert error.error_code == ErrorCode.INVALID_SETUP and ended.message.startswith("malformed SETUP")


def test_driver_rejects_setup_and_client_sees_it_S3_S4() -> None:
    pair = Pair(accept=False)
    assert pair.server.phase is Phase.SETUP_RECEIVED
    assert isinstance(pair.server_events[0], SetupReceived)
    events = pair.server.reject_setup(ErrorCode.REJECTED_SETUP, "go away")
    assert events == [ConnectionTerminated(ErrorCode.REJECTED_SETUP, "go away", TerminationCause.LOCAL)]
    pair.pump()
    [ended] = of_type(pair.client_events, ConnectionTerminated)
    assert (ended.error_code, ended.message, ended.cause) == (
        ErrorCode.REJECTED_SETUP,
        "go away",
        TerminationCause.PEER_CLOSED,
    )
    assert not pair.client.established


def test_frames_after_setup_wait_for_acceptance_and_lease_goes_first_S6() -> None:
    from anyio_rsocket.lease import LeaseStrategy

    server = ProtocolConnection(client=False, config=ProtocolConfig(lease_strategy=LeaseStrategy(10.0, 3)))
    setup = SetupFrame(30_000, 90_000, MIME, MIME, lease=True)
    events = server.receive_frames(
        [encode_frame(setup), encode_frame(RequestResponseFrame(1, b"early"))], 0.0
    )
    assert events == [SetupReceived(setup)]
    assert server.data_to_send() == []
    events = server.accept_setup(0.0)
    assert of_type(events, RequestReceived)[0].payload == Payload(b"early")
    assert outbox(server) == [LeaseFrame(10_000, 3)]
    with pytest.raises(LocalProtocolError):
        server.accept_setup(0.0)


def test_client_is_established_by_the_probe_echo_S4() -> None:
    pair = Pair()
    assert pair.client.established
    assert of_type(pair.client_events, ConnectionEstablished) == [ConnectionEstablished()]
    assert pair.sent("c>s", KeepaliveFrame)[0].respond


@pytest.mark.parametrize(
    "answer",
    [LeaseFrame(1000, 1), KeepaliveFrame(False), RequestStreamFrame(2, 1, b"")],
    ids=["lease", "keepalive", "request"],
)
def test_client_counts_lease_keepalive_or_request_as_acceptance_S4(answer: object) -> None:
    client = client_started()
    assert not client.established
    events = client.receive_frames([encode_frame(answer)], 0.0)  # type: ignore[arg-type]
    assert events[0] == ConnectionEstablished() and client.established


def test_setup_errors_only_matter_while_establishing_S10() -> None:
    client = client_started()
    events = client.receive_frames([encode_frame(ErrorFrame(0, ErrorCode.UNSUPPORTED_SETUP, b"no"))], 0.0)
    assert of_type(events, ConnectionTerminated)[0].error_code == ErrorCode.UNSUPPORTED_SETUP  # S7 too
    pair = Pair()
    for code in (ErrorCode.INVALID_SETUP, ErrorCode.REJECTED_SETUP, ErrorCode.REJECTED_RESUME):
        assert pair.inject("client", ErrorFrame(0, code, b"late")) == []
        assert pair.inject("server", ErrorFrame(0, code, b"ignored")) == []
    assert not pair.client.closed and not pair.server.closed


def test_later_setups_are_ignored_by_server_and_client_S9() -> None:
    pair = Pair()
    assert pair.inject("server", GOOD) == []
    assert pair.inject("client", GOOD) == []
    assert not pair.server.closed and not pair.client.closed
    assert pair.server.data_to_send() == []


def test_api_misuse_before_the_connection_starts() -> None:
    client = ProtocolConnection(client=True)
    with pytest.raises(LocalProtocolError, match="initiate"):
        client.request_response(Payload(b""))
    with pytest.raises(LocalProtocolError):
        client.receive_frames([encode_frame(KeepaliveFrame(False))], 0.0)
    server = ProtocolConnection(client=False)
    with pytest.raises(LocalProtocolError):
        server.initiate(0.0)
    with pytest.raises(LocalProtocolError):
        server.request_stream(Payload(b""), 1)
    with pytest.raises(LocalProtocolError, match="must be positive"):
        client.initiate(0.0, SetupFrame(0, 90_000, MIME, MIME))
    with pytest.raises(LocalProtocolError, match="encode"):
        client.initiate(0.0, SetupFrame(1, 1, "\u00e9", MIME))
    client.initiate(0.0)
    with pytest.raises(LocalProtocolError):
        client.initiate(0.0)


# --- stream ids -------------------------------------------------------------------------------


def test_stream_ids_are_odd_for_clients_and_even_for_servers_ID1() -> None:
    pair = Pair()
    assert [pair.client.request_stream(Payload(b""), 1) for _ in range(3)] == [1, 3, 5]
    assert [pair.server.request_stream(Payload(b""), 1) for _ in range(3)] == [2, 4, 6]


def test_stream_ids_wrap_and_skip_ids_in_use_ID2() -> None:
    pair = Pair(ProtocolConfig(max_stream_id=7))
    ids = [pair.client.request_response(Payload(b"")) for _ in range(4)]
    assert ids == [1, 3, 5, 7]
    pair.pump()
    for stream_id in (1, 5, 7):  # 3 stays live
        pair.server.send_payload(stream_id, Payload(b""))
    pair.pump()
    assert [pair.client.request_response(Payload(b"")) for _ in range(3)] == [1, 5, 7]  # 3 skipped
    with pytest.raises(StreamIdsExhaustedError):
        pair.client.request_response(Payload(b""))
    # A fire-and-forget needs a free id too, though it never keeps one.
    with pytest.raises(StreamIdsExhaustedError):
        pair.client.fire_and_forget(Payload(b""))


def test_server_ids_wrap_to_two_ID2() -> None:
    allocator = StreamIdAllocator(is_client=False, max_stream_id=6)
    live: set[int] = set()
    assert [allocator.allocate(live, 0) for _ in range(4)] == [2, 4, 6, 2]
    live = {4}
    assert [allocator.allocate(live, 1) for _ in range(3)] == [6, 2, 6]


def test_duplicate_request_id_is_ignored_ID5() -> None:
    server = server_after_setup()
    first = server.receive_frames([encode_frame(RequestStreamFrame(1, 2, b"original"))], 0.0)
    assert of_type(first, RequestReceived)[0].payload == Payload(b"original")
    assert server.receive_frames([encode_frame(RequestResponseFrame(1, b"duplicate"))], 0.0) == []
    assert server.send_credit(1) == 2  # the live stream is untouched


@pytest.mark.parametrize("stream_id", [0, 2])
def test_request_on_stream_zero_or_own_parity_is_a_connection_error_ID5(stream_id: int) -> None:
    server = server_after_setup()
    events = server.receive_frames([encode_frame(RequestResponseFrame(stream_id, b""))], 0.0)
    [ended] = of_type(events, ConnectionTerminated)
    assert ended.cause is TerminationCause.PEER_VIOLATION
    assert outbox(server)[0] == ErrorFrame(
        0, ErrorCode.CONNECTION_ERROR, f"request on stream {stream_id}, which the peer may not open".encode()
    )


def test_payload_on_stream_zero_or_unknown_ids_is_dropped_U2() -> None:
    server = server_after_setup()
    assert server.receive_frames([encode_frame(PayloadFrame(0, b"x", next=True))], 0.0) == []
    assert server.receive_frames([encode_frame(PayloadFrame(77, b"x", next=True))], 0.0) == []
    assert not server.closed and server.data_to_send() == []
