"""RSocket 1.0 frames: one immutable dataclass per frame type, and the binary codec (sans-IO).

``encode_frame(frame) -> bytes`` and ``decode_frame(data) -> Frame`` convert between frames and the
bytes of one frame *without* the TCP length prefix (see :mod:`anyio_rsocket.framing` for that).
Nothing here does I/O or reads a clock. Checklist references: sections 2-4 (header, catalogue,
metadata), T3 (maximum frame size), H1/H2 (reserved bits), MD1-MD3 (metadata encoding).

Decoding is strict about structure (lengths, minimum sizes) and lenient about semantics: values such
as a zero request-n or a SETUP on a non-zero stream decode faithfully, and the connection layer
decides what the protocol says to do with them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from .errors import FrameTooLargeError, MalformedFrameError, UnknownFrameTypeError

#: Largest frame (header and body, without the TCP prefix) any transport may carry (T3).
MAX_FRAME_SIZE = 0xFFFFFF
#: Largest value of a 31-bit field (stream id, request-n, keepalive interval, ...).
MAX_31 = 0x7FFFFFFF
MAX_63 = 0x7FFFFFFFFFFFFFFF
MAX_REQUEST_N = MAX_31

FLAG_IGNORE = 0x200
FLAG_METADATA = 0x100
FLAG_FOLLOWS = 0x080
FLAG_RESUME = 0x080
FLAG_RESPOND = 0x080
FLAG_COMPLETE = 0x040
FLAG_LEASE = 0x040
FLAG_NEXT = 0x020


class FrameType(IntEnum):
    """Frame type codes (checklist section 3)."""

    RESERVED = 0x00
    SETUP = 0x01
    LEASE = 0x02
    KEEPALIVE = 0x03
    REQUEST_RESPONSE = 0x04
    REQUEST_FNF = 0x05
    REQUEST_STREAM = 0x06
    REQUEST_CHANNEL = 0x07
    REQUEST_N = 0x08
    CANCEL = 0x09
    PAYLOAD = 0x0A
    ERROR = 0x0B
    METADATA_PUSH = 0x0C
    RESUME = 0x0D
    RESUME_OK = 0x0E
    EXT = 0x3F


# --- frame classes ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetupFrame:
    """SETUP (0x01): the client's first frame, on stream 0."""

    keepalive_interval: int  # milliseconds
    max_lifetime: int  # milliseconds
    metadata_mime_type: str
    data_mime_type: str
    data: bytes = b""
    metadata: bytes | None = None
    major_version: int = 1
    minor_version: int = 0
    lease: bool = False
    resume_token: bytes | None = None  # present iff the R flag is set (F2)
    stream_id: int = 0


@dataclass(frozen=True, slots=True)
class LeaseFrame:
    """LEASE (0x02): grants ``number_of_requests`` requests for ``ttl`` milliseconds."""

    ttl: int
    number_of_requests: int
    metadata: bytes | None = None
    stream_id: int = 0


@dataclass(frozen=True, slots=True)
class KeepaliveFrame:
    """KEEPALIVE (0x03): ``respond`` asks the peer to echo ``data`` back (K2)."""

    respond: bool
    last_received_position: int = 0
    data: bytes = b""
    stream_id: int = 0


@dataclass(frozen=True, slots=True)
class RequestResponseFrame:
    """REQUEST_RESPONSE (0x04)."""

    stream_id: int
    data: bytes
    metadata: bytes | None = None
    follows: bool = False


@dataclass(frozen=True, slots=True)
class RequestFireAndForgetFrame:
    """REQUEST_FNF (0x05)."""

    stream_id: int
    data: bytes
    metadata: bytes | None = None
    follows: bool = False


@dataclass(frozen=True, slots=True)
class RequestStreamFrame:
    """REQUEST_STREAM (0x06)."""

    stream_id: int
    initial_request_n: int
    data: bytes
    metadata: bytes | None = None
    follows: bool = False


@dataclass(frozen=True, slots=True)
class RequestChannelFrame:
    """REQUEST_CHANNEL (0x07): carries the requester's first element; C completes its half at once."""

    stream_id: int
    initial_request_n: int
    data: bytes
    metadata: bytes | None = None
    follows: bool = False
    complete: bool = False


@dataclass(frozen=True, slots=True)
class RequestNFrame:
    """REQUEST_N (0x08): grants ``request_n`` more items."""

    stream_id: int
    request_n: int


@dataclass(frozen=True, slots=True)
class CancelFrame:
    """CANCEL (0x09)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PayloadFrame:
    """PAYLOAD (0x0A): ``next`` carries an item, ``complete`` ends the sender's half."""

    stream_id: int
    data: bytes = b""
    metadata: bytes | None = None
    follows: bool = False
    complete: bool = False
    next: bool = False


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """ERROR (0x0B): ``error_code`` is unsigned 32-bit (E1); ``data`` is UTF-8 text (F4)."""

    stream_id: int
    error_code: int
    data: bytes = b""

    @property
    def message(self) -> str:
        """The error text, decoded leniently (a peer's bad UTF-8 must not crash us)."""
        return self.data.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class MetadataPushFrame:
    """METADATA_PUSH (0x0C): raw metadata, no length prefix (F3)."""

    metadata: bytes
    stream_id: int = 0


@dataclass(frozen=True, slots=True)
class ResumeFrame:
    """RESUME (0x0D)."""

    resume_token: bytes
    last_received_server_position: int
    first_available_client_position: int
    major_version: int = 1
    minor_version: int = 0
    stream_id: int = 0


@dataclass(frozen=True, slots=True)
class ResumeOkFrame:
    """RESUME_OK (0x0E)."""

    last_received_client_position: int
    stream_id: int = 0


@dataclass(frozen=True, slots=True)
class ExtFrame:
    """EXT (0x3F): an extension frame; the body after the extended type is ``[md], data`` ([java])."""

    stream_id: int
    extended_type: int
    data: bytes = b""
    metadata: bytes | None = None
    ignore: bool = False


Frame = (
    SetupFrame
    | LeaseFrame
    | KeepaliveFrame
    | RequestResponseFrame
    | RequestFireAndForgetFrame
    | RequestStreamFrame
    | RequestChannelFrame
    | RequestNFrame
    | CancelFrame
    | PayloadFrame
    | ErrorFrame
    | MetadataPushFrame
    | ResumeFrame
    | ResumeOkFrame
    | ExtFrame
)

#: Frames that open a new stream on the responder side.
RequestFrame = RequestResponseFrame | RequestFireAndForgetFrame | RequestStreamFrame | RequestChannelFrame

# --- encoding -----------------------------------------------------------------------------------

_HEADER = struct.Struct(">IH")
_HEADER_U32 = struct.Struct(">IHI")  # header + one 32-bit field (REQUEST_N, ERROR, REQUEST_STREAM/CHANNEL)
_HEADER_U32_U32 = struct.Struct(">IHII")  # header + two 32-bit fields (LEASE)
_HEADER_U64 = struct.Struct(">IHQ")  # header + one 64-bit field (KEEPALIVE, RESUME_OK)
_SETUP_FIXED = struct.Struct(">HHII")
_RESUME_TAIL = struct.Struct(">QQ")


def _check_31(name: str, value: int, minimum: int = 0) -> None:
    if not minimum <= value <= MAX_31:
        raise ValueError(f"{name} must be in [{minimum}, {MAX_31}], got {value}")


def _check_stream_id(stream_id: int) -> None:
    if not 0 <= stream_id <= MAX_31:
        raise ValueError(f"stream id must be in [0, {MAX_31}], got {stream_id}")


def _metadata_block(metadata: bytes | None) -> bytes:
    """The ``len(3) + bytes`` metadata block of MD1 (empty when metadata is absent)."""
    if metadata is None:
        return b""
    length = len(metadata)
    if length > MAX_FRAME_SIZE:
        raise FrameTooLargeError(f"metadata of {length} bytes cannot fit in one frame")
    return length.to_bytes(3, "big") + metadata


def _finish(frame: bytes) -> bytes:
    if len(frame) > MAX_FRAME_SIZE:
        raise FrameTooLargeError(
            f"frame of {len(frame)} bytes exceeds the {MAX_FRAME_SIZE}-byte limit; "
            "use fragmentation or send a smaller payload"
        )
    return frame


def encode_frame(frame: Frame) -> bytes:
    """Encode ``frame`` to bytes (no TCP length prefix).

    Raises :class:`~anyio_rsocket.errors.FrameTooLargeError` for a frame over 16,777,215 bytes and
    ``ValueError`` for field values the wire format cannot carry.
    """
    encoder = _ENCODERS.get(type(frame))
    if encoder is None:
        raise TypeError(f"not a frame: {frame!r}")
    if not 0 <= frame.stream_id <= MAX_31:  # H2: the reserved top bit is never set
        _check_stream_id(frame.stream_id)
    return encoder(frame)


def encode_payload(stream_id: int, data: bytes, metadata: bytes | None, flags: int) -> bytes:
    """Encode a PAYLOAD from its parts (``flags``: any of F, C, N); the hot path of every stream."""
    if metadata is None:
        frame = _HEADER.pack(stream_id, 0x2800 | flags) + data
    elif len(metadata) > MAX_FRAME_SIZE:
        raise FrameTooLargeError(f"metadata of {len(metadata)} bytes cannot fit in one frame")
    else:
        frame = b"".join(
            (_HEADER.pack(stream_id, 0x2900 | flags), len(metadata).to_bytes(3, "big"), metadata, data)
        )
    if len(frame) > MAX_FRAME_SIZE:
        raise FrameTooLargeError(
            f"frame of {len(frame)} bytes exceeds the {MAX_FRAME_SIZE}-byte limit; "
            "use fragmentation or send a smaller payload"
        )
    return frame


def encode_simple_request(type_word: int, stream_id: int, data: bytes, metadata: bytes | None) -> bytes:
    """Encode a REQUEST_RESPONSE (``0x1000``) or REQUEST_FNF (``0x1400``) from its parts."""
    if metadata is None:
        frame = _HEADER.pack(stream_id, type_word) + data
    elif len(metadata) > MAX_FRAME_SIZE:
        raise FrameTooLargeError(f"metadata of {len(metadata)} bytes cannot fit in one frame")
    else:
        frame = b"".join(
            (
                _HEADER.pack(stream_id, type_word | FLAG_METADATA),
                len(metadata).to_bytes(3, "big"),
                metadata,
                data,
            )
        )
    if len(frame) > MAX_FRAME_SIZE:
        raise FrameTooLargeError(
            f"frame of {len(frame)} bytes exceeds the {MAX_FRAME_SIZE}-byte limit; "
            "use fragmentation or send a smaller payload"
        )
    return frame


def _encode_payload(frame: PayloadFrame) -> bytes:
    flags = (
        (FLAG_FOLLOWS if frame.follows else 0)
        | (FLAG_COMPLETE if frame.complete else 0)
        | (FLAG_NEXT if frame.next else 0)
    )
    return encode_payload(frame.stream_id, frame.data, frame.metadata, flags)


def _encode_request(type_word: int, frame: RequestResponseFrame | RequestFireAndForgetFrame) -> bytes:
    flags = type_word | (FLAG_FOLLOWS if frame.follows else 0)
    if frame.metadata is not None:
        flags |= FLAG_METADATA
    return _finish(_HEADER.pack(frame.stream_id, flags) + _metadata_block(frame.metadata) + frame.data)


def _encode_request_response(frame: RequestResponseFrame) -> bytes:
    return _encode_request(0x1000, frame)


def _encode_fnf(frame: RequestFireAndForgetFrame) -> bytes:
    return _encode_request(0x1400, frame)


def _encode_request_n_body(
    type_word: int, frame: RequestStreamFrame | RequestChannelFrame, extra_flags: int
) -> bytes:
    _check_31("initial request-n", frame.initial_request_n)
    flags = type_word | extra_flags | (FLAG_FOLLOWS if frame.follows else 0)
    if frame.metadata is not None:
        flags |= FLAG_METADATA
    return _finish(
        _HEADER_U32.pack(frame.stream_id, flags, frame.initial_request_n)
        + _metadata_block(frame.metadata)
        + frame.data
    )


def _encode_request_stream(frame: RequestStreamFrame) -> bytes:
    return _encode_request_n_body(0x1800, frame, 0)


def _encode_request_channel(frame: RequestChannelFrame) -> bytes:
    return _encode_request_n_body(0x1C00, frame, FLAG_COMPLETE if frame.complete else 0)


def _encode_request_n(frame: RequestNFrame) -> bytes:
    _check_31("request-n", frame.request_n)
    return _HEADER_U32.pack(frame.stream_id, 0x2000, frame.request_n)


def _encode_cancel(frame: CancelFrame) -> bytes:
    return _HEADER.pack(frame.stream_id, 0x2400)


def _encode_error(frame: ErrorFrame) -> bytes:
    if not 0 <= frame.error_code <= 0xFFFFFFFF:
        raise ValueError(f"error code must be an unsigned 32-bit value, got {frame.error_code}")
    return _finish(_HEADER_U32.pack(frame.stream_id, 0x2C00, frame.error_code) + frame.data)


def _encode_keepalive(frame: KeepaliveFrame) -> bytes:
    if not 0 <= frame.last_received_position <= MAX_63:
        raise ValueError("last received position must be a 63-bit value")
    flags = 0x0C00 | (FLAG_RESPOND if frame.respond else 0)
    return _finish(_HEADER_U64.pack(frame.stream_id, flags, frame.last_received_position) + frame.data)


def _encode_metadata_push(frame: MetadataPushFrame) -> bytes:
    return _finish(_HEADER.pack(frame.stream_id, 0x3000 | FLAG_METADATA) + frame.metadata)


def _encode_lease(frame: LeaseFrame) -> bytes:
    _check_31("lease TTL", frame.ttl)
    _check_31("lease number of requests", frame.number_of_requests)
    flags = 0x0800 | (FLAG_METADATA if frame.metadata is not None else 0)
    return _finish(
        _HEADER_U32_U32.pack(frame.stream_id, flags, frame.ttl, frame.number_of_requests)
        + (frame.metadata or b"")
    )


def _mime_bytes(name: str, value: str) -> bytes:
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"{name} must be US-ASCII, got {value!r}") from None
    if len(raw) > 255:
        raise ValueError(f"{name} is {len(raw)} bytes long; SETUP allows at most 255")
    return bytes((len(raw),)) + raw


def _encode_setup(frame: SetupFrame) -> bytes:
    _check_31("keepalive interval", frame.keepalive_interval)
    _check_31("max lifetime", frame.max_lifetime)
    _check_version(frame.major_version, frame.minor_version)
    flags = 0x0400
    if frame.metadata is not None:
        flags |= FLAG_METADATA
    if frame.lease:
        flags |= FLAG_LEASE
    token = b""
    if frame.resume_token is not None:
        if len(frame.resume_token) > 0xFFFF:
            raise ValueError("resume token is longer than 65,535 bytes")
        flags |= FLAG_RESUME
        token = len(frame.resume_token).to_bytes(2, "big") + frame.resume_token
    return _finish(
        _HEADER.pack(frame.stream_id, flags)
        + _SETUP_FIXED.pack(
            frame.major_version, frame.minor_version, frame.keepalive_interval, frame.max_lifetime
        )
        + token
        + _mime_bytes("metadata MIME type", frame.metadata_mime_type)
        + _mime_bytes("data MIME type", frame.data_mime_type)
        + _metadata_block(frame.metadata)
        + frame.data
    )


def _check_63(name: str, value: int) -> None:
    if not 0 <= value <= MAX_63:
        raise ValueError(f"{name} must be in [0, {MAX_63}], got {value}")


def _check_version(major: int, minor: int) -> None:
    if not (0 <= major <= 0xFFFF and 0 <= minor <= 0xFFFF):
        raise ValueError(f"version {major}.{minor} does not fit two unsigned 16-bit fields")


def _encode_resume(frame: ResumeFrame) -> bytes:
    _check_version(frame.major_version, frame.minor_version)
    _check_63("last received server position", frame.last_received_server_position)
    _check_63("first available client position", frame.first_available_client_position)
    if len(frame.resume_token) > 0xFFFF:
        raise ValueError("resume token is longer than 65,535 bytes")
    return _finish(
        _HEADER.pack(frame.stream_id, 0x3400)
        + struct.pack(">HHH", frame.major_version, frame.minor_version, len(frame.resume_token))
        + frame.resume_token
        + _RESUME_TAIL.pack(frame.last_received_server_position, frame.first_available_client_position)
    )


def _encode_resume_ok(frame: ResumeOkFrame) -> bytes:
    _check_63("last received client position", frame.last_received_client_position)
    return _HEADER_U64.pack(frame.stream_id, 0x3800, frame.last_received_client_position)


def _encode_ext(frame: ExtFrame) -> bytes:
    _check_31("extended type", frame.extended_type)
    flags = 0xFC00 | (FLAG_IGNORE if frame.ignore else 0)
    if frame.metadata is not None:
        flags |= FLAG_METADATA
    return _finish(
        _HEADER_U32.pack(frame.stream_id, flags, frame.extended_type)
        + _metadata_block(frame.metadata)
        + frame.data
    )


_ENCODERS: dict[type, Callable[..., bytes]] = {
    SetupFrame: _encode_setup,
    LeaseFrame: _encode_lease,
    KeepaliveFrame: _encode_keepalive,
    RequestResponseFrame: _encode_request_response,
    RequestFireAndForgetFrame: _encode_fnf,
    RequestStreamFrame: _encode_request_stream,
    RequestChannelFrame: _encode_request_channel,
    RequestNFrame: _encode_request_n,
    CancelFrame: _encode_cancel,
    PayloadFrame: _encode_payload,
    ErrorFrame: _encode_error,
    MetadataPushFrame: _encode_metadata_push,
    ResumeFrame: _encode_resume,
    ResumeOkFrame: _encode_resume_ok,
    ExtFrame: _encode_ext,
}

# --- decoding -----------------------------------------------------------------------------------

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


def _split_metadata(data: bytes, offset: int, flags: int, frame_name: str) -> tuple[bytes | None, bytes]:
    """Split ``data[offset:]`` into (metadata, data) according to the M flag (MD1, MD2)."""
    if not flags & FLAG_METADATA:
        return None, data[offset:]
    if len(data) - offset < 3:
        raise MalformedFrameError(
            f"{frame_name} has the M flag but no room for the 3-byte metadata length",
            ignorable=bool(flags & FLAG_IGNORE),
        )
    md_length = int.from_bytes(data[offset : offset + 3], "big")
    start = offset + 3
    end = start + md_length
    if end > len(data):
        raise MalformedFrameError(
            f"{frame_name} declares {md_length} bytes of metadata but only "
            f"{len(data) - start} remain in the frame",
            ignorable=bool(flags & FLAG_IGNORE),
        )
    return data[start:end], data[end:]


def _require(data: bytes, minimum: int, frame_name: str, flags: int) -> None:
    if len(data) < minimum:
        raise MalformedFrameError(
            f"{frame_name} frame of {len(data)} bytes is shorter than its minimum of {minimum}",
            ignorable=bool(flags & FLAG_IGNORE),
        )


def split_metadata(data: bytes, offset: int, flags: int, frame_name: str) -> tuple[bytes | None, bytes]:
    """Split a frame's tail at ``offset`` into (metadata, data) per its M flag (MD1, MD2)."""
    return _split_metadata(data, offset, flags, frame_name)


def _decode_payload(stream_id: int, flags: int, data: bytes) -> PayloadFrame:
    metadata, body = _split_metadata(data, 6, flags, "PAYLOAD")
    return PayloadFrame(
        stream_id,
        body,
        metadata,
        bool(flags & FLAG_FOLLOWS),
        bool(flags & FLAG_COMPLETE),
        bool(flags & FLAG_NEXT),
    )


def _decode_request_response(stream_id: int, flags: int, data: bytes) -> RequestResponseFrame:
    metadata, body = _split_metadata(data, 6, flags, "REQUEST_RESPONSE")
    return RequestResponseFrame(stream_id, body, metadata, bool(flags & FLAG_FOLLOWS))


def _decode_fnf(stream_id: int, flags: int, data: bytes) -> RequestFireAndForgetFrame:
    metadata, body = _split_metadata(data, 6, flags, "REQUEST_FNF")
    return RequestFireAndForgetFrame(stream_id, body, metadata, bool(flags & FLAG_FOLLOWS))


def _decode_request_stream(stream_id: int, flags: int, data: bytes) -> RequestStreamFrame:
    _require(data, 10, "REQUEST_STREAM", flags)
    request_n = _U32.unpack_from(data, 6)[0] & MAX_31
    metadata, body = _split_metadata(data, 10, flags, "REQUEST_STREAM")
    return RequestStreamFrame(stream_id, request_n, body, metadata, bool(flags & FLAG_FOLLOWS))


def _decode_request_channel(stream_id: int, flags: int, data: bytes) -> RequestChannelFrame:
    _require(data, 10, "REQUEST_CHANNEL", flags)
    request_n = _U32.unpack_from(data, 6)[0] & MAX_31
    metadata, body = _split_metadata(data, 10, flags, "REQUEST_CHANNEL")
    return RequestChannelFrame(
        stream_id,
        request_n,
        body,
        metadata,
        bool(flags & FLAG_FOLLOWS),
        bool(flags & FLAG_COMPLETE),
    )


def _decode_request_n(stream_id: int, flags: int, data: bytes) -> RequestNFrame:
    _require(data, 10, "REQUEST_N", flags)
    return RequestNFrame(stream_id, _U32.unpack_from(data, 6)[0] & MAX_31)


def _decode_cancel(stream_id: int, flags: int, data: bytes) -> CancelFrame:
    return CancelFrame(stream_id)


def _decode_error(stream_id: int, flags: int, data: bytes) -> ErrorFrame:
    _require(data, 10, "ERROR", flags)
    return ErrorFrame(stream_id, _U32.unpack_from(data, 6)[0], data[10:])


def _decode_keepalive(stream_id: int, flags: int, data: bytes) -> KeepaliveFrame:
    _require(data, 14, "KEEPALIVE", flags)
    position = _U64.unpack_from(data, 6)[0] & MAX_63
    return KeepaliveFrame(bool(flags & FLAG_RESPOND), position, data[14:], stream_id)


def _decode_metadata_push(stream_id: int, flags: int, data: bytes) -> MetadataPushFrame:
    # rsocket-py may omit M; the body is metadata either way (MP1).
    return MetadataPushFrame(data[6:], stream_id)


def _decode_lease(stream_id: int, flags: int, data: bytes) -> LeaseFrame:
    _require(data, 14, "LEASE", flags)
    ttl = _U32.unpack_from(data, 6)[0] & MAX_31
    count = _U32.unpack_from(data, 10)[0] & MAX_31
    metadata = data[14:] if flags & FLAG_METADATA else None
    return LeaseFrame(ttl, count, metadata, stream_id)


def _read_mime(data: bytes, offset: int, name: str, flags: int) -> tuple[str, int]:
    if offset >= len(data):
        raise MalformedFrameError(f"SETUP ends before its {name} length", ignorable=bool(flags & FLAG_IGNORE))
    length = data[offset]
    end = offset + 1 + length
    if end > len(data):
        raise MalformedFrameError(
            f"SETUP declares a {length}-byte {name} but only {len(data) - offset - 1} bytes remain",
            ignorable=bool(flags & FLAG_IGNORE),
        )
    # F1: SHOULD be ASCII; decode leniently so a sloppy peer still gets a precise SETUP error later.
    return data[offset + 1 : end].decode("ascii", "replace"), end


def _decode_setup(stream_id: int, flags: int, data: bytes) -> SetupFrame:
    _require(data, 20, "SETUP", flags)
    major, minor, keepalive, lifetime = _SETUP_FIXED.unpack_from(data, 6)
    offset = 18
    token: bytes | None = None
    if flags & FLAG_RESUME:
        if len(data) < offset + 2:
            raise MalformedFrameError(
                "SETUP has the R flag but no resume token length", ignorable=bool(flags & FLAG_IGNORE)
            )
        token_length = int.from_bytes(data[offset : offset + 2], "big")
        offset += 2
        if offset + token_length > len(data):
            raise MalformedFrameError(
                f"SETUP declares a {token_length}-byte resume token that overruns the frame",
                ignorable=bool(flags & FLAG_IGNORE),
            )
        token = data[offset : offset + token_length]
        offset += token_length
    metadata_mime, offset = _read_mime(data, offset, "metadata MIME type", flags)
    data_mime, offset = _read_mime(data, offset, "data MIME type", flags)
    metadata, body = _split_metadata(data, offset, flags, "SETUP")
    return SetupFrame(
        keepalive & MAX_31,
        lifetime & MAX_31,
        metadata_mime,
        data_mime,
        body,
        metadata,
        major,
        minor,
        bool(flags & FLAG_LEASE),
        token,
        stream_id,
    )


def _decode_resume(stream_id: int, flags: int, data: bytes) -> ResumeFrame:
    _require(data, 28, "RESUME", flags)
    major, minor, token_length = struct.unpack_from(">HHH", data, 6)
    end = 12 + token_length
    if end + 16 != len(data):
        raise MalformedFrameError(
            f"RESUME declares a {token_length}-byte token but the frame is {len(data)} bytes long",
            ignorable=bool(flags & FLAG_IGNORE),
        )
    server_position, client_position = _RESUME_TAIL.unpack_from(data, end)
    return ResumeFrame(
        data[12:end],
        server_position & MAX_63,
        client_position & MAX_63,
        major,
        minor,
        stream_id,
    )


def _decode_resume_ok(stream_id: int, flags: int, data: bytes) -> ResumeOkFrame:
    _require(data, 14, "RESUME_OK", flags)
    return ResumeOkFrame(_U64.unpack_from(data, 6)[0] & MAX_63, stream_id)


def _decode_ext(stream_id: int, flags: int, data: bytes) -> ExtFrame:
    _require(data, 10, "EXT", flags)
    extended_type = _U32.unpack_from(data, 6)[0] & MAX_31
    metadata, body = _split_metadata(data, 10, flags, "EXT")
    return ExtFrame(stream_id, extended_type, body, metadata, bool(flags & FLAG_IGNORE))


_DECODERS: dict[int, Callable[[int, int, bytes], Frame]] = {
    FrameType.SETUP: _decode_setup,
    FrameType.LEASE: _decode_lease,
    FrameType.KEEPALIVE: _decode_keepalive,
    FrameType.REQUEST_RESPONSE: _decode_request_response,
    FrameType.REQUEST_FNF: _decode_fnf,
    FrameType.REQUEST_STREAM: _decode_request_stream,
    FrameType.REQUEST_CHANNEL: _decode_request_channel,
    FrameType.REQUEST_N: _decode_request_n,
    FrameType.CANCEL: _decode_cancel,
    FrameType.PAYLOAD: _decode_payload,
    FrameType.ERROR: _decode_error,
    FrameType.METADATA_PUSH: _decode_metadata_push,
    FrameType.RESUME: _decode_resume,
    FrameType.RESUME_OK: _decode_resume_ok,
    FrameType.EXT: _decode_ext,
}


def decode_frame(data: bytes) -> Frame:
    """Decode the bytes of one frame (no TCP length prefix).

    Raises :class:`~anyio_rsocket.errors.MalformedFrameError` for structurally invalid bytes and
    :class:`~anyio_rsocket.errors.UnknownFrameTypeError` for reserved/unassigned types; both carry
    ``ignorable=True`` when the frame had the IGNORE flag (MD2, U1).
    """
    if len(data) < 6:
        raise MalformedFrameError(f"frame of {len(data)} bytes is shorter than the 6-byte header")
    if len(data) > MAX_FRAME_SIZE:
        raise FrameTooLargeError(f"frame of {len(data)} bytes exceeds the {MAX_FRAME_SIZE}-byte limit")
    stream_id, word = _HEADER.unpack_from(data)
    decoder = _DECODERS.get(word >> 10)
    if decoder is None:
        raise UnknownFrameTypeError(word >> 10, ignorable=bool(word & FLAG_IGNORE))
    if type(data) is not bytes:
        data = bytes(data)
    return decoder(stream_id & MAX_31, word & 0x3FF, data)
