"""How a pool picks the target of each interaction: :class:`RoundRobin` and :class:`LeastLoaded`."""

from __future__ import annotations

import random as _random
from collections.abc import Sequence
from typing import Protocol

from .target import Target


class Strategy(Protocol):
    """Chooses one of the available targets (never called with an empty sequence)."""

    def choose(self, targets: Sequence[Target]) -> Target: ...


class RoundRobin:
    """Each available target in turn, in the order the targets were listed."""

    def __init__(self) -> None:
        self._next = 0

    def choose(self, targets: Sequence[Target]) -> Target:
        target = targets[self._next % len(targets)]
        self._next += 1
        return target

    def __repr__(self) -> str:
        return "RoundRobin()"


class LeastLoaded:
    """The better of two random targets by ``latency x (outstanding + 1)`` ("power of two choices").

    ``latency`` is the target's moving average of round-trip times (:attr:`Target.latency`); a
    target with no measurement yet scores as the fastest, so new targets get tried at once. Two
    random candidates rather than the global best keep many clients from stampeding onto the same
    target between measurements.
    """

    def __init__(self, *, rng: _random.Random | None = None) -> None:
        self._random = rng or _random.Random()

    def choose(self, targets: Sequence[Target]) -> Target:
        if len(targets) == 1:
            return targets[0]
        first, second = self._random.sample(list(targets), 2)
        return first if first.load <= second.load else second

    def __repr__(self) -> str:
        return "LeastLoaded()"
