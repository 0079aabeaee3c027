"""Whatever a user's handler does wrong fails only its own request (issue: hardening, item 4 and 5).

Each test keeps a second request in flight on the same connection and checks it still succeeds, and
checks the failure was logged once, with its traceback, on the ``anyio_rsocket.handler`` logger.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from anyio_rsocket import (
    ApplicationError,
    ConnectionClosedError,
    ErrorCode,
    Payload,
    RequestHandler,
    RSocketError,
    connect_tcp,
)
from anyio_rsocket.testing import connected_pair

pytestmark = pytest.mark.anyio

HANDLER_LOGGER = "anyio_rsocket.handler"


async def stolen_cancellation() -> BaseException:
    """A genuine backend cancellation exception, caught inside a scope we cancelled ourselves."""
    with anyio.CancelScope() as scope:
        scope.cancel()
        try:
            await anyio.sleep(1)
        except anyio.get_cancelled_exc_class() as exc:
            return exc
    raise AssertionError("the cancelled sleep did not raise")


class Misbehaving(RequestHandler):
    """Answers ``ok`` normally; other requests make the handler misbehave in the named way."""

    def __init__(self) -> None:
        self.release_slow = anyio.Event()

    async def request_response(self, payload: Payload) -> Any:
        kind = payload.data
        if kind == b"slow":
            await self.release_slow.wait()
            return Payload(b"slow done")
        if kind == b"int":
            return 42
        if kind == b"str-data":
            return Payload("text")  # type: ignore[arg-type]
        if kind == b"cancel":
            raise await stolen_cancellation()
        if kind == b"secret":
            raise RuntimeError("password=hunter2 in /etc/app.conf")
        return Payload(b"ok")

    async def request_stream(self, payload: Payload) -> AsyncIterator[Any]:
        yield Payload(b"first")
        if payload.data == b"cancel":
            raise await stolen_cancellation()
        yield "not a payload"

    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        async for item in inbound:
            if item.data == b"boom":
                raise ValueError("channel handler failed")
            yield item


def handler_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == HANDLER_LOGGER]


@pytest.mark.parametrize(
    ("request_data", "message"),
    [
        (b"int", "TypeError"),
        (b"str-data", "TypeError"),
        (b"cancel", None),
        (b"secret", "RuntimeError"),
    ],
)
async def test_bad_request_response_handler_fails_only_its_request(
    request_data: bytes, message: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    handler = Misbehaving()
    caplog.set_level(logging.DEBUG, logger=HANDLER_LOGGER)
    with anyio.fail_after(5):
        async with connected_pair(lambda rs: handler) as rs, anyio.create_task_group() as tg:
            slow_reply: list[Payload] = []

            async def slow() -> None:
                slow_reply.append(await rs.request_response(Payload(b"slow")))

            tg.start_soon(slow)
            with pytest.raises(ApplicationError) as failure:
                await rs.request_response(Payload(request_data))
            if message is not None:
                assert failure.value.message == message
            # The secret in the exception's text never reaches the requester.
            assert "hunter2" not in failure.value.message
            # The connection is intact: a new request and the one in flight both complete.
            assert await rs.request_response(Payload(b"again")) == Payload(b"ok")
            handler.release_slow.set()
        assert slow_reply == [Payload(b"slow done")]
    records = handler_records(caplog)
    assert len(records) == 1, records
    assert records[0].levelno == logging.ERROR
    assert records[0].exc_info is not None
    assert "request-response handler failed" in records[0].getMessage()


async def test_stream_handler_yielding_junk_or_cancellation_fails_only_its_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=HANDLER_LOGGER)
    with anyio.fail_after(5):
        async with connected_pair(lambda rs: Misbehaving()) as rs:
            for data in (b"junk", b"cancel"):
                received = []
                with pytest.raises(ApplicationError):
                    async with rs.request_stream(Payload(data)) as stream:
                        async for item in stream:
                            received.append(item)
                assert received == [Payload(b"first")]
            assert await rs.request_response(Payload(b"again")) == Payload(b"ok")
    records = handler_records(caplog)
    assert len(records) == 2 and all(r.exc_info and "request-stream" in r.getMessage() for r in records)


async def test_channel_handler_failure_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=HANDLER_LOGGER)
    with anyio.fail_after(5):
        async with connected_pair(lambda rs: Misbehaving()) as rs:
            with pytest.raises(ApplicationError, match="ValueError"):
                async with rs.request_channel(Payload(b"a")) as channel:
                    await channel.send(Payload(b"boom"))
                    async for _ in channel:
                        pass
            assert await rs.request_response(Payload(b"again")) == Payload(b"ok")
    records = handler_records(caplog)
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR and records[0].exc_info is not None
    assert "request-channel handler failed" in records[0].getMessage()


async def test_application_errors_are_logged_quietly(caplog: pytest.LogCaptureFixture) -> None:
    """An RSocketError raised on purpose is protocol, not a bug: DEBUG, not ERROR."""

    class Refusing(RequestHandler):
        async def request_response(self, payload: Payload) -> Payload:
            raise ApplicationError("not found")

    caplog.set_level(logging.DEBUG, logger=HANDLER_LOGGER)
    with anyio.fail_after(5):
        async with connected_pair(lambda rs: Refusing()) as rs:
            with pytest.raises(ApplicationError, match="not found"):
                await rs.request_response(Payload(b"x"))
    records = handler_records(caplog)
    assert [record.levelno for record in records] == [logging.DEBUG]


def test_payload_rejects_text_when_built() -> None:
    with pytest.raises(TypeError, match="bytes"):
        Payload("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="metadata"):
        Payload(b"", "text")  # type: ignore[arg-type]


SERVER_SCRIPT = """
import sys
import anyio
from anyio_rsocket import RequestHandler, serve_tcp


class Exiting(RequestHandler):
    async def request_response(self, payload):
        raise {exit_exception}


class PrintPort:
    def started(self, port):
        print(port, flush=True)


anyio.run(
    lambda: serve_tcp(lambda rs: Exiting(), "127.0.0.1", 0, task_status=PrintPort()), backend=sys.argv[1]
)
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("exit_exception", ["SystemExit(3)", "KeyboardInterrupt()"])
def test_system_exit_from_a_handler_stops_the_server_unwrapped(exit_exception: str, backend: str) -> None:
    """SystemExit and KeyboardInterrupt are not request failures: they leave ``serve_tcp`` as
    themselves (not inside an exception group), so the process ends with their exit status."""
    script = SERVER_SCRIPT.format(exit_exception=exit_exception)
    with subprocess.Popen(
        [sys.executable, "-c", script, backend], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as server:
        try:
            assert server.stdout is not None and server.stderr is not None
            port = int(server.stdout.readline())

            async def ask() -> None:
                with anyio.fail_after(10), pytest.raises(ConnectionClosedError):
                    async with connect_tcp("127.0.0.1", port) as rs:
                        await rs.request_response(Payload(b"bye"))

            anyio.run(ask)
            returncode = server.wait(timeout=10)
            stderr = server.stderr.read()
        finally:
            server.kill()
    assert "ExceptionGroup" not in stderr, stderr
    if exit_exception.startswith("SystemExit"):
        assert returncode == 3, stderr
    else:
        # An uncaught KeyboardInterrupt ends Python by SIGINT (status -2) after its traceback.
        assert returncode == -2, stderr
        assert stderr.rstrip().endswith("KeyboardInterrupt"), stderr


async def test_an_rsocket_error_with_a_nonsense_code_fails_only_its_request() -> None:
    """``RSocketError(0x301, "custom")`` (arguments swapped: the code is a string) once ended the
    connection from inside send_error; now it is the handler's mistake like any other."""

    class Swapped(RequestHandler):
        async def request_response(self, payload: Payload) -> Payload:
            if payload.data == b"bad":
                raise RSocketError(0x301, "custom")  # type: ignore[arg-type]
            if payload.data == b"connection-level":
                raise RSocketError("not for a stream", code=ErrorCode.CONNECTION_CLOSE)
            return payload

    with anyio.fail_after(5):
        async with connected_pair(lambda rs: Swapped()) as rs:
            for data in (b"bad", b"connection-level"):
                with pytest.raises(ApplicationError) as failed:
                    await rs.request_response(Payload(data))
                assert failed.value.message == "RSocketError"
            assert await rs.request_response(Payload(b"fine")) == Payload(b"fine")
