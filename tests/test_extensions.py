"""Metadata extensions (checklist section 16, X1-X12) and their golden vectors (section 17)."""

from __future__ import annotations

import pytest

from anyio_rsocket import Payload
from anyio_rsocket.extensions import (
    MESSAGE_ACCEPT_MIME_TYPES,
    MESSAGE_AUTHENTICATION,
    MESSAGE_COMPOSITE_METADATA,
    MESSAGE_MIME_TYPE,
    MESSAGE_ROUTING,
    MESSAGE_TRACING_ZIPKIN,
    WELL_KNOWN_AUTH_TYPES,
    WELL_KNOWN_MIME_TYPES,
    BearerAuthentication,
    CompositeEntry,
    CompositeMetadata,
    CustomAuthentication,
    MetadataDecodeError,
    Sampling,
    SimpleAuthentication,
    ZipkinTrace,
    accept_mime,
    bearer,
    composite,
    custom_auth,
    data_mime,
    decode_accept_mime_types,
    decode_authentication,
    decode_data_mime_type,
    decode_mime_type,
    decode_routing,
    decode_tracing,
    encode_accept_mime_types,
    encode_authentication,
    encode_mime_type,
    encode_routing,
    entry,
    route,
    simple_auth,
    tracing,
    well_known_id,
    well_known_name,
)

# --- golden vectors (section 17) ------------------------------------------------------------------

GOLDEN_ROUTING_ENTRY = bytes.fromhex("fe 000003 02 2f61")
GOLDEN_CUSTOM_ENTRY = bytes.fromhex("05 746578742f78 000003 616263")
GOLDEN_AUTH_SIMPLE = bytes.fromhex("80 0004 75736572 70617373")
GOLDEN_AUTH_BEARER = bytes.fromhex("81 746f6b")


def test_golden_composite_routing_entry() -> None:
    """X3, X5: routing ["/a"] as a composite entry is ``fe | 00 00 03 | 02 2f 61``."""
    assert composite(route("/a")) == GOLDEN_ROUTING_ENTRY
    assert CompositeMetadata.decode(GOLDEN_ROUTING_ENTRY) == CompositeMetadata([route("/a")])
    assert CompositeMetadata.decode(GOLDEN_ROUTING_ENTRY).route == "/a"


def test_golden_composite_custom_mime_entry() -> None:
    """X2, X3: custom "text/x" stores its length minus one (05), then the 3-byte length and body."""
    assert composite(entry("text/x", b"abc")) == GOLDEN_CUSTOM_ENTRY
    assert list(CompositeMetadata.decode(GOLDEN_CUSTOM_ENTRY)) == [CompositeEntry("text/x", b"abc")]


def test_golden_auth_simple() -> None:
    """X6, X7: simple user/pass is ``80 | 00 04 | user | pass``."""
    assert simple_auth("user", "pass") == CompositeEntry(MESSAGE_AUTHENTICATION, GOLDEN_AUTH_SIMPLE)
    assert decode_authentication(GOLDEN_AUTH_SIMPLE) == SimpleAuthentication("user", "pass")


def test_golden_auth_bearer() -> None:
    """X6, X8: bearer "tok" is ``81 | tok``."""
    assert bearer("tok") == CompositeEntry(MESSAGE_AUTHENTICATION, GOLDEN_AUTH_BEARER)
    assert decode_authentication(GOLDEN_AUTH_BEARER) == BearerAuthentication("tok")


def test_golden_vectors_concatenate() -> None:
    """X3: entries follow each other; the order is kept when decoding."""
    metadata = CompositeMetadata.decode(GOLDEN_ROUTING_ENTRY + GOLDEN_CUSTOM_ENTRY)
    assert [item.mime_type for item in metadata] == [MESSAGE_ROUTING, "text/x"]


# --- X1, X2: MIME types ------------------------------------------------------------------------------


def test_x1_well_known_table() -> None:
    """X1: ids 0x00-0x2A and 0x7A-0x7F are assigned; spot-check names and the reverse lookup."""
    assert sorted(WELL_KNOWN_MIME_TYPES) == [*range(0x00, 0x2B), *range(0x7A, 0x80)]
    assert well_known_name(0x05) == "application/json"
    assert well_known_name(0x23) == "video/H264"
    assert well_known_name(0x7F) == MESSAGE_COMPOSITE_METADATA
    assert well_known_id("application/x-flatbuffers") == 0x2A
    assert well_known_name(0x2B) is None and well_known_id("text/x") is None


def test_x1_unknown_well_known_id_is_kept_as_opaque_id() -> None:
    """X1, edge case 22: an unassigned id decodes to its int and re-encodes unchanged; entries skip."""
    assert decode_mime_type(b"\xab") == (0x2B, 1)
    assert encode_mime_type(0x2B) == b"\xab"
    raw = bytes.fromhex("ab 000002 ffff") + GOLDEN_ROUTING_ENTRY
    metadata = CompositeMetadata.decode(raw)
    assert metadata[0] == CompositeEntry(0x2B, b"\xff\xff")
    assert metadata.route == "/a"
    assert metadata.encode() == raw


def test_x2_well_known_names_use_one_byte() -> None:
    """X2: a well-known name (or its id) encodes as ``0x80 | id``; decoding gives the name."""
    assert encode_mime_type("application/json") == b"\x85"
    assert encode_mime_type(5) == b"\x85"
    assert decode_mime_type(b"\x85") == ("application/json", 1)
    assert CompositeEntry(5, b"").mime_type == "application/json"


def test_x2_custom_mime_length_is_stored_minus_one() -> None:
    """X2: lengths 1..128 are stored as 0..127; 128 bytes fit, 129 do not, empty cannot be encoded."""
    assert encode_mime_type("a/b") == b"\x02a/b"
    longest = "x/" + "y" * 126
    assert encode_mime_type(longest)[0] == 127
    assert decode_mime_type(encode_mime_type(longest)) == (longest, 129)
    with pytest.raises(ValueError, match="at most 128"):
        encode_mime_type(longest + "z")
    with pytest.raises(ValueError, match="empty"):
        encode_mime_type("")


def test_x2_non_ascii_mime_is_refused() -> None:
    """X2: MIME names are US-ASCII: encoding refuses others, decoding reports them as malformed."""
    with pytest.raises(ValueError, match="US-ASCII"):
        encode_mime_type("text/é")
    with pytest.raises(MetadataDecodeError, match="US-ASCII"):
        decode_mime_type(b"\x01\xc3\xa9")
    with pytest.raises(ValueError):
        encode_mime_type(0x80)


def test_x2_truncated_mime_header() -> None:
    """X2: a header announcing more bytes than remain is malformed."""
    with pytest.raises(MetadataDecodeError, match="truncated"):
        decode_mime_type(b"\x05tex")
    with pytest.raises(MetadataDecodeError):
        decode_mime_type(b"")


# --- X3, X4: composite metadata ----------------------------------------------------------------------


def test_x3_empty_composite_metadata_has_no_entries() -> None:
    """X3, edge case 22: zero entries (an empty buffer) is valid."""
    metadata = CompositeMetadata.decode(b"")
    assert len(metadata) == 0
    assert metadata.route is None and metadata.authentication is None and metadata.tracing is None
    assert composite() == b""


def test_x3_duplicates_and_order_are_preserved() -> None:
    """X3: duplicate MIME types are allowed and entry order is kept; lookups find first/all."""
    entries = [entry("text/x", b"1"), route("r"), entry("text/x", b"2")]
    metadata = CompositeMetadata.decode(composite(*entries))
    assert list(metadata) == entries
    assert metadata.find("text/x") == entries[0]
    assert metadata.find_all("text/x") == (entries[0], entries[2])
    assert metadata.get("text/x") == b"1"
    assert metadata.get("text/y") is None
    assert metadata.find(0x7E) == entries[1]  # by well-known id too


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"\xfe", id="no-length"),
        pytest.param(b"\xfe\x00\x00", id="short-length"),
        pytest.param(b"\xfe\x00\x00\x05\x01a", id="short-body"),
        pytest.param(b"\x09text", id="short-mime"),
    ],
)
def test_x3_truncated_composite_metadata_is_malformed(raw: bytes) -> None:
    """X3: a truncated header, length or body raises MetadataDecodeError (a ValueError)."""
    with pytest.raises(MetadataDecodeError, match="truncated"):
        CompositeMetadata.decode(raw)
    assert issubclass(MetadataDecodeError, ValueError)


def test_x3_composite_is_an_immutable_sequence() -> None:
    """X3: CompositeMetadata is a value: indexable, sliceable, hashable, comparable, concatenable."""
    metadata = CompositeMetadata([route("a"), bearer("t")])
    assert metadata[0] == route("a")
    assert metadata[1:] == CompositeMetadata([bearer("t")])
    extended = CompositeMetadata([route("a"), bearer("t"), entry("text/x", b"")])
    assert metadata + [entry("text/x", b"")] == extended  # noqa: RUF005 - testing __add__
    assert hash(metadata) == hash(CompositeMetadata([route("a"), bearer("t")]))
    assert bytes(metadata) == metadata.encode() == composite(route("a"), bearer("t"))
    assert composite(route("a")) + composite(bearer("t")) == composite(metadata)
    assert not hasattr(metadata, "append") and not hasattr(metadata, "__setitem__")
    with pytest.raises(AttributeError):
        metadata[0].content = b""  # type: ignore[misc]
    with pytest.raises(TypeError):
        CompositeMetadata([b"not an entry"])  # type: ignore[list-item]


def test_x3_entry_size_limit() -> None:
    """X3: an entry's length has 3 bytes, so 16 MiB - 1 is the most an entry can hold."""
    with pytest.raises(ValueError, match="at most 16777215"):
        composite(entry("text/x", bytes(1 << 24)))


def test_x4_composite_in_a_request_payload() -> None:
    """X4: the convenience helpers chain: ``Payload(data, composite(route(...), bearer(...)))``."""
    payload = Payload(b"{}", composite(route("user.get"), bearer("token")))
    assert payload.metadata is not None
    metadata = CompositeMetadata.decode(payload.metadata)
    assert metadata.route == "user.get"
    assert metadata.authentication == BearerAuthentication("token")


# --- X5: routing -------------------------------------------------------------------------------------


def test_x5_routing_tags_round_trip() -> None:
    """X5: repeated ``length + UTF-8 tag``; the first tag is the route."""
    raw = encode_routing("user.get", "v2", "é")
    assert raw == b"\x08user.get\x02v2\x02\xc3\xa9"
    assert decode_routing(raw) == ("user.get", "v2", "é")
    assert CompositeMetadata([route("user.get", "v2")]).routes == ("user.get", "v2")
    assert decode_routing(b"") == ()


def test_x5_tag_length_limits() -> None:
    """X5: tags are 1..255 bytes (counted in UTF-8); route() refuses longer or empty ones."""
    assert decode_routing(encode_routing("x" * 255)) == ("x" * 255,)
    with pytest.raises(ValueError, match="at most 255"):
        route("x" * 256)
    with pytest.raises(ValueError, match="at most 255"):
        route("é" * 128)  # 256 bytes in UTF-8
    with pytest.raises(ValueError, match="empty"):
        route("")
    with pytest.raises(ValueError, match="at least one"):
        encode_routing()


@pytest.mark.parametrize(
    ("raw", "message"),
    [(b"\x00", "empty"), (b"\x05abc", "truncated"), (b"\x02\xff\xfe", "UTF-8")],
)
def test_x5_malformed_routing(raw: bytes, message: str) -> None:
    """X5: zero-length, truncated and non-UTF-8 tags are malformed."""
    with pytest.raises(MetadataDecodeError, match=message):
        decode_routing(raw)


# --- X6-X8: authentication ---------------------------------------------------------------------------


def test_x6_well_known_auth_types() -> None:
    """X6: simple is 0x00, bearer 0x01."""
    assert dict(WELL_KNOWN_AUTH_TYPES) == {0: "simple", 1: "bearer"}


def test_x6_custom_auth_type_by_name_and_unknown_id() -> None:
    """X6: a custom type name stores its length minus one; unknown well-known ids are kept."""
    raw = encode_authentication(CustomAuthentication("kerberos", b"\x01\x02"))
    assert raw == b"\x07kerberos\x01\x02"
    assert decode_authentication(raw) == CustomAuthentication("kerberos", b"\x01\x02")
    assert decode_authentication(b"\x85opaque") == CustomAuthentication(5, b"opaque")
    assert custom_auth("x-api-key", b"k").content == b"\x08x-api-keyk"
    with pytest.raises(ValueError, match="US-ASCII"):
        custom_auth("ключ", b"")


def test_x7_simple_auth_round_trip_and_limits() -> None:
    """X7: u16 username length, UTF-8 username, the rest is the password (may be empty)."""
    for auth in (SimpleAuthentication("ünïcode", "pässword"), SimpleAuthentication("u", "")):
        assert decode_authentication(encode_authentication(auth)) == auth
    with pytest.raises(ValueError, match="at most 65535"):
        encode_authentication(SimpleAuthentication("u" * 65536, "p"))
    with pytest.raises(MetadataDecodeError, match="truncated"):
        decode_authentication(b"\x80\x00")
    with pytest.raises(MetadataDecodeError, match="truncated"):
        decode_authentication(b"\x80\x00\x09user")


def test_x8_bearer_and_secrets_stay_out_of_reprs() -> None:
    """X8: the bearer token is the whole payload; neither it nor a password appears in repr()."""
    assert decode_authentication(b"\x81") == BearerAuthentication("")
    assert "s3cret" not in repr(BearerAuthentication("s3cret"))
    assert "s3cret" not in repr(SimpleAuthentication("alice", "s3cret"))
    with pytest.raises(MetadataDecodeError, match="UTF-8"):
        decode_authentication(b"\x81\xff")


# --- X9-X11: per-stream data MIME types ---------------------------------------------------------------


def test_x9_data_mime_type_entry() -> None:
    """X9: exactly one MIME header naming this request's data MIME type."""
    assert data_mime("application/json") == CompositeEntry(MESSAGE_MIME_TYPE, b"\x85")
    assert decode_data_mime_type(b"\x85") == "application/json"
    assert decode_data_mime_type(b"\x08text/x-cs") == "text/x-cs"
    with pytest.raises(MetadataDecodeError, match="unexpected bytes"):
        decode_data_mime_type(b"\x85\x85")
    with pytest.raises(MetadataDecodeError):
        decode_data_mime_type(b"")


def test_x10_accept_mime_types_entry() -> None:
    """X10: one or more MIME headers back to back, in preference order."""
    entry_ = accept_mime("application/cbor", "text/x-custom")
    assert entry_.mime_type == MESSAGE_ACCEPT_MIME_TYPES
    assert decode_accept_mime_types(entry_.content) == ("application/cbor", "text/x-custom")
    with pytest.raises(MetadataDecodeError):
        decode_accept_mime_types(b"")
    with pytest.raises(ValueError):
        encode_accept_mime_types()


def test_x11_mime_entries_through_composite_helpers() -> None:
    """X9-X11: CompositeMetadata exposes the per-stream data MIME and the accepted MIME types."""
    metadata = CompositeMetadata.decode(composite(data_mime("text/plain"), accept_mime("application/json")))
    assert metadata.data_mime_type == "text/plain"
    assert metadata.accept_mime_types == ("application/json",)
    empty = CompositeMetadata()
    assert empty.data_mime_type is None and empty.accept_mime_types == ()


# --- X12: Zipkin tracing -----------------------------------------------------------------------------


def test_x12_flags_only() -> None:
    """X12: without ids the metadata is the flags byte alone (1 byte)."""
    assert ZipkinTrace().encode() == b"\x00"
    assert ZipkinTrace(sampling=Sampling.DEBUG).encode() == b"\x40"
    assert decode_tracing(b"\x20") == ZipkinTrace(sampling=Sampling.SAMPLED)
    assert decode_tracing(b"\x10") == ZipkinTrace(sampling=Sampling.NOT_SAMPLED)


def test_x12_sizes_17_25_33() -> None:
    """X12: ids give 17 bytes, a parent 25, a 128-bit trace id with a parent 33."""
    plain = ZipkinTrace(trace_id=1, span_id=2, sampling=Sampling.SAMPLED)
    assert plain.encode() == b"\xa0" + (1).to_bytes(8, "big") + (2).to_bytes(8, "big")
    with_parent = ZipkinTrace(trace_id=1, span_id=2, parent_span_id=3)
    assert len(with_parent.encode()) == 25 and with_parent.encode()[0] == 0x84
    wide = ZipkinTrace(trace_id=1 << 100, span_id=2, parent_span_id=3, sampling=Sampling.NOT_SAMPLED)
    assert wide.trace_id_128
    raw = wide.encode()
    assert len(raw) == 33 and raw[0] == 0x80 | 0x10 | 0x08 | 0x04
    for trace in (plain, with_parent, wide):
        assert decode_tracing(trace.encode()) == trace
    assert CompositeMetadata([tracing(wide)]).tracing == wide
    assert tracing(plain).mime_type == MESSAGE_TRACING_ZIPKIN


def test_x12_debug_beats_sampled_beats_not_sampled() -> None:
    """X12: S is ignored with D, N is ignored with S or D."""
    assert decode_tracing(b"\x70").sampling is Sampling.DEBUG
    assert decode_tracing(b"\x30").sampling is Sampling.SAMPLED


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00\x00", b"\x80" + bytes(15), b"\x80" + bytes(17), b"\x84" + bytes(16), b"\x88" + bytes(16)],
)
def test_x12_wrong_sizes_are_malformed(raw: bytes) -> None:
    """X12: the size must match the flags (1, 17, 25 or 33 bytes)."""
    with pytest.raises(MetadataDecodeError):
        decode_tracing(raw)


def test_x12_trace_validation_and_helpers() -> None:
    """X12: ids come in pairs and fit their widths; start() and child() make new spans."""
    with pytest.raises(ValueError):
        ZipkinTrace(trace_id=1)
    with pytest.raises(ValueError):
        ZipkinTrace(parent_span_id=1)
    with pytest.raises(ValueError):
        ZipkinTrace(trace_id=1, span_id=1 << 64)
    root = ZipkinTrace.start()
    child = root.child()
    assert child.trace_id == root.trace_id and child.parent_span_id == root.span_id
    assert decode_tracing(child.encode()) == child
    assert ZipkinTrace().child().trace_id is not None
