"""connect_pool: one requester over many servers, on asyncio and trio.

Servers run in-process (``serve_tcp`` in the test's task group) unless the test kills one: those
are subprocesses (``tests/interop/peers/anyio_rsocket_server.py``), as is rsocket-py's server for
the heterogeneous split.
"""

from __future__ import annotations

import functools
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import TaskGroup, TaskStatus

from anyio_rsocket import (
    Backoff,
    ConnectionClosedError,
    LeastLoaded,
    Payload,
    RejectedSetupError,
    RequestHandler,
    Resume,
    RoundRobin,
    RSocket,
    TargetState,
    connect_pool,
    connect_tcp,
    serve_tcp,
    serve_websocket,
)
from anyio_rsocket.pool import dns_targets, file_targets

from .interop.cutting_proxy import CuttingProxy
from .interop.peer_process import peer_process, peer_server

pytestmark = pytest.mark.anyio

FAST = Backoff(initial=0.01, maximum=0.05)


class Echo(RequestHandler):
    def __init__(self, name: str, delay: float = 0.0) -> None:
        self.name = name
        self.delay = delay
        self.calls = 0
        self.fnf: list[bytes] = []
        self.pushes: list[bytes] = []
        self.release = anyio.Event()
        self.hold = False

    async def request_response(self, payload: Payload) -> Payload:
        self.calls += 1
        if self.delay:
            await anyio.sleep(self.delay)
        return Payload(self.name.encode() + b":" + payload.data)

    async def fire_and_forget(self, payload: Payload) -> None:
        self.fnf.append(payload.data)

    async def metadata_push(self, metadata: bytes) -> None:
        self.pushes.append(metadata)

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        for index in range(int(payload.data)):
            if self.hold and index == 1:
                await self.release.wait()
            yield Payload(b"%s-%d" % (self.name.encode(), index))


class Server:
    """An in-process server that can be stopped and started again on the same port."""

    def __init__(self, task_group: TaskGroup, name: str, delay: float = 0.0, port: int = 0) -> None:
        self.task_group = task_group
        self.handler = Echo(name, delay)
        self.port = port
        self.scope = anyio.CancelScope()
        self.stopped = anyio.Event()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    async def start(self) -> Server:
        self.scope = anyio.CancelScope()
        self.stopped = anyio.Event()
        self.port = await self.task_group.start(self._run)
        return self

    async def _run(self, *, task_status: TaskStatus[int]) -> None:
        try:
            with self.scope:
                await serve_tcp(lambda rs: self.handler, "127.0.0.1", self.port, task_status=task_status)
        finally:
            self.stopped.set()

    async def stop(self) -> None:
        self.scope.cancel()
        await self.stopped.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def servers(*specs: tuple[str, float]) -> AsyncIterator[tuple[TaskGroup, list[Server]]]:
    async with anyio.create_task_group() as tg:
        started = [await Server(tg, name, delay).start() for name, delay in specs]
        yield tg, started
        tg.cancel_scope.cancel()


def stats_of(pool: Any, url: str) -> Any:
    [stats] = [target for target in pool.targets if target.url == url]
    return stats


async def test_round_robin_splits_evenly_across_our_server_and_rsocket_py() -> None:
    with anyio.fail_after(30):
        async with (
            peer_server("anyio_rsocket_server.py") as ours,
            peer_server("rsocket_py_server.py") as theirs,
        ):
            urls = [f"tcp://127.0.0.1:{ours}", f"tcp://127.0.0.1:{theirs}"]
            async with connect_pool(urls, strategy=RoundRobin()) as pool:
                for index in range(100):
                    assert (await pool.request_response(Payload(b"%d" % index))).data == b"echo:%d" % index
                for index in range(40):
                    await pool.fire_and_forget(Payload(b"f%d" % index))
                assert [target.requests for target in pool.targets] == [70, 70]
                assert all(target.state is TargetState.CONNECTED for target in pool.targets)
                # Each server saw exactly half of the fire-and-forgets (asked while the pool's
                # connections are open: a server drops what it has not handled when one closes).
                ours_log: list[str] = []
                theirs_log: list[list[str]] = []
                while len(ours_log) < 20 or len(theirs_log) < 20:
                    async with connect_tcp("127.0.0.1", ours) as rs:
                        ours_log = json.loads((await rs.request_response(Payload(b"log"))).data)
                    async with connect_tcp("127.0.0.1", theirs) as rs:
                        theirs_log = json.loads((await rs.request_response(Payload(b"log"))).data)
            assert len(ours_log) == 20 and len(theirs_log) == 20
            assert sorted(ours_log + [entry[1] for entry in theirs_log]) == sorted(f"f{i}" for i in range(40))


async def test_a_killed_target_fails_only_its_calls_in_flight_and_comes_back() -> None:
    with anyio.fail_after(60):
        async with (
            peer_process("anyio_rsocket_server.py", "--delay", "0.002") as (port_a, process_a),
            peer_server("anyio_rsocket_server.py", "--delay", "0.002") as port_b,
        ):
            url_a, url_b = f"tcp://127.0.0.1:{port_a}", f"tcp://127.0.0.1:{port_b}"
            async with connect_pool([url_a, url_b], reconnect=FAST) as pool:
                failures: list[BaseException] = []
                successes = 0
                killed = anyio.Event()
                after_kill = 0

                async def caller() -> None:
                    nonlocal successes, after_kill
                    while after_kill < 2000:
                        try:
                            await pool.request_response(Payload(b"x"))
                        except ConnectionClosedError as exc:
                            failures.append(exc)
                            continue
                        successes += 1
                        if killed.is_set():
                            after_kill += 1

                async with anyio.create_task_group() as callers:
                    for _ in range(64):
                        callers.start_soon(caller)
                    while successes < 500:
                        await anyio.sleep(0)
                    process_a.kill()
                    killed.set()
                # Only calls in flight on the killed target failed: at most one per caller.
                assert 0 < len(failures) <= 64
                assert stats_of(pool, url_a).state in (TargetState.DOWN, TargetState.CONNECTING)
                requests_b = stats_of(pool, url_b).requests

                # The target restarted on the same port gets traffic again.
                async with peer_server("anyio_rsocket_server.py", "--port", str(port_a)):
                    while stats_of(pool, url_a).state is not TargetState.CONNECTED:
                        await anyio.sleep(0.01)
                    before = stats_of(pool, url_a).requests
                    for _ in range(20):
                        await pool.request_response(Payload(b"y"))
                    assert stats_of(pool, url_a).requests == before + 10
                    assert stats_of(pool, url_b).requests > requests_b


async def test_a_target_source_adds_and_removes_targets_and_removed_ones_drain() -> None:
    with anyio.fail_after(20):
        async with servers(("a", 0.0), ("b", 0.0), ("c", 0.0)) as (_, (a, b, c)):
            a.handler.hold = True
            send, receive = anyio.create_memory_object_stream[list[str]](10)

            async def source() -> AsyncIterator[list[str]]:
                async with receive:
                    async for urls in receive:
                        yield urls

            await send.send([a.url])
            async with connect_pool(source()) as pool:
                assert [target.url for target in pool.targets] == [a.url]
                async with pool.request_stream(Payload(b"3"), initial_n=1, auto_request=False) as stream:
                    assert (await stream.receive()).data == b"a-0"
                    await send.send([b.url, c.url])  # a goes away while its stream is open
                    while [t.url for t in pool.targets if t.state is TargetState.CONNECTED] != [b.url, c.url]:
                        await anyio.sleep(0.01)
                    assert stats_of(pool, a.url).state is TargetState.DRAINING
                    replies = {(await pool.request_response(Payload(b"q"))).data for _ in range(10)}
                    assert replies == {b"b:q", b"c:q"}  # nothing new goes to a
                    a.handler.release.set()
                    stream.request(5)
                    assert [item.data async for item in stream] == [b"a-1", b"a-2"]
                while any(t.url == a.url for t in pool.targets):
                    await anyio.sleep(0.01)  # drained, then closed and forgotten
                assert a.handler.calls == 0
                await send.send([c.url, c.url])  # duplicates share one connection
                while [t.url for t in pool.targets] != [c.url]:
                    await anyio.sleep(0.01)
                assert (await pool.request_response(Payload(b"z"))).data == b"c:z"
                send.close()


async def test_least_loaded_sends_far_fewer_requests_to_a_slow_target() -> None:
    with anyio.fail_after(30):
        async with servers(("fast", 0.0), ("slow", 0.02)) as (_, (fast, slow)):
            async with connect_pool([fast.url, slow.url], strategy=LeastLoaded()) as pool:

                async def caller() -> None:
                    for _ in range(60):
                        await pool.request_response(Payload(b"x"))

                async with anyio.create_task_group() as callers:
                    for _ in range(16):
                        callers.start_soon(caller)
            assert fast.handler.calls + slow.handler.calls == 960
            assert slow.handler.calls * 4 < fast.handler.calls


async def test_calls_wait_while_every_target_is_down_then_go_to_the_one_back() -> None:
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            server = Server(tg, "late", port=free_port())
            async with connect_pool([server.url], reconnect=FAST) as pool:
                [target] = pool.targets
                assert target.state in (TargetState.DOWN, TargetState.CONNECTING) and target.failures == 1
                replies: list[Payload] = []

                async def ask() -> None:
                    replies.append(await pool.request_response(Payload(b"hi")))

                async with anyio.create_task_group() as waiting:
                    waiting.start_soon(ask)
                    await anyio.wait_all_tasks_blocked()
                    assert replies == []
                    await server.start()
                assert replies == [Payload(b"late:hi")]
            tg.cancel_scope.cancel()


async def test_without_reconnect_a_lost_target_stays_down() -> None:
    with anyio.fail_after(20):
        async with servers(("a", 0.0), ("b", 0.0)) as (_, (a, b)):
            async with connect_pool([a.url, b.url], reconnect=None) as pool:
                await a.stop()
                while stats_of(pool, a.url).state is not TargetState.DOWN:
                    await anyio.sleep(0.01)
                await a.start()
                for _ in range(10):
                    assert (await pool.request_response(Payload(b"q"))).data == b"b:q"
                assert stats_of(pool, a.url).state is TargetState.DOWN


async def test_a_target_that_refuses_setup_counts_as_down() -> None:
    def refuse(rs: RSocket) -> RequestHandler:
        raise RejectedSetupError("not today")

    with anyio.fail_after(20):
        async with servers(("b", 0.0)) as (tg, (b,)):
            port = await tg.start(functools.partial(serve_tcp, refuse, "127.0.0.1", 0))
            url = f"tcp://127.0.0.1:{port}"
            async with connect_pool([url, b.url], reconnect=FAST) as pool:
                assert isinstance(stats_of(pool, url).last_error, RejectedSetupError)
                for _ in range(6):
                    assert (await pool.request_response(Payload(b"q"))).data == b"b:q"


async def test_streams_channels_fire_and_forget_and_metadata_push() -> None:
    with anyio.fail_after(20):
        async with servers(("a", 0.0), ("b", 0.0)) as (_, (a, b)):
            async with connect_pool([a.url, b.url]) as pool:
                async with pool.request_stream(Payload(b"3")) as stream:
                    first = [item.data async for item in stream]
                assert first in ([b"a-0", b"a-1", b"a-2"], [b"b-0", b"b-1", b"b-2"])
                await pool.fire_and_forget(Payload(b"f"))
                await pool.metadata_push(b"m")
                assert all(target.outstanding == 0 for target in pool.targets)
                await pool.request_response(Payload(b"sync-a"))
                await pool.request_response(Payload(b"sync-b"))
            assert a.handler.pushes == [b"m"] and b.handler.pushes == [b"m"]
            assert len(a.handler.fnf) + len(b.handler.fnf) == 1


async def test_an_empty_pool_makes_calls_wait() -> None:
    with anyio.fail_after(10):
        async with connect_pool([]) as pool:
            assert pool.targets == []
            with anyio.move_on_after(0.05) as waited:
                await pool.request_response(Payload(b"nobody"))
            assert waited.cancelled_caught


async def test_a_failing_target_source_ends_the_pool_with_its_error() -> None:
    async def source() -> AsyncIterator[list[str]]:
        yield []
        raise LookupError("discovery failed")

    with anyio.fail_after(10), pytest.raises(LookupError, match="discovery failed"):
        async with connect_pool(source()) as pool:
            await pool.wait_available()


async def test_leaving_the_pool_closes_every_connection() -> None:
    with anyio.fail_after(10):
        async with servers(("a", 0.0), ("b", 0.0)) as (_, (a, b)):
            async with connect_pool([a.url, b.url]) as pool:
                sockets = [target for target in pool._targets.values()]
                rsockets = [target.rsocket for target in sockets]
                await pool.request_response(Payload(b"x"))
            assert all(rs is not None and rs.close_reason is not None for rs in rsockets)
            with pytest.raises(ConnectionClosedError):
                await pool.request_response(Payload(b"after"))


async def test_file_targets_follow_the_file(tmp_path: Any) -> None:
    path = tmp_path / "targets.txt"
    path.write_text("# our servers\ntcp://a:1\n\ntcp://b:2  # the second\n")
    with anyio.fail_after(10):
        source = file_targets(path, interval=0.01)
        assert await source.__anext__() == ["tcp://a:1", "tcp://b:2"]
        path.write_text("tcp://b:2\n")
        assert await source.__anext__() == ["tcp://b:2"]
        path.unlink()  # unreadable: the last list stays (nothing new is yielded)
        path.write_text("tcp://c:3\n")
        assert await source.__anext__() == ["tcp://c:3"]
        await source.aclose()


async def test_dns_targets_resolve_every_address() -> None:
    with anyio.fail_after(10):
        source = dns_targets("localhost", 7878, interval=0.01)
        urls = await source.__anext__()
        assert "tcp://127.0.0.1:7878" in urls
        assert all(url.startswith("tcp://") and url.endswith(":7878") for url in urls)
        await source.aclose()
        assert [u async for u in _first(dns_targets("no-such-host.invalid", 1, interval=0.01))] == [[]]


async def _first(source: AsyncIterator[list[str]]) -> AsyncIterator[list[str]]:
    async for urls in source:
        yield urls
        return


async def test_a_pool_fed_by_a_targets_file(tmp_path: Any) -> None:
    with anyio.fail_after(20):
        async with servers(("a", 0.0), ("b", 0.0)) as (_, (a, b)):
            path = tmp_path / "targets.txt"
            path.write_text(a.url + "\n")
            async with connect_pool(file_targets(path, interval=0.01)) as pool:
                assert (await pool.request_response(Payload(b"1"))).data == b"a:1"
                path.write_text(b.url + "\n")
                while [t.url for t in pool.targets] != [b.url]:
                    await anyio.sleep(0.01)
                assert (await pool.request_response(Payload(b"2"))).data == b"b:2"


async def test_with_resume_a_targets_streams_survive_a_blip() -> None:
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            handler = Echo("r")
            port = await tg.start(
                functools.partial(serve_tcp, lambda rs: handler, "127.0.0.1", 0, resume=Resume())
            )
            async with CuttingProxy("127.0.0.1", port, cut_after_bytes=4000, auto_cuts=1) as proxy:
                url = f"tcp://127.0.0.1:{proxy.port}"
                async with connect_pool([url], resume=Resume(retry=FAST)) as pool:
                    async with pool.request_stream(Payload(b"2000"), initial_n=16) as stream:
                        items = [item.data async for item in stream]
                    assert items == [b"r-%d" % index for index in range(2000)]
                    assert proxy.cuts == 1
                    [target] = pool.targets
                    assert target.connects == 1 and target.failures == 0  # resumed, never down
            tg.cancel_scope.cancel()


async def test_websocket_targets() -> None:
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            ports = []
            for name in ("w1", "w2"):
                handler = Echo(name)

                def factory(rs: RSocket, handler: Echo = handler) -> RequestHandler:
                    return handler

                ports.append(await tg.start(functools.partial(serve_websocket, factory, "127.0.0.1", 0)))
            urls = [f"ws://127.0.0.1:{port}/" for port in ports]
            async with connect_pool(urls) as pool:
                replies = {(await pool.request_response(Payload(b"x"))).data for _ in range(4)}
            assert replies == {b"w1:x", b"w2:x"}
            tg.cancel_scope.cancel()


async def test_a_last_fire_and_forget_is_flushed_when_the_pool_closes() -> None:
    with anyio.fail_after(10):
        async with servers(("a", 0.0)) as (_, (a,)):
            async with connect_pool([a.url]) as pool:
                await pool.fire_and_forget(Payload(b"last words"))
            async with connect_tcp("127.0.0.1", a.port) as rs:
                while not a.handler.fnf:
                    await rs.request_response(Payload(b"sync"))  # a round trip lets the handler run
            assert a.handler.fnf == [b"last words"]
