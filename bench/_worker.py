"""Worker processes: one per (implementation, backend, role), driven by JSON lines on stdin.

Commands (one JSON object per line; one JSON reply line each on the real stdout):

* ``{"op": "measure", ...}``: start a fresh event loop, connect a client (to ``port``, or to a server
  started in the same loop when ``port`` is null), warm up, measure, check the counts, reply
  ``{"ok": true, "metrics": {...}, "info": {...}}`` or ``{"ok": false, "error": ...}``.
* ``{"op": "serve", ...}``: start a fresh event loop with a server, reply ``{"port": N}``, serve until
  the next line (``stop``) arrives, then reply ``{"ok": ...}``.

Everything else the process prints goes to stderr, so it cannot corrupt the protocol.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import queue
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ._common import BENCH_BY_KEY, describe, is_timeout

Command = dict[str, Any]
Result = float | dict[str, float]
T = TypeVar("T")

#: How often a server checks whether it was told to stop (it never runs more than that per second).
STOP_POLL_S = 0.05


class NotAvailable(Exception):
    """This implementation cannot run this row (the reason is shown in the table)."""


class Inbox:
    """Lines from stdin, read by a thread so that a running server can see ``stop`` without blocking."""

    def __init__(self) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in sys.stdin:
            if line.strip():
                self._lines.put(line)
        self._lines.put(None)

    def get(self) -> str | None:
        """The next line (blocking); None once stdin is closed."""
        return self._lines.get()

    def pending(self) -> bool:
        return not self._lines.empty()


async def wait_for_stop(inbox: Inbox, sleep: Callable[[float], Awaitable[Any]]) -> None:
    """Return once a line (``stop``) is waiting; ``sleep`` is the running loop's sleep."""
    while not inbox.pending():
        await sleep(STOP_POLL_S)


def run_anyio(function: Callable[[], Awaitable[T]], backend: str) -> T:
    import anyio

    if backend == "uvloop":
        return anyio.run(function, backend="asyncio", backend_options={"use_uvloop": True})
    return anyio.run(function, backend=backend)


def run_asyncio(function: Callable[[], Awaitable[T]], backend: str) -> T:
    import asyncio

    async def main() -> T:
        return await function()

    if backend == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
        try:
            result: T = loop.run_until_complete(main())
            return result
        finally:
            loop.close()
    if backend != "asyncio":
        raise NotAvailable(f"rsocket-py runs on asyncio only, not {backend}")
    return asyncio.run(main())


def _load(impl: str) -> Any:
    if impl == "theirs":
        import logging

        # rsocket-py warns "Dropping frame from unknown stream" when a REQUEST_N refill crosses the
        # stream's final frame (harmless); keep its errors visible, drop the noise.
        logging.getLogger("pyrsocket").setLevel(logging.ERROR)
    modules = {
        "ours": "bench._ours",
        "theirs": "bench._theirs",
        "raw": "bench._raw",
        "limit": "bench._limit",
        "grpc": "bench._grpc",
    }
    return importlib.import_module(modules[impl])


def _ready_message(impl: str, backend: str) -> dict[str, Any]:
    message: dict[str, Any] = {"ready": True, "pid": os.getpid(), "python": platform.python_version()}
    if impl == "ours":
        import anyio_rsocket

        message["anyio_rsocket"] = os.path.dirname(anyio_rsocket.__file__ or "")
    return message


def _measure(module: Any, backend: str, command: Command) -> dict[str, Any]:
    try:
        result = module.measure(backend, command)
    except KeyboardInterrupt:
        raise
    except NotAvailable as exc:
        return {"ok": False, "na": str(exc)}
    except BaseException as exc:  # report and keep serving
        if is_timeout(exc):
            return {"ok": False, "error": "timeout"}
        traceback.print_exc(file=sys.stderr)
        return {"ok": False, "error": describe(exc)}
    if isinstance(result, dict):
        bench = BENCH_BY_KEY[command["bench"]]
        return {"ok": True, "metrics": {m.key: result[m.key] for m in bench.metrics}, "info": result}
    return {"ok": True, "metrics": {"rate": command["n"] / result}, "info": {"elapsed_s": result}}


def worker_main(impl: str, backend: str) -> int:
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr  # nothing else may write on the protocol channel

    def reply(message: dict[str, Any]) -> None:
        protocol.write(json.dumps(message) + "\n")

    try:
        module = _load(impl)
        ready = _ready_message(impl, backend)
    except Exception as exc:
        reply({"ready": False, "error": describe(exc)})
        return 1
    inbox = Inbox()
    reply(ready)
    while (line := inbox.get()) is not None:
        command: Command = json.loads(line)
        if command["op"] == "measure":
            reply(_measure(module, backend, command))
            continue
        if command["op"] != "serve":
            reply({"ok": False, "error": f"unknown op {command['op']!r}"})
            continue
        announced = False

        def announce(port: int) -> None:
            nonlocal announced
            announced = True
            reply({"port": port})

        error = None
        try:
            module.serve(backend, command, inbox, announce)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            traceback.print_exc(file=sys.stderr)
            error = describe(exc)
        if not announced:
            reply({"ok": False, "error": error or "the server did not start"})
            continue
        if inbox.get() is None:  # the "stop" line
            break
        reply({"ok": error is None, "error": error})
    return 0
