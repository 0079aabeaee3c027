"""Resumable sessions between two sans-IO cores (checklist section 14), with a fake clock.

A :class:`Link` carries frames one at a time, so a transport can be cut after any frame: the
frames still in flight are lost, both cores detach, and the client resumes over a "new
transport" (a fresh server core reads the RESUME, as the AnyIO server does). Whatever the cut,
the application sees every item exactly once and in order.
"""

from __future__ import annotations

import pytest

from anyio_rsocket.errors import ErrorCode
from anyio_rsocket.frames import (
    ErrorFrame,
    KeepaliveFrame,
    PayloadFrame,
    RequestStreamFrame,
    ResumeFrame,
    ResumeOkFrame,
    SetupFrame,
    decode_frame,
    encode_frame,
)
from anyio_rsocket.payload import Payload
from anyio_rsocket.protocol import (
    ConnectionTerminated,
    Event,
    InteractionKind,
    LocalProtocolError,
    Phase,
    ProtocolConfig,
    ProtocolConnection,
    RequestReceived,
    ResumeReceived,
    SessionDetached,
    SessionResumed,
    SetupReceived,
    TerminationCause,
)

from .helpers import of_type

TOKEN = b"session-token-01"
SERVER_CONFIG = ProtocolConfig(resume_store_size=1 << 16, session_duration=30.0)


def resumable_setup(token: bytes = TOKEN, *, lease: bool = False) -> SetupFrame:
    return SetupFrame(
        keepalive_interval=1000,
        max_lifetime=5000,
        metadata_mime_type="application/octet-stream",
        data_mime_type="application/octet-stream",
        resume_token=token,
        lease=lease,
    )


class Link:
    """A client and a server session joined by a transport that delivers one frame per step."""

    def __init__(
        self, client_config: ProtocolConfig | None = None, server_config: ProtocolConfig = SERVER_CONFIG
    ):
        self.now = 0.0
        self.client = ProtocolConnection(
            client=True,
            config=client_config or ProtocolConfig(resume_store_size=1 << 16, session_duration=30.0),
        )
        self.server = ProtocolConnection(client=False, config=server_config)
        self.server_config = server_config
        self.to_server: list[bytes] = []
        self.to_client: list[bytes] = []
        self.client_events: list[Event] = []
        self.server_events: list[Event] = []
        self.client.initiate(self.now, resumable_setup(), probe=False)
        self.collect()
        self.deliver_all()

    def collect(self) -> None:
        """Move what each core queued onto the wire."""
        self.to_server.extend(self.client.data_to_send())
        self.to_client.extend(self.server.data_to_send())
        self.client_events.extend(self.client.pop_events())
        self.server_events.extend(self.server.pop_events())

    def step(self) -> bool:
        """Deliver one frame (server-bound first); False when nothing is in flight."""
        if self.to_server:
            frame = self.to_server.pop(0)
            events = self.server.receive_frames([frame], self.now)
            self.server_events.extend(events)
            if any(isinstance(event, SetupReceived) for event in events):
                self.server_events.extend(self.server.accept_setup(self.now))
        elif self.to_client:
            frame = self.to_client.pop(0)
            self.client_events.extend(self.client.receive_frames([frame], self.now))
        else:
            return False
        self.collect()
        return True

    def deliver_all(self) -> None:
        for _ in range(100_000):
            if not self.step():
                return
        raise AssertionError("the link never went quiet")

    def cut(self) -> None:
        """The transport dies: frames in flight are lost and both sides detach."""
        self.to_server.clear()
        self.to_client.clear()
        self.client_events.extend(self.client.detach(self.now))
        self.server_events.extend(self.server.detach(self.now))

    def resume(self) -> None:
        """The client reconnects: RESUME on a new transport, read by a fresh server core."""
        resume = self.client.resume_frame()
        fresh = ProtocolConnection(client=False, config=self.server_config)
        events = fresh.receive_frames([resume], self.now)
        [request] = of_type(events, ResumeReceived)
        assert request.token == TOKEN
        self.server_events.extend(
            self.server.accept_resume(
                request.last_received_server_position, request.first_available_client_position, self.now
            )
        )
        self.collect()


class StreamApp:
    """Both applications of one request-stream: the client consumes and grants one credit per
    item; the server produces ``count`` items as credit allows. Fire-and-forget and a
    request-response are sent along the way."""

    def __init__(self, link: Link, count: int = 12) -> None:
        self.link = link
        self.count = count
        self.received: list[bytes] = []
        self.complete = False
        self.fnf_seen: list[bytes] = []
        self.next_item = 0
        self.server_stream: int | None = None
        self.rr_answer: list[bytes] = []
        self.cuts_done = 0
        self.server_resumed = 0
        client = link.client
        self.stream_id = client.request_stream(Payload(b"count"), 2, sink=self._on_item)
        client.fire_and_forget(Payload(b"fnf-0"))
        link.collect()

    def _on_item(self, data: bytes, metadata: bytes | None, flags: int) -> None:
        if flags & 0x20:  # N
            self.received.append(data)
            if not flags & 0x40:
                self.link.client.request_n(self.stream_id, 1)
        if flags & 0x40:  # C
            self.complete = True

    def react(self) -> None:
        """Run both applications on what happened since the last call."""
        link = self.link
        for event in link.server_events:
            if isinstance(event, SessionResumed):
                self.server_resumed += 1
            if isinstance(event, RequestReceived):
                if event.kind is InteractionKind.REQUEST_STREAM:
                    self.server_stream = event.stream_id
                elif event.kind is InteractionKind.FIRE_AND_FORGET:
                    self.fnf_seen.append(event.payload.data)
                elif event.kind is InteractionKind.REQUEST_RESPONSE:
                    link.server.send_payload(event.stream_id, Payload(b"answer:" + event.payload.data), True)
        link.server_events.clear()
        sid = self.server_stream
        if sid is not None:
            while self.next_item < self.count and link.server.send_credit(sid) > 0:
                last = self.next_item == self.count - 1
                link.server.send_payload(sid, Payload(str(self.next_item).encode()), complete=last)
                self.next_item += 1
        link.collect()

    def run(self, cut_after: int | None = None, cuts: int = 1) -> None:
        cuts_left = cuts
        for steps in range(100_000):
            self.react()
            if cut_after is not None and cuts_left and steps and steps % cut_after == 0:
                cuts_left -= 1
                self.cuts_done += 1
                self.link.cut()
                # Calls made while detached wait in the store and go out after the resume.
                self.link.client.fire_and_forget(Payload(b"fnf-while-cut-%d" % cuts_left))
                self.react()
                self.link.resume()
                self.react()
            if not self.link.step():
                self.react()
                if not (self.link.to_server or self.link.to_client):
                    return
        raise AssertionError("the interaction never finished")


def expected_items(count: int) -> list[bytes]:
    return [str(i).encode() for i in range(count)]


def test_positions_count_resumable_frames_both_ways_R2() -> None:
    link = Link()
    app = StreamApp(link)
    app.run()
    assert app.received == expected_items(12) and app.complete
    assert link.client.sent_position == link.server.received_position > 0
    assert link.server.sent_position == link.client.received_position > 0


#: Steps (frames delivered) the stream interaction takes without a cut: request, 12 items,
#: 11 REQUEST_N, one fire-and-forget, 1 spare.
INTERACTION_STEPS = 25


@pytest.mark.parametrize("cut_after", range(1, INTERACTION_STEPS))
def test_a_cut_after_any_frame_loses_and_duplicates_nothing_R6(cut_after: int) -> None:
    link = Link()
    app = StreamApp(link)
    app.run(cut_after=cut_after)
    assert app.cuts_done == 1
    assert app.received == expected_items(12)
    assert app.complete
    assert app.fnf_seen == [b"fnf-0", b"fnf-while-cut-0"]
    assert of_type(link.client_events, SessionResumed) and app.server_resumed == 1
    assert not of_type(link.client_events, ConnectionTerminated)


@pytest.mark.parametrize("cut_after", [1, 2, 3, 5, 7])
def test_several_cuts_in_a_row_R6(cut_after: int) -> None:
    link = Link()
    app = StreamApp(link, count=30)
    app.run(cut_after=cut_after, cuts=6)
    assert app.cuts_done == 6 and app.server_resumed == 6
    assert app.received == expected_items(30)
    assert app.fnf_seen == [b"fnf-0", *[b"fnf-while-cut-%d" % n for n in range(5, -1, -1)]]


def test_a_request_made_while_detached_is_answered_after_the_resume_R6() -> None:
    link = Link()
    app = StreamApp(link, count=1)
    app.run()
    link.cut()
    rr = link.client.request_response(Payload(b"hello"), sink=lambda d, m, f: app.rr_answer.append(d))
    link.collect()
    assert not link.to_server  # nothing goes out while detached
    link.resume()
    for _ in range(100):
        app.react()
        if not link.step():
            break
    assert app.rr_answer == [b"answer:hello"]
    assert link.client.stream_state(rr) is None


def test_keepalive_positions_trim_the_store_R3() -> None:
    link = Link()
    app = StreamApp(link, count=20)
    app.run()
    assert link.server.unconfirmed_bytes > 0
    link.now += 1.0  # the client's keepalive is due: it carries the client's received position
    link.client_events.extend(link.client.handle_timer(link.now))
    link.collect()
    link.deliver_all()
    assert link.server.unconfirmed_bytes == 0  # everything it sent was confirmed
    assert link.client.unconfirmed_bytes == 0  # the echo confirmed the client's frames too


def test_a_full_store_stops_producers_until_the_peer_confirms_R3() -> None:
    config = ProtocolConfig(resume_store_size=64, session_duration=30.0)
    link = Link(server_config=config)
    stream = link.client.request_stream(Payload(b"s"), 1000)
    link.collect()
    link.deliver_all()
    server = link.server
    [request] = of_type(link.server_events, RequestReceived)
    sent = 0
    while server.store_has_room():
        server.send_payload(request.stream_id, Payload(b"x" * 10))
        sent += 1
    assert 64 <= server.unconfirmed_bytes < 64 + 16  # over by at most the last frame
    frames = [decode_frame(f) for f in server.data_to_send()]
    # Past half full the server asked for the client's position (KEEPALIVE with R).
    assert any(isinstance(f, KeepaliveFrame) and f.respond for f in frames)
    link.to_client.extend(encode_frame(f) for f in frames)
    link.deliver_all()
    # The echo confirmed what was sent before the question; the rest waits for the next one.
    assert server.store_has_room() and 0 < server.unconfirmed_bytes <= 32
    assert link.client.recv_credit(stream) == 1000 - sent


def test_a_single_frame_larger_than_the_store_still_goes_out() -> None:
    config = ProtocolConfig(resume_store_size=16, session_duration=30.0)
    link = Link(server_config=config)
    link.client.request_stream(Payload(b"s"), 10)
    link.collect()
    link.deliver_all()
    [request] = of_type(link.server_events, RequestReceived)
    assert link.server.store_has_room()
    link.server.send_payload(request.stream_id, Payload(b"y" * 100))
    assert not link.server.store_has_room()


def test_a_detached_session_expires_after_its_duration_R8() -> None:
    link = Link()
    link.cut()
    assert link.server.detached and link.server.next_deadline() == pytest.approx(30.0)
    link.now = 29.9
    assert not of_type(link.server.handle_timer(link.now), ConnectionTerminated)
    link.now = 30.0
    [ended] = of_type(link.server.handle_timer(link.now), ConnectionTerminated)
    assert ended.cause is TerminationCause.RESUME_REJECTED
    assert ended.error_code == ErrorCode.REJECTED_RESUME
    [client_end] = of_type(link.client.handle_timer(link.now), ConnectionTerminated)
    assert client_end.cause is TerminationCause.RESUME_REJECTED


def test_a_failed_attempt_keeps_the_original_deadline() -> None:
    link = Link()
    link.now = 10.0
    link.cut()
    link.client.resume_frame()
    link.now = 15.0
    link.client.detach(link.now)  # the new transport died before RESUME_OK
    assert link.client.next_deadline() == pytest.approx(40.0)


def test_silence_on_a_resumable_session_detaches_instead_of_closing() -> None:
    link = Link()
    link.now = 5.0  # the client's max lifetime with nothing heard
    events = link.server.handle_timer(link.now)
    assert of_type(events, SessionDetached) and not of_type(events, ConnectionTerminated)
    assert link.server.detached and link.server.phase is Phase.OPEN


def test_the_server_refuses_positions_it_cannot_replay_R5() -> None:
    link = Link()
    app = StreamApp(link)
    app.run()
    link.cut()
    link.server.data_to_send()
    events = link.server.accept_resume(link.server.sent_position + 6, 0, link.now)
    [ended] = of_type(events, ConnectionTerminated)
    assert ended.cause is TerminationCause.RESUME_REJECTED
    [error] = [decode_frame(f) for f in link.server.data_to_send()]
    assert isinstance(error, ErrorFrame) and error.error_code == ErrorCode.REJECTED_RESUME


def test_the_server_refuses_a_client_that_dropped_frames_it_still_needs_R5() -> None:
    link = Link()
    link.cut()
    events = link.server.accept_resume(0, link.server.received_position + 1, link.now)
    assert of_type(events, ConnectionTerminated)[0].cause is TerminationCause.RESUME_REJECTED


def test_a_client_told_rejected_resume_ends_the_session_R7() -> None:
    link = Link()
    link.cut()
    link.client.resume_frame()
    answer = encode_frame(ErrorFrame(0, ErrorCode.REJECTED_RESUME, b"unknown session"))
    [ended] = of_type(link.client.receive_frames([answer], link.now), ConnectionTerminated)
    assert ended.cause is TerminationCause.RESUME_REJECTED and "unknown session" in ended.message


def test_a_client_answered_with_anything_but_resume_ok_gives_up_R4() -> None:
    link = Link()
    link.cut()
    link.client.resume_frame()
    answer = encode_frame(KeepaliveFrame(False))
    [ended] = of_type(link.client.receive_frames([answer], link.now), ConnectionTerminated)
    assert ended.cause is TerminationCause.RESUME_REJECTED
    [error] = [decode_frame(f) for f in link.client.data_to_send()]
    assert isinstance(error, ErrorFrame) and error.error_code == ErrorCode.CONNECTION_ERROR


def test_a_client_refuses_resume_ok_at_a_position_it_no_longer_holds_R6() -> None:
    link = Link()
    app = StreamApp(link)
    app.run()
    link.cut()
    link.client.resume_frame()
    answer = encode_frame(ResumeOkFrame(link.client.sent_position + 100))
    assert of_type(link.client.receive_frames([answer], link.now), ConnectionTerminated)


def test_unknown_token_gets_rejected_resume_R5() -> None:
    fresh = ProtocolConnection(client=False, config=SERVER_CONFIG)
    fresh.receive_frames([encode_frame(ResumeFrame(b"nobody", 0, 0))], 0.0)
    assert fresh.phase is Phase.RESUME_RECEIVED
    fresh.reject_resume("no such session")
    [error] = [decode_frame(f) for f in fresh.data_to_send()]
    assert isinstance(error, ErrorFrame) and error.error_code == ErrorCode.REJECTED_RESUME
    assert fresh.closed


def test_resume_with_swapped_version_fields_is_accepted_R4() -> None:
    # rsocket-js 1.0.0-alpha.3 writes RESUME as version 0.1.
    fresh = ProtocolConnection(client=False, config=SERVER_CONFIG)
    events = fresh.receive_frames([encode_frame(ResumeFrame(TOKEN, 0, 0, 0, 1))], 0.0)
    assert of_type(events, ResumeReceived)


def test_resume_with_an_unknown_version_is_rejected() -> None:
    fresh = ProtocolConnection(client=False, config=SERVER_CONFIG)
    fresh.receive_frames([encode_frame(ResumeFrame(TOKEN, 0, 0, 2, 0))], 0.0)
    [error] = [decode_frame(f) for f in fresh.data_to_send()]
    assert isinstance(error, ErrorFrame) and error.error_code == ErrorCode.REJECTED_RESUME


def test_a_server_without_resumption_rejects_resume_and_resumable_setup_S7_R5() -> None:
    plain = ProtocolConnection(client=False)
    plain.receive_frames([encode_frame(ResumeFrame(TOKEN, 0, 0))], 0.0)
    [error] = [decode_frame(f) for f in plain.data_to_send()]
    assert isinstance(error, ErrorFrame) and error.error_code == ErrorCode.REJECTED_RESUME
    plain = ProtocolConnection(client=False)
    plain.receive_frames([encode_frame(resumable_setup())], 0.0)
    [error] = [decode_frame(f) for f in plain.data_to_send()]
    assert isinstance(error, ErrorFrame) and error.error_code == ErrorCode.REJECTED_SETUP


def test_a_resume_enabled_server_still_accepts_plain_setup_R1() -> None:
    server = ProtocolConnection(client=False, config=SERVER_CONFIG)
    setup = SetupFrame(1000, 5000, "application/octet-stream", "application/octet-stream")
    assert of_type(server.receive_frames([encode_frame(setup)], 0.0), SetupReceived)
    server.accept_setup(0.0)
    assert not server.resumable


def test_resume_with_lease_is_refused_both_sides_R8() -> None:
    client = ProtocolConnection(client=True, config=ProtocolConfig(lease=True))
    with pytest.raises(LocalProtocolError):
        client.initiate(0.0, resumable_setup(lease=True))
    server = ProtocolConnection(client=False, config=SERVER_CONFIG)
    server.receive_frames([encode_frame(resumable_setup(lease=True))], 0.0)
    [error] = [decode_frame(f) for f in server.data_to_send()]
    assert isinstance(error, ErrorFrame) and error.error_code == ErrorCode.UNSUPPORTED_SETUP


def test_resume_after_setup_is_a_connection_error_R7() -> None:
    link = Link()
    link.to_server.append(encode_frame(ResumeFrame(TOKEN, 0, 0)))
    link.deliver_all()
    [ended] = of_type(link.server_events, ConnectionTerminated)
    assert ended.cause is TerminationCause.PEER_VIOLATION


def test_a_keepalive_confirming_more_than_was_sent_is_a_violation_R3() -> None:
    link = Link()
    link.to_server.append(encode_frame(KeepaliveFrame(False, 10_000)))
    link.deliver_all()
    assert of_type(link.server_events, ConnectionTerminated)[0].cause is TerminationCause.PEER_VIOLATION


def test_a_resumable_server_sends_keepalives_with_its_position() -> None:
    link = Link()
    app = StreamApp(link, count=3)
    app.run()
    link.now = 1.0
    link.server.handle_timer(link.now)
    frames = [decode_frame(f) for f in link.server.data_to_send()]
    [keepalive] = [f for f in frames if isinstance(f, KeepaliveFrame)]
    assert keepalive.respond and keepalive.last_received_position == link.server.received_position


def test_only_resumable_sessions_detach() -> None:
    plain = ProtocolConnection(client=True)
    plain.initiate(0.0)
    with pytest.raises(LocalProtocolError):
        plain.detach(0.0)
    with pytest.raises(LocalProtocolError):
        plain.resume_frame()
    link = Link()
    with pytest.raises(LocalProtocolError):
        link.client.resume_frame()  # not detached


def test_frames_of_a_fragmented_item_are_replayed_whole_R2() -> None:
    config = ProtocolConfig(resume_store_size=1 << 16, session_duration=30.0, fragment_size=64)
    link = Link(server_config=config)
    received: list[bytes] = []
    stream = link.client.request_stream(Payload(b"s"), 5, sink=lambda d, m, f: received.append(d))
    link.collect()
    link.deliver_all()
    [request] = of_type(link.server_events, RequestReceived)
    link.server.send_payload(request.stream_id, Payload(b"z" * 300))
    link.collect()
    link.step()
    link.step()  # two fragments arrived, the rest is lost
    link.cut()
    link.resume()
    link.deliver_all()
    assert received == [b"z" * 300]
    assert link.client.recv_credit(stream) == 4
    assert not any(isinstance(decode_frame(f), RequestStreamFrame) for f in link.to_server)
    assert not any(isinstance(decode_frame(f), PayloadFrame) for f in link.to_client)
