"""Routing metadata: a list of tags, the first one being the route (checklist X5).

Body: repeated ``tag length (1 byte, 1-255) + UTF-8 tag``.
"""

from __future__ import annotations

from typing import Final

from .entry import CompositeEntry
from .errors import MetadataDecodeError
from .mime import MESSAGE_ROUTING

#: The longest tag a one-byte length can announce.
MAX_TAG_LENGTH: Final = 255


def encode_routing(*tags: str) -> bytes:
    """Encode routing metadata; ``ValueError`` for no tags, an empty tag or one over 255 bytes."""
    if not tags:
        raise ValueError("routing metadata needs at least one tag")
    parts: list[bytes] = []
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(f"routing tags must be str, not {type(tag).__name__}")
        raw = tag.encode("utf-8")
        if not raw:
            raise ValueError("an empty routing tag cannot be encoded")
        if len(raw) > MAX_TAG_LENGTH:
            raise ValueError(
                f"routing tag {tag[:40]!r}... is {len(raw)} bytes in UTF-8; at most {MAX_TAG_LENGTH} fit"
            )
        parts.append(bytes([len(raw)]))
        parts.append(raw)
    return b"".join(parts)


def decode_routing(data: bytes) -> tuple[str, ...]:
    """Decode routing metadata into its tags (empty metadata has no tags)."""
    tags: list[str] = []
    offset = 0
    size = len(data)
    while offset < size:
        length = data[offset]
        if length == 0:
            raise MetadataDecodeError(f"empty routing tag at offset {offset}")
        end = offset + 1 + length
        if end > size:
            raise MetadataDecodeError(
                f"truncated routing tag: {length} bytes announced, {size - offset - 1} remain"
            )
        raw = bytes(data[offset + 1 : end])
        try:
            tags.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise MetadataDecodeError(f"routing tag {raw!r} is not UTF-8") from None
        offset = end
    return tuple(tags)


def route(tag: str, *more_tags: str) -> CompositeEntry:
    """A routing entry for composite metadata: ``composite(route("user.get"), ...)`` (X5).

    Raises ``ValueError`` for an empty tag or one longer than 255 bytes.
    """
    return CompositeEntry(MESSAGE_ROUTING, encode_routing(tag, *more_tags))


__all__ = ["MAX_TAG_LENGTH", "decode_routing", "encode_routing", "route"]
