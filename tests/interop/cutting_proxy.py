"""A TCP proxy for tests that cuts connections on demand or after a byte count (asyncio and trio).

::

    async with CuttingProxy("127.0.0.1", server_port, cut_after_bytes=2000) as proxy:
        ...  # connect clients to proxy.port
        await proxy.cut()  # close every relayed connection, both sides, at once
        async with proxy.down():  # cut, and refuse connections (nothing listens) until the block ends
            ...

It listens on an ephemeral port of ``listen_host`` and relays bytes both ways, unchanged. A *cut*
closes the client's socket and the upstream socket of every current connection at the same time,
with no goodbye at any protocol level; the proxy keeps listening for new connections.

``cut_after_bytes`` makes cuts deterministic: a connection is cut once exactly that many bytes went
from the server to the client over it (the chunk that crosses the limit is forwarded only up to
it, so the client may get half a frame). Only the first ``auto_cuts`` connections to reach the
limit are cut; both attributes may be changed at any time. ``target_host`` and ``target_port`` may
be changed too: later connections go to the new target.

Counters (``connections``, ``cuts``, ``bytes_to_client``, ``bytes_to_server``) can be awaited with
:meth:`wait_connections` and :meth:`wait_cuts`; no polling or sleeping is needed. A cut counts once
both sockets of every connection it cut are closed. A connection that ends by itself (either side
closes) closes the other side too and is not a cut.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketListener, TaskGroup

#: Bytes read per receive.
CHUNK = 65536


class _Relay:
    """One client connection and its upstream connection."""

    def __init__(self, client: ByteStream) -> None:
        self.client = client
        self.upstream: ByteStream | None = None
        self.scope = anyio.CancelScope()
        self.closed = anyio.Event()
        #: Bytes forwarded server -> client over this connection.
        self.to_client = 0


class CuttingProxy:
    """A TCP proxy to ``target_host:target_port`` that can cut its connections; see the module doc."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        cut_after_bytes: int | None = None,
        auto_cuts: int = 1,
        listen_host: str = "127.0.0.1",
    ) -> None:
        if cut_after_bytes is not None and cut_after_bytes < 1:
            raise ValueError("cut_after_bytes must be positive")
        self.target_host = target_host
        self.target_port = target_port
        self.cut_after_bytes = cut_after_bytes
        self.auto_cuts = auto_cuts
        self.listen_host = listen_host
        #: The port the proxy listens on (set on entering the ``async with``).
        self.port = 0
        #: Connections accepted so far.
        self.connections = 0
        #: Cuts completed so far (manual and automatic).
        self.cuts = 0
        #: Automatic cuts started so far.
        self.auto_cuts_started = 0
        #: Bytes forwarded in each direction, over every connection.
        self.bytes_to_client = 0
        self.bytes_to_server = 0
        self._cuts_started = 0
        self._relays: set[_Relay] = set()
        self._changed = anyio.Event()
        self._task_group: TaskGroup | None = None
        self._accept_scope: anyio.CancelScope | None = None
        self._listener_closed: anyio.Event | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> CuttingProxy:
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            await self._listen(0)
        except BaseException as exc:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        return await self._task_group.__aexit__(exc_type, exc, traceback)

    async def _listen(self, port: int) -> None:
        assert self._task_group is not None
        multi = await anyio.create_tcp_listener(local_host=self.listen_host, local_port=port)
        (listener,) = multi.listeners  # one address: one listener, with accept()
        assert isinstance(listener, SocketListener)
        self.port = listener.extra(SocketAttribute.local_port)
        self._accept_scope = anyio.CancelScope()
        self._listener_closed = anyio.Event()
        self._task_group.start_soon(self._accept, listener, self._accept_scope, self._listener_closed)

    async def _accept(
        self, listener: SocketListener, scope: anyio.CancelScope, listener_closed: anyio.Event
    ) -> None:
        try:
            with scope:
                while True:
                    client = await listener.accept()
                    relay = _Relay(client)
                    self._relays.add(relay)  # at once, so that a cut from now on includes it
                    self.connections += 1
                    self._notify()
                    assert self._task_group is not None
                    self._task_group.start_soon(self._relay, relay)
        finally:
            with anyio.CancelScope(shield=True):
                await listener.aclose()
            listener_closed.set()

    # --- cutting -------------------------------------------------------------------------------

    async def cut(self) -> None:
        """Cut every current connection; return once their sockets are all closed."""
        target = self._start_cut()
        await self.wait_cuts(target)

    @asynccontextmanager
    async def down(self) -> AsyncIterator[None]:
        """Cut every connection and stop listening (connects are refused) until the block ends.

        On leaving, the proxy listens again on the same port.
        """
        assert self._accept_scope is not None and self._listener_closed is not None
        self._accept_scope.cancel()
        await self._listener_closed.wait()
        await self.cut()
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                await self._listen(self.port)

    def _start_cut(self) -> int:
        """Begin a cut of every current connection; return the value ``cuts`` will have after it."""
        self._cuts_started += 1
        target = self._cuts_started
        relays = list(self._relays)
        for relay in relays:
            relay.scope.cancel()
        assert self._task_group is not None
        self._task_group.start_soon(self._finish_cut, relays, target)
        return target

    async def _finish_cut(self, relays: list[_Relay], target: int) -> None:
        for relay in relays:
            await relay.closed.wait()
        # Cuts complete in the order they started (each waits for its relays, all already cancelled).
        await self._wait_for(lambda: self.cuts >= target - 1)
        self.cuts = target
        self._notify()

    # --- waiting -------------------------------------------------------------------------------

    async def wait_connections(self, count: int) -> None:
        """Wait until ``count`` connections have been accepted in all."""
        await self._wait_for(lambda: self.connections >= count)

    async def wait_cuts(self, count: int) -> None:
        """Wait until ``count`` cuts have completed in all."""
        await self._wait_for(lambda: self.cuts >= count)

    async def _wait_for(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # --- relaying ------------------------------------------------------------------------------

    async def _relay(self, relay: _Relay) -> None:
        try:
            with relay.scope:
                try:
                    relay.upstream = await anyio.connect_tcp(self.target_host, self.target_port)
                except OSError:
                    return
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(self._pump_to_server, relay, task_group.cancel_scope)
                    task_group.start_soon(self._pump_to_client, relay, task_group.cancel_scope)
        finally:
            self._relays.discard(relay)
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(relay.client)
                if relay.upstream is not None:
                    await anyio.aclose_forcefully(relay.upstream)
            relay.closed.set()
            self._notify()

    async def _pump_to_server(self, relay: _Relay, done: anyio.CancelScope) -> None:
        assert relay.upstream is not None
        try:
            while True:
                chunk = await relay.client.receive(CHUNK)
                await relay.upstream.send(chunk)
                self.bytes_to_server += len(chunk)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        done.cancel()  # one side is gone: close the other

    async def _pump_to_client(self, relay: _Relay, done: anyio.CancelScope) -> None:
        assert relay.upstream is not None
        try:
            while True:
                chunk = await relay.upstream.receive(CHUNK)
                limit = self._auto_cut_limit(relay)
                if limit is not None and relay.to_client + len(chunk) >= limit:
                    part = chunk[: limit - relay.to_client]
                    if part:
                        await relay.client.send(part)
                        relay.to_client += len(part)
                        self.bytes_to_client += len(part)
                    self.auto_cuts_started += 1
                    self._start_cut()
                    return
                await relay.client.send(chunk)
                relay.to_client += len(chunk)
                self.bytes_to_client += len(chunk)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        done.cancel()

    def _auto_cut_limit(self, relay: _Relay) -> int | None:
        if self.cut_after_bytes is None or self.auto_cuts_started >= self.auto_cuts:
            return None
        return self.cut_after_bytes
