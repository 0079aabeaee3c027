"""Metadata extensions of RSocket (checklist section 16): MIME types, composite metadata, routing,
authentication, per-stream data MIME types and Zipkin tracing.

Build request metadata with the small helpers, each returning what the next one takes::

    from anyio_rsocket.extensions import bearer, composite, route

    Payload(data, composite(route("user.get"), bearer("token")))

and read it back with :meth:`CompositeMetadata.decode` (``.route``, ``.authentication``, ...).
Encoders raise ``ValueError`` for what cannot be encoded; decoders raise :class:`MetadataDecodeError`
(a ``ValueError``) for malformed bytes and nothing else.
"""

from .auth import (
    BEARER,
    SIMPLE,
    WELL_KNOWN_AUTH_TYPES,
    Authentication,
    BearerAuthentication,
    CustomAuthentication,
    SimpleAuthentication,
    authentication_entry,
    bearer,
    custom_auth,
    decode_authentication,
    encode_authentication,
    simple_auth,
)
from .composite import MAX_ENTRY_LENGTH, CompositeMetadata, composite, encode_entry, entry
from .data_mime import (
    accept_mime,
    data_mime,
    decode_accept_mime_types,
    decode_data_mime_type,
    encode_accept_mime_types,
    encode_data_mime_type,
)
from .entry import CompositeEntry
from .errors import MetadataDecodeError
from .mime import (
    APPLICATION_JSON,
    APPLICATION_OCTET_STREAM,
    MESSAGE_ACCEPT_MIME_TYPES,
    MESSAGE_AUTHENTICATION,
    MESSAGE_COMPOSITE_METADATA,
    MESSAGE_MIME_TYPE,
    MESSAGE_ROUTING,
    MESSAGE_TRACING_ZIPKIN,
    TEXT_PLAIN,
    WELL_KNOWN_MIME_TYPES,
    MimeType,
    decode_mime_type,
    encode_mime_type,
    well_known_id,
    well_known_name,
)
from .routing import MAX_TAG_LENGTH, decode_routing, encode_routing, route
from .tracing import Sampling, ZipkinTrace, decode_tracing, encode_tracing, tracing

__all__ = [
    "APPLICATION_JSON",
    "APPLICATION_OCTET_STREAM",
    "BEARER",
    "MAX_ENTRY_LENGTH",
    "MAX_TAG_LENGTH",
    "MESSAGE_ACCEPT_MIME_TYPES",
    "MESSAGE_AUTHENTICATION",
    "MESSAGE_COMPOSITE_METADATA",
    "MESSAGE_MIME_TYPE",
    "MESSAGE_ROUTING",
    "MESSAGE_TRACING_ZIPKIN",
    "SIMPLE",
    "TEXT_PLAIN",
    "WELL_KNOWN_AUTH_TYPES",
    "WELL_KNOWN_MIME_TYPES",
    "Authentication",
    "BearerAuthentication",
    "CompositeEntry",
    "CompositeMetadata",
    "CustomAuthentication",
    "MetadataDecodeError",
    "MimeType",
    "Sampling",
    "SimpleAuthentication",
    "ZipkinTrace",
    "accept_mime",
    "authentication_entry",
    "bearer",
    "composite",
    "custom_auth",
    "data_mime",
    "decode_accept_mime_types",
    "decode_authentication",
    "decode_data_mime_type",
    "decode_mime_type",
    "decode_routing",
    "decode_tracing",
    "encode_accept_mime_types",
    "encode_authentication",
    "encode_data_mime_type",
    "encode_entry",
    "encode_mime_type",
    "encode_routing",
    "encode_tracing",
    "entry",
    "route",
    "simple_auth",
    "tracing",
    "well_known_id",
    "well_known_name",
]
