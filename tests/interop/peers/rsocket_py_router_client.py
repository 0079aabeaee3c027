"""rsocket-py client routing to a server under test, used as a routing interop peer.

CLI::

    python rsocket_py_router_client.py --port N [--host 127.0.0.1] [--password secret]
                                       [--scenario routes|reject] [--timeout 20] [--debug]

SETUP: data MIME ``application/json``, metadata MIME ``message/x.rsocket.composite-metadata.v0``,
keepalive 20 s, lifetime 90 s, setup metadata = composite(simple authentication ``alice`` /
``--password``). Every request carries composite metadata with a routing entry.

Scenario ``routes`` (one connection, in order), against a server implementing these routes:

1. ``user.42`` request-response, data ``{"verbose": true}`` -> ``result["user"]`` (decoded JSON)
2. ``echo`` request-response, data ``hello`` -> ``result["echo"]`` (text)
3. ``missing`` request-response -> must fail; ``result["missing"]`` is ``"<CODE>: <message>"``
4. ``event`` fire-and-forget ``{"kind": "x"}``; ``push.evt`` metadata-push; then ``log``
   request-response polled until it holds two entries -> ``result["log"]`` (decoded JSON)
5. ``numbers`` request-stream ``{"count": 5}``, request-n 2 at a time -> ``result["numbers"]``
6. ``upper`` request-channel ``"a"``, ``"b"``, ``"c"`` (JSON strings) -> ``result["upper"]``
7. ``admin.stats`` with a per-request bearer ``admin-token`` entry -> ``result["admin"]``; the same
   without it -> must fail; ``result["admin_denied"]`` is ``"<CODE>: <message>"``

Scenario ``reject``: connect (expecting the SETUP to be refused) and wait up to 5 s for a connection
error; ``result["setup_error"]`` is ``"<CODE>: <message>"`` (``null`` if none came).

On success prints one line of JSON and exits 0; on any failure logs to stderr and exits 1.
Error strings: APPLICATION_ERROR is reported as ``"APPLICATION_ERROR: <message>"`` too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Generator
from datetime import timedelta
from typing import Any

from rsocket.awaitable.collector_subscriber import CollectorSubscriber
from rsocket.error_codes import ErrorCode
from rsocket.exceptions import RSocketProtocolError
from rsocket.extensions.helpers import authenticate_bearer, authenticate_simple, composite, route
from rsocket.extensions.mimetypes import WellKnownMimeTypes
from rsocket.helpers import single_transport_provider
from rsocket.payload import Payload
from rsocket.request_handler import BaseRequestHandler
from rsocket.rsocket_client import RSocketClient
from rsocket.streams.stream_from_generator import StreamFromGenerator
from rsocket.transports.tcp import TransportTCP

LIMIT_RATE = 2
logger = logging.getLogger("rsocket_py_router_client")


def _describe(error: BaseException) -> str:
    if isinstance(error, RSocketProtocolError):
        return f"{error.error_code.name}: {error.data or ''}"
    if type(error) is RuntimeError:  # rsocket-py's APPLICATION_ERROR
        return f"APPLICATION_ERROR: {error}"
    raise error


def _routed(name: str, data: bytes = b"", *extra: Any) -> Payload:
    return Payload(data, composite(route(name), *extra))


async def _must_fail(coroutine: Any) -> str:
    try:
        unexpected = await coroutine
    except (RuntimeError, RSocketProtocolError) as error:
        return _describe(error)
    raise AssertionError(f"request succeeded unexpectedly: {unexpected!r}")


def _upper_elements() -> Generator[tuple[Payload, bool], None, None]:
    yield Payload(b'"b"'), False
    yield Payload(b'"c"'), True


async def _scenario(client: RSocketClient) -> dict[str, Any]:
    result: dict[str, Any] = {}
    user = await client.request_response(_routed("user.42", b'{"verbose": true}'))
    result["user"] = json.loads(user.data)
    result["echo"] = bytes((await client.request_response(_routed("echo", b"hello"))).data).decode()
    result["missing"] = await _must_fail(client.request_response(_routed("missing")))

    await client.fire_and_forget(_routed("event", b'{"kind": "x"}'))
    await client.metadata_push(composite(route("push.evt")))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while True:
        log = json.loads((await client.request_response(_routed("log"))).data)
        if len(log) >= 2 or loop.time() >= deadline:
            break
        await asyncio.sleep(0.02)  # fnf/push have no acknowledgement
    result["log"] = log

    numbers = CollectorSubscriber(limit_rate=LIMIT_RATE)
    client.request_stream(_routed("numbers", b'{"count": 5}')).initial_request_n(LIMIT_RATE).subscribe(
        numbers
    )
    await numbers.is_done.wait()
    if numbers.error is not None:
        raise AssertionError(f"numbers failed: {numbers.error!r}")
    result["numbers"] = [json.loads(item.data) for item in numbers.values]

    upper = CollectorSubscriber(limit_rate=LIMIT_RATE)
    client.request_channel(
        _routed("upper", b'"a"'), publisher=StreamFromGenerator(_upper_elements)
    ).initial_request_n(LIMIT_RATE).subscribe(upper)
    await upper.is_done.wait()
    if upper.error is not None:
        raise AssertionError(f"upper failed: {upper.error!r}")
    result["upper"] = [json.loads(item.data) for item in upper.values]

    admin = await client.request_response(_routed("admin.stats", b"", authenticate_bearer("admin-token")))
    result["admin"] = json.loads(admin.data)
    result["admin_denied"] = await _must_fail(client.request_response(_routed("admin.stats")))
    return result


class ConnectionErrorRecorder(BaseRequestHandler):
    """Records connection-level ERROR frames (rsocket-py otherwise ignores them)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.event = asyncio.Event()

    async def on_error(self, error_code: ErrorCode, payload: Payload) -> None:
        self.errors.append(f"{error_code.name}: {bytes(payload.data or b'').decode()}")
        self.event.set()


async def run(host: str, port: int, password: str, scenario: str) -> dict[str, Any]:
    recorder = ConnectionErrorRecorder()
    reader, writer = await asyncio.open_connection(host, port)
    client = RSocketClient(
        single_transport_provider(TransportTCP(reader, writer)),
        handler_factory=lambda: recorder,
        data_encoding=WellKnownMimeTypes.APPLICATION_JSON,
        metadata_encoding=WellKnownMimeTypes.MESSAGE_RSOCKET_COMPOSITE_METADATA,
        keep_alive_period=timedelta(seconds=20),
        max_lifetime_period=timedelta(seconds=90),
        setup_payload=Payload(metadata=composite(authenticate_simple("alice", password))),
    )
    async with client:
        if scenario == "reject":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(recorder.event.wait(), 5)
            return {"setup_error": recorder.errors[0] if recorder.errors else None}
        result = await _scenario(client)
    if recorder.errors:
        raise AssertionError(f"connection-level errors: {recorder.errors}")
    return result


async def _run_with_timeout(args: argparse.Namespace) -> dict[str, Any]:
    # asyncio.wait_for rather than asyncio.timeout: the peers also run on Python 3.10.
    return await asyncio.wait_for(run(args.host, args.port, args.password, args.scenario), args.timeout)


def main(argv: list[str] | None = None) -> int:
    """Parse the CLI, run the scenario, print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--password", default="secret")
    parser.add_argument("--scenario", choices=("routes", "reject"), default="routes")
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        stream=sys.stderr,
        format="rsocket_py_router_client %(levelname)s %(name)s: %(message)s",
    )
    try:
        result = asyncio.run(_run_with_timeout(args))
    except Exception:
        logger.exception("rsocket-py router client failed")
        return 1
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
