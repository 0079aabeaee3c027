"""Fragmentation and reassembly of large payloads (checklist section 13, FG1-FG8), sans-IO.

Only REQUEST_RESPONSE, REQUEST_FNF, REQUEST_STREAM, REQUEST_CHANNEL and PAYLOAD may be fragmented
(FG1). A fragmented item is its first frame with F set, then PAYLOAD frames on the same stream, F on
all but the last (FG2). Metadata goes before data, each fragment carrying metadata has its own length
(FG3), and N is set on every continuation fragment of a NEXT (FG4, our choice for the spec's gap).
``fragment_size`` is the largest frame we emit, counted without the TCP length prefix.
"""

from __future__ import annotations

from dataclasses import replace

from .errors import FrameError
from .frames import (
    PayloadFrame,
    RequestChannelFrame,
    RequestFireAndForgetFrame,
    RequestResponseFrame,
    RequestStreamFrame,
)

#: Smallest fragment size we accept: room for headers and some progress per frame ([java] uses 64).
MIN_FRAGMENT_SIZE = 64
#: Default cap on one reassembled payload (metadata plus data).
DEFAULT_MAX_REASSEMBLED_SIZE = 16 * 1024 * 1024

FragmentableFrame = (
    RequestResponseFrame | RequestFireAndForgetFrame | RequestStreamFrame | RequestChannelFrame | PayloadFrame
)

_HEADER_SIZE = 6
_METADATA_LENGTH_SIZE = 3


class ReassemblyError(FrameError):
    """The peer's fragments break the rules (metadata after data, too large, ...): a protocol error."""


def _fixed_size(frame: FragmentableFrame) -> int:
    if isinstance(frame, (RequestStreamFrame, RequestChannelFrame)):
        return _HEADER_SIZE + 4
    return _HEADER_SIZE


def needs_fragmentation(frame: FragmentableFrame, fragment_size: int) -> bool:
    """Whether ``frame`` encodes to more than ``fragment_size`` bytes."""
    size = _fixed_size(frame) + len(frame.data)
    if frame.metadata is not None:
        size += _METADATA_LENGTH_SIZE + len(frame.metadata)
    return size > fragment_size


def fragment(frame: FragmentableFrame, fragment_size: int) -> list[FragmentableFrame]:
    """Split ``frame`` into frames of at most ``fragment_size`` bytes each (FG2-FG4, FG8)."""
    if fragment_size < MIN_FRAGMENT_SIZE:
        raise ValueError(f"fragment_size must be at least {MIN_FRAGMENT_SIZE} bytes")
    if not needs_fragmentation(frame, fragment_size):
        return [frame]
    metadata = frame.metadata
    data = frame.data
    md_pos = 0
    data_pos = 0
    frames: list[FragmentableFrame] = []
    first = True
    # A PAYLOAD continuation of a request carries N (FG4); so does every fragment of a NEXT.
    is_next = frame.next if isinstance(frame, PayloadFrame) else True
    while True:
        budget = fragment_size - (_fixed_size(frame) if first else _HEADER_SIZE)
        md_chunk: bytes | None = None
        if metadata is not None and (md_pos < len(metadata) or (first and not metadata)):
            budget -= _METADATA_LENGTH_SIZE
            md_chunk = metadata[md_pos : md_pos + budget]
            md_pos += len(md_chunk)
            budget -= len(md_chunk)
        data_chunk = b""
        if metadata is None or md_pos >= len(metadata):
            data_chunk = data[data_pos : data_pos + budget]
            data_pos += len(data_chunk)
        last = (metadata is None or md_pos >= len(metadata)) and data_pos >= len(data)
        if first:
            piece: FragmentableFrame = replace(frame, data=data_chunk, metadata=md_chunk, follows=not last)
            if isinstance(piece, (RequestChannelFrame, PayloadFrame)) and not last:
                piece = replace(piece, complete=False)  # C travels on the final fragment only (FG4)
            first = False
        else:
            complete = bool(getattr(frame, "complete", False)) and last
            if isinstance(frame, RequestChannelFrame):
                complete = False  # the channel's C travels on the final PAYLOAD below
            piece = PayloadFrame(
                frame.stream_id, data_chunk, md_chunk, follows=not last, complete=complete, next=is_next
            )
        frames.append(piece)
        if last:
            break
    if isinstance(frame, RequestChannelFrame) and frame.complete and len(frames) > 1:
        final = frames[-1]
        assert isinstance(final, PayloadFrame)
        frames[-1] = replace(final, complete=True)
    return frames


class Reassembler:
    """Collects the fragments of one item on one stream (FG2, FG3, FG5, FG7)."""

    __slots__ = ("_data", "_first", "_max_size", "_metadata", "_saw_data", "size")

    def __init__(self, first: FragmentableFrame, max_size: int) -> None:
        self._first = first
        self._max_size = max_size
        self._metadata: list[bytes] | None = None
        self._data: list[bytes] = []
        self._saw_data = False
        self.size = 0
        self._add(first.metadata, first.data)

    def _add(self, metadata: bytes | None, data: bytes) -> None:
        if metadata is not None:
            if self._saw_data:
                raise ReassemblyError(
                    "fragment carries metadata after data had begun (metadata must come first)"
                )
            if self._metadata is None:
                self._metadata = []
            self._metadata.append(metadata)
            self.size += len(metadata)
        if data:
            self._saw_data = True
            self._data.append(data)
            self.size += len(data)
        if self.size > self._max_size:
            raise ReassemblyError(
                f"reassembled payload exceeds the {self._max_size}-byte limit (max_reassembled_size); "
                "the peer's fragments would use unbounded memory"
            )

    def add(self, fragment: PayloadFrame) -> FragmentableFrame | None:
        """Add a continuation; return the reassembled frame once the last fragment arrives."""
        self._add(fragment.metadata, fragment.data)
        if fragment.follows and not fragment.complete:  # U3: F with C is the last fragment
            return None
        metadata = None if self._metadata is None else b"".join(self._metadata)
        data = b"".join(self._data)
        first = self._first
        if isinstance(first, PayloadFrame):
            return replace(
                first,
                data=data,
                metadata=metadata,
                follows=False,
                complete=first.complete or fragment.complete,
                next=first.next or fragment.next,
            )
        if isinstance(first, RequestChannelFrame):
            return replace(
                first,
                data=data,
                metadata=metadata,
                follows=False,
                complete=first.complete or fragment.complete,
            )
        return replace(first, data=data, metadata=metadata, follows=False)
