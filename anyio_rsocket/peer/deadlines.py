"""Deadlines that travel: the requester's remaining time goes with the request (composite metadata),
and the responder runs its handler under it, so a chain of services gives up together.

The entry's MIME type is :data:`DEADLINE_MIME_TYPE`; its content is the remaining time in whole
milliseconds, an unsigned 32-bit big-endian integer (about 49 days at most; longer is sent as the
maximum). Peers that do not know the entry ignore it, as composite metadata allows (X1).
"""

from __future__ import annotations

import math

import anyio

from ..extensions.composite import CompositeMetadata, encode_entry
from ..extensions.entry import CompositeEntry
from ..extensions.errors import MetadataDecodeError
from ..wire.payload import Payload

#: The composite metadata entry that carries a request's remaining time.
DEADLINE_MIME_TYPE = "message/x.anyio-rsocket.deadline.v0"
_MAX_MILLISECONDS = 0xFFFFFFFF
#: Quick test before parsing composite metadata: the entry's MIME name must appear in it.
_MARKER = DEADLINE_MIME_TYPE.encode("ascii")


def with_deadline(payload: Payload) -> Payload:
    """``payload`` plus the current cancel scope's remaining time, if it has a deadline."""
    deadline = anyio.current_effective_deadline()
    if deadline == math.inf:
        return payload
    remaining = max(0.0, deadline - anyio.current_time())
    milliseconds = min(_MAX_MILLISECONDS, math.ceil(remaining * 1000))
    entry = encode_entry(CompositeEntry(DEADLINE_MIME_TYPE, milliseconds.to_bytes(4, "big")))
    return Payload(payload.data, (payload.metadata or b"") + entry)


def remaining_time(metadata: bytes | None) -> float | None:
    """The remaining time (seconds) a request's composite metadata carries, or None."""
    if metadata is None or _MARKER not in metadata:
        return None
    try:
        content = CompositeMetadata.decode(metadata).get(DEADLINE_MIME_TYPE)
    except MetadataDecodeError:
        return None
    if content is None or len(content) != 4:
        return None
    return int.from_bytes(content, "big") / 1000


__all__ = ["DEADLINE_MIME_TYPE", "remaining_time", "with_deadline"]
