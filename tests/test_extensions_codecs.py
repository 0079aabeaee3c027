"""Data codecs by MIME type (``anyio_rsocket.codecs``): JSON by default, bytes/text passthrough,
a pluggable registry, and conversion of parsed JSON into type hints."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Optional

import pytest

from anyio_rsocket.codecs import (
    BytesCodec,
    CodecError,
    CodecRegistry,
    JsonCodec,
    TextCodec,
    UnsupportedMimeTypeError,
    convert,
    default_codecs,
)


@dataclasses.dataclass
class Address:
    city: str


@dataclasses.dataclass
class User:
    id: int
    name: str
    tags: list[str] = dataclasses.field(default_factory=list)
    address: Address | None = None


def test_json_round_trips_dataclasses() -> None:
    """JSON encodes dataclasses (nested too) compactly and decodes into the type hint."""
    codec = JsonCodec()
    user = User(7, "Zoë", ["a"], Address("Oslo"))
    data = codec.encode(user)
    assert data == '{"id":7,"name":"Zoë","tags":["a"],"address":{"city":"Oslo"}}'.encode()
    assert codec.decode(data, User) == user
    assert codec.decode(b'{"id": 1, "name": "x", "unknown": 0}', User) == User(1, "x")
    assert codec.decode(b"[1, 2]") == [1, 2]


@pytest.mark.parametrize(
    ("value", "hint", "expected"),
    [
        (1, float, 1.0),
        ([1, 2], tuple[int, ...], (1, 2)),
        ([1, "a"], tuple[int, str], (1, "a")),
        ([1, 1], set[int], {1}),
        ({"a": [1]}, dict[str, list[int]], {"a": [1]}),
        (None, Optional[int], None),  # noqa: UP045 - the typing.Optional spelling is supported too
        (3, int | str, 3),
        ("b", Literal["a", "b"], "b"),
        ({"x": 1}, Any, {"x": 1}),
    ],
)
def test_convert_supported_hints(value: Any, hint: Any, expected: Any) -> None:
    """Parsed JSON converts into primitives, containers, unions, literals and Any."""
    assert convert(value, hint) == expected


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("1", int),
        (True, int),
        (1, bool),
        ({}, list[int]),
        ([1], tuple[int, int]),
        ("c", Literal["a"]),
        ({}, User),
    ],
)
def test_convert_refuses_mismatches(value: Any, hint: Any) -> None:
    """Mismatched types raise CodecError (a ValueError) with a message."""
    with pytest.raises(CodecError):
        convert(value, hint)


def test_json_errors_are_codec_errors() -> None:
    """Invalid JSON and unencodable values raise CodecError."""
    with pytest.raises(CodecError, match="invalid JSON"):
        JsonCodec().decode(b"{")
    with pytest.raises(CodecError, match="JSON"):
        JsonCodec().encode(object())


def test_bytes_and_text_passthrough() -> None:
    """octet-stream passes bytes (str as UTF-8); text/* is UTF-8 text."""
    assert BytesCodec().encode(b"\x00") == b"\x00" and BytesCodec().encode("é") == "é".encode()
    assert BytesCodec().decode(b"ab") == b"ab" and BytesCodec().decode(b"ab", str) == "ab"
    with pytest.raises(CodecError):
        BytesCodec().decode(b"{}", dict)
    with pytest.raises(CodecError):
        BytesCodec().encode({"a": 1})
    assert TextCodec().encode(42) == b"42" and TextCodec().decode(b"42", int) == 42
    with pytest.raises(CodecError, match="UTF-8"):
        TextCodec().decode(b"\xff")


def test_registry_lookup_rules() -> None:
    """Lookups ignore case and parameters; +json and text/* fall back; unknown types are refused."""
    registry = CodecRegistry()
    assert isinstance(registry.get("Application/JSON; charset=utf-8"), JsonCodec)
    assert isinstance(registry.get("application/cloudevents+json"), JsonCodec)
    assert isinstance(registry.get("text/csv"), TextCodec)
    assert registry.get("application/cbor") is None
    with pytest.raises(UnsupportedMimeTypeError, match="application/cbor"):
        registry.require("application/cbor")
    assert registry.encode(b"raw", "application/cbor") == b"raw"  # bytes always pass through
    assert registry.decode(b"raw", "application/cbor", bytes) == b"raw"


def test_registry_is_pluggable() -> None:
    """A user codec (msgpack, CBOR, protobuf...) registers per MIME type; copies are independent."""

    class Reversed:
        def encode(self, value: Any) -> bytes:
            return str(value)[::-1].encode()

        def decode(self, data: bytes, into: Any = object) -> Any:
            return data.decode()[::-1]

    registry = default_codecs.copy()
    registry.register("application/x-reversed", Reversed())
    assert registry.encode("abc", "application/x-reversed") == b"cba"
    assert registry.decode(b"cba", "application/x-reversed") == "abc"
    assert default_codecs.get("application/x-reversed") is None
    assert "application/x-reversed" in list(registry)
    with pytest.raises(TypeError):
        registry.register("x/y", object())  # type: ignore[arg-type]
    assert CodecRegistry({"x/y": Reversed()}, defaults=False).get("application/json") is None
