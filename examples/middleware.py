"""Middleware with interceptors: a structured access log and a per-route rate limit.

Two interceptors written here, as you would write your own:

- ``AccessLog`` logs one line per interaction when it ends, on either side: the kind, route, stream
  id, items each way, outcome and duration (a JSON object, ready for a log pipeline);
- ``RouteRateLimit`` gives each route a token bucket on the server side and refuses a request
  with ``RejectedError`` when its route's bucket is empty (the client gets REJECTED).

An embedded server and a client talk over loopback TCP: five quick ``quote`` requests against a
bucket of three (two are refused), then a ``ticks`` stream, whose bucket is its own. Runs on asyncio
by default; pass ``trio`` as the first argument to use Trio.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import anyio

from anyio_rsocket import (
    Interaction,
    Interceptor,
    Payload,
    RejectedError,
    RequestHandler,
    RSocketError,
    Side,
    connect_tcp,
    serve_tcp,
)
from anyio_rsocket.extensions import MESSAGE_COMPOSITE_METADATA

log = logging.getLogger("example.access")


class AccessLog(Interceptor):
    """One structured log line per interaction, when it ends (however it ends)."""

    def intercept(self, interaction: Interaction) -> AbstractAsyncContextManager[object]:
        return self._around(interaction)

    @asynccontextmanager
    async def _around(self, interaction: Interaction) -> AsyncIterator[None]:
        started = anyio.current_time()
        outcome = "ok"
        try:
            yield
        except BaseException as exc:
            # Refusals by later interceptors and the requester's errors arrive here.
            outcome = _outcome(exc)
            raise
        finally:
            if outcome == "ok" and interaction.error is not None:  # a handler's error, already answered
                outcome = _outcome(interaction.error)
            elif outcome == "ok" and interaction.cancelled:
                outcome = "cancelled"
            log.info(
                json.dumps(
                    {
                        "side": interaction.side.value,
                        "kind": interaction.kind.value,
                        "route": interaction.route,
                        "stream": interaction.stream_id,
                        "sent": interaction.items_sent,
                        "received": interaction.items_received,
                        "outcome": outcome,
                        "ms": round((anyio.current_time() - started) * 1000, 1),
                    }
                )
            )


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        return "cancelled"
    if isinstance(exc, RSocketError):
        return f"error 0x{exc.code:X}"
    return f"error {type(exc).__name__}"


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RouteRateLimit(Interceptor):
    """A token bucket per route (responder side): ``capacity`` requests at once, refilled at
    ``per_second``; an empty bucket refuses the request with REJECTED before the handler runs."""

    def __init__(self, capacity: int, per_second: float) -> None:
        self.capacity = capacity
        self.per_second = per_second
        self._buckets: dict[str | None, _Bucket] = {}

    def intercept(self, interaction: Interaction) -> AbstractAsyncContextManager[object]:
        return self._around(interaction)

    @asynccontextmanager
    async def _around(self, interaction: Interaction) -> AsyncIterator[None]:
        if interaction.side is Side.RESPONDER:
            self._take(interaction.route)
        yield

    def _take(self, route: str | None) -> None:
        now = anyio.current_time()
        bucket = self._buckets.setdefault(route, _Bucket(self.capacity, now))
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.per_second)
        bucket.updated = now
        if bucket.tokens < 1:
            raise RejectedError(f"rate limit: route {route!r} allows {self.per_second:g} requests/s")
        bucket.tokens -= 1


class Quotes(RequestHandler):
    async def request_response(self, payload: Payload) -> Payload:
        return Payload(b"quote #" + payload.data)

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        for index in range(int(payload.data)):
            yield Payload(b"tick %d" % index)


async def main() -> None:
    limit = RouteRateLimit(capacity=3, per_second=0.5)
    server_interceptors = [AccessLog(), limit]  # the log first (outermost): it sees the refusals too
    async with anyio.create_task_group() as tg:
        serve = functools.partial(
            serve_tcp, lambda rs: Quotes(), "127.0.0.1", 0, interceptors=server_interceptors
        )
        port = await tg.start(serve)
        print(f"server listening on 127.0.0.1:{port}, 'quote' limited to bursts of 3")
        async with connect_tcp(
            "127.0.0.1", port, metadata_mime_type=MESSAGE_COMPOSITE_METADATA, interceptors=[AccessLog()]
        ) as rs:
            quote = rs.route("quote")
            for number in range(1, 6):
                try:
                    answer = await quote.request_response(b"%d" % number)
                    print(f"quote {number}: {answer.data.decode()}")
                except RejectedError as error:
                    print(f"quote {number}: refused ({error.message})")
            async with rs.route("ticks").request_stream(b"3") as stream:
                print("ticks:", [item.data.decode() async for item in stream])
        tg.cancel_scope.cancel()
    print("done: every interaction above was logged once per side")


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="  log %(message)s")
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
