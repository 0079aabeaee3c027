"""Lease accounting (checklist section 9, L1-L4, S6), sans-IO: callers pass the current time.

With leasing negotiated in SETUP, a requester may only send as many requests as the peer's latest
LEASE allows, within its time-to-live. :class:`LeaseAllowance` tracks one direction's allowance; a
:class:`LeaseStrategy` decides which leases a responder grants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .frames import MAX_31, LeaseFrame


@dataclass(frozen=True)
class Lease:
    """A grant of ``number_of_requests`` requests for ``ttl`` seconds, with optional metadata."""

    ttl: float
    number_of_requests: int
    metadata: bytes | None = None

    def __post_init__(self) -> None:
        if self.ttl < 0 or self.number_of_requests < 0:
            raise ValueError("a lease's ttl and number_of_requests must not be negative")

    def to_frame(self) -> LeaseFrame:
        """The LEASE frame announcing this lease (values clamped to 31 bits)."""
        return LeaseFrame(
            min(MAX_31, round(self.ttl * 1000)), min(MAX_31, self.number_of_requests), self.metadata
        )


class LeaseStrategy:
    """Decides the leases a responder grants: ``next_lease()`` is called every ``refresh_interval``.

    The default implementation grants the same fixed lease each time; pass ``issue`` to compute
    leases dynamically (for example from current load).
    """

    def __init__(
        self,
        ttl: float = 30.0,
        number_of_requests: int = MAX_31,
        *,
        refresh_interval: float | None = None,
        issue: Callable[[], Lease] | None = None,
    ) -> None:
        self._fixed = Lease(ttl, number_of_requests)
        self._issue = issue
        # Refresh a little before expiry so a busy requester never sees a gap.
        self.refresh_interval = refresh_interval if refresh_interval is not None else max(0.01, ttl * 0.8)
        if self.refresh_interval <= 0:
            raise ValueError("refresh_interval must be positive")

    def next_lease(self) -> Lease:
        """The lease to grant now."""
        return self._issue() if self._issue is not None else self._fixed


#: A strategy that never limits the peer in practice (used when the user asks for none).
def unlimited_lease_strategy() -> LeaseStrategy:
    """A lease of 2^31-1 requests for a day, refreshed hourly."""
    return LeaseStrategy(ttl=86_400.0, number_of_requests=MAX_31, refresh_interval=3_600.0)


class LeaseAllowance:
    """One direction's current allowance: replaced by each new lease (L1), spent per request (L2)."""

    __slots__ = ("expires_at", "received", "remaining")

    def __init__(self) -> None:
        self.received = False
        self.remaining = 0
        self.expires_at = 0.0

    def grant(self, ttl_ms: int, number_of_requests: int, now: float) -> None:
        """A new lease replaces the previous one entirely (L1); TTL counts from reception."""
        self.received = True
        self.remaining = number_of_requests
        self.expires_at = now + ttl_ms / 1000

    def available(self, now: float) -> bool:
        """Whether one more request is allowed now (L2, L4: TTL or count 0 stops requests)."""
        return self.remaining > 0 and now < self.expires_at

    def try_spend(self, now: float) -> bool:
        """Spend one request if allowed; every request type counts once (L2, FG5)."""
        if not self.available(now):
            return False
        self.remaining -= 1
        return True
