"""Golden byte vectors of checklist section 17 (TCP, length prefix included), both directions.

Every vector is written out literally from the checklist, so these tests pin the wire format
independently of the codec's own constants. Checklist IDs are cited in each test name/docstring.
"""

from __future__ import annotations

import pytest

from anyio_rsocket.errors import ErrorCode
from anyio_rsocket.frames import (
    CancelFrame,
    ErrorFrame,
    ExtFrame,
    Frame,
    FrameType,
    KeepaliveFrame,
    LeaseFrame,
    MetadataPushFrame,
    PayloadFrame,
    RequestChannelFrame,
    RequestFireAndForgetFrame,
    RequestNFrame,
    RequestResponseFrame,
    RequestStreamFrame,
    ResumeFrame,
    ResumeOkFrame,
    SetupFrame,
    decode_frame,
    encode_frame,
)
from anyio_rsocket.framing import FrameBuffer, prefix_frames


def _hex(text: str) -> bytes:
    """Bytes from the checklist's spaced hex notation (``|`` separators are ignored)."""
    return bytes.fromhex(text.replace("|", " "))


def _check_golden(frame: Frame, wire: bytes) -> None:
    """``frame`` encodes to exactly ``wire`` (TCP-prefixed) and ``wire`` decodes back to ``frame``."""
    encoded = encode_frame(frame)
    assert prefix_frames([encoded]) == wire
    # T1: the 3-byte prefix is the length of the frame, not counting the prefix itself.
    assert int.from_bytes(wire[:3], "big") == len(wire) - 3
    assert encoded == wire[3:]
    assert decode_frame(wire[3:]) == frame
    # The same bytes read from a TCP stream through the length-prefix reader.
    assert [decode_frame(raw) for raw in FrameBuffer().feed(wire)] == [frame]


def test_cancel_golden_vector_T1() -> None:
    """Section 17 CANCEL s=5: ``00 00 06 | 00 00 00 05 | 24 00`` (T1 prefix, empty body)."""
    _check_golden(CancelFrame(stream_id=5), _hex("00 00 06 | 00 00 00 05 | 24 00"))


def test_request_n_golden_vector_T1_F5() -> None:
    """Section 17 REQUEST_N s=1 n=10 (T1, F5: 31-bit request-n)."""
    _check_golden(
        RequestNFrame(stream_id=1, request_n=10),
        _hex("00 00 0a | 00 00 00 01 | 20 00 | 00 00 00 0a"),
    )


def test_request_stream_golden_vector_T1_RN5() -> None:
    """Section 17 REQUEST_STREAM s=1 n=max data "ab" (RN5: max is 2^31-1, top bit clear)."""
    _check_golden(
        RequestStreamFrame(stream_id=1, initial_request_n=0x7FFFFFFF, data=b"ab"),
        _hex("00 00 0c | 00 00 00 01 | 18 00 | 7f ff ff ff | 61 62"),
    )


def test_keepalive_golden_vector_K2_K4() -> None:
    """Section 17 KEEPALIVE with R, position 0 (K2 respond flag 0x080, K4 zero position)."""
    _check_golden(
        KeepaliveFrame(respond=True, last_received_position=0, data=b""),
        _hex("00 00 0e | 00 00 00 00 | 0c 80 | 00 00 00 00 00 00 00 00"),
    )


def test_payload_next_complete_golden_vector_MD1() -> None:
    """Section 17 PAYLOAD s=1 N|C "hi" (no M flag: everything after the header is data, MD1)."""
    _check_golden(
        PayloadFrame(stream_id=1, data=b"hi", next=True, complete=True),
        _hex("00 00 08 | 00 00 00 01 | 28 60 | 68 69"),
    )


def test_payload_complete_only_golden_vector_IX1() -> None:
    """Section 17 PAYLOAD s=1 C only (the no-value completion of IX1/IX4)."""
    _check_golden(
        PayloadFrame(stream_id=1, complete=True),
        _hex("00 00 06 | 00 00 00 01 | 28 40"),
    )


def test_payload_metadata_next_golden_vector_MD1() -> None:
    """Section 17 PAYLOAD s=2 M|N md "m" d "d" (MD1: 3-byte metadata length, metadata, data)."""
    _check_golden(
        PayloadFrame(stream_id=2, data=b"d", metadata=b"m", next=True),
        _hex("00 00 0b | 00 00 00 02 | 29 20 | 00 00 01 | 6d | 64"),
    )


def test_metadata_push_golden_vector_F3_MP1() -> None:
    """Section 17 METADATA_PUSH "x" (F3/MP1: M always set, metadata has no length prefix)."""
    _check_golden(
        MetadataPushFrame(metadata=b"x"),
        _hex("00 00 07 | 00 00 00 00 | 31 00 | 78"),
    )


def test_error_golden_vector_E1_F4() -> None:
    """Section 17 ERROR s=0 CONNECTION_ERROR "bye" (E1 unsigned code, F4 UTF-8 data)."""
    frame = ErrorFrame(stream_id=0, error_code=ErrorCode.CONNECTION_ERROR, data=b"bye")
    _check_golden(frame, _hex("00 00 0d | 00 00 00 00 | 2c 00 | 00 00 01 01 | 62 79 65"))
    decoded = decode_frame(_hex("00 00 00 00 | 2c 00 | 00 00 01 01 | 62 79 65"))
    assert isinstance(decoded, ErrorFrame)
    assert decoded.error_code == 0x101
    assert decoded.message == "bye"


def test_setup_golden_vector_F1_S2() -> None:
    """Section 17 SETUP 1.0 ka=30000 ml=90000, no flags, 60-byte frame (F1 MIME strings, S2 v1.0)."""
    wire = (
        _hex("00 00 3c | 00 00 00 00 | 04 00 | 00 01 00 00 | 00 00 75 30 | 00 01 5f 90")
        + b"\x10"
        + b"application/json"
        + b"\x18"
        + b"application/octet-stream"
    )
    assert len(wire) == 3 + 60
    frame = SetupFrame(
        keepalive_interval=30_000,
        max_lifetime=90_000,
        metadata_mime_type="application/json",
        data_mime_type="application/octet-stream",
    )
    assert (frame.major_version, frame.minor_version) == (1, 0)
    _check_golden(frame, wire)


def test_golden_vectors_in_one_tcp_read_T1() -> None:
    """T1: all section-17 frame vectors concatenated arrive in one read and split back correctly."""
    frames: list[Frame] = [
        CancelFrame(5),
        RequestNFrame(1, 10),
        RequestStreamFrame(1, 0x7FFFFFFF, b"ab"),
        KeepaliveFrame(True),
        PayloadFrame(1, b"hi", next=True, complete=True),
        PayloadFrame(1, complete=True),
        PayloadFrame(2, b"d", b"m", next=True),
        MetadataPushFrame(b"x"),
        ErrorFrame(0, 0x101, b"bye"),
        SetupFrame(30_000, 90_000, "application/json", "application/octet-stream"),
    ]
    wire = prefix_frames(encode_frame(f) for f in frames)
    assert [decode_frame(raw) for raw in FrameBuffer().feed(wire)] == frames


# --- type-word table at the end of section 17 -------------------------------------------------

#: (frame with every flag clear, type word from the checklist, frame type code from section 3)
_TYPE_WORDS = [
    pytest.param(SetupFrame(1, 1, "", ""), 0x0400, 0x01, id="SETUP"),
    pytest.param(LeaseFrame(1, 1), 0x0800, 0x02, id="LEASE"),
    pytest.param(KeepaliveFrame(False), 0x0C00, 0x03, id="KEEPALIVE"),
    pytest.param(RequestResponseFrame(1, b""), 0x1000, 0x04, id="REQUEST_RESPONSE"),
    pytest.param(RequestFireAndForgetFrame(1, b""), 0x1400, 0x05, id="REQUEST_FNF"),
    pytest.param(RequestStreamFrame(1, 1, b""), 0x1800, 0x06, id="REQUEST_STREAM"),
    pytest.param(RequestChannelFrame(1, 1, b""), 0x1C00, 0x07, id="REQUEST_CHANNEL"),
    pytest.param(RequestNFrame(1, 1), 0x2000, 0x08, id="REQUEST_N"),
    pytest.param(CancelFrame(1), 0x2400, 0x09, id="CANCEL"),
    pytest.param(PayloadFrame(1), 0x2800, 0x0A, id="PAYLOAD"),
    pytest.param(ErrorFrame(1, 0x201), 0x2C00, 0x0B, id="ERROR"),
    # METADATA_PUSH always carries M (MP1), so its word on the wire is 0x3000 | 0x100.
    pytest.param(MetadataPushFrame(b""), 0x3000, 0x0C, id="METADATA_PUSH"),
    pytest.param(ResumeFrame(b"t", 0, 0), 0x3400, 0x0D, id="RESUME"),
    pytest.param(ResumeOkFrame(0), 0x3800, 0x0E, id="RESUME_OK"),
    pytest.param(ExtFrame(1, 1), 0xFC00, 0x3F, id="EXT"),
]


@pytest.mark.parametrize(("frame", "type_word", "code"), _TYPE_WORDS)
def test_type_word_table_section_17(frame: Frame, type_word: int, code: int) -> None:
    """Section 17 type words (``type << 10 | flags``) and the section-3 type codes, per frame type."""
    assert type_word == code << 10
    assert FrameType(code).value == code
    encoded = encode_frame(frame)
    word = int.from_bytes(encoded[4:6], "big")
    assert word & 0xFC00 == type_word  # H2 layout: high 6 bits = type
    expected_flags = 0x100 if isinstance(frame, MetadataPushFrame) else 0
    assert word == type_word | expected_flags
    assert decode_frame(encoded) == frame


def test_frame_type_enum_matches_catalogue_section_3() -> None:
    """Section 3: the FrameType codes, 0x00 reserved, 0x0F-0x3E unassigned, EXT 0x3F."""
    assert {t.name: t.value for t in FrameType} == {
        "RESERVED": 0x00,
        "SETUP": 0x01,
        "LEASE": 0x02,
        "KEEPALIVE": 0x03,
        "REQUEST_RESPONSE": 0x04,
        "REQUEST_FNF": 0x05,
        "REQUEST_STREAM": 0x06,
        "REQUEST_CHANNEL": 0x07,
        "REQUEST_N": 0x08,
        "CANCEL": 0x09,
        "PAYLOAD": 0x0A,
        "ERROR": 0x0B,
        "METADATA_PUSH": 0x0C,
        "RESUME": 0x0D,
        "RESUME_OK": 0x0E,
        "EXT": 0x3F,
    }


def test_error_codes_table_section_11() -> None:
    """Section 11: the protocol's error code values (carried unsigned in ERROR frames, E1)."""
    assert {c.name: c.value for c in ErrorCode} == {
        "RESERVED": 0x00000000,
        "INVALID_SETUP": 0x00000001,
        "UNSUPPORTED_SETUP": 0x00000002,
        "REJECTED_SETUP": 0x00000003,
        "REJECTED_RESUME": 0x00000004,
        "CONNECTION_ERROR": 0x00000101,
        "CONNECTION_CLOSE": 0x00000102,
        "APPLICATION_ERROR": 0x00000201,
        "REJECTED": 0x00000202,
        "CANCELED": 0x00000203,
        "INVALID": 0x00000204,
        "RESERVED_EXTENSION": 0xFFFFFFFF,
    }
