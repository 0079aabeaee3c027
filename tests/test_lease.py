"""Leasing (L1-L4, S6): requesters stay within the peer's lease, responders enforce their own."""

from __future__ import annotations

import anyio
import pytest

from anyio_rsocket import Payload, RejectedError, RequestHandler
from anyio_rsocket.errors import ErrorCode
from anyio_rsocket.frames import (
    ErrorFrame,
    LeaseFrame,
    PayloadFrame,
    RequestFireAndForgetFrame,
    RequestResponseFrame,
    SetupFrame,
)
from anyio_rsocket.lease import Lease, LeaseAllowance, LeaseStrategy

from .rawpeer import DEFAULT_SETUP, raw_client, raw_server

pytestmark = pytest.mark.anyio


class Echo(RequestHandler):
    async def request_response(self, payload: Payload) -> Payload:
        return payload


def test_allowance_is_replaced_not_added_L1() -> None:
    allowance = LeaseAllowance()
    assert not allowance.available(0.0)
    allowance.grant(1000, 2, now=0.0)
    allowance.grant(1000, 1, now=0.5)  # replaces: 1 left, not 3
    assert allowance.try_spend(0.6)
    assert not allowance.try_spend(0.6)


def test_allowance_expires_after_ttl_L1_L4() -> None:
    allowance = LeaseAllowance()
    allowance.grant(100, 10, now=0.0)
    assert allowance.available(0.099)
    assert not allowance.available(0.1)
    allowance.grant(0, 10, now=1.0)  # L4: TTL 0 stops requests
    assert not allowance.available(1.0)


def test_lease_strategy_custom_issuer() -> None:
    leases = iter([Lease(1.0, 3), Lease(2.0, 4)])
    strategy = LeaseStrategy(refresh_interval=0.5, issue=lambda: next(leases))
    assert strategy.next_lease() == Lease(1.0, 3)
    assert strategy.next_lease().to_frame() == LeaseFrame(2000, 4)
    with pytest.raises(ValueError):
        Lease(-1, 1)


async def test_no_request_before_first_lease_S6_L2() -> None:
    """With lease=True nothing goes out before the first LEASE; over-lease fails locally."""
    with anyio.fail_after(5):
        async with raw_server(lease=True) as (rs, peer):
            assert rs.setup.lease
            with pytest.raises(RejectedError, match="no LEASE"):
                await rs.request_response(Payload(b"too early"))
            await peer.expect(LeaseFrame)  # S6: our client-side responder grants the server a lease
            await peer.send(LeaseFrame(10_000, 1))
            await peer.round_trip()
            async with anyio.create_task_group() as tg:
                tg.start_soon(rs.fire_and_forget, Payload(b"one"))
                assert (await peer.expect_next(RequestFireAndForgetFrame)).data == b"one"
            with pytest.raises(RejectedError, match="allows no more"):
                await rs.fire_and_forget(Payload(b"two"))  # L2: never touches the wire
            await peer.round_trip()  # the echo is next: no request was sent before it


async def test_lease_wait_blocks_until_a_new_lease_L2() -> None:
    with anyio.fail_after(5):
        async with raw_server(lease=True, lease_wait=True) as (rs, peer):
            await peer.expect(LeaseFrame)
            results: list[Payload] = []

            async def call() -> None:
                results.append(await rs.request_response(Payload(b"patient")))

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await peer.round_trip()
                await peer.send(LeaseFrame(10_000, 5))
                request = await peer.expect_next(RequestResponseFrame)
                await peer.send(PayloadFrame(request.stream_id, b"ok", next=True, complete=True))
            assert results == [Payload(b"ok")]


async def test_server_grants_leases_and_rejects_over_lease_L3() -> None:
    """The server's responder sends LEASE after SETUP and answers excess requests with REJECTED."""
    with anyio.fail_after(5):
        async with raw_client(
            lambda rs: Echo(), setup=None, lease=LeaseStrategy(ttl=30.0, number_of_requests=1)
        ) as peer:
            await peer.send(SetupFrame(20_000, 90_000, "a/b", "c/d", lease=True))
            lease = await peer.expect(LeaseFrame)
            assert (lease.ttl, lease.number_of_requests) == (30_000, 1)
            await peer.send(RequestResponseFrame(1, b"first"), RequestResponseFrame(3, b"second"))
            by_stream = {}
            while len(by_stream) < 2:
                frame = await peer.receive()
                assert isinstance(frame, (PayloadFrame, ErrorFrame)), frame
                by_stream[frame.stream_id] = frame
            assert isinstance(by_stream[1], PayloadFrame) and by_stream[1].data == b"first"
            assert isinstance(by_stream[3], ErrorFrame) and by_stream[3].error_code == ErrorCode.REJECTED


async def test_server_side_requester_waits_for_client_lease_S6() -> None:
    """Symmetric leasing: the server may only call the client within the client's lease."""
    servers = []
    ready = anyio.Event()

    def factory(rs):  # type: ignore[no-untyped-def]
        servers.append(rs)
        ready.set()
        return Echo()

    with anyio.fail_after(5):
        async with raw_client(factory, setup=None) as peer:
            await peer.send(SetupFrame(20_000, 90_000, "a/b", "c/d", lease=True))
            await ready.wait()
            await peer.expect(LeaseFrame)  # S6: the server's responder leases to the client first
            with pytest.raises(RejectedError):
                await servers[0].fire_and_forget(Payload(b"no lease from the client yet"))
            await peer.send(LeaseFrame(10_000, 1))
            await peer.round_trip()
            await servers[0].fire_and_forget(Payload(b"now allowed"))
            assert (await peer.expect_next(RequestFireAndForgetFrame)).data == b"now allowed"


async def test_leased_connection_end_to_end() -> None:
    """Our client and server with leasing: requests flow while the lease lasts, then are refused."""

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            from anyio_rsocket import connect_tcp, serve_tcp

            port = await tg.start(
                lambda task_status: serve_tcp(
                    lambda rs: Echo(),
                    "127.0.0.1",
                    0,
                    lease=LeaseStrategy(ttl=60.0, number_of_requests=3),
                    task_status=task_status,
                )
            )
            async with connect_tcp("127.0.0.1", port, lease=True, lease_wait=True) as rs:
                for index in range(3):
                    assert (await rs.request_response(Payload(b"%d" % index))).data == b"%d" % index
            async with connect_tcp("127.0.0.1", port, lease=True) as rs:
                await rs.request_response(Payload(b"a"))
                await rs.request_response(Payload(b"b"))
                await rs.request_response(Payload(b"c"))
                with pytest.raises(RejectedError):
                    await rs.request_response(Payload(b"d"))
            tg.cancel_scope.cancel()

    with anyio.fail_after(5):
        await run()


async def test_stray_lease_without_negotiation_is_ignored_client_side() -> None:
    """Our client, leasing not negotiated, gets LEASE(ttl 0, 0 requests): were it honoured, every
    request would be refused (L4). It changes nothing, and nothing is sent in reply to it."""
    with anyio.fail_after(5):
        async with raw_server() as (rs, peer):
            assert not rs.setup.lease
            await peer.send(LeaseFrame(0, 0))
            await peer.round_trip()  # the LEASE was processed; no answer, no error
            async with anyio.create_task_group() as tg:
                results: list[Payload] = []

                async def call() -> None:
                    results.append(await rs.request_response(Payload(b"x")))

                tg.start_soon(call)
                request = await peer.expect(RequestResponseFrame)
                await peer.send(PayloadFrame(request.stream_id, b"x", next=True, complete=True))
            assert results == [Payload(b"x")]
            await rs.fire_and_forget(Payload(b"still allowed"))
            assert (await peer.expect(RequestFireAndForgetFrame)).data == b"still allowed"
            assert not rs.is_closed


async def test_stray_lease_without_negotiation_is_ignored_server_side() -> None:
    """Our server, leasing not negotiated: a client's LEASE(ttl 0, 0 requests) neither limits the
    server's own requests nor how its responder answers."""
    servers = []
    ready = anyio.Event()

    def factory(rs):  # type: ignore[no-untyped-def]
        servers.append(rs)
        ready.set()
        return Echo()

    with anyio.fail_after(5):
        async with raw_client(factory) as peer:
            assert DEFAULT_SETUP.lease is False
            await ready.wait()
            await peer.send(LeaseFrame(0, 0))
            await peer.round_trip()  # no LEASE of the server's own, no error: nothing was sent
            await servers[0].fire_and_forget(Payload(b"server request"))
            assert (await peer.expect(RequestFireAndForgetFrame)).data == b"server request"
            await peer.send(RequestResponseFrame(1, b"client request"))
            reply = await peer.expect(PayloadFrame)
            assert (reply.stream_id, reply.data) == (1, b"client request")
            assert not servers[0].is_closed
