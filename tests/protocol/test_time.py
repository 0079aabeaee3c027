"""Keepalive (section 10) and lease (section 9) against a float clock: no sleeps, no event loop."""

from __future__ import annotations

import pytest

from anyio_rsocket.errors import ErrorCode
from anyio_rsocket.frames import (
    ErrorFrame,
    KeepaliveFrame,
    LeaseFrame,
    RequestFireAndForgetFrame,
    RequestResponseFrame,
    encode_frame,
)
from anyio_rsocket.lease import LeaseStrategy
from anyio_rsocket.payload import Payload
from anyio_rsocket.protocol import (
    ConnectionTerminated,
    InteractionKind,
    KeepaliveReceived,
    LeaseReceived,
    LeaseRefusedError,
    LocalProtocolError,
    ProtocolConfig,
    RequestReceived,
    RequestRejected,
    TerminationCause,
)

from .helpers import Pair, client_started, of_type, outbox, server_after_setup

FAST = ProtocolConfig(keepalive_interval=20.0, max_lifetime=50.0)


def test_client_sends_keepalive_every_interval_K1() -> None:
    pair = Pair(FAST)
    assert pair.client.next_deadline() == 20.0
    assert pair.server.next_deadline() == 50.0  # the server only watches for silence (K3)
    pair.clear()
    for tick in (20.0, 40.0, 60.0):
        pair.advance(tick - pair.now)
        pair.pump()
        assert pair.client.next_deadline() == tick + 20.0
    assert pair.sent("c>s", KeepaliveFrame) == [KeepaliveFrame(True)] * 3
    assert pair.sent("s>c", KeepaliveFrame) == [KeepaliveFrame(False)] * 3  # K2 echoes
    assert not pair.client.closed and not pair.server.closed


def test_server_sends_keepalives_only_when_asked_K1() -> None:
    quiet = Pair(FAST)
    quiet.clear()
    quiet.advance(20.0)
    assert quiet.server.data_to_send() == []
    chatty = Pair(FAST, ProtocolConfig(send_keepalives=True))
    chatty.clear()
    chatty.advance(20.0)
    assert outbox(chatty.server) == [KeepaliveFrame(True)]


def test_keepalive_echo_is_identical_and_answers_are_never_answered_K2() -> None:
    server = server_after_setup()
    events = server.receive_frames([encode_frame(KeepaliveFrame(True, 0, b"\x00data\xff"))], 1.0)
    assert events == [KeepaliveReceived(b"\x00data\xff", True)]
    assert outbox(server) == [KeepaliveFrame(False, 0, b"\x00data\xff")]
    server.receive_frames([encode_frame(KeepaliveFrame(False, 0, b"echo"))], 1.0)
    assert server.data_to_send() == []


def test_silence_for_max_lifetime_terminates_K3() -> None:
    pair = Pair(FAST)
    pair.clear()
    # The server falls silent: the client's timers run, nothing is delivered.
    pair.now = 20.0
    pair.client.handle_timer(pair.now)
    pair.now = 40.0
    pair.client.handle_timer(pair.now)
    assert pair.client.next_deadline() == 50.0  # K3: last heard at 0 plus 50 s of lifetime
    assert pair.client.handle_timer(49.999) == []
    events = pair.client.handle_timer(50.0)
    assert events == [
        ConnectionTerminated(
            ErrorCode.CONNECTION_CLOSE,
            "no frame from the peer for 50 s (its keepalive lifetime)",
            TerminationCause.TIMEOUT,
        )
    ]
    assert pair.client.next_deadline() is None
    assert outbox(pair.client) == [KeepaliveFrame(True), KeepaliveFrame(True)]  # no ERROR for a silent peer


def test_any_frame_from_the_peer_resets_the_silence_deadline_K3() -> None:
    server = server_after_setup(ProtocolConfig())
    assert server.next_deadline() == 90.0
    server.receive_frames([encode_frame(KeepaliveFrame(False))], 70.0)
    assert server.next_deadline() == 160.0
    server.mark_alive(100.0)  # a driver that paused reading itself
    assert server.next_deadline() == 190.0
    assert of_type(server.handle_timer(190.0), ConnectionTerminated)[0].cause is TerminationCause.TIMEOUT


def test_server_caps_lifetime_and_keeps_the_client_alive_with_its_own_keepalives() -> None:
    pair = Pair(
        ProtocolConfig(keepalive_interval=20.0, max_lifetime=90.0), ProtocolConfig(max_lifetime_cap=10.0)
    )
    assert pair.server.next_deadline() == 5.0  # capped: interval min(20, 10 / 2), sent by the server
    pair.clear()
    for _ in range(8):
        pair.advance(5.0)
        pair.pump()
    assert not pair.server.closed and not pair.client.closed
    assert len(pair.sent("s>c", KeepaliveFrame)) >= 8


# --- lease ------------------------------------------------------------------------------------


def _leased_pair(strategy: LeaseStrategy) -> Pair:
    return Pair(ProtocolConfig(lease=True), ProtocolConfig(lease_strategy=strategy))


def test_no_request_goes_out_before_the_first_lease_S6_L2() -> None:
    client = client_started(lease=True)
    with pytest.raises(LeaseRefusedError, match="no LEASE received"):
        client.request_response(Payload(b"too early"))
    with pytest.raises(LeaseRefusedError):
        client.fire_and_forget(Payload(b"too early"))
    assert client.data_to_send() == [] and client.stream_ids() == []
    client.receive_frames([encode_frame(LeaseFrame(1000, 1))], 0.0)
    client.request_response(Payload(b"now"))


def test_responder_leases_go_out_first_on_both_sides_S6() -> None:
    pair = _leased_pair(LeaseStrategy(ttl=10.0, number_of_requests=5))
    assert isinstance(pair.sent("s>c")[0], LeaseFrame)  # the server's first frame
    assert [type(f).__name__ for f in pair.sent("c>s")][:2] == ["SetupFrame", "LeaseFrame"]
    assert of_type(pair.client_events, LeaseReceived) == [LeaseReceived(10.0, 5, None)]
    assert pair.client.lease_enabled and pair.server.lease_enabled


def test_requests_beyond_the_lease_are_refused_locally_L2() -> None:
    pair = _leased_pair(LeaseStrategy(ttl=10.0, number_of_requests=2))
    pair.client.request_response(Payload(b"1"))
    pair.client.request_stream(Payload(b"2"), 1)
    with pytest.raises(LeaseRefusedError, match="allows no more requests"):
        pair.client.request_channel(Payload(b"3"), 1)
    pair.client.metadata_push(b"not a request")  # L2: METADATA_PUSH is not counted


def test_lease_expiry_refuses_requests_L1_L4() -> None:
    pair = _leased_pair(LeaseStrategy(ttl=10.0, number_of_requests=100, refresh_interval=1000.0))
    pair.client.request_response(Payload(b"in time"), now=9.9)
    with pytest.raises(LeaseRefusedError):
        pair.client.request_response(Payload(b"late"), now=10.0)


def test_requests_beyond_the_lease_are_rejected_remotely_L3() -> None:
    server = server_after_setup(
        ProtocolConfig(lease_strategy=LeaseStrategy(ttl=10.0, number_of_requests=1)), lease=True
    )
    events = server.receive_frames(
        [
            encode_frame(RequestResponseFrame(1, b"ok")),
            encode_frame(RequestResponseFrame(3, b"over")),
            encode_frame(RequestFireAndForgetFrame(5, b"over too")),
        ],
        1.0,
    )
    assert [type(e) for e in events] == [RequestReceived, RequestRejected, RequestRejected]
    reason = "request exceeds the lease granted to the requester"
    assert events[1] == RequestRejected(InteractionKind.REQUEST_RESPONSE, 3, reason, True)
    assert events[2] == RequestRejected(InteractionKind.FIRE_AND_FORGET, 5, reason, False)
    assert outbox(server) == [ErrorFrame(3, ErrorCode.REJECTED, reason.encode())]  # IX3: FNF unanswered
    # After the TTL everything is refused, whatever the count (L1, L4).
    server.send_lease(10.0, 5, now=2.0)
    events = server.receive_frames([encode_frame(RequestResponseFrame(7, b"late"))], 12.5)
    assert of_type(events, RequestRejected)[0].stream_id == 7


def test_a_newer_lease_replaces_the_old_allowance_L1() -> None:
    pair = _leased_pair(LeaseStrategy(ttl=60.0, number_of_requests=100, refresh_interval=1000.0))
    pair.server.send_lease(60.0, 1, b"lease-md")
    pair.pump()
    assert LeaseReceived(60.0, 1, b"lease-md") in pair.client_events
    pair.client.request_response(Payload(b"1"))
    with pytest.raises(LeaseRefusedError):
        pair.client.request_response(Payload(b"2"))


def test_leases_are_renewed_on_the_strategy_schedule() -> None:
    pair = _leased_pair(LeaseStrategy(ttl=10.0, number_of_requests=1, refresh_interval=8.0))
    assert pair.server.next_deadline() == 8.0
    pair.client.request_response(Payload(b"1"))
    pair.advance(8.0)
    pair.pump()
    assert len(pair.sent("s>c", LeaseFrame)) == 2
    pair.client.request_response(Payload(b"2"), now=pair.now)


def test_send_lease_needs_negotiated_leasing() -> None:
    pair = Pair()
    with pytest.raises(LocalProtocolError, match="negotiated"):
        pair.server.send_lease(1.0, 1)
    # A stray LEASE changes nothing when leasing was not negotiated.
    assert pair.inject("client", LeaseFrame(1000, 0)) == []
    pair.client.request_response(Payload(b"fine"))


def test_silence_is_due_exactly_at_its_deadline_despite_float_rounding_K3() -> None:
    """A driver woken at deadline() must find the silence due ((0.7 + 0.1) - 0.7 < 0.1 in floats)."""
    from anyio_rsocket.protocol.keepalive import KeepaliveClock

    clock = KeepaliveClock()
    clock.start(10.0, 0.1, False, 0.7)
    deadline = clock.deadline()
    assert deadline is not None and deadline - 0.7 < 0.1  # the rounding this guards against
    assert clock.poll(deadline) == (True, False)
