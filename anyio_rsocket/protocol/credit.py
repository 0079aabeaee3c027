"""Request-n credit (checklist section 8): one type for both directions of every stream."""

from __future__ import annotations

from ..wire.frames import MAX_REQUEST_N


class Credit:
    """Items one side may still send on a stream.

    - grants are additive and never withdrawn (RN1);
    - a total reaching 2^31-1 saturates there and then means "unbounded": consuming no longer
      decreases it and further grants add nothing (RN4);
    - a zero or negative grant is ignored (RN6, our rule);
    - :meth:`consume` spends one item (only PAYLOADs with N cost credit, RN2).
    """

    __slots__ = ("value",)

    def __init__(self, initial: int = 0) -> None:
        # As grant(initial) on zero credit, without the call (two Credits per stream).
        self.value = initial if 0 <= initial <= MAX_REQUEST_N else (0 if initial < 0 else MAX_REQUEST_N)

    @property
    def unbounded(self) -> bool:
        """True once the credit saturated at 2^31-1 (RN4)."""
        return self.value >= MAX_REQUEST_N

    @property
    def available(self) -> bool:
        """Whether one more item may be sent now."""
        return self.value > 0

    def grant(self, n: int) -> int:
        """Add ``n`` items; return how many were actually added (0 when ignored or already unbounded)."""
        value = self.value
        if n <= 0 or value >= MAX_REQUEST_N:
            return 0
        added = n if n < MAX_REQUEST_N - value else MAX_REQUEST_N - value
        self.value = value + added
        return added

    def consume(self) -> bool:
        """Spend one item; False (and nothing spent) when no credit is left."""
        value = self.value
        if value >= MAX_REQUEST_N:
            return True
        if value <= 0:
            return False
        self.value = value - 1
        return True

    def __repr__(self) -> str:
        return "Credit(unbounded)" if self.unbounded else f"Credit({self.value})"
