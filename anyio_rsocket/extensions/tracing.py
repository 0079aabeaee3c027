"""Zipkin tracing metadata (checklist X12).

A flags byte (I ``0x80`` ids present, D ``0x40`` debug, S ``0x20`` sampled, N ``0x10`` not sampled,
T ``0x08`` 128-bit trace id, P ``0x04`` parent span id present), then, only with I: the trace id (8 or 16
bytes), the span id (8 bytes) and, with P, the parent span id (8 bytes). Sizes: 1, 17, 25 or 33 bytes.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from enum import Enum
from typing import Final

from .entry import CompositeEntry
from .errors import MetadataDecodeError
from .mime import MESSAGE_TRACING_ZIPKIN

FLAG_IDS: Final = 0x80
FLAG_DEBUG: Final = 0x40
FLAG_SAMPLED: Final = 0x20
FLAG_NOT_SAMPLED: Final = 0x10
FLAG_TRACE_ID_128: Final = 0x08
FLAG_PARENT: Final = 0x04

_MAX_64 = (1 << 64) - 1
_MAX_128 = (1 << 128) - 1


class Sampling(Enum):
    """The sampling decision a trace carries (D beats S, S beats N)."""

    UNDECIDED = 0
    SAMPLED = FLAG_SAMPLED
    NOT_SAMPLED = FLAG_NOT_SAMPLED
    DEBUG = FLAG_DEBUG


@dataclass(frozen=True, slots=True)
class ZipkinTrace:
    """Zipkin B3 identifiers plus the sampling decision.

    ``trace_id`` and ``span_id`` are both set or both ``None`` (flags only). ``trace_id_128`` selects a
    16-byte trace id; it is implied by a trace id that does not fit 64 bits.
    """

    trace_id: int | None = None
    span_id: int | None = None
    parent_span_id: int | None = None
    sampling: Sampling = Sampling.UNDECIDED
    trace_id_128: bool = False

    def __post_init__(self) -> None:
        if (self.trace_id is None) != (self.span_id is None):
            raise ValueError("trace_id and span_id must be given together")
        if self.parent_span_id is not None and self.trace_id is None:
            raise ValueError("a parent span id needs a trace id and a span id")
        if self.trace_id is not None and self.trace_id > _MAX_64 and not self.trace_id_128:
            object.__setattr__(self, "trace_id_128", True)
        for name, value, maximum in (
            ("trace_id", self.trace_id, _MAX_128 if self.trace_id_128 else _MAX_64),
            ("span_id", self.span_id, _MAX_64),
            ("parent_span_id", self.parent_span_id, _MAX_64),
        ):
            if value is not None and (isinstance(value, bool) or not 0 <= value <= maximum):
                raise ValueError(f"{name} must be an unsigned integer of at most {maximum.bit_length()} bits")

    @classmethod
    def start(cls, sampling: Sampling = Sampling.SAMPLED, *, trace_id_128: bool = False) -> ZipkinTrace:
        """A new root span with random ids."""
        trace_id = secrets.randbits(128 if trace_id_128 else 64)
        return cls(trace_id, secrets.randbits(64), None, sampling, trace_id_128)

    def child(self) -> ZipkinTrace:
        """A new span in the same trace whose parent is this span."""
        if self.trace_id is None:
            return ZipkinTrace.start(self.sampling)
        return replace(self, span_id=secrets.randbits(64), parent_span_id=self.span_id)

    def encode(self) -> bytes:
        """The tracing metadata bytes (X12)."""
        flags = self.sampling.value
        if self.trace_id is None or self.span_id is None:
            return bytes([flags])
        flags |= FLAG_IDS
        trace_size = 16 if self.trace_id_128 else 8
        parts = [self.trace_id.to_bytes(trace_size, "big"), self.span_id.to_bytes(8, "big")]
        if self.trace_id_128:
            flags |= FLAG_TRACE_ID_128
        if self.parent_span_id is not None:
            flags |= FLAG_PARENT
            parts.append(self.parent_span_id.to_bytes(8, "big"))
        return bytes([flags]) + b"".join(parts)


def encode_tracing(trace: ZipkinTrace) -> bytes:
    """Encode Zipkin tracing metadata (X12)."""
    return trace.encode()


def decode_tracing(data: bytes) -> ZipkinTrace:
    """Decode Zipkin tracing metadata (X12); sizes other than the flags announce are malformed."""
    data = bytes(data)
    if not data:
        raise MetadataDecodeError("empty tracing metadata: the flags byte is missing")
    flags = data[0]
    if flags & FLAG_DEBUG:
        sampling = Sampling.DEBUG
    elif flags & FLAG_SAMPLED:
        sampling = Sampling.SAMPLED
    elif flags & FLAG_NOT_SAMPLED:
        sampling = Sampling.NOT_SAMPLED
    else:
        sampling = Sampling.UNDECIDED
    if not flags & FLAG_IDS:
        if len(data) != 1:
            raise MetadataDecodeError(f"tracing metadata without ids must be 1 byte, got {len(data)}")
        return ZipkinTrace(sampling=sampling)
    wide = bool(flags & FLAG_TRACE_ID_128)
    trace_size = 16 if wide else 8
    expected = 1 + trace_size + 8 + (8 if flags & FLAG_PARENT else 0)
    if len(data) != expected:
        raise MetadataDecodeError(
            f"tracing metadata with these flags must be {expected} bytes, got {len(data)}"
        )
    trace_id = int.from_bytes(data[1 : 1 + trace_size], "big")
    span_id = int.from_bytes(data[1 + trace_size : 9 + trace_size], "big")
    parent = int.from_bytes(data[9 + trace_size :], "big") if flags & FLAG_PARENT else None
    return ZipkinTrace(trace_id, span_id, parent, sampling, wide)


def tracing(trace: ZipkinTrace) -> CompositeEntry:
    """A composite entry carrying Zipkin tracing metadata (X12)."""
    return CompositeEntry(MESSAGE_TRACING_ZIPKIN, trace.encode())


__all__ = [
    "FLAG_DEBUG",
    "FLAG_IDS",
    "FLAG_NOT_SAMPLED",
    "FLAG_PARENT",
    "FLAG_SAMPLED",
    "FLAG_TRACE_ID_128",
    "Sampling",
    "ZipkinTrace",
    "decode_tracing",
    "encode_tracing",
    "tracing",
]
