"""RFC 6455 framing for the WebSocket data path: build frames, mask them, and reassemble messages.

The HTTP upgrade is wsproto's job; once it is done, :class:`~.websocket.WebSocketTransport` frames
and parses with this module, which is sans-IO and does only what RSocket over WebSocket needs (no
extensions, binary messages only):

* :func:`encode_messages` turns a batch of RSocket frames into binary WebSocket frames, one frame per
  message, masked with fresh random keys when we are the client (RFC 6455 section 5.3);
* :class:`MessageDecoder` turns bytes read from the peer into complete binary messages, answering
  for every rule of sections 5.2 to 5.5: the RSV bits, known opcodes, masking required from clients
  and forbidden from servers, minimal payload lengths, control frames (final, at most 125 bytes,
  allowed between the fragments of a message), continuation frames, the Close payload. A message
  announced larger than the limit is refused before any of it is kept.

Masking (RFC 6455 section 5.3, every byte a client sends) is the one per-byte cost of the data
path. Without a C extension of our own it is done with Python built-ins: small payloads as one
big-integer XOR (``int.from_bytes``), larger ones with four ``bytes.translate`` passes over strided
slices, about 1 ms per MiB. When the compiled masking function of the ``websockets`` library is
installed (``pip install anyio-rsocket[speedups]``), it is used instead, at about 20 us per MiB;
see :data:`ACCELERATOR`. Either way a large frame is built, and a large message unmasked, with a
single copy of its payload plus the masking pass.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence

from ..wire.frames import MAX_FRAME_SIZE
from ..wire.framing import SMALL_CHUNK, append_chunk

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
#: Reported for a Close without a status code; never sent (RFC 6455 section 7.4.1).
CLOSE_NO_STATUS = 1005
CLOSE_INVALID_DATA = 1007
CLOSE_MESSAGE_TOO_BIG = 1009

#: Close codes a peer may send (section 7.4): the registered ones, then the library and private range.
_VALID_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))

#: Longest payload of a control frame (section 5.5).
MAX_CONTROL_PAYLOAD = 125
#: Payloads from this length on are masked with ``bytes.translate`` rather than one integer XOR.
_TRANSLATE_FROM = 8192
#: Payloads from this length on are not copied into the buffer of the frames around them
#: (:func:`build_messages`): an extra write costs less than copying them.
LARGE_PAYLOAD = 131072
_XOR_TABLES = tuple(bytes(byte ^ key for byte in range(256)) for key in range(256))

_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")


class WebSocketFrameError(Exception):
    """The peer broke RFC 6455 (or sent what RSocket cannot carry); ``code`` is the Close code to send."""

    def __init__(self, message: str, code: int = CLOSE_PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


#: ``mask(key, buffer)``: XOR the whole ``bytearray`` in place with the 4-byte key repeated.
InPlaceMask = Callable[[bytes, bytearray], None]


def _xor_small(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """``data`` XOR ``key`` repeated, as one big-integer XOR (the fastest pure way below 8 KiB)."""
    n = len(data)
    if not n:
        return b""
    pattern = (key * ((n + 3) >> 2))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(pattern, "little")).to_bytes(n, "little")


def _websockets_mask() -> InPlaceMask | None:
    """``websockets.speedups.apply_mask(data, mask) -> bytes``, adapted to mask in place."""
    try:
        from websockets.speedups import apply_mask  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # not installed, or installed without its C extension
        return None
    apply: Callable[[bytearray, bytes], bytes] = apply_mask

    def mask(key: bytes, buffer: bytearray) -> None:
        buffer[:] = apply(buffer, key)

    return mask


def _checked(mask: InPlaceMask) -> bool:
    """Whether ``mask`` masks in place exactly as RFC 6455 says, odd lengths included."""
    key = bytes.fromhex("37fa213d")
    for size in (0, 1, 5, 8, 13, 4099):
        data = bytes(range(256)) * 16 + b"xyz"
        buffer = bytearray(data[:size])
        mask(key, buffer)
        if bytes(buffer) != _xor_small(data[:size], key):
            return False
    return True


def load_accelerator() -> tuple[str, InPlaceMask] | None:
    """The first compiled masking function found that passes a check, with its name."""
    for name, load in (("websockets.speedups", _websockets_mask),):
        try:
            mask = load()
            if mask is not None and _checked(mask):
                return name, mask
        except Exception:  # absent, built for another interpreter, or not what we expect
            continue
    return None


_found = load_accelerator()
#: Where the compiled masking function comes from (``"websockets.speedups"``, with the ``speedups``
#: extra), or ``None``: masking uses Python built-ins only.
ACCELERATOR: str | None = _found[0] if _found is not None else None
#: The compiled in-place masking function, or ``None`` (tests set it to ``None`` to run the pure path).
_c_mask: InPlaceMask | None = _found[1] if _found is not None else None
del _found


def mask_in_place(buffer: bytearray, key: bytes, start: int = 0) -> None:
    """XOR ``buffer[start:]`` in place with ``key`` repeated from ``start`` (section 5.3).

    ``start`` lets a frame be built in one buffer, header first, then masked where it lies.
    """
    c_mask = _c_mask
    if c_mask is not None:
        if not start:
            c_mask(key, buffer)
            return
        # The compiled function masks a whole buffer: shift the key so that its first byte falls
        # on ``start``, and put the (short) head back afterwards.
        head = buffer[:start]
        shift = start & 3
        c_mask(key[4 - shift :] + key[: 4 - shift] if shift else key, buffer)
        buffer[:start] = head
        return
    n = len(buffer) - start
    if n < _TRANSLATE_FROM:
        if n > 0:
            buffer[start:] = _xor_small(memoryview(buffer)[start:], key)
        return
    tables = _XOR_TABLES
    for index in range(4):
        position = start + index
        buffer[position::4] = buffer[position::4].translate(tables[key[index]])


def _masked(data: bytes | bytearray, key: bytes) -> bytes | bytearray:
    """``data`` masked with ``key``: small payloads as ``bytes`` (one integer XOR when pure), larger
    ones (and all with the accelerator) as a ``bytearray`` masked in place."""
    if _c_mask is None and len(data) < _TRANSLATE_FROM:
        return _xor_small(data, key)
    buffer = bytearray(data)
    mask_in_place(buffer, key)
    return buffer


def apply_mask(data: bytes | bytearray, key: bytes) -> bytes:
    """``data`` XOR the 4-byte ``key`` repeated (section 5.3): masks, and unmasks, a payload."""
    masked = _masked(data, key)
    return masked if type(masked) is bytes else bytes(masked)


def frame_header(opcode: int, length: int, *, fin: bool = True, masked: bool = False) -> bytes:
    """The first 2, 4 or 10 bytes of a frame (without its masking key)."""
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if masked else 0
    if length < 126:
        return bytes((first, mask_bit | length))
    if length < 65536:
        return _HEADER_16.pack(first, mask_bit | 126, length)
    return _HEADER_64.pack(first, mask_bit | 127, length)


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, mask_key: bytes | None = None) -> bytes:
    """One frame: masked with the 4-byte ``mask_key`` when given (a client must mask, section 5.1)."""
    if opcode >= OP_CLOSE and (not fin or len(payload) > MAX_CONTROL_PAYLOAD):
        raise ValueError("a control frame is final and carries at most 125 bytes")
    if mask_key is None:
        return frame_header(opcode, len(payload), fin=fin) + payload
    if len(mask_key) != 4:
        raise ValueError("a masking key is 4 bytes")
    return b"".join(
        (frame_header(opcode, len(payload), fin=fin, masked=True), mask_key, apply_mask(payload, mask_key))
    )


def encode_messages(payloads: Sequence[bytes], *, mask: bool) -> bytes:
    """Each payload as one unfragmented binary message, all joined for a single write.

    ``mask`` (the client side) masks each frame with its own key from ``os.urandom``.
    """
    return b"".join(build_messages(payloads, mask=mask))


def build_messages(payloads: Sequence[bytes], *, mask: bool) -> list[bytes | bytearray]:
    """:func:`encode_messages` as the buffers to write one after the other, sparing copies.

    Frames are joined into one buffer, except that a payload of :data:`LARGE_PAYLOAD` bytes or more
    is not copied into it: unmasked, it is written as it is, behind the buffer that ends with its
    header; masked, it is copied once into a buffer of its own behind its header and key, and
    masked where it lies.
    """
    buffers: list[bytes | bytearray] = []
    parts: list[bytes | bytearray] = []
    append = parts.append
    if not mask:
        for payload in payloads:
            length = len(payload)
            if length < 126:
                append(bytes((0x82, length)))
            elif length < 65536:
                append(_HEADER_16.pack(0x82, 126, length))
            else:
                append(_HEADER_64.pack(0x82, 127, length))
                if length >= LARGE_PAYLOAD:
                    buffers.append(b"".join(parts))
                    buffers.append(payload)
                    parts.clear()
                    continue
            append(payload)
        if parts:
            buffers.append(b"".join(parts))
        return buffers
    keys = os.urandom(4 * len(payloads))
    for index, payload in enumerate(payloads):
        length = len(payload)
        key = keys[4 * index : 4 * index + 4]
        if length < 126:
            append(bytes((0x82, 0x80 | length)))
        elif length < 65536:
            append(_HEADER_16.pack(0x82, 0xFE, length))
        elif length < LARGE_PAYLOAD:
            append(_HEADER_64.pack(0x82, 0xFF, length))
        else:
            if parts:
                buffers.append(b"".join(parts))
                parts.clear()
            frame = bytearray(_HEADER_64.pack(0x82, 0xFF, length))
            frame += key
            frame += payload
            mask_in_place(frame, key, 14)
            buffers.append(frame)
            continue
        append(key)
        append(_masked(payload, key))
    if parts:
        buffers.append(b"".join(parts))
    return buffers


def close_payload(code: int | None, reason: str = "") -> bytes:
    """The payload of a Close frame: nothing, or the 2-byte code and a UTF-8 reason (section 5.5.1).

    The reason is cut (at a character boundary) so that the frame stays within 125 bytes.
    """
    if code is None or code == CLOSE_NO_STATUS:
        return b""
    encoded = reason.encode("utf-8")[: MAX_CONTROL_PAYLOAD - 2].decode("utf-8", "ignore").encode("utf-8")
    return code.to_bytes(2, "big") + encoded


def encode_close(code: int | None, reason: str = "", *, mask: bool) -> bytes:
    """A Close frame (masked with a fresh key when ``mask``)."""
    return encode_frame(OP_CLOSE, close_payload(code, reason), mask_key=os.urandom(4) if mask else None)


def parse_close(payload: bytes) -> tuple[int, str]:
    """The code and reason of a received Close; an empty payload is ``(1005, "")``."""
    if not payload:
        return CLOSE_NO_STATUS, ""
    if len(payload) == 1:
        raise WebSocketFrameError("a Close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if code not in _VALID_CLOSE_CODES and not 3000 <= code <= 4999:
        raise WebSocketFrameError(f"invalid Close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise WebSocketFrameError("a Close reason that is not UTF-8", CLOSE_INVALID_DATA) from None
    return code, reason


class MessageDecoder:
    """Reassembles the binary messages of a byte stream of WebSocket frames (sans-IO).

    :meth:`feed` returns every message completed by the bytes given; what else arrived is left in
    attributes for the caller to act on: :attr:`pings` (payloads to answer with pongs),
    :attr:`close` (the peer's code and reason), :attr:`error` (a :class:`WebSocketFrameError`: the
    peer broke the protocol, sent a text message, or a message over the limit). Once ``close`` or
    ``error`` is set, nothing more is parsed. Messages before a Close or an error are returned.

    ``masked`` says whether the peer's frames must be masked (we are the server) or must not be (we
    are the client). A message is refused as soon as a frame header announces more than
    ``max_message_size`` bytes in all; the rest of it is read and dropped without keeping any of it,
    up to ``drop_limit`` bytes (by default the 16,777,215-byte wire maximum), and ``error`` is set
    once it has ended (so that the peer is not cut
    off mid-send and reads our answer). A frame or message arriving in pieces holds memory in
    proportion to the bytes received (:func:`~anyio_rsocket.wire.framing.append_chunk`).
    """

    __slots__ = (
        "_frame_chunks",
        "_frame_fin",
        "_frame_key",
        "_frame_opcode",
        "_frame_remaining",
        "_head",
        "_in_frame",
        "_in_message",
        "_masked",
        "_stopped",
        "close",
        "drop_limit",
        "dropped",
        "error",
        "max_message_size",
        "partial",
        "partial_size",
        "pings",
        "refusing",
    )

    def __init__(self, *, masked: bool, max_message_size: int, drop_limit: int | None = None) -> None:
        self._masked = masked
        self.max_message_size = max_message_size
        self.drop_limit = MAX_FRAME_SIZE if drop_limit is None else drop_limit
        self._head = b""  # the start of a frame header, shorter than the whole header
        self._in_frame = False  # a frame header is parsed, part of its payload is still to come
        self._frame_opcode = 0
        self._frame_fin = False
        self._frame_key = b""  # its masking key (empty: not masked)
        self._frame_remaining = 0  # its payload bytes still to come
        self._frame_chunks: list[bytes | bytearray | memoryview] = []  # its payload so far (still masked)
        self._in_message = False  # a fragmented binary message is in progress
        self.partial: list[bytes | bytearray] = []  # its complete fragments, unmasked
        self.partial_size = 0
        self.refusing = False  # the message in progress is over the limit and being dropped
        self.dropped = 0
        self.pings: list[bytes] = []
        self.close: tuple[int, str] | None = None
        self.error: WebSocketFrameError | None = None
        self._stopped = False

    @property
    def mid_message(self) -> bool:
        """Whether part of a frame or of a fragmented message has arrived but not all of it."""
        return bool(self._head) or self._in_frame or self._in_message

    def feed(self, data: bytes) -> list[bytes]:
        """Parse ``data``; return every binary message it completes, in order."""
        messages: list[bytes] = []
        if self._stopped:
            return messages
        if type(data) is not bytes:
            data = bytes(data)  # pieces of it are kept as views: it must not change
        try:
            self._feed(data, messages)
        except WebSocketFrameError as exc:
            self._stop(exc)
        return messages

    def _stop(self, error: WebSocketFrameError | None) -> None:
        self.error = error
        self._stopped = True
        self._head = b""
        self._in_frame = False
        self._in_message = False
        self._frame_chunks = []
        self.partial = []
        self.partial_size = 0

    def _feed(self, data: bytes, messages: list[bytes]) -> None:
        position = 0
        size = len(data)
        if self._in_frame:  # the rest of a frame's payload
            remaining = self._frame_remaining
            if size < remaining:
                self._frame_remaining = remaining - size
                self._keep(data)
                return
            self._keep(data, 0, remaining)
            self._in_frame = False
            chunks = self._frame_chunks
            self._frame_chunks = []
            key = self._frame_key
            if key:  # one copy to put the pieces together, unmasked where they lie
                buffer = bytearray().join(chunks)
                mask_in_place(buffer, key)
                payload = bytes(buffer)
            elif len(chunks) == 1 and type(chunks[0]) is bytes:
                payload = chunks[0]  # the whole read: no copy
            else:
                payload = b"".join(chunks)
            if not self._frame_done(self._frame_opcode, self._frame_fin, payload, messages):
                return
            position = remaining
        elif self._head:
            data = self._head + data
            self._head = b""
            size = len(data)
        masked = self._masked
        while size - position >= 2:
            first = data[position]
            second = data[position + 1]
            length = second & 0x7F
            start = position + 2
            if length == 126:
                if size - start < 2:
                    break
                length = (data[start] << 8) | data[start + 1]
                start += 2
                if length < 126:
                    raise WebSocketFrameError("a payload length not in its shortest form")
            elif length == 127:
                if size - start < 8:
                    break
                length = int.from_bytes(data[start : start + 8], "big")
                start += 8
                if length >> 63:
                    raise WebSocketFrameError("a payload length with its most significant bit set")
                if length < 65536:
                    raise WebSocketFrameError("a payload length not in its shortest form")
            key = b""
            if second & 0x80:
                if not masked:
                    raise WebSocketFrameError("a masked frame from the server")
                if size - start < 4:
                    break
                key = data[start : start + 4]
                start += 4
            elif masked:
                raise WebSocketFrameError("an unmasked frame from the client")
            opcode = first & 0x0F
            fin = first >= 0x80
            if first & 0x70:
                raise WebSocketFrameError("a frame with RSV bits set (no extension was agreed)")
            self._check_header(opcode, fin, length)
            end = start + length
            if end <= size:
                payload = data[start:end]
                if key:
                    payload = apply_mask(payload, key)
                position = end
                if not self._frame_done(opcode, fin, payload, messages):
                    return
                continue
            # A frame whose payload is still to come.
            self._in_frame = True
            self._frame_opcode = opcode
            self._frame_fin = fin
            self._frame_key = key
            self._frame_remaining = end - size
            if start < size:
                self._keep(data, start)
            return
        if position < size:
            self._head = bytes(data[position:])

    def _check_header(self, opcode: int, fin: bool, length: int) -> None:
        """Refuse what a frame header announces, or start refusing an oversized message."""
        if opcode >= OP_CLOSE:
            if opcode > OP_PONG:
                raise WebSocketFrameError(f"unknown control opcode {opcode:#x}")
            if not fin:
                raise WebSocketFrameError("a fragmented control frame")
            if length > MAX_CONTROL_PAYLOAD:
                raise WebSocketFrameError(f"a control frame of {length} bytes (at most 125)")
            return
        if opcode == OP_BINARY:
            if self._in_message:
                raise WebSocketFrameError("a new message before the end of the fragmented one")
        elif opcode == OP_CONTINUATION:
            if not self._in_message:
                raise WebSocketFrameError("a continuation frame outside a fragmented message")
        elif opcode == OP_TEXT:
            raise WebSocketFrameError(
                "text WebSocket messages are not RSocket frames (binary only)", CLOSE_UNSUPPORTED_DATA
            )
        else:
            raise WebSocketFrameError(f"unknown data opcode {opcode:#x}")
        if not self.refusing and self.partial_size + length > self.max_message_size:
            self.refusing = True
            self.dropped = self.partial_size
            self.partial = []
            self.partial_size = 0
        self._in_message = not fin

    def _keep(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        """Hold ``data[start:end]``, part of a frame's payload (or count it, for a message being
        refused), in memory proportional to its bytes (see
        :func:`~anyio_rsocket.wire.framing.append_chunk`): a piece of at least ``SMALL_CHUNK`` bytes
        as a view of the data it came in (no copy; the transport reads at most 16 times that much at
        once), smaller pieces copied together."""
        stop = len(data) if end is None else end
        if self.refusing and self._frame_opcode < OP_CLOSE:
            self.dropped += stop - start
            if self.dropped > self.drop_limit:
                raise self._too_big()
            return
        chunks = self._frame_chunks
        if stop - start >= SMALL_CHUNK:
            chunks.append(data if not start and stop == len(data) else memoryview(data)[start:stop])
            return
        last = chunks[-1] if chunks else None
        if type(last) is bytearray:
            last += memoryview(data)[start:stop]
        elif stop > start:
            chunks.append(bytearray(memoryview(data)[start:stop]))

    def _too_big(self) -> WebSocketFrameError:
        return WebSocketFrameError(
            f"WebSocket message announced more than the {self.max_message_size}-byte frame limit",
            CLOSE_MESSAGE_TOO_BIG,
        )

    def _frame_done(self, opcode: int, fin: bool, payload: bytes, messages: list[bytes]) -> bool:
        """Act on a complete frame; ``False`` once parsing must stop (a Close or an error)."""
        if opcode < OP_CLOSE:
            if self.refusing:
                self.dropped += len(payload)  # empty if the frame came in pieces (counted by _keep)
                if fin or self.dropped > self.drop_limit:
                    raise self._too_big()
                return True
            if fin and not self.partial:
                messages.append(payload)
                return True
            append_chunk(self.partial, payload)
            self.partial_size += len(payload)
            if fin:
                messages.append(b"".join(self.partial))
                self.partial = []
                self.partial_size = 0
            return True
        if opcode == OP_PING:
            self.pings.append(payload)
        elif opcode == OP_CLOSE:
            self.close = parse_close(payload)
            self._stop(None)
            return False
        return True  # a pong: nothing to do (we never ping)


__all__ = [
    "ACCELERATOR",
    "CLOSE_INVALID_DATA",
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_NORMAL",
    "CLOSE_NO_STATUS",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_UNSUPPORTED_DATA",
    "LARGE_PAYLOAD",
    "MAX_CONTROL_PAYLOAD",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "MessageDecoder",
    "WebSocketFrameError",
    "apply_mask",
    "build_messages",
    "close_payload",
    "encode_close",
    "encode_frame",
    "encode_messages",
    "frame_header",
    "mask_in_place",
    "parse_close",
]
