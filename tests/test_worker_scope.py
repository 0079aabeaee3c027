"""Request-response handlers run in their worker's cancel scope, not one of their own (issue 15).

CANCEL must still cancel exactly the handler it names, at once, wherever the handler waits, and a
worker whose scope was cancelled must not pass that cancellation on to the next request it runs.
"""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from anyio_rsocket import ApplicationError, Payload, RequestHandler
from anyio_rsocket.testing import connected_pair

pytestmark = pytest.mark.anyio

TIMEOUT = 5


class Service(RequestHandler):
    """``wait``: waits until cancelled; ``swallow``: swallows its cancellation and answers;
    ``nested``: waits inside a cancel scope of its own; anything else is echoed."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.outcomes: list[str] = []
        self.ended = anyio.Event()

    async def request_response(self, payload: Payload) -> Payload:
        kind = payload.data
        if kind not in (b"wait", b"swallow", b"nested"):
            return payload
        self.started.set()
        try:
            if kind == b"nested":
                with anyio.fail_after(60):  # the caller's CANCEL must not wait for this deadline
                    await anyio.sleep_forever()
            else:
                await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.outcomes.append(f"{kind.decode()}: cancelled")
            if kind != b"swallow":
                raise
            return Payload(b"answer after CANCEL")  # must not be sent
        except TimeoutError:  # pragma: no cover - the failure this test looks for
            self.outcomes.append(f"{kind.decode()}: timed out")
            raise
        finally:
            self.ended.set()
        raise AssertionError("unreachable")  # pragma: no cover


@pytest.mark.parametrize("kind", [b"wait", b"swallow", b"nested"])
async def test_cancel_reaches_only_its_handler_and_the_worker_goes_on(kind: bytes) -> None:
    service = Service()
    with anyio.fail_after(TIMEOUT):
        async with connected_pair(lambda rs: service) as rs:
            for _ in range(3):  # the same idle worker runs each of these in turn
                service.started, service.ended = anyio.Event(), anyio.Event()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(rs.request_response, Payload(kind))
                    await service.started.wait()
                    tg.cancel_scope.cancel()  # CANCEL goes to the server
                await service.ended.wait()
                # The next requests run on the worker whose scope was cancelled: not cancelled.
                for i in range(20):
                    assert (await rs.request_response(Payload(b"%d" % i))).data == b"%d" % i
            assert rs.stats.streams_open == 0
    assert service.outcomes == [f"{kind.decode()}: cancelled"] * 3


async def test_concurrent_requests_cancel_independently() -> None:
    """Of many handlers waiting at once (one worker each), CANCEL stops only the named ones."""
    release = anyio.Event()
    cancelled: list[int] = []
    all_cancelled = anyio.Event()

    class Waiting(RequestHandler):
        async def request_response(self, payload: Payload) -> Payload:
            try:
                await release.wait()
            except anyio.get_cancelled_exc_class():
                cancelled.append(int(payload.data))
                if len(cancelled) == 10:
                    all_cancelled.set()
                raise
            return payload

    answers: dict[int, bytes] = {}
    with anyio.fail_after(TIMEOUT):
        async with connected_pair(lambda rs: Waiting()) as rs:

            async def call(i: int, scope: anyio.CancelScope) -> None:
                with scope:
                    answers[i] = (await rs.request_response(Payload(b"%d" % i))).data

            scopes = [anyio.CancelScope() for _ in range(20)]
            async with anyio.create_task_group() as tg:
                for i, scope in enumerate(scopes):
                    tg.start_soon(call, i, scope)
                await anyio.wait_all_tasks_blocked()
                for scope in scopes[::2]:
                    scope.cancel()
                await all_cancelled.wait()
                release.set()
    assert sorted(cancelled) == list(range(0, 20, 2))
    assert answers == {i: b"%d" % i for i in range(1, 20, 2)}


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # native asyncio timeouts exist only there
async def test_a_streams_native_timeout_cancels_no_other_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream handler holds a native asyncio timeout open across a ``yield`` and waits there for
    credit; the timeout expires right after. It targets the task driving the stream: that task
    must not be running anybody else's request by then (a stream inside a ``with`` block does not
    park, so it keeps its task). The stream itself may fail: the timeout did not fire inside it."""
    import asyncio

    from anyio_rsocket.peer import responder

    monkeypatch.setattr(responder, "PARK_ABOVE", 0)  # streams would park however few there are

    class NativeTimeout:
        """What ``asyncio.timeout()`` (3.11+) does, reduced: cancel the task that entered it."""

        async def __aenter__(self) -> NativeTimeout:
            self.task = asyncio.current_task()
            return self

        async def __aexit__(self, *exc_info: object) -> None:
            pass

        def expire_now(self) -> None:
            assert self.task is not None
            asyncio.get_running_loop().call_soon(self.task.cancel)

    class Timed(RequestHandler):
        async def request_response(self, payload: Payload) -> Payload:
            await anyio.lowlevel.checkpoint()
            return payload

        async def request_stream(self, payload: Payload) -> Any:
            async with NativeTimeout() as timeout:
                yield Payload(b"first")  # sent: the requester's one credit
                timeout.expire_now()  # on the next turn of the loop
                yield Payload(b"second")  # pulled ahead, no credit: waits here

    with anyio.fail_after(TIMEOUT):
        async with connected_pair(lambda rs: Timed()) as rs:
            async with rs.request_stream(Payload(b"s"), initial_n=1, auto_request=False) as stream:
                assert (await stream.receive()).data == b"first"
                for i in range(30):  # run on the pool's workers while the timeout fires
                    assert (await rs.request_response(Payload(b"%d" % i))).data == b"%d" % i
                stream.request(1)
                # The timeout's cancellation may fail the stream: only the stream.
                with contextlib.suppress(ApplicationError):
                    assert [item.data async for item in stream] == [b"second"]
            assert (await rs.request_response(Payload(b"after"))).data == b"after"


def test_only_streams_outside_with_blocks_park() -> None:
    """The check that keeps a stream on its task while it is inside a ``with`` block."""
    import asyncio
    import threading

    from anyio_rsocket.peer.responder import inside_with_block

    lock = threading.Lock()

    async def plain() -> Any:
        try:
            yield 1
        finally:
            pass

    async def exit_stack() -> Any:
        async with contextlib.AsyncExitStack():
            yield 1

    async def locked() -> Any:
        with lock:
            yield 1

    async def delegating() -> Any:
        async for item in exit_stack():
            yield item

    async def after_the_block() -> Any:
        async with contextlib.AsyncExitStack():
            pass
        yield 1

    async def check() -> dict[str, bool]:
        found = {}
        for make in (plain, exit_stack, locked, delegating, after_the_block):
            generator = make()
            await generator.__anext__()
            found[make.__name__] = inside_with_block(generator)
            await generator.aclose()
        return found

    assert asyncio.run(check()) == {
        "plain": False,
        "exit_stack": True,
        "locked": True,
        "delegating": True,
        "after_the_block": False,
    }
    assert inside_with_block(iter(()))  # not an async generator: cannot tell, so it does not park
