"""Whose fault: the peer's protocol violations, our own API misuse, a lost transport, an orderly close.

A peer violation surfaces as RemoteProtocolError (a ProtocolError); misuse raises a LocalProtocolError
subclass at the call that still is the exception type the call raised before (ValueError,
RuntimeError, RejectedError, FrameTooLargeError); transport loss is ConnectionLostError and the peer's
ERROR[CONNECTION_CLOSE] is PeerClosedError, both ConnectionClosedErrors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

import anyio_rsocket
from anyio_rsocket import (
    ConnectionClosedError,
    ConnectionErrorReceived,
    ConnectionLostError,
    FrameTooLargeError,
    InvalidArgumentError,
    InvalidStateError,
    LeaseRefusedError,
    LocalProtocolError,
    Payload,
    PayloadTooLargeError,
    PeerClosedError,
    ProtocolError,
    RejectedError,
    RemoteProtocolError,
    StreamIdsExhaustedError,
)
from anyio_rsocket.errors import ErrorCode
from anyio_rsocket.frames import ErrorFrame, LeaseFrame, RequestStreamFrame

from .rawpeer import raw_server

pytestmark = pytest.mark.anyio


def test_new_names_are_exported_and_keep_the_old_bases() -> None:
    for name in (
        "ConnectionLostError",
        "PeerClosedError",
        "LocalProtocolError",
        "RemoteProtocolError",
        "InvalidArgumentError",
        "InvalidStateError",
    ):
        assert name in anyio_rsocket.__all__
    assert issubclass(RemoteProtocolError, ProtocolError)
    assert issubclass(ProtocolError, ConnectionClosedError)
    assert not issubclass(RemoteProtocolError, LocalProtocolError)
    assert issubclass(InvalidArgumentError, LocalProtocolError) and issubclass(
        InvalidArgumentError, ValueError
    )
    assert issubclass(InvalidStateError, LocalProtocolError) and issubclass(InvalidStateError, RuntimeError)
    assert issubclass(LeaseRefusedError, RejectedError) and issubclass(LeaseRefusedError, LocalProtocolError)
    assert issubclass(StreamIdsExhaustedError, RejectedError)
    assert issubclass(PayloadTooLargeError, FrameTooLargeError) and issubclass(
        PayloadTooLargeError, ValueError
    )
    for cls in (ConnectionLostError, PeerClosedError, ConnectionErrorReceived):
        assert issubclass(cls, ConnectionClosedError)
    assert not issubclass(ConnectionLostError, PeerClosedError)
    assert not issubclass(PeerClosedError, ConnectionLostError)


async def test_peer_violation_is_a_remote_protocol_error() -> None:
    bad = bytes.fromhex("00000001292000ffff") + b"x"  # PAYLOAD M|N declaring 65535 bytes of metadata
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            await peer.send_raw(bad)
            error = await peer.expect_next(ErrorFrame)
            assert error.error_code == ErrorCode.CONNECTION_ERROR
            await rs.wait_closed()
            assert isinstance(rs.close_reason, RemoteProtocolError)
            with pytest.raises(RemoteProtocolError):
                await rs.request_response(Payload(b"late"))


async def test_request_on_our_own_parity_is_a_remote_protocol_error() -> None:
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            await peer.send(RequestStreamFrame(1, 5, b"x"))  # stream 1 is the client's to open
            await peer.expect_next(ErrorFrame)
            await rs.wait_closed()
            assert type(rs.close_reason) is RemoteProtocolError


async def test_transport_loss_is_connection_lost() -> None:
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            await peer.transport.aclose()
            await rs.wait_closed()
            assert isinstance(rs.close_reason, ConnectionLostError)
            assert not isinstance(rs.close_reason, PeerClosedError)
            with pytest.raises(ConnectionLostError):
                await rs.fire_and_forget(Payload(b"late"))


async def test_orderly_close_by_the_peer_is_peer_closed() -> None:
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            await peer.send(ErrorFrame(0, ErrorCode.CONNECTION_CLOSE, b"bye"))
            await rs.wait_closed()
            assert isinstance(rs.close_reason, PeerClosedError)
            assert not isinstance(rs.close_reason, ConnectionLostError)
            assert rs.close_reason.message == "bye"


async def test_connection_error_from_the_peer_stays_connection_error_received() -> None:
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            await peer.send(ErrorFrame(0, ErrorCode.CONNECTION_ERROR, b"you broke it"))
            await rs.wait_closed()
            assert type(rs.close_reason) is ConnectionErrorReceived


async def test_new_requests_while_the_peer_drains_raise_peer_closed() -> None:
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            async with rs.request_stream(Payload(b"live")):
                await peer.expect(RequestStreamFrame)
                await peer.send(ErrorFrame(0, ErrorCode.CONNECTION_CLOSE, b"draining"))
                await peer.round_trip()
                with pytest.raises(PeerClosedError):
                    await rs.request_response(Payload(b"new"))


async def test_misuse_raises_local_errors_that_keep_their_old_types() -> None:
    with anyio.fail_after(5):
        async with raw_server() as (rs, _peer):
            with pytest.raises(InvalidArgumentError):
                rs.request_stream(Payload(b"x"), initial_n=0)
            with pytest.raises(ValueError):  # what callers caught before
                rs.request_stream(Payload(b"x"), initial_n=-1)
            with pytest.raises(InvalidArgumentError):
                rs.request_channel(Payload(b"x"), complete=True, outbound=_nothing())
            stream = rs.request_stream(Payload(b"x"))
            with pytest.raises(InvalidStateError):
                stream.request(1)  # before the request went out
            with pytest.raises(RuntimeError):
                stream.request(1)
            with pytest.raises(InvalidArgumentError):
                stream.request(0)


async def test_oversized_item_is_payload_too_large_and_frame_too_large() -> None:
    with anyio.fail_after(5):
        async with raw_server() as (rs, _peer):
            huge = Payload(b"", b"m" * (1 << 24))
            with pytest.raises(PayloadTooLargeError) as caught:
                await rs.fire_and_forget(huge)
            assert isinstance(caught.value, FrameTooLargeError)
            assert not rs.is_closed  # our mistake, not the connection's


async def test_refused_lease_is_lease_refused_and_rejected() -> None:
    with anyio.fail_after(5):
        async with raw_server(lease=True) as (rs, peer):
            await peer.expect(LeaseFrame)  # the lease we grant the server
            with pytest.raises(LeaseRefusedError) as caught:
                await rs.request_response(Payload(b"no lease yet"))
            assert isinstance(caught.value, RejectedError)


async def test_all_stream_ids_in_use_is_stream_ids_exhausted_and_rejected() -> None:
    with anyio.fail_after(5):
        async with raw_server(max_stream_id=3) as (rs, _peer):
            async with rs.request_stream(Payload(b"a")), rs.request_stream(Payload(b"b")):
                with pytest.raises(StreamIdsExhaustedError) as caught:
                    await rs.request_response(Payload(b"c"))
                assert isinstance(caught.value, RejectedError)
                assert not rs.is_closed


async def _nothing() -> AsyncIterator[Payload]:
    return
    yield Payload()
