"""Both directions of leasing (checklist section 9, S6), on top of :mod:`anyio_rsocket.lease`."""

from __future__ import annotations

import math

from ..wire.frames import LeaseFrame
from ..wire.lease import Lease, LeaseAllowance, LeaseStrategy, unlimited_lease_strategy


class LeaseBook:
    """What the peer allows us (``received``), what we allow the peer (``granted``), and when we renew.

    With leasing negotiated, our responder grants the strategy's lease at establishment (S6) and
    again every ``refresh_interval``; ``strategy`` None means an unlimited lease (as the AnyIO peer).
    """

    __slots__ = ("_strategy", "enabled", "granted", "next_refresh", "received")

    def __init__(self) -> None:
        self.enabled = False
        self.received = LeaseAllowance()
        self.granted = LeaseAllowance()
        self.next_refresh = math.inf
        self._strategy: LeaseStrategy | None = None

    def start(self, strategy: LeaseStrategy | None, now: float) -> LeaseFrame:
        """Leasing was negotiated: the first LEASE we grant (queue it before any answer, S4/S6)."""
        self.enabled = True
        self._strategy = strategy or unlimited_lease_strategy()
        return self.issue(self._strategy.next_lease(), now)

    def issue(self, lease: Lease, now: float) -> LeaseFrame:
        """Grant ``lease`` to the peer now (it replaces the previous one, L1); return its frame."""
        frame = lease.to_frame()
        self.granted.grant(frame.ttl, frame.number_of_requests, now)
        if self._strategy is not None:
            self.next_refresh = now + self._strategy.refresh_interval
        return frame

    def deadline(self) -> float | None:
        return self.next_refresh if self.enabled and self.next_refresh < math.inf else None

    def poll(self, now: float) -> LeaseFrame | None:
        """The renewal LEASE due at ``now``, if any."""
        if not self.enabled or self._strategy is None or now < self.next_refresh:
            return None
        return self.issue(self._strategy.next_lease(), now)

    def stop(self) -> None:
        self.next_refresh = math.inf
