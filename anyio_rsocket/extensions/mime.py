"""Well-known MIME types and the one-byte-or-string MIME header (checklist X1, X2).

A MIME type is written as one byte: ``1xxxxxxx`` names a well-known type by id, ``0xxxxxxx`` is followed
by a US-ASCII name of ``x + 1`` bytes (1 to 128: the length is stored minus one, as rsocket-java and
rsocket-py do). Decoded MIME types are ``str`` names, or an ``int`` for a well-known id this table does
not know (X1: kept as an opaque id rather than failing).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from .errors import MetadataDecodeError

#: A MIME type as the extensions see it: its name, or a well-known id without a known name (X1).
MimeType = str | int

APPLICATION_JSON: Final = "application/json"
APPLICATION_OCTET_STREAM: Final = "application/octet-stream"
TEXT_PLAIN: Final = "text/plain"
MESSAGE_MIME_TYPE: Final = "message/x.rsocket.mime-type.v0"
MESSAGE_ACCEPT_MIME_TYPES: Final = "message/x.rsocket.accept-mime-types.v0"
MESSAGE_AUTHENTICATION: Final = "message/x.rsocket.authentication.v0"
MESSAGE_TRACING_ZIPKIN: Final = "message/x.rsocket.tracing-zipkin.v0"
MESSAGE_ROUTING: Final = "message/x.rsocket.routing.v0"
MESSAGE_COMPOSITE_METADATA: Final = "message/x.rsocket.composite-metadata.v0"

#: The well-known MIME types of the extension specification, by id (X1).
WELL_KNOWN_MIME_TYPES: Final[Mapping[int, str]] = MappingProxyType(
    {
        0x00: "application/avro",
        0x01: "application/cbor",
        0x02: "application/graphql",
        0x03: "application/gzip",
        0x04: "application/javascript",
        0x05: APPLICATION_JSON,
        0x06: APPLICATION_OCTET_STREAM,
        0x07: "application/pdf",
        0x08: "application/vnd.apache.thrift.binary",
        0x09: "application/vnd.google.protobuf",
        0x0A: "application/xml",
        0x0B: "application/zip",
        0x0C: "audio/aac",
        0x0D: "audio/mp3",
        0x0E: "audio/mp4",
        0x0F: "audio/mpeg3",
        0x10: "audio/mpeg",
        0x11: "audio/ogg",
        0x12: "audio/opus",
        0x13: "audio/vorbis",
        0x14: "image/bmp",
        0x15: "image/gif",
        0x16: "image/heic-sequence",
        0x17: "image/heic",
        0x18: "image/heif-sequence",
        0x19: "image/heif",
        0x1A: "image/jpeg",
        0x1B: "image/png",
        0x1C: "image/tiff",
        0x1D: "multipart/mixed",
        0x1E: "text/css",
        0x1F: "text/csv",
        0x20: "text/html",
        0x21: TEXT_PLAIN,
        0x22: "text/xml",
        0x23: "video/H264",
        0x24: "video/H265",
        0x25: "video/VP8",
        0x26: "application/x-hessian",
        0x27: "application/x-java-object",
        0x28: "application/cloudevents+json",
        0x29: "application/x-capnp",
        0x2A: "application/x-flatbuffers",
        0x7A: MESSAGE_MIME_TYPE,
        0x7B: MESSAGE_ACCEPT_MIME_TYPES,
        0x7C: MESSAGE_AUTHENTICATION,
        0x7D: MESSAGE_TRACING_ZIPKIN,
        0x7E: MESSAGE_ROUTING,
        0x7F: MESSAGE_COMPOSITE_METADATA,
    }
)

_IDS_BY_NAME: Final[Mapping[str, int]] = {name: id_ for id_, name in WELL_KNOWN_MIME_TYPES.items()}

#: The longest name a one-byte header can announce (length stored minus one, X2).
MAX_NAME_LENGTH: Final = 128


def well_known_id(mime_type: str) -> int | None:
    """The well-known id of ``mime_type`` (exact spelling), or ``None``."""
    return _IDS_BY_NAME.get(mime_type)


def well_known_name(mime_id: int) -> str | None:
    """The name of well-known id ``mime_id``, or ``None`` for an unassigned id."""
    return WELL_KNOWN_MIME_TYPES.get(mime_id)


def normalize_mime_type(mime_type: MimeType) -> MimeType:
    """A known id becomes its name; names and unknown ids are returned unchanged."""
    if isinstance(mime_type, int):
        return WELL_KNOWN_MIME_TYPES.get(mime_type, mime_type)
    return mime_type


def encode_type_name(name: str, what: str = "MIME type") -> bytes:
    """The ``0xxxxxxx`` header plus the US-ASCII name (X2); ``ValueError`` if it cannot be encoded."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}")
    try:
        raw = name.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {name!r} is not US-ASCII") from None
    if not raw:
        raise ValueError(f"an empty {what} cannot be encoded")
    if len(raw) > MAX_NAME_LENGTH:
        raise ValueError(f"{what} {name[:40]!r}... is {len(raw)} bytes; at most {MAX_NAME_LENGTH} fit")
    return bytes([len(raw) - 1]) + raw


def encode_well_known_id(type_id: int, what: str = "MIME type") -> bytes:
    """The ``1xxxxxxx`` header for id ``type_id`` (0-127)."""
    if isinstance(type_id, bool) or not 0 <= type_id <= 0x7F:
        raise ValueError(f"well-known {what} ids are 0-127, got {type_id!r}")
    return bytes([0x80 | type_id])


def encode_mime_type(mime_type: MimeType) -> bytes:
    """Encode a MIME header (X2): well-known names use their one-byte id, others their name."""
    if isinstance(mime_type, int):
        return encode_well_known_id(mime_type)
    type_id = _IDS_BY_NAME.get(mime_type)
    if type_id is not None:
        return encode_well_known_id(type_id)
    return encode_type_name(mime_type)


def decode_type_header(buffer: bytes, offset: int = 0, what: str = "MIME type") -> tuple[str | int, int]:
    """Read one header at ``offset``: ``(id, end)`` for ``1xxxxxxx``, ``(name, end)`` otherwise."""
    if offset >= len(buffer):
        raise MetadataDecodeError(f"truncated {what}: no header byte at offset {offset}")
    header = buffer[offset]
    if header & 0x80:
        return header & 0x7F, offset + 1
    end = offset + 1 + header + 1
    if end > len(buffer):
        raise MetadataDecodeError(
            f"truncated {what}: the header announces {header + 1} bytes, {len(buffer) - offset - 1} remain"
        )
    raw = buffer[offset + 1 : end]
    try:
        return raw.decode("ascii"), end
    except UnicodeDecodeError:
        raise MetadataDecodeError(f"{what} {raw!r} is not US-ASCII") from None


def decode_mime_type(buffer: bytes, offset: int = 0) -> tuple[MimeType, int]:
    """Read one MIME header at ``offset``; return the MIME type (X1, X2) and the offset after it."""
    value, end = decode_type_header(buffer, offset)
    return normalize_mime_type(value), end


__all__ = [
    "APPLICATION_JSON",
    "APPLICATION_OCTET_STREAM",
    "MAX_NAME_LENGTH",
    "MESSAGE_ACCEPT_MIME_TYPES",
    "MESSAGE_AUTHENTICATION",
    "MESSAGE_COMPOSITE_METADATA",
    "MESSAGE_MIME_TYPE",
    "MESSAGE_ROUTING",
    "MESSAGE_TRACING_ZIPKIN",
    "TEXT_PLAIN",
    "WELL_KNOWN_MIME_TYPES",
    "MimeType",
    "decode_mime_type",
    "decode_type_header",
    "encode_mime_type",
    "encode_type_name",
    "encode_well_known_id",
    "normalize_mime_type",
    "well_known_id",
    "well_known_name",
]
