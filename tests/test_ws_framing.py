"""The WebSocket data-path framing (anyio_rsocket.transports.wsframes): RFC 6455 frames, masking, limits."""

from __future__ import annotations

import os
import random

import anyio
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import AcceptConnection, BytesMessage, Request

from anyio_rsocket.transports.websocket import WebSocketTransport, accept_websocket
from anyio_rsocket.transports.wsframes import (
    CLOSE_INVALID_DATA,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_NO_STATUS,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_UNSUPPORTED_DATA,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    MessageDecoder,
    WebSocketFrameError,
    apply_mask,
    close_payload,
    encode_close,
    encode_frame,
    encode_messages,
    frame_header,
    parse_close,
)

pytestmark = pytest.mark.anyio

#: The masking key of the examples of RFC 6455 section 5.7.
RFC_KEY = bytes((0x37, 0xFA, 0x21, 0x3D))
SIZES = (0, 1, 3, 4, 5, 125, 126, 127, 8191, 8192, 8193, 65535, 65536, 100_003)


def naive_mask(data: bytes, key: bytes) -> bytes:
    return bytes(byte ^ key[index % 4] for index, byte in enumerate(data))


def server_decoder(limit: int = 1 << 20, drop_limit: int | None = None) -> MessageDecoder:
    """Parses what a client sends: masked frames."""
    return MessageDecoder(masked=True, max_message_size=limit, drop_limit=drop_limit)


def client_decoder(limit: int = 1 << 20) -> MessageDecoder:
    """Parses what a server sends: unmasked frames."""
    return MessageDecoder(masked=False, max_message_size=limit)


def feed_all(decoder: MessageDecoder, data: bytes, step: int | None = None) -> list[bytes]:
    """``data`` in pieces of ``step`` bytes (all at once when ``None``)."""
    if step is None:
        return decoder.feed(data)
    messages: list[bytes] = []
    for offset in range(0, len(data), step):
        messages += decoder.feed(data[offset : offset + step])
    return messages


# --- RFC 6455 section 5.7 examples -----------------------------------------------------------------


def test_rfc_single_frame_examples() -> None:
    assert encode_frame(OP_TEXT, b"Hello") == bytes.fromhex("810548656c6c6f")
    assert encode_frame(OP_TEXT, b"Hello", mask_key=RFC_KEY) == bytes.fromhex("818537fa213d7f9f4d5158")
    assert encode_frame(OP_PING, b"Hello") == bytes.fromhex("890548656c6c6f")
    assert encode_frame(OP_PONG, b"Hello", mask_key=RFC_KEY) == bytes.fromhex("8a8537fa213d7f9f4d5158")


def test_rfc_masking_vector() -> None:
    assert apply_mask(b"Hello", RFC_KEY) == bytes.fromhex("7f9f4d5158")
    assert apply_mask(bytes.fromhex("7f9f4d5158"), RFC_KEY) == b"Hello"


def test_rfc_length_examples() -> None:
    assert frame_header(OP_BINARY, 256) == bytes.fromhex("827e0100")
    assert frame_header(OP_BINARY, 65536) == bytes.fromhex("827f0000000000010000")
    assert encode_frame(OP_BINARY, b"\0" * 256)[:4] == bytes.fromhex("827e0100")


def test_rfc_fragmented_message_with_a_ping_between() -> None:
    """The fragmented "Hello" of section 5.7 (binary here: text is refused), a ping in the middle."""
    wire = bytes.fromhex("020348656c") + bytes.fromhex("890548656c6c6f") + bytes.fromhex("80026c6f")
    for step in (None, 1, 3):
        decoder = client_decoder()
        assert feed_all(decoder, wire, step) == [b"Hello"]
        assert decoder.pings == [b"Hello"]
        assert decoder.error is None and not decoder.mid_message


# --- masking --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_mask_matches_the_definition(size: int) -> None:
    data, key = os.urandom(size), os.urandom(4)
    masked = apply_mask(data, key)
    assert type(masked) is bytes
    assert masked == naive_mask(data, key)
    assert apply_mask(masked, key) == data
    assert apply_mask(bytearray(data), key) == masked


def test_client_frames_use_fresh_keys() -> None:
    wire = encode_messages([b"same", b"same"], mask=True)
    assert len(wire) == 2 * (2 + 4 + 4)
    first, second = wire[:10], wire[10:]
    assert first[:2] == second[:2] == bytes((0x82, 0x84))
    assert first[2:6] != second[2:6]  # 1 chance in 2**32 of a false failure


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", [True, False])
@pytest.mark.parametrize("step", [None, 1, 7, 4096])
def test_round_trip(mask: bool, step: int | None) -> None:
    payloads = [os.urandom(size) for size in SIZES]
    if step == 1:
        payloads = payloads[:9]  # byte by byte: the small ones
    decoder = MessageDecoder(masked=mask, max_message_size=1 << 20)
    assert feed_all(decoder, encode_messages(payloads, mask=mask), step) == payloads
    assert not decoder.mid_message and decoder.error is None and decoder.close is None


def test_random_splits_of_a_batch() -> None:
    rng = random.Random(6455)
    payloads = [rng.randbytes(rng.choice((0, 5, 200, 70_000))) for _ in range(40)]
    wire = encode_messages(payloads, mask=True)
    decoder = server_decoder()
    messages: list[bytes] = []
    position = 0
    while position < len(wire):
        size = rng.randint(1, 30_000)
        messages += decoder.feed(wire[position : position + size])
        position += size
    assert messages == payloads


def test_wsproto_reads_what_we_write_and_we_read_what_it_writes() -> None:
    payloads = [b"", b"x", os.urandom(300), os.urandom(70_000)]
    for client in (True, False):
        ours = encode_messages(payloads, mask=client)
        peer = Connection(ConnectionType.SERVER if client else ConnectionType.CLIENT)
        peer.receive_data(ours)
        received = [bytes(event.data) for event in peer.events() if isinstance(event, BytesMessage)]
        assert received == payloads
        theirs = b"".join(peer.send(BytesMessage(payload)) for payload in payloads)
        assert MessageDecoder(masked=not client, max_message_size=1 << 20).feed(theirs) == payloads


def test_fragments_masked_with_their_own_keys() -> None:
    wire = (
        encode_frame(OP_BINARY, b"abc", fin=False, mask_key=b"\1\2\3\4")
        + encode_frame(OP_PING, b"p", mask_key=b"\5\6\7\x08")
        + encode_frame(OP_CONTINUATION, b"defg", fin=False, mask_key=b"\x09\x0a\x0b\x0c")
        + encode_frame(OP_CONTINUATION, b"h", mask_key=b"\x0d\x0e\x0f\x10")
    )
    for step in (None, 1, 5):
        decoder = server_decoder()
        assert feed_all(decoder, wire, step) == [b"abcdefgh"]
        assert decoder.pings == [b"p"]


def test_mid_message() -> None:
    decoder = client_decoder()
    assert not decoder.mid_message
    decoder.feed(b"\x82")  # half a header
    assert decoder.mid_message
    assert decoder.feed(b"\x03ab") == [] and decoder.mid_message  # part of a payload
    assert decoder.feed(b"c") == [b"abc"] and not decoder.mid_message
    decoder.feed(encode_frame(OP_BINARY, b"a", fin=False))  # a whole fragment, more to come
    assert decoder.mid_message and decoder.partial_size == 1
    decoder.feed(encode_frame(OP_PONG, b""))
    assert decoder.mid_message
    assert decoder.feed(encode_frame(OP_CONTINUATION, b"b")) == [b"ab"] and not decoder.mid_message


# --- control frames and Close ----------------------------------------------------------------------


def test_pings_and_pongs() -> None:
    decoder = client_decoder()
    wire = encode_frame(OP_PING, b"1") + encode_frame(OP_PONG, b"x") + encode_frame(OP_PING, b"")
    assert decoder.feed(wire) == []
    assert decoder.pings == [b"1", b""]


def test_close_stops_parsing_after_earlier_messages() -> None:
    decoder = client_decoder()
    wire = encode_messages([b"before"], mask=False) + encode_close(1001, "bye", mask=False)
    assert decoder.feed(wire + encode_messages([b"after"], mask=False)) == [b"before"]
    assert decoder.close == (1001, "bye") and decoder.error is None
    assert decoder.feed(encode_messages([b"later"], mask=False)) == []


def test_close_payloads() -> None:
    assert parse_close(b"") == (CLOSE_NO_STATUS, "")
    assert parse_close(close_payload(1000, "done")) == (1000, "done")
    assert parse_close(close_payload(4999)) == (4999, "")
    assert close_payload(None) == close_payload(CLOSE_NO_STATUS) == b""
    long_reason = "é" * 100  # 200 bytes: cut at a character boundary to fit 125
    payload = close_payload(1000, long_reason)
    assert len(payload) <= 125 and parse_close(payload)[1] == "é" * 61
    for bad in (b"\x03", (1005).to_bytes(2, "big"), (999).to_bytes(2, "big"), (5000).to_bytes(2, "big")):
        with pytest.raises(WebSocketFrameError) as exc_info:
            parse_close(bad)
        assert exc_info.value.code == CLOSE_PROTOCOL_ERROR
    with pytest.raises(WebSocketFrameError) as exc_info:
        parse_close(b"\x03\xe8\xff")
    assert exc_info.value.code == CLOSE_INVALID_DATA


def test_encoding_refuses_impossible_frames() -> None:
    with pytest.raises(ValueError, match="control"):
        encode_frame(OP_PING, b"x" * 126)
    with pytest.raises(ValueError, match="control"):
        encode_frame(OP_CLOSE, b"", fin=False)
    with pytest.raises(ValueError, match="4 bytes"):
        encode_frame(OP_BINARY, b"x", mask_key=b"abc")


# --- malformed input ---------------------------------------------------------------------------------


def expect_error(decoder: MessageDecoder, wire: bytes, match: str, code: int = CLOSE_PROTOCOL_ERROR) -> None:
    before = encode_messages([b"ok"], mask=decoder._masked)  # delivered before the bad frame
    assert decoder.feed(before + wire) == [b"ok"]
    assert decoder.error is not None, wire
    assert match in decoder.error.message
    assert decoder.error.code == code
    assert decoder.feed(before) == []  # nothing more is parsed
    assert not decoder.mid_message


@pytest.mark.parametrize(
    ("wire", "match"),
    [
        (bytes((0x82 | 0x40, 0x00)), "RSV"),
        (bytes((0x82 | 0x10, 0x00)), "RSV"),
        (bytes((0x83, 0x00)), "unknown data opcode 0x3"),
        (bytes((0x8B, 0x00)), "unknown control opcode 0xb"),
        (bytes((0x09, 0x00)), "fragmented control frame"),
        (bytes((0x89, 0x7E, 0x00, 0x7E)) + b"\0" * 126, "control frame of 126 bytes"),
        (bytes((0x80, 0x01, 0x00)), "continuation frame outside"),
        (bytes((0x02, 0x01, 0x00, 0x82, 0x00)), "new message before the end"),
        (bytes((0x82, 0x7E, 0x00, 0x05)) + b"12345", "shortest form"),
        (bytes((0x82, 0x7F)) + (5).to_bytes(8, "big") + b"12345", "shortest form"),
        (bytes((0x82, 0x7F)) + (1 << 63).to_bytes(8, "big"), "most significant bit"),
        (bytes((0x82, 0x81)) + b"\0\0\0\0x", "masked frame from the server"),
        (bytes((0x88, 0x01, 0x03)), "1-byte payload"),
    ],
)
def test_malformed_frames_from_a_server(wire: bytes, match: str) -> None:
    expect_error(client_decoder(), wire, match)


def test_unmasked_frame_from_a_client() -> None:
    expect_error(server_decoder(), bytes((0x82, 0x01, 0x00)), "unmasked frame from the client")


def test_text_messages_are_refused() -> None:
    expect_error(
        server_decoder(),
        bytes.fromhex("818537fa213d7f9f4d5158"),  # the RFC's masked "Hello"
        "binary only",
        CLOSE_UNSUPPORTED_DATA,
    )


# --- the size limit --------------------------------------------------------------------------------


def test_message_at_the_limit_is_accepted() -> None:
    decoder = server_decoder(limit=1000)
    payload = os.urandom(1000)
    assert decoder.feed(encode_messages([payload], mask=True)) == [payload]


def test_oversized_message_is_dropped_then_refused() -> None:
    """Refused from its header on: nothing kept, the rest read and dropped, the error at its end."""
    decoder = server_decoder(limit=1000)
    wire = encode_messages([b"x" * 5000], mask=True)
    assert decoder.feed(wire[:100]) == []
    assert decoder.refusing and not decoder.partial and decoder.partial_size == 0
    assert decoder.mid_message and decoder.error is None
    assert not decoder._frame_chunks
    assert decoder.feed(wire[100:-1]) == []
    assert decoder.error is None and decoder.dropped == 5000 - 1
    decoder.feed(wire[-1:])
    assert decoder.error is not None and decoder.error.code == CLOSE_MESSAGE_TOO_BIG
    assert "1000-byte frame limit" in decoder.error.message


def test_oversized_fragmented_message() -> None:
    """The fragments add up past the limit: refused at the header of the one that passes it."""
    decoder = server_decoder(limit=1000)
    first = encode_frame(OP_BINARY, b"a" * 600, fin=False, mask_key=os.urandom(4))
    second = encode_frame(OP_CONTINUATION, b"b" * 600, fin=False, mask_key=os.urandom(4))
    ping = encode_frame(OP_PING, b"still here", mask_key=os.urandom(4))
    last = encode_frame(OP_CONTINUATION, b"c", mask_key=os.urandom(4))
    assert decoder.feed(first) == [] and decoder.partial_size == 600
    assert decoder.feed(second + ping) == []
    assert decoder.refusing and decoder.partial_size == 0 and decoder.dropped == 1200
    assert decoder.pings == [b"still here"] and decoder.error is None  # control frames still served
    decoder.feed(last)
    assert decoder.error is not None and decoder.error.code == CLOSE_MESSAGE_TOO_BIG


def test_dropping_stops_at_the_drop_limit() -> None:
    """An endless message is not read forever: past ``drop_limit`` dropped bytes, it is refused."""
    decoder = server_decoder(limit=100, drop_limit=10_000)
    assert decoder.feed(frame_header(OP_BINARY, 1 << 40, masked=True) + b"\0\0\0\0") == []
    decoder.feed(b"\0" * 10_000)
    assert decoder.error is None
    decoder.feed(b"\0")
    assert decoder.error is not None and decoder.error.code == CLOSE_MESSAGE_TOO_BIG


def test_trickled_message_is_held_compactly() -> None:
    """Byte by byte, the payload is copied into one bytearray, not kept as a chunk per byte."""
    decoder = server_decoder()
    wire = encode_messages([b"m" * 5000], mask=True)
    for offset in range(3000):
        decoder.feed(wire[offset : offset + 1])
    assert len(decoder._frame_chunks) == 1
    assert decoder.feed(wire[3000:]) == [b"m" * 5000]


# --- the transport ---------------------------------------------------------------------------------


async def test_bytes_right_behind_the_upgrade_request_are_kept() -> None:
    """A client that sends its first message with the upgrade request does not lose it."""
    client = WSConnection(ConnectionType.CLIENT)
    request = client.send(Request(host="localhost", target="/"))
    message = encode_messages([b"early"], mask=True)
    received: list[list[bytes]] = []
    with anyio.fail_after(5):
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            async with anyio.create_task_group() as tg:

                async def serve(stream: anyio.abc.SocketStream) -> None:
                    transport = await accept_websocket(stream)
                    assert transport is not None
                    received.append(await transport.receive())
                    await transport.aclose()
                    tg.cancel_scope.cancel()

                tg.start_soon(listener.serve, serve)
                async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                    await stream.send(request + message)
                    client.receive_data(await stream.receive())
                    assert any(isinstance(event, AcceptConnection) for event in client.events())
                    await anyio.sleep_forever()
    assert received == [[b"early"]]


async def test_pings_are_answered_and_peer_close_is_echoed() -> None:
    channel = _ScriptedChannel(
        encode_frame(OP_PING, b"hi", mask_key=os.urandom(4))
        + encode_messages([b"m"], mask=True)
        + encode_close(1001, "away", mask=True)
    )
    transport = WebSocketTransport(Connection(ConnectionType.SERVER), channel)
    assert await transport.receive() == [b"m"]
    assert channel.written == [encode_frame(OP_PONG, b"hi") + encode_close(1001, mask=False)]
    with pytest.raises(Exception, match="code 1001: away"):
        await transport.receive()


class _ScriptedChannel:
    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)
        self.written: list[bytes] = []

    async def read(self) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    async def write(self, data: bytes) -> None:
        self.written.append(data)

    async def aclose(self) -> None:
        pass
