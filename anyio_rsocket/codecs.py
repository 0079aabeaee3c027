"""Data codecs chosen by MIME type: how routed handlers and requesters turn values into bytes and back.

JSON (``application/json`` and any ``+json`` type) uses the standard library; ``application/octet-stream``
passes bytes through (``str`` as UTF-8) and ``text/*`` is UTF-8 text. Users of msgpack, CBOR or protobuf
register their own :class:`Codec`::

    default_codecs.register("application/x-msgpack", MsgpackCodec())

``bytes`` always pass through untouched whatever the MIME type: they are already encoded data.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, Protocol, runtime_checkable


class CodecError(ValueError):
    """A value could not be encoded, or data could not be decoded into the requested type."""


class UnsupportedMimeTypeError(CodecError, LookupError):
    """No codec is registered for a MIME type."""


@runtime_checkable
class Codec(Protocol):
    """Turns values into data bytes and back for one family of MIME types."""

    def encode(self, value: Any) -> bytes:
        """The data bytes for ``value``; raise :class:`CodecError` if it cannot be encoded."""
        ...

    def decode(self, data: bytes, into: Any = object) -> Any:
        """``data`` as a value of type ``into`` (a type or type hint; ``object`` means "as parsed")."""
        ...


# --- conversion of parsed JSON into type hints ------------------------------------------------------


def _unwrap_type_hint(into: Any) -> Any:
    """Strip ``Annotated`` and ``NewType`` wrappers."""
    while True:
        if typing.get_origin(into) is typing.Annotated:
            into = typing.get_args(into)[0]
        elif hasattr(into, "__supertype__"):
            into = into.__supertype__
        else:
            return into


def convert(value: Any, into: Any) -> Any:
    """Convert a parsed JSON value into the type hint ``into`` (dataclasses, containers, primitives).

    Supports ``Any``/``object``, ``None``, ``bool``, ``int``, ``float``, ``str``, ``list[T]``,
    ``tuple[...]``, ``set[T]``, ``dict[K, V]``, unions/``Optional``, dataclasses (unknown keys are
    ignored) and classes with a pydantic-style ``model_validate``. Raises :class:`CodecError`.
    """
    into = _unwrap_type_hint(into)
    if into is Any or into is object:
        return value
    if into is None or into is type(None):
        if value is None:
            return None
        raise CodecError(f"expected null, got {type(value).__name__}")
    origin = typing.get_origin(into)
    args = typing.get_args(into)
    if origin is typing.Union or origin is types.UnionType:
        errors = []
        for arm in args:
            try:
                return convert(value, arm)
            except CodecError as exc:
                errors.append(str(exc))
        raise CodecError(f"{value!r} matches none of {into}: {'; '.join(errors)}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise CodecError(f"{value!r} is not one of {args}")
    if origin in (list, tuple, set, frozenset) or into in (list, tuple, set, frozenset):
        return _convert_sequence(value, origin or into, args)
    if origin is dict or into is dict or origin is Mapping:
        if not isinstance(value, dict):
            raise CodecError(f"expected an object, got {type(value).__name__}")
        if not args:
            return dict(value)
        key_type, value_type = args
        return {convert(key, key_type): convert(item, value_type) for key, item in value.items()}
    if isinstance(into, type):
        return _convert_to_class(value, into)
    raise CodecError(f"cannot convert into {into!r}")


def _convert_sequence(value: Any, container: Any, args: tuple[Any, ...]) -> Any:
    if not isinstance(value, list):
        raise CodecError(f"expected an array, got {type(value).__name__}")
    if container is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(convert(item, args[0]) for item in value)
        if args:
            if len(args) != len(value):
                raise CodecError(f"expected an array of {len(args)} items, got {len(value)}")
            return tuple(convert(item, arm) for item, arm in zip(value, args, strict=True))
        return tuple(value)
    items = [convert(item, args[0]) for item in value] if args else list(value)
    return container(items)


def _convert_to_class(value: Any, into: type) -> Any:
    if into is bool:
        if isinstance(value, bool):
            return value
        raise CodecError(f"expected a boolean, got {type(value).__name__}")
    if into is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise CodecError(f"expected an integer, got {type(value).__name__}")
    if into is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise CodecError(f"expected a number, got {type(value).__name__}")
    if into is str:
        if isinstance(value, str):
            return value
        raise CodecError(f"expected a string, got {type(value).__name__}")
    if dataclasses.is_dataclass(into):
        return _convert_to_dataclass(value, into)
    validate = getattr(into, "model_validate", None)
    if callable(validate):  # pydantic v2 models
        try:
            return validate(value)
        except ValueError as exc:
            raise CodecError(str(exc)) from exc
    if isinstance(value, into):
        return value
    raise CodecError(f"cannot convert {type(value).__name__} into {into.__name__}")


def _convert_to_dataclass(value: Any, into: type) -> Any:
    if not isinstance(value, dict):
        raise CodecError(f"expected an object for {into.__name__}, got {type(value).__name__}")
    try:
        hints = typing.get_type_hints(into)
    except Exception:  # unresolvable forward references: keep the raw values
        hints = {}
    kwargs = {}
    for field in dataclasses.fields(into):
        if field.init and field.name in value:
            try:
                kwargs[field.name] = convert(value[field.name], hints.get(field.name, Any))
            except CodecError as exc:
                raise CodecError(f"{into.__name__}.{field.name}: {exc}") from None
    try:
        return into(**kwargs)
    except TypeError as exc:
        raise CodecError(f"cannot build {into.__name__}: {exc}") from None


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # pydantic v2 models
        return dump(mode="json")
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# --- the built-in codecs ----------------------------------------------------------------------------


class JsonCodec:
    """JSON with the standard library: dataclasses and pydantic models in, type hints out."""

    def encode(self, value: Any) -> bytes:
        """Compact UTF-8 JSON."""
        try:
            return json.dumps(
                value, default=_json_default, separators=(",", ":"), ensure_ascii=False
            ).encode()
        except (TypeError, ValueError) as exc:
            raise CodecError(f"cannot encode as JSON: {exc}") from None

    def decode(self, data: bytes, into: Any = object) -> Any:
        """Parse JSON, then convert it with :func:`convert`; empty data (no value) reads as null."""
        if not data.strip():
            return convert(None, into)
        try:
            value = json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise CodecError(f"invalid JSON: {exc}") from None
        return convert(value, into)


class BytesCodec:
    """``application/octet-stream``: bytes as they are; ``str`` is encoded and decoded as UTF-8."""

    def encode(self, value: Any) -> bytes:
        """Bytes-like values unchanged, ``str`` as UTF-8."""
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        if isinstance(value, str):
            return value.encode("utf-8")
        raise CodecError(f"application/octet-stream carries bytes or str, not {type(value).__name__}")

    def decode(self, data: bytes, into: Any = object) -> Any:
        """``bytes`` (or ``str`` when asked for one)."""
        into = _unwrap_type_hint(into)
        if into is str:
            return _utf8(data)
        if into in (bytes, object, Any):
            return bytes(data)
        if into is bytearray:
            return bytearray(data)
        raise CodecError(f"application/octet-stream data cannot be decoded into {into!r}")


class TextCodec:
    """``text/*``: UTF-8 text; any value is sent as ``str(value)``."""

    def encode(self, value: Any) -> bytes:
        """UTF-8 text of ``value``."""
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        return str(value).encode("utf-8")

    def decode(self, data: bytes, into: Any = object) -> Any:
        """``str`` (``bytes`` when asked for them; ``int``/``float`` parsed from the text)."""
        into = _unwrap_type_hint(into)
        if into is bytes:
            return bytes(data)
        text = _utf8(data)
        if into in (str, object, Any):
            return text
        if into in (int, float):
            try:
                return into(text)
            except ValueError as exc:
                raise CodecError(str(exc)) from None
        raise CodecError(f"text data cannot be decoded into {into!r}")


def _utf8(data: bytes) -> str:
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        raise CodecError("data is not valid UTF-8") from None


# --- the registry -----------------------------------------------------------------------------------


def _base_mime_type(mime_type: str) -> str:
    """``"Application/JSON; charset=utf-8"`` -> ``"application/json"``."""
    return mime_type.split(";", 1)[0].strip().lower()


class CodecRegistry:
    """Codecs by MIME type. Lookups ignore case and parameters; unregistered ``*+json`` types use JSON
    and unregistered ``text/*`` types use UTF-8 text."""

    def __init__(self, codecs: Mapping[str, Codec] | None = None, *, defaults: bool = True) -> None:
        self._codecs: dict[str, Codec] = {}
        if defaults:
            self.register("application/json", JsonCodec())
            self.register("application/octet-stream", BytesCodec())
            self.register("text/plain", TextCodec())
        for mime_type, codec in (codecs or {}).items():
            self.register(mime_type, codec)

    def register(self, mime_type: str, codec: Codec) -> None:
        """Use ``codec`` for ``mime_type`` (replacing any earlier one)."""
        if not isinstance(codec, Codec):
            raise TypeError(f"{codec!r} has no encode/decode methods")
        self._codecs[_base_mime_type(mime_type)] = codec

    def get(self, mime_type: str) -> Codec | None:
        """The codec for ``mime_type``, or ``None``."""
        base = _base_mime_type(mime_type)
        codec = self._codecs.get(base)
        if codec is None:
            if base.endswith("+json"):
                codec = self._codecs.get("application/json")
            elif base.startswith("text/"):
                codec = self._codecs.get("text/plain")
        return codec

    def require(self, mime_type: str) -> Codec:
        """The codec for ``mime_type``; raises :class:`UnsupportedMimeTypeError` without one."""
        codec = self.get(mime_type)
        if codec is None:
            raise UnsupportedMimeTypeError(f"no codec is registered for {mime_type!r}")
        return codec

    def supports(self, mime_type: str) -> bool:
        """Whether a codec handles ``mime_type``."""
        return self.get(mime_type) is not None

    def encode(self, value: Any, mime_type: str) -> bytes:
        """Encode ``value`` as ``mime_type`` (bytes pass through unchanged)."""
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        return self.require(mime_type).encode(value)

    def decode(self, data: bytes, mime_type: str, into: Any = object) -> Any:
        """Decode ``data`` of ``mime_type`` into ``into`` (``bytes`` gives the raw data)."""
        if _unwrap_type_hint(into) is bytes:
            return bytes(data)
        return self.require(mime_type).decode(data, into)

    def copy(self) -> CodecRegistry:
        """An independent registry with the same codecs."""
        clone = CodecRegistry(defaults=False)
        clone._codecs.update(self._codecs)
        return clone

    def __iter__(self) -> Iterator[str]:
        return iter(self._codecs)


#: The process-wide registry used when none is given.
default_codecs = CodecRegistry()

__all__ = [
    "BytesCodec",
    "Codec",
    "CodecError",
    "CodecRegistry",
    "JsonCodec",
    "TextCodec",
    "UnsupportedMimeTypeError",
    "convert",
    "default_codecs",
]
