"""Drive two sans-IO cores against each other (aioquic's test habit): no event loop, a float clock."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar, overload

from anyio_rsocket.errors import FrameError
from anyio_rsocket.frames import Frame, SetupFrame, decode_frame, encode_frame
from anyio_rsocket.protocol import (
    Event,
    ProtocolConfig,
    ProtocolConnection,
    SetupReceived,
)

E = TypeVar("E", bound=Event)
F = TypeVar("F")


class Pair:
    """A client and a server core wired back to back.

    ``pump()`` moves queued frames both ways until both sides are quiet; events land in
    ``client_events`` / ``server_events``; every frame that crossed is kept in ``wire`` as
    ``("c>s" | "s>c", decoded frame)``.
    """

    def __init__(
        self,
        client_config: ProtocolConfig | None = None,
        server_config: ProtocolConfig | None = None,
        *,
        setup: SetupFrame | None = None,
        now: float = 0.0,
        accept: bool = True,
        probe: bool = True,
    ) -> None:
        self.now = now
        self.client = ProtocolConnection(client=True, config=client_config)
        self.server = ProtocolConnection(client=False, config=server_config)
        self.client_events: list[Event] = []
        self.server_events: list[Event] = []
        self.wire: list[tuple[str, Frame]] = []
        self.accept = accept
        self.client.initiate(now, setup, probe=probe)
        self.pump()

    # --- moving frames -------------------------------------------------------------------------

    def pump(self, rounds: int = 1000, drop: Callable[[str, bytes], bool] | None = None) -> None:
        """Shuttle frames until neither side has anything to send (``drop`` may lose some)."""
        for _ in range(rounds):
            self.client_events.extend(self.client.pop_events())
            self.server_events.extend(self.server.pop_events())
            to_server = self.client.data_to_send()
            to_client = self.server.data_to_send()
            if not to_server and not to_client:
                return
            if to_server:
                self._deliver("c>s", to_server, drop)
            if to_client:
                self._deliver("s>c", to_client, drop)
        raise AssertionError("the cores never went quiet")

    def _deliver(
        self, direction: str, frames: list[bytes], drop: Callable[[str, bytes], bool] | None
    ) -> None:
        if drop is not None:
            frames = [frame for frame in frames if not drop(direction, frame)]
        for frame in frames:
            with contextlib.suppress(FrameError):  # a malformed frame a test sent on purpose
                self.wire.append((direction, decode_frame(frame)))
        if direction == "c>s":
            events = self.server.receive_frames(frames, self.now)
            self.server_events.extend(events)
            if self.accept and any(isinstance(event, SetupReceived) for event in events):
                self.server_events.extend(self.server.accept_setup(self.now))
        else:
            self.client_events.extend(self.client.receive_frames(frames, self.now))

    def inject(self, to: str, *frames: Frame | bytes) -> list[Event]:
        """Hand raw frames (as a hostile peer would send them) to ``"client"`` or ``"server"``."""
        encoded = [frame if isinstance(frame, bytes) else encode_frame(frame) for frame in frames]
        if to == "client":
            events = self.client.receive_frames(encoded, self.now)
            self.client_events.extend(events)
        else:
            events = self.server.receive_frames(encoded, self.now)
            self.server_events.extend(events)
        return events

    def advance(self, seconds: float) -> None:
        """Move the clock and run both cores' timers (without pumping)."""
        self.now += seconds
        self.client_events.extend(self.client.handle_timer(self.now))
        self.server_events.extend(self.server.handle_timer(self.now))

    # --- looking at what happened --------------------------------------------------------------

    @overload
    def sent(self, direction: str) -> list[Frame]: ...
    @overload
    def sent(self, direction: str, kind: type[F]) -> list[F]: ...
    def sent(self, direction: str, kind: type[Any] | None = None) -> list[Any]:
        """Frames that crossed in ``direction`` ("c>s" or "s>c"), optionally of one type."""
        return [f for d, f in self.wire if d == direction and (kind is None or isinstance(f, kind))]

    def take(self, side: str) -> list[Event]:
        """Return and forget the events collected on ``"client"`` or ``"server"``."""
        if side == "client":
            events, self.client_events = self.client_events, []
        else:
            events, self.server_events = self.server_events, []
        return events

    def clear(self) -> None:
        self.client_events.clear()
        self.server_events.clear()
        self.wire.clear()


def of_type(events: list[Event], kind: type[E]) -> list[E]:
    return [event for event in events if isinstance(event, kind)]


def outbox(conn: ProtocolConnection) -> list[Frame]:
    """Decode (and take) what ``conn`` queued."""
    return [decode_frame(frame) for frame in conn.data_to_send()]


def server_after_setup(config: ProtocolConfig | None = None, *, lease: bool = False) -> ProtocolConnection:
    """A server core that received and accepted a plain SETUP at time 0 (for raw-frame tests)."""
    server = ProtocolConnection(client=False, config=config)
    setup = SetupFrame(30_000, 90_000, "application/octet-stream", "application/octet-stream", lease=lease)
    events = server.receive_frames([encode_frame(setup)], 0.0)
    assert any(isinstance(event, SetupReceived) for event in events)
    server.accept_setup(0.0)
    server.data_to_send()
    server.pop_events()
    return server


def client_started(config: ProtocolConfig | None = None, *, lease: bool = False) -> ProtocolConnection:
    """A client core that sent SETUP (no probe) at time 0, its outbox emptied."""
    client = ProtocolConnection(client=True, config=config)
    setup = SetupFrame(30_000, 90_000, "application/octet-stream", "application/octet-stream", lease=lease)
    client.initiate(0.0, setup, probe=False)
    client.data_to_send()
    return client
