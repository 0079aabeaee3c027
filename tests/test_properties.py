"""Property tests: random interleavings of frames from a scripted peer never break the library.

Whatever a peer sends, our side either keeps working (a keepalive round trip succeeds) or ends the
connection with its own protocol error; it never raises anything else, never hangs, and leaves no
task behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anyio_rsocket import ConnectionClosedError, Payload, RequestHandler, RSocketError
from anyio_rsocket.frames import (
    CancelFrame,
    ErrorFrame,
    ExtFrame,
    KeepaliveFrame,
    LeaseFrame,
    MetadataPushFrame,
    PayloadFrame,
    RequestChannelFrame,
    RequestFireAndForgetFrame,
    RequestNFrame,
    RequestResponseFrame,
    RequestStreamFrame,
    SetupFrame,
    encode_frame,
)

from .rawpeer import ANY_FRAME, RawPeer, raw_client, raw_server

pytestmark = pytest.mark.anyio

stream_ids = st.integers(0, 9)
small = st.binary(max_size=20)
metadata = st.one_of(st.none(), small)
request_n = st.integers(0, 2**31 - 1)
error_codes = st.sampled_from([0x001, 0x003, 0x101, 0x102, 0x201, 0x202, 0x203, 0x204, 0x301, 0xFFFFFFFE])

frames = st.one_of(
    st.builds(RequestResponseFrame, stream_ids, small, metadata, st.booleans()),
    st.builds(RequestFireAndForgetFrame, stream_ids, small, metadata, st.booleans()),
    st.builds(RequestStreamFrame, stream_ids, st.integers(0, 5), small, metadata, st.booleans()),
    st.builds(
        RequestChannelFrame, stream_ids, st.integers(0, 5), small, metadata, st.booleans(), st.booleans()
    ),
    st.builds(RequestNFrame, stream_ids, request_n),
    st.builds(CancelFrame, stream_ids),
    st.builds(PayloadFrame, stream_ids, small, metadata, st.booleans(), st.booleans(), st.booleans()),
    st.builds(ErrorFrame, stream_ids, error_codes, small),
    st.builds(KeepaliveFrame, st.booleans(), st.just(0), small),
    st.builds(MetadataPushFrame, small),
    st.builds(LeaseFrame, st.integers(0, 1000), st.integers(0, 5)),
    st.builds(ExtFrame, stream_ids, st.integers(1, 5), small, metadata, st.booleans()),
    st.builds(SetupFrame, st.just(1000), st.just(1000), st.just("a/b"), st.just("c/d")),
)
wire = st.lists(
    st.one_of(frames.map(encode_frame), st.binary(min_size=0, max_size=16)),
    max_size=25,
)


class Finite(RequestHandler):
    """Small, finite answers so that any credit a peer grants ends quickly."""

    async def request_response(self, payload: Payload) -> Payload:
        return payload

    async def fire_and_forget(self, payload: Payload) -> None:
        pass

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        for index in range(3):
            yield Payload(b"%d" % index)

    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        yield payload
        count = 0
        async for item in inbound:
            yield item
            count += 1
            if count == 3:
                return


async def _play(peer: RawPeer, script: list[bytes]) -> None:
    """Send the script; then the connection must either answer a keepalive or be closed."""
    try:
        for raw in script:
            await peer.send_raw(raw)
        await peer.round_trip(b"property-sync", allow=ANY_FRAME)
    except ConnectionClosedError:
        pass  # our side ended the connection: allowed, as long as nothing else went wrong


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=wire)
async def test_server_survives_any_frame_sequence(script: list[bytes]) -> None:
    before = len(anyio.get_running_tasks())
    with anyio.fail_after(10):
        async with raw_client(lambda rs: Finite()) as peer:
            await _play(peer, script)
    assert len(anyio.get_running_tasks()) == before


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=wire)
async def test_client_survives_any_frame_sequence(script: list[bytes]) -> None:
    before = len(anyio.get_running_tasks())
    with anyio.fail_after(10):
        async with raw_server(handler=Finite()) as (rs, peer):
            async with anyio.create_task_group() as tg:

                async def use_connection() -> None:
                    # Requests of our own in flight while the peer misbehaves.
                    # Only the library's own errors may come out (a peer ERROR, a closed connection).
                    with contextlib.suppress(RSocketError):
                        async with rs.request_stream(Payload(b"s"), initial_n=2) as stream:
                            async for _ in stream:
                                pass

                tg.start_soon(use_connection)
                await _play(peer, script)
                tg.cancel_scope.cancel()
    assert len(anyio.get_running_tasks()) == before
