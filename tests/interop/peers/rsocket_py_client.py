"""rsocket-py TCP (or WebSocket) client used as an interop peer for ``anyio_rsocket`` tests.

rsocket-py (``rsocket`` on PyPI) is asyncio-only, so the test-suite runs this
script as a subprocess against a server under test that implements the same
handler contract as ``rsocket_py_server.py`` (see its docstring).

CLI::

    python rsocket_py_client.py --port N [--host 127.0.0.1] [--timeout 20] [--debug]
    python rsocket_py_client.py --transport ws --port N [--path /] ...

``--transport ws`` connects with rsocket-py's aiohttp WebSocket client to
``ws://HOST:PORT/PATH`` (one frame per binary message) instead of TCP.

SETUP: data and metadata MIME ``application/octet-stream``, keepalive 20 s,
max lifetime 90 s (whole seconds: rsocket-py's timedelta -> ms conversion
counts the sub-second part twice), no setup payload, no lease, no resume.

Steps, in order, on one connection:

1. request_response(data=b"hello", metadata=b"meta")
2. request_response(data=b"error")                 -- must fail
3. fire_and_forget(data=b"x")
4. metadata_push(b"m")
5. request_response(data=b"log"), retried every 20 ms (max 5 s) until the
   decoded JSON contains both ``["fnf","x"]`` and ``["push","m"]``
6. request_stream(data=b"5"), initial request-n 2, then REQUEST_N(2) after
   every 2 items (rsocket-py ``CollectorSubscriber(limit_rate=2)``)
7. request_stream(data=b"error")                    -- item(s) then error
8. request_channel: initial payload b"a", then b"b" and b"c" (the last one is
   sent as NEXT|COMPLETE) from rsocket-py's ``StreamFromGenerator``, which
   only sends when the responder grants REQUEST_N; echoes are received with
   initial request-n 2 and REQUEST_N(2) after every 2 echoes.

On success prints ONE line of JSON on stdout and exits 0; the expected value
against a conforming server (started fresh, so the log holds only our two
entries) is::

    {"rr": {"data": "echo:hello", "metadata": "meta"},
     "rr_error": "boom",
     "log": [["fnf", "x"], ["push", "m"]],
     "stream": ["item-0", "item-1", "item-2", "item-3", "item-4"],
     "stream_error": {"items": ["item-0"], "error": "stream-boom"},
     "channel": ["echo:a", "echo:b", "echo:c"]}

Field details: all bytes are decoded as latin-1.  ``rr.metadata`` is ``null``
when the response carried no (or empty) metadata.  Error strings are the
APPLICATION_ERROR message as-is; any other error code is reported as
``"<CODE_NAME>: <message>"`` (e.g. ``"REJECTED: ..."``) so a mismatch is
visible.  ``log`` is the server's log verbatim (order as the server recorded
it).  ``stream_error.error`` is ``null`` if the stream completed normally.

On any failure -- a step failing or returning an unexpected kind of result
(step 2 succeeding, step 6/8 erroring), any connection-level (stream 0) ERROR
frame from the server (e.g. REJECTED_SETUP, which rsocket-py itself would
silently ignore), or the overall ``--timeout`` -- logs a traceback to stderr,
prints nothing to stdout, and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Generator
from datetime import timedelta
from typing import Any

from rsocket.awaitable.collector_subscriber import CollectorSubscriber
from rsocket.error_codes import ErrorCode
from rsocket.exceptions import RSocketProtocolError
from rsocket.extensions.mimetypes import WellKnownMimeTypes
from rsocket.helpers import single_transport_provider
from rsocket.payload import Payload
from rsocket.request_handler import BaseRequestHandler
from rsocket.rsocket_client import RSocketClient
from rsocket.streams.stream_from_generator import StreamFromGenerator
from rsocket.transports.tcp import TransportTCP

#: request-n batch used by the stream and channel requesters.
LIMIT_RATE = 2
#: Upper bound for the fire-and-forget / metadata-push log polling.
LOG_RETRY_SECONDS = 5.0
LOG_RETRY_INTERVAL = 0.02

logger = logging.getLogger("rsocket_py_client")


def _text(value: bytes | bytearray | None) -> str:
    """Decode payload bytes (``None`` -> ``""``) as latin-1."""
    return bytes(value).decode("latin-1") if value else ""


def _describe_error(error: BaseException) -> str:
    """Map an rsocket-py error to the string reported in the JSON."""
    if isinstance(error, RSocketProtocolError):
        # Non-APPLICATION_ERROR codes; str(error) would add decoration.
        return f"{error.error_code.name}: {error.data or ''}"
    if type(error) is RuntimeError:
        # rsocket-py raises APPLICATION_ERROR as a bare RuntimeError(message).
        return str(error)
    raise error


async def _collect(subscriber: CollectorSubscriber) -> tuple[list[str], str | None]:
    """Wait for a collector to finish; return (item data, error string or None)."""
    await subscriber.is_done.wait()
    items = [_text(payload.data) for payload in subscriber.values]
    error = None if subscriber.error is None else _describe_error(subscriber.error)
    return items, error


def _channel_elements() -> Generator[tuple[Payload, bool], None, None]:
    """Channel elements after the initial payload; the last one completes."""
    yield Payload(b"b"), False
    yield Payload(b"c"), True


async def _scenario(client: RSocketClient) -> dict[str, Any]:
    result: dict[str, Any] = {}

    response = await client.request_response(Payload(b"hello", b"meta"))
    result["rr"] = {
        "data": _text(response.data),
        "metadata": _text(response.metadata) or None,
    }

    try:
        unexpected = await client.request_response(Payload(b"error"))
    except (RuntimeError, RSocketProtocolError) as error:
        result["rr_error"] = _describe_error(error)
    else:
        raise AssertionError(f"request_response(b'error') succeeded: {unexpected!r}")

    await client.fire_and_forget(Payload(b"x"))  # resolves once the frame is written
    await client.metadata_push(b"m")

    wanted = (["fnf", "x"], ["push", "m"])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LOG_RETRY_SECONDS
    while True:
        log = json.loads(_text((await client.request_response(Payload(b"log"))).data))
        if all(entry in log for entry in wanted) or loop.time() >= deadline:
            break
        await asyncio.sleep(LOG_RETRY_INTERVAL)  # fnf/push have no acknowledgement
    result["log"] = log

    stream = CollectorSubscriber(limit_rate=LIMIT_RATE)
    client.request_stream(Payload(b"5")).initial_request_n(LIMIT_RATE).subscribe(stream)
    items, error = await _collect(stream)
    if error is not None:
        raise AssertionError(f"request_stream(b'5') failed: {error} after {items}")
    result["stream"] = items

    stream_error = CollectorSubscriber(limit_rate=LIMIT_RATE)
    client.request_stream(Payload(b"error")).initial_request_n(LIMIT_RATE).subscribe(stream_error)
    items, error = await _collect(stream_error)
    result["stream_error"] = {"items": items, "error": error}

    channel = CollectorSubscriber(limit_rate=LIMIT_RATE)
    client.request_channel(
        Payload(b"a"),
        publisher=StreamFromGenerator(_channel_elements),
    ).initial_request_n(LIMIT_RATE).subscribe(channel)
    items, error = await _collect(channel)
    if error is not None:
        raise AssertionError(f"request_channel failed: {error} after {items}")
    result["channel"] = items

    return result


class ConnectionErrorRecorder(BaseRequestHandler):
    """Client-side handler recording connection-level (stream 0) ERROR frames.

    rsocket-py only passes such frames (e.g. REJECTED_SETUP) to
    ``on_error`` and otherwise ignores them, so we record them and fail the
    run afterwards.
    """

    def __init__(self) -> None:
        self.errors: list[str] = []

    async def on_error(self, error_code: ErrorCode, payload: Payload) -> None:
        """Record ``"<CODE_NAME>: <message>"``."""
        self.errors.append(f"{error_code.name}: {_text(payload.data)}")
        logger.error("connection-level ERROR from server: %s", self.errors[-1])


async def run(host: str, port: int) -> dict[str, Any]:
    """Connect, run the scenario, close; return the summary."""
    recorder = ConnectionErrorRecorder()
    reader, writer = await asyncio.open_connection(host, port)
    client = RSocketClient(  # needs a running loop: create inside the coroutine
        single_transport_provider(TransportTCP(reader, writer)),
        handler_factory=lambda: recorder,
        data_encoding=WellKnownMimeTypes.APPLICATION_OCTET_STREAM,
        metadata_encoding=WellKnownMimeTypes.APPLICATION_OCTET_STREAM,
        keep_alive_period=timedelta(seconds=20),
        max_lifetime_period=timedelta(seconds=90),
    )
    async with client:  # connect() sends SETUP; close() on exit
        result = await _scenario(client)
    if recorder.errors:
        raise AssertionError(f"connection-level errors: {recorder.errors}")
    return result


async def run_websocket(url: str) -> dict[str, Any]:
    """Like :func:`run`, over rsocket-py's aiohttp WebSocket client transport."""
    import aiohttp
    from rsocket.transports.aiohttp_websocket import TransportAioHttpClient

    recorder = ConnectionErrorRecorder()
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as websocket:
        client = RSocketClient(
            single_transport_provider(TransportAioHttpClient(websocket=websocket)),
            handler_factory=lambda: recorder,
            data_encoding=WellKnownMimeTypes.APPLICATION_OCTET_STREAM,
            metadata_encoding=WellKnownMimeTypes.APPLICATION_OCTET_STREAM,
            keep_alive_period=timedelta(seconds=20),
            max_lifetime_period=timedelta(seconds=90),
        )
        async with client:
            result = await _scenario(client)
    if recorder.errors:
        raise AssertionError(f"connection-level errors: {recorder.errors}")
    return result


async def _run_with_timeout(
    host: str, port: int, timeout: float, ws_path: str | None = None
) -> dict[str, Any]:
    # asyncio.wait_for rather than asyncio.timeout: the peers also run on Python 3.10.
    if ws_path is not None:
        return await asyncio.wait_for(run_websocket(f"ws://{host}:{port}{ws_path}"), timeout)
    return await asyncio.wait_for(run(host, port), timeout)


def main(argv: list[str] | None = None) -> int:
    """Parse the CLI, run the scenario, print the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=20.0, help="overall timeout in seconds")
    parser.add_argument("--transport", choices=("tcp", "ws"), default="tcp", help="tcp, or aiohttp WebSocket")
    parser.add_argument("--path", default="/", help="WebSocket path (with --transport ws)")
    parser.add_argument("--debug", action="store_true", help="DEBUG logging (frames) to stderr")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        stream=sys.stderr,
        format="rsocket_py_client %(levelname)s %(name)s: %(message)s",
    )
    try:
        ws_path = args.path if args.transport == "ws" else None
        result = asyncio.run(_run_with_timeout(args.host, args.port, args.timeout, ws_path))
    except Exception:  # everything, including the overall TimeoutError
        logger.exception("rsocket-py client scenario failed")  # traceback -> stderr
        return 1
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
