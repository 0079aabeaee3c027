"""Property tests of the metadata extensions (X1-X12): decoders fail only with MetadataDecodeError,
and whatever the encoders accept decodes back to the same value."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anyio_rsocket.extensions import (
    WELL_KNOWN_MIME_TYPES,
    BearerAuthentication,
    CompositeEntry,
    CompositeMetadata,
    CustomAuthentication,
    MetadataDecodeError,
    Sampling,
    SimpleAuthentication,
    ZipkinTrace,
    composite,
    decode_accept_mime_types,
    decode_authentication,
    decode_data_mime_type,
    decode_mime_type,
    decode_routing,
    decode_tracing,
    encode_authentication,
    encode_routing,
)

DECODERS: dict[str, Callable[[bytes], Any]] = {
    "composite": CompositeMetadata.decode,
    "composite-lookups": lambda raw: [
        (m.route, m.authentication, m.data_mime_type, m.accept_mime_types, m.tracing)
        for m in [CompositeMetadata.decode(raw)]
    ],
    "mime": decode_mime_type,
    "routing": decode_routing,
    "authentication": decode_authentication,
    "data-mime": decode_data_mime_type,
    "accept-mime": decode_accept_mime_types,
    "tracing": decode_tracing,
}


ascii_names = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=128
)
mime_types = st.one_of(
    ascii_names,
    st.sampled_from(sorted(WELL_KNOWN_MIME_TYPES.values())),
    st.integers(0x2B, 0x79),  # unassigned well-known ids stay ints (X1)
)
entries = st.builds(CompositeEntry, mime_types, st.binary(max_size=40))
tags = st.text(min_size=1, max_size=60).filter(lambda tag: 1 <= len(tag.encode()) <= 255)


@settings(max_examples=100, deadline=None)
@given(st.lists(entries, max_size=6))
def test_composite_round_trip(items: list[CompositeEntry]) -> None:
    """X2, X3: any list of encodable entries survives encode/decode, order and duplicates included."""
    assert list(CompositeMetadata.decode(composite(*items))) == items


@settings(max_examples=100, deadline=None)
@given(st.lists(tags, min_size=1, max_size=5))
def test_routing_round_trip(values: list[str]) -> None:
    """X5: any 1..255-byte UTF-8 tags survive encode/decode."""
    assert decode_routing(encode_routing(*values)) == tuple(values)


authentications = st.one_of(
    st.builds(SimpleAuthentication, st.text(max_size=30), st.text(max_size=30)),
    st.builds(BearerAuthentication, st.text(max_size=60)),
    st.builds(
        CustomAuthentication,
        ascii_names.filter(lambda name: name not in ("simple", "bearer")),
        st.binary(max_size=30),
    ),
    st.builds(CustomAuthentication, st.integers(2, 127), st.binary(max_size=30)),
)


@settings(max_examples=100, deadline=None)
@given(authentications)
def test_authentication_round_trip(auth: Any) -> None:
    """X6-X8: every authentication type survives encode/decode."""
    assert decode_authentication(encode_authentication(auth)) == auth


@st.composite
def traces(draw: st.DrawFn) -> ZipkinTrace:
    sampling = draw(st.sampled_from(list(Sampling)))
    if not draw(st.booleans()):
        return ZipkinTrace(sampling=sampling)
    wide = draw(st.booleans())
    trace_id = draw(st.integers(0, (1 << (128 if wide else 64)) - 1))
    span_id = draw(st.integers(0, (1 << 64) - 1))
    parent = draw(st.none() | st.integers(0, (1 << 64) - 1))
    return ZipkinTrace(trace_id, span_id, parent, sampling, wide)


@settings(max_examples=100, deadline=None)
@given(traces())
def test_tracing_round_trip(trace: ZipkinTrace) -> None:
    """X12: every trace survives encode/decode with 1, 17, 25 or 33 bytes."""
    raw = trace.encode()
    assert len(raw) in (1, 17, 25, 33)
    assert decode_tracing(raw) == trace


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """Valid metadata of some kind, then truncated or with one byte changed."""
    raw = draw(
        st.one_of(
            st.lists(entries, min_size=1, max_size=3).map(lambda items: composite(*items)),
            st.lists(tags, min_size=1, max_size=3).map(lambda values: encode_routing(*values)),
            authentications.map(encode_authentication),
            traces().map(ZipkinTrace.encode),
        )
    )
    if draw(st.booleans()):
        return raw[: draw(st.integers(0, len(raw)))]
    index = draw(st.integers(0, len(raw) - 1))
    return raw[:index] + bytes([draw(st.integers(0, 255))]) + raw[index + 1 :]


@pytest.mark.parametrize("name", sorted(DECODERS))
@settings(max_examples=120, deadline=None)
@given(raw=st.one_of(st.binary(max_size=64), mutated()))
def test_decoders_raise_only_metadata_decode_error(name: str, raw: bytes) -> None:
    """X1-X12: arbitrary bytes either decode or raise MetadataDecodeError, never anything else."""
    with contextlib.suppress(MetadataDecodeError):
        DECODERS[name](raw)
