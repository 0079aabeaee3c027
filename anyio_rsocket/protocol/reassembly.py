"""Per-stream reassembly of fragments with a connection-wide budget (checklist FG2, FG6, FG7, U2, U3)."""

from __future__ import annotations

from collections.abc import Container

from ..wire.errors import FrameError
from ..wire.fragmentation import Reassembler
from ..wire.frames import (
    CancelFrame,
    ErrorFrame,
    Frame,
    PayloadFrame,
    RequestChannelFrame,
    RequestFireAndForgetFrame,
    RequestResponseFrame,
    RequestStreamFrame,
)


class ReassemblyTable:
    """The partial items of every stream; more than ``4 * max_size`` bytes held in total is a violation."""

    __slots__ = ("_max_size", "partials")

    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        self.partials: dict[int, Reassembler] = {}

    def __bool__(self) -> bool:
        return bool(self.partials)

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self.partials

    @property
    def held(self) -> int:
        """Bytes held for all partial items."""
        return sum(partial.size for partial in self.partials.values())

    def discard(self, stream_id: int) -> None:
        self.partials.pop(stream_id, None)

    def clear(self) -> None:
        self.partials.clear()

    def feed(self, frame: Frame, live: Container[int]) -> Frame | None:
        """Return a frame to dispatch (whole, or reassembled), or None while an item is partial.

        Raises :class:`FrameError` for a violation (metadata after data, FG3; over the size cap or
        the budget, FG7). ``live`` holds the registered stream ids.
        """
        stream_id = frame.stream_id
        partial = self.partials.get(stream_id)
        if partial is not None:
            if isinstance(frame, PayloadFrame):
                whole = partial.add(frame)
                self._check_budget()
                if whole is not None:
                    del self.partials[stream_id]
                return whole
            if isinstance(frame, (CancelFrame, ErrorFrame)):
                del self.partials[stream_id]  # FG7: the partial item is discarded
            return frame  # REQUEST_N, CANCEL, ERROR, another request: dispatched as usual (FG6)
        if not getattr(frame, "follows", False) or stream_id == 0:
            return frame
        if isinstance(frame, PayloadFrame):
            if frame.complete:
                return frame  # U3: F with C is the last (and only) fragment
            if stream_id not in live:
                return None  # U2: fragments for unknown streams are dropped
        elif stream_id in live:
            return None  # ID5: a request on a live id is ignored, fragmented or not
        assert isinstance(
            frame,
            (
                PayloadFrame,
                RequestResponseFrame,
                RequestFireAndForgetFrame,
                RequestStreamFrame,
                RequestChannelFrame,
            ),
        )
        self.partials[stream_id] = Reassembler(frame, self._max_size)
        self._check_budget()
        return None

    def _check_budget(self) -> None:
        if self.held > 4 * self._max_size:
            raise FrameError(
                "fragments held for all streams exceed the reassembly budget (4x max_reassembled_size)"
            )
