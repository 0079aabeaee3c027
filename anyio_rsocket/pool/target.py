"""One target of a pool: its connection, its state and the counters a strategy and a user read."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import anyio

from ..peer.connection import RSocket

#: Weight of the newest round trip in a target's latency average.
LATENCY_SMOOTHING = 0.3


class TargetState(Enum):
    """Where a pool's target is."""

    CONNECTING = "connecting"  # the first dial, or a re-dial, is in progress
    CONNECTED = "connected"  # takes new interactions (while its connection is available)
    DOWN = "down"  # lost or unreachable; re-dialled after a backoff delay (if ``reconnect``)
    DRAINING = "draining"  # removed from the target list: finishing what it has, then closing
    CLOSED = "closed"  # gone from the pool


@dataclass(frozen=True)
class TargetStats:
    """A snapshot of one target (see :attr:`~anyio_rsocket.pool.Pool.targets`).

    - ``latency``: moving average of round-trip times in seconds (``None`` before the first);
    - ``outstanding``: interactions in flight (streams and channels until they end);
    - ``requests``: interactions sent to it since the pool started;
    - ``failures``: dials that failed, and connections that were lost;
    - ``last_error``: why it last went down (``None`` if it never did).
    """

    url: str
    state: TargetState
    available: bool
    outstanding: int
    latency: float | None
    requests: int
    connects: int
    failures: int
    last_error: BaseException | None


class Target:
    """A target URL, its connection when it has one, and its counters."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.state = TargetState.CONNECTING
        self.rsocket: RSocket | None = None
        self.outstanding = 0
        self.latency: float | None = None
        self.requests = 0
        self.connects = 0
        self.failures = 0
        self.last_error: BaseException | None = None
        self.removed = False
        self.running = False  # its task is dialling or serving it
        self.first_dial_done = anyio.Event()
        self.changed = anyio.Event()  # wakes the target's task (removed, drained)
        self.scope = anyio.CancelScope()

    @property
    def available(self) -> bool:
        """Takes a new interaction now: connected, not removed, its connection available (not
        detached, not closing, its lease allows a request)."""
        rsocket = self.rsocket
        return (
            self.state is TargetState.CONNECTED
            and not self.removed
            and rsocket is not None
            and rsocket.available
        )

    @property
    def load(self) -> float:
        """What :class:`~.strategies.LeastLoaded` minimises: latency x (outstanding + 1)."""
        return (self.latency or 0.0) * (self.outstanding + 1)

    def observe(self, seconds: float) -> None:
        """Fold one round-trip time into the latency average."""
        latency = self.latency
        self.latency = seconds if latency is None else latency + LATENCY_SMOOTHING * (seconds - latency)

    def wake(self) -> None:
        event, self.changed = self.changed, anyio.Event()
        event.set()

    def stats(self) -> TargetStats:
        return TargetStats(
            self.url,
            self.state,
            self.available,
            self.outstanding,
            self.latency,
            self.requests,
            self.connects,
            self.failures,
            self.last_error,
        )

    def __repr__(self) -> str:
        return f"Target({self.url!r}, {self.state.value}, outstanding={self.outstanding})"
