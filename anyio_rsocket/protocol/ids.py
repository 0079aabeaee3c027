"""Stream-id allocation (checklist section 6, ID1-ID2)."""

from __future__ import annotations

from collections.abc import Container

from ..wire.frames import MAX_31
from .errors import LocalProtocolError, StreamIdsExhaustedError


class StreamIdAllocator:
    """Hands out the requester's stream ids: odd from 1 for a client, even from 2 for a server (ID1).

    After ``max_stream_id`` the ids wrap to the first one and continue, skipping ids that are still
    live (ID2). ``max_stream_id`` is lowered only by tests.
    """

    __slots__ = ("_first", "_limit", "_next")

    def __init__(self, is_client: bool, max_stream_id: int = MAX_31) -> None:
        if not 3 <= max_stream_id <= MAX_31:
            raise LocalProtocolError(f"max_stream_id must be between 3 and {MAX_31}")
        self._first = 1 if is_client else 2
        self._limit = max_stream_id
        self._next = self._first

    @property
    def first(self) -> int:
        """1 for a client, 2 for a server."""
        return self._first

    def candidate(self, live: Container[int], live_count: int) -> tuple[int, int]:
        """The next free id of our parity and the id to try after it; ``live`` holds the ids in use.

        Nothing is taken until :meth:`advance` is called with the second value, so a request that
        fails to encode uses up no id.
        """
        stream_id = self._next
        if stream_id not in live:  # the common case, without the search
            following = stream_id + 2
            return stream_id, following if following <= self._limit else self._first
        return self._find(live, live_count)

    def advance(self, following: int) -> None:
        """Take the id :meth:`candidate` returned."""
        self._next = following

    def allocate(self, live: Container[int], live_count: int) -> int:
        """Take the next free id of our parity at once."""
        stream_id, following = self._find(live, live_count)
        self._next = following
        return stream_id

    def _find(self, live: Container[int], live_count: int) -> tuple[int, int]:
        stream_id = self._next
        for _ in range(live_count + 1):
            following = stream_id + 2
            if following > self._limit:
                following = self._first
            if stream_id not in live:
                return stream_id, following
            stream_id = following
        raise StreamIdsExhaustedError("every stream id is in use on this connection; wait for one to end")
