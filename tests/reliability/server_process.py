"""Our server in its own process, for the reliability tests.

``python server_process.py BACKEND [ws]`` serves RSocket over TCP (WebSocket with ``ws``) on
127.0.0.1 with :class:`SlowHandler` and prints ``PORT <n>`` on stdout once it listens. Each
``stats`` line on stdin is answered with one line ``STATS <json>`` holding the number of tasks in
the event loop; the process exits when stdin closes. Logging goes to stderr, so a test can capture
it and look for tracebacks.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import AsyncIterator

import anyio

from anyio_rsocket import Payload, RequestHandler, serve_tcp, serve_websocket

#: Seconds between two items of a stream (slow enough that a stream is always mid-flight).
STREAM_ITEM_INTERVAL = 0.05


class SlowHandler(RequestHandler):
    """request_response echoes, except ``hang`` which never answers; streams yield slowly forever."""

    async def request_response(self, payload: Payload) -> Payload:
        if payload.data == b"hang":
            await anyio.sleep_forever()
        return Payload(payload.data, payload.metadata)

    async def fire_and_forget(self, payload: Payload) -> None:
        pass

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        index = 0
        while True:
            yield Payload(b"item-%d" % index)
            index += 1
            await anyio.sleep(STREAM_ITEM_INTERVAL)

    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        yield payload
        async for item in inbound:
            yield item


def count_tasks(backend: str) -> int:
    """Tasks alive in the running event loop (the process's own probe)."""
    if backend == "trio":
        import trio

        def walk(task: trio.lowlevel.Task) -> int:
            return 1 + sum(walk(child) for nursery in task.child_nurseries for child in nursery.child_tasks)

        return walk(trio.lowlevel.current_root_task())
    import asyncio

    return len(asyncio.all_tasks())


async def main(backend: str, transport: str) -> None:
    serve = serve_websocket if transport == "ws" else serve_tcp
    async with anyio.create_task_group() as task_group:
        port = await task_group.start(
            lambda task_status: serve(lambda rs: SlowHandler(), task_status=task_status)
        )
        print(f"PORT {port}", flush=True)
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            if not line:
                break
            if line.strip() == "stats":
                print("STATS " + json.dumps({"tasks": count_tasks(backend), "backend": backend}), flush=True)
        task_group.cancel_scope.cancel()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    chosen = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    anyio.run(main, chosen, sys.argv[2] if len(sys.argv) > 2 else "tcp", backend=chosen)
