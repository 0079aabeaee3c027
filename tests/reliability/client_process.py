"""Our client in its own process, for the reliability tests.

``python client_process.py BACKEND PORT N [ws]`` connects to 127.0.0.1:PORT (over WebSocket with
``ws``), sends N request-responses (the server is expected never to answer them), then opens N
streams with credit 2, prints ``READY`` once every stream has received its first item, and holds
everything open until it is killed (or its stdin closes).
"""

from __future__ import annotations

import sys

import anyio

from anyio_rsocket import Payload, RequestStream, connect_tcp, connect_websocket


async def hold_stream(stream: RequestStream, received: anyio.Event) -> None:
    async with stream:
        await stream.receive()
        received.set()
        await anyio.sleep_forever()


async def main(port: int, count: int, transport: str) -> None:
    if transport == "ws":
        connection = connect_websocket(f"ws://127.0.0.1:{port}/")
    else:
        connection = connect_tcp("127.0.0.1", port)
    async with connection as rsocket, anyio.create_task_group() as task_group:
        for _ in range(count):
            task_group.start_soon(rsocket.request_response, Payload(b"hang"))
        await anyio.wait_all_tasks_blocked()  # the requests are queued before the streams
        received = [anyio.Event() for _ in range(count)]
        for index, event in enumerate(received):
            stream = rsocket.request_stream(Payload(b"stream-%d" % index), initial_n=2)
            task_group.start_soon(hold_stream, stream, event)
        for event in received:
            await event.wait()
        print("READY", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
        task_group.cancel_scope.cancel()


if __name__ == "__main__":
    transport = sys.argv[4] if len(sys.argv) > 4 else "tcp"
    anyio.run(main, int(sys.argv[2]), int(sys.argv[3]), transport, backend=sys.argv[1])
