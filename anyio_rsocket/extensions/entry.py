"""One entry of composite metadata: a MIME type and the bytes it describes (checklist X3)."""

from __future__ import annotations

from dataclasses import dataclass

from .mime import MimeType, normalize_mime_type


@dataclass(frozen=True, slots=True)
class CompositeEntry:
    """A ``(mime_type, content)`` pair inside composite metadata.

    ``mime_type`` is a name, or an ``int`` for a well-known id without a known name (X1); a known id
    is stored as its name. Helpers such as :func:`~anyio_rsocket.extensions.route` build entries;
    :func:`~anyio_rsocket.extensions.composite` joins them into metadata bytes.
    """

    mime_type: MimeType
    content: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "mime_type", normalize_mime_type(self.mime_type))
        object.__setattr__(self, "content", bytes(self.content))


__all__ = ["CompositeEntry"]
