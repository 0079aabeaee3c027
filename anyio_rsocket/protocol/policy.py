"""Policies a user configures once: retry backoff and session resumption (pure values, no I/O).

:class:`Backoff` computes delays; whoever sleeps (the AnyIO peer's reconnect loop, a load
balancer's re-dial) supplies the clock and the randomness. :class:`Resume` describes a resumable
session; the core keeps its store of sent frames within ``store_size``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: ``initial``, then times ``multiplier`` each attempt, at most
    ``maximum`` seconds, each delay moved by up to ``jitter`` of itself either way.

    ``max_attempts`` (``None``: no limit) bounds how many delays :meth:`delays` yields; after that
    the caller gives up. Used for resume retries, ``reconnect=`` and re-dialling pool targets.
    """

    initial: float
    maximum: float
    multiplier: float = 2.0
    jitter: float = 0.2
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError("Backoff needs 0 < initial <= maximum")
        if self.multiplier < 1:
            raise ValueError("Backoff multiplier must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("Backoff jitter must be between 0 and 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("Backoff max_attempts must be positive (or None)")

    def delay(self, attempt: int, sample: float = 0.5) -> float:
        """The delay before retry number ``attempt`` (0-based); ``sample`` in [0, 1) picks the jitter
        (0.5 means none)."""
        base = min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))
        return max(0.0, base * (1 + self.jitter * (2 * sample - 1)))

    def delays(self, random: Callable[[], float]) -> Iterator[float]:
        """Every delay in turn (``max_attempts`` of them, or without end), jittered by ``random()``."""
        attempt = 0
        while self.max_attempts is None or attempt < self.max_attempts:
            yield self.delay(attempt, random())
            attempt += 1


def _new_token() -> bytes:
    return os.urandom(16)


@dataclass(frozen=True, slots=True)
class Resume:
    """A resumable session (checklist section 14).

    - ``session_duration``: how long a detached session is kept (server) or retried (client)
      before it is given up and every call raises ``RejectedResumeError``.
    - ``store_size``: bytes of sent frames kept until the peer confirms them. When the store is
      full, producers wait as they wait on a full socket; nothing is ever evicted, so a resume
      within ``session_duration`` cannot fail for lack of frames.
    - ``retry``: the client's backoff between attempts to reconnect and resume.
    - ``token``: the session's identity; ``None`` (the default) draws 16 random bytes, which is
      what makes a token unguessable. At most 65,535 bytes.
    """

    session_duration: float = 60.0
    store_size: int = 1 << 20
    retry: Backoff = field(default_factory=lambda: Backoff(initial=0.05, maximum=10.0))
    token: bytes | None = None

    def __post_init__(self) -> None:
        if self.token is None:
            object.__setattr__(self, "token", _new_token())  # frozen: set once, here
        assert self.token is not None
        if self.session_duration <= 0:
            raise ValueError("session_duration must be positive")
        if self.store_size < 1:
            raise ValueError("store_size must be positive")
        if not 0 < len(self.token) <= 0xFFFF:
            raise ValueError("a resume token must be 1 to 65,535 bytes")
