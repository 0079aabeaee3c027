"""Composite metadata: several typed metadata entries in one metadata section (checklist X3, X4).

Wire format: repeated ``MIME header (X2) + 3-byte entry length + entry bytes``, parsed until the buffer
ends. Entry order is kept and duplicate MIME types are allowed. Encoding entries back to back is
concatenation, so ``composite(a) + composite(b) == composite(a, b)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Final, overload

from .auth import Authentication, decode_authentication
from .data_mime import decode_accept_mime_types, decode_data_mime_type
from .entry import CompositeEntry
from .errors import MetadataDecodeError
from .mime import (
    MESSAGE_ACCEPT_MIME_TYPES,
    MESSAGE_AUTHENTICATION,
    MESSAGE_MIME_TYPE,
    MESSAGE_ROUTING,
    MESSAGE_TRACING_ZIPKIN,
    MimeType,
    decode_mime_type,
    encode_mime_type,
    normalize_mime_type,
)
from .routing import decode_routing
from .tracing import ZipkinTrace, decode_tracing

#: The largest entry a 3-byte length can describe.
MAX_ENTRY_LENGTH: Final = 0xFFFFFF


def encode_entry(entry: CompositeEntry) -> bytes:
    """One entry on the wire; ``ValueError`` if its MIME type or size cannot be encoded."""
    content = entry.content
    if len(content) > MAX_ENTRY_LENGTH:
        raise ValueError(
            f"a composite metadata entry holds at most {MAX_ENTRY_LENGTH} bytes, got {len(content)}"
        )
    return encode_mime_type(entry.mime_type) + len(content).to_bytes(3, "big") + content


class CompositeMetadata(Sequence[CompositeEntry]):
    """An immutable sequence of :class:`CompositeEntry`, with helpers to find entries by MIME type.

    Build one from entries (``CompositeMetadata([route("a"), bearer("t")])``) or from bytes
    (:meth:`decode`); ``bytes(metadata)`` or :meth:`encode` gives the wire form.
    """

    __slots__ = ("_entries",)

    def __init__(self, entries: Iterable[CompositeEntry] = ()) -> None:
        self._entries: tuple[CompositeEntry, ...] = tuple(entries)
        for entry in self._entries:
            if not isinstance(entry, CompositeEntry):
                raise TypeError(
                    f"composite metadata holds CompositeEntry objects, not {type(entry).__name__}"
                )

    @classmethod
    def decode(cls, data: bytes) -> CompositeMetadata:
        """Parse composite metadata; raises :class:`MetadataDecodeError` when malformed (X3).

        Entries with a well-known id this library does not know are kept with an ``int`` MIME type
        (X1); an empty buffer is valid and has no entries.
        """
        data = bytes(data)
        entries: list[CompositeEntry] = []
        offset = 0
        size = len(data)
        while offset < size:
            mime_type, offset = decode_mime_type(data, offset)
            if offset + 3 > size:
                raise MetadataDecodeError(
                    f"truncated composite metadata: entry length missing at offset {offset}"
                )
            length = int.from_bytes(data[offset : offset + 3], "big")
            offset += 3
            if offset + length > size:
                raise MetadataDecodeError(
                    f"truncated composite metadata: entry of {length} bytes, {size - offset} remain"
                )
            entries.append(CompositeEntry(mime_type, data[offset : offset + length]))
            offset += length
        return cls(entries)

    def encode(self) -> bytes:
        """The metadata bytes."""
        return b"".join(encode_entry(entry) for entry in self._entries)

    def __bytes__(self) -> bytes:
        return self.encode()

    # --- sequence ---------------------------------------------------------------------------------

    @overload
    def __getitem__(self, index: int) -> CompositeEntry: ...

    @overload
    def __getitem__(self, index: slice) -> CompositeMetadata: ...

    def __getitem__(self, index: int | slice) -> CompositeEntry | CompositeMetadata:
        if isinstance(index, slice):
            return CompositeMetadata(self._entries[index])
        return self._entries[index]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[CompositeEntry]:
        return iter(self._entries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompositeMetadata):
            return NotImplemented
        return self._entries == other._entries

    def __hash__(self) -> int:
        return hash(self._entries)

    def __repr__(self) -> str:
        return f"CompositeMetadata({list(self._entries)!r})"

    def __add__(self, other: Iterable[CompositeEntry]) -> CompositeMetadata:
        return CompositeMetadata((*self._entries, *other))

    # --- lookups ----------------------------------------------------------------------------------

    def find(self, mime_type: MimeType) -> CompositeEntry | None:
        """The first entry of ``mime_type``, or ``None``."""
        wanted = normalize_mime_type(mime_type)
        for entry in self._entries:
            if entry.mime_type == wanted:
                return entry
        return None

    def find_all(self, mime_type: MimeType) -> tuple[CompositeEntry, ...]:
        """Every entry of ``mime_type``, in order."""
        wanted = normalize_mime_type(mime_type)
        return tuple(entry for entry in self._entries if entry.mime_type == wanted)

    def get(self, mime_type: MimeType) -> bytes | None:
        """The content of the first entry of ``mime_type``, or ``None``."""
        entry = self.find(mime_type)
        return None if entry is None else entry.content

    @property
    def routes(self) -> tuple[str, ...]:
        """The tags of the first routing entry (X5); empty without one."""
        content = self.get(MESSAGE_ROUTING)
        return () if content is None else decode_routing(content)

    @property
    def route(self) -> str | None:
        """The route: the first tag of the first routing entry (X5), or ``None``."""
        tags = self.routes
        return tags[0] if tags else None

    @property
    def authentication(self) -> Authentication | None:
        """The first authentication entry, decoded (X6-X8), or ``None``."""
        content = self.get(MESSAGE_AUTHENTICATION)
        return None if content is None else decode_authentication(content)

    @property
    def data_mime_type(self) -> MimeType | None:
        """The per-stream data MIME type (X9), or ``None`` (the SETUP data MIME applies)."""
        content = self.get(MESSAGE_MIME_TYPE)
        return None if content is None else decode_data_mime_type(content)

    @property
    def accept_mime_types(self) -> tuple[MimeType, ...]:
        """The acceptable response MIME types (X10), in order; empty without an entry."""
        content = self.get(MESSAGE_ACCEPT_MIME_TYPES)
        return () if content is None else decode_accept_mime_types(content)

    @property
    def tracing(self) -> ZipkinTrace | None:
        """The Zipkin tracing entry, decoded (X12), or ``None``."""
        content = self.get(MESSAGE_TRACING_ZIPKIN)
        return None if content is None else decode_tracing(content)


def composite(*entries: CompositeEntry | Iterable[CompositeEntry]) -> bytes:
    """Composite metadata bytes for ``entries``: ``Payload(data, composite(route("a"), bearer("t")))``.

    Arguments are entries or iterables of entries (such as a :class:`CompositeMetadata`).
    """
    flat: list[CompositeEntry] = []
    for item in entries:
        if isinstance(item, CompositeEntry):
            flat.append(item)
        else:
            flat.extend(item)
    return CompositeMetadata(flat).encode()


def entry(mime_type: MimeType, content: bytes) -> CompositeEntry:
    """A composite entry of any MIME type (for example ``entry("text/x", b"abc")``)."""
    return CompositeEntry(mime_type, content)


__all__ = ["MAX_ENTRY_LENGTH", "CompositeMetadata", "composite", "encode_entry", "entry"]
