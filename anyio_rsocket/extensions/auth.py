"""Authentication metadata: simple, bearer and custom types (checklist X6-X8).

Body: an auth-type header (``1xxxxxxx`` well-known id, ``0xxxxxxx`` custom US-ASCII name of x + 1 bytes)
followed by the type's payload. ``simple`` (id 0) is ``username length (u16) + username + password``;
``bearer`` (id 1) is the UTF-8 token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from .entry import CompositeEntry
from .errors import MetadataDecodeError
from .mime import MESSAGE_AUTHENTICATION, decode_type_header, encode_type_name, encode_well_known_id

SIMPLE: Final = "simple"
BEARER: Final = "bearer"

#: Well-known authentication types by id (X6).
WELL_KNOWN_AUTH_TYPES: Final[Mapping[int, str]] = MappingProxyType({0x00: SIMPLE, 0x01: BEARER})
_AUTH_IDS: Final[Mapping[str, int]] = {name: id_ for id_, name in WELL_KNOWN_AUTH_TYPES.items()}

_MAX_USERNAME = 0xFFFF


class Authentication:
    """Base of the decoded authentication types; see the subclasses."""

    __slots__ = ()

    @property
    def auth_type(self) -> str | int:
        """The type's name, or the id of a well-known type this library does not know."""
        raise NotImplementedError

    def encode_payload(self) -> bytes:
        """The bytes after the auth-type header."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class SimpleAuthentication(Authentication):
    """``simple``: a username and a password in clear text (X7; send it over TLS only)."""

    username: str
    password: str = field(repr=False)

    @property
    def auth_type(self) -> str:
        """Always ``"simple"``."""
        return SIMPLE

    def encode_payload(self) -> bytes:
        """``u16 username length + username + password`` (X7)."""
        user = self.username.encode("utf-8")
        if len(user) > _MAX_USERNAME:
            raise ValueError(f"the username is {len(user)} bytes in UTF-8; at most {_MAX_USERNAME} fit")
        return len(user).to_bytes(2, "big") + user + self.password.encode("utf-8")


@dataclass(frozen=True, slots=True)
class BearerAuthentication(Authentication):
    """``bearer``: a token such as a JWT (X8)."""

    token: str = field(repr=False)

    @property
    def auth_type(self) -> str:
        """Always ``"bearer"``."""
        return BEARER

    def encode_payload(self) -> bytes:
        """The UTF-8 token."""
        return self.token.encode("utf-8")


@dataclass(frozen=True, slots=True)
class CustomAuthentication(Authentication):
    """Any other type: a custom name (or an unknown well-known id) with opaque ``payload`` bytes."""

    type_name: str | int
    payload: bytes = field(default=b"", repr=False)

    @property
    def auth_type(self) -> str | int:
        """The custom type's name, or its well-known id."""
        return self.type_name

    def encode_payload(self) -> bytes:
        """The opaque payload."""
        return bytes(self.payload)


def encode_authentication(authentication: Authentication) -> bytes:
    """Encode authentication metadata (X6): the type header, then the type's payload."""
    auth_type = authentication.auth_type
    if isinstance(auth_type, int):
        header = encode_well_known_id(auth_type, "authentication type")
    elif auth_type in _AUTH_IDS:
        header = encode_well_known_id(_AUTH_IDS[auth_type], "authentication type")
    else:
        header = encode_type_name(auth_type, "authentication type")
    return header + authentication.encode_payload()


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MetadataDecodeError(f"the {what} is not UTF-8") from None


def decode_authentication(data: bytes) -> Authentication:
    """Decode authentication metadata into :class:`SimpleAuthentication`, :class:`BearerAuthentication`
    or :class:`CustomAuthentication`; raises :class:`MetadataDecodeError` when malformed."""
    data = bytes(data)
    auth_type, offset = decode_type_header(data, 0, "authentication type")
    if isinstance(auth_type, int):
        auth_type = WELL_KNOWN_AUTH_TYPES.get(auth_type, auth_type)
    body = data[offset:]
    if auth_type == SIMPLE:
        if len(body) < 2:
            raise MetadataDecodeError("truncated simple authentication: no username length")
        length = int.from_bytes(body[:2], "big")
        if 2 + length > len(body):
            raise MetadataDecodeError(
                f"truncated simple authentication: username of {length} bytes, {len(body) - 2} remain"
            )
        return SimpleAuthentication(
            _text(body[2 : 2 + length], "username"), _text(body[2 + length :], "password")
        )
    if auth_type == BEARER:
        return BearerAuthentication(_text(body, "bearer token"))
    return CustomAuthentication(auth_type, body)


def simple_auth(username: str, password: str) -> CompositeEntry:
    """An authentication entry with the ``simple`` type (X7), for composite metadata."""
    return CompositeEntry(
        MESSAGE_AUTHENTICATION, encode_authentication(SimpleAuthentication(username, password))
    )


def bearer(token: str) -> CompositeEntry:
    """An authentication entry with the ``bearer`` type (X8), for composite metadata."""
    return CompositeEntry(MESSAGE_AUTHENTICATION, encode_authentication(BearerAuthentication(token)))


def custom_auth(type_name: str | int, payload: bytes) -> CompositeEntry:
    """An authentication entry of a custom type (X6), for composite metadata."""
    return CompositeEntry(
        MESSAGE_AUTHENTICATION, encode_authentication(CustomAuthentication(type_name, payload))
    )


def authentication_entry(authentication: Authentication) -> CompositeEntry:
    """The composite entry carrying ``authentication``."""
    return CompositeEntry(MESSAGE_AUTHENTICATION, encode_authentication(authentication))


__all__ = [
    "BEARER",
    "SIMPLE",
    "WELL_KNOWN_AUTH_TYPES",
    "Authentication",
    "BearerAuthentication",
    "CustomAuthentication",
    "SimpleAuthentication",
    "authentication_entry",
    "bearer",
    "custom_auth",
    "decode_authentication",
    "encode_authentication",
    "simple_auth",
]
