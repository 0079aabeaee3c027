"""Keepalive bookkeeping (checklist section 10, K1-K3), fed the current time by the driver."""

from __future__ import annotations

import math


def keepalive_plan(
    interval: float,
    lifetime: float,
    send_keepalives: bool,
    lifetime_cap: float | None = None,
    interval_cap: float | None = None,
) -> tuple[float, float, bool]:
    """Our keepalive interval, the silence we tolerate, and whether we send KEEPALIVEs.

    A server holds the client to its caps: silence is judged against the capped lifetime, and if the
    client's own keepalives would come too rarely for that, we send KEEPALIVE(R) often enough that
    its echoes keep the connection alive (the AnyIO peer's rule).
    """
    requested = interval
    capped = False
    if lifetime_cap is not None and lifetime > lifetime_cap:
        lifetime, capped = lifetime_cap, True
    if interval_cap is not None and interval > interval_cap:
        interval, capped = interval_cap, True
    if capped:
        interval = min(interval, lifetime / 2)
    return interval, lifetime, send_keepalives or interval < requested


class KeepaliveClock:
    """When to send the next KEEPALIVE (K1) and when silence becomes fatal (K3).

    Any frame from the peer counts as a sign of life (our K3 rule); :meth:`heard` records it.
    Nothing runs until :meth:`start`.
    """

    __slots__ = ("interval", "last_heard", "lifetime", "next_keepalive", "running", "sending")

    def __init__(self) -> None:
        self.running = False
        self.interval = math.inf
        self.lifetime = math.inf
        self.sending = False
        self.next_keepalive = math.inf
        self.last_heard = 0.0

    def start(self, interval: float, lifetime: float, sending: bool, now: float) -> None:
        self.running = True
        self.interval = interval
        self.lifetime = lifetime
        self.sending = sending
        self.next_keepalive = now + interval if sending else math.inf
        self.last_heard = now

    def stop(self) -> None:
        self.running = False

    def restart(self, now: float) -> None:
        """Start again with the settings of the last :meth:`start` (a resumed session)."""
        self.start(self.interval, self.lifetime, self.sending, now)

    def heard(self, now: float) -> None:
        if now > self.last_heard:
            self.last_heard = now

    @property
    def silence_deadline(self) -> float:
        """When the connection dies unless the peer is heard from (K3)."""
        return self.last_heard + self.lifetime

    def deadline(self) -> float | None:
        if not self.running:
            return None
        return min(self.next_keepalive, self.silence_deadline)

    def poll(self, now: float) -> tuple[bool, bool]:
        """``(expired, send_keepalive)`` at ``now``; a keepalive due now schedules the next one."""
        if not self.running:
            return False, False
        # The same sum as silence_deadline: a driver woken exactly at deadline() must see it due
        # (now - last_heard >= lifetime can be false there by float rounding).
        if now >= self.last_heard + self.lifetime:
            return True, False
        if now >= self.next_keepalive:
            self.next_keepalive = now + self.interval
            return False, True
        return False, False
