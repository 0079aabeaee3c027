"""Per-stream data MIME types: what this request's data is, and what answers it accepts (X9-X11).

``message/x.rsocket.mime-type.v0`` holds exactly one MIME header (X2) naming the data MIME of this
request's payloads; ``message/x.rsocket.accept-mime-types.v0`` holds one or more, the MIME types the
requester accepts in answers. Both travel as entries of composite metadata.
"""

from __future__ import annotations

from .entry import CompositeEntry
from .errors import MetadataDecodeError
from .mime import MESSAGE_ACCEPT_MIME_TYPES, MESSAGE_MIME_TYPE, MimeType, decode_mime_type, encode_mime_type


def encode_data_mime_type(mime_type: MimeType) -> bytes:
    """Encode a per-stream data MIME type (X9)."""
    return encode_mime_type(mime_type)


def decode_data_mime_type(data: bytes) -> MimeType:
    """Decode a per-stream data MIME type: exactly one MIME header (X9)."""
    data = bytes(data)
    mime_type, end = decode_mime_type(data)
    if end != len(data):
        raise MetadataDecodeError(f"{len(data) - end} unexpected bytes after the data MIME type")
    return mime_type


def encode_accept_mime_types(*mime_types: MimeType) -> bytes:
    """Encode the acceptable response MIME types, in order of preference (X10)."""
    if not mime_types:
        raise ValueError("accept-mime-types needs at least one MIME type")
    return b"".join(encode_mime_type(mime_type) for mime_type in mime_types)


def decode_accept_mime_types(data: bytes) -> tuple[MimeType, ...]:
    """Decode the acceptable response MIME types: one or more MIME headers back to back (X10)."""
    data = bytes(data)
    if not data:
        raise MetadataDecodeError("accept-mime-types metadata holds no MIME type")
    mime_types: list[MimeType] = []
    offset = 0
    while offset < len(data):
        mime_type, offset = decode_mime_type(data, offset)
        mime_types.append(mime_type)
    return tuple(mime_types)


def data_mime(mime_type: MimeType) -> CompositeEntry:
    """A composite entry declaring this request's data MIME type (X9)."""
    return CompositeEntry(MESSAGE_MIME_TYPE, encode_data_mime_type(mime_type))


def accept_mime(*mime_types: MimeType) -> CompositeEntry:
    """A composite entry listing the response MIME types the requester accepts (X10)."""
    return CompositeEntry(MESSAGE_ACCEPT_MIME_TYPES, encode_accept_mime_types(*mime_types))


__all__ = [
    "accept_mime",
    "data_mime",
    "decode_accept_mime_types",
    "decode_data_mime_type",
    "encode_accept_mime_types",
    "encode_data_mime_type",
]
