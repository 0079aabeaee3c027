"""``anyio-rsocket``: talk to an RSocket server from the shell, or run a demo echo server.

::

    anyio-rsocket request tcp://localhost:7000 -r user.get -d '{"id": 7}' --data-mime application/json
    anyio-rsocket stream tcp://localhost:7000 -r ticks --take 5
    printf 'a\\nb\\n' | anyio-rsocket channel tcp://localhost:7000 -r chat
    anyio-rsocket serve tcp://127.0.0.1:7000 --echo
    anyio-rsocket stream tcp://localhost:7000 -r ticks --resume   # survives a lost connection

Each answer's data is printed on its own line as soon as it arrives. ``--route`` and the
authentication options switch the metadata MIME type to composite metadata; authentication is sent
in SETUP (as Spring Security expects).

``--resume`` (request, stream, channel and serve) makes the session resumable: after a lost
connection the client dials again and the interaction goes on where it was, nothing lost or repeated,
as long as the session is resumed within ``--resume-duration`` seconds (default 60). ``--reconnect``
(request, stream, channel) dials a new connection after a loss instead: the interaction in progress
fails (status 2), so it helps only a request that had not gone out yet. See ``docs/resumption.md``.

Exit status: 0 success, 1 the peer answered with an error, 2 the connection failed, was refused, or
was lost (and not resumed), 64 usage error (bad option or unreadable input), 124 ``--timeout``
expired, 130 interrupted.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import threading
import typing
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import urlsplit

if sys.version_info < (3, 11):  # pragma: no cover - exercised on 3.10 only
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel

from .extensions import (
    MESSAGE_COMPOSITE_METADATA,
    MESSAGE_ROUTING,
    CompositeEntry,
    bearer,
    composite,
    encode_routing,
    route,
    simple_auth,
)
from .peer._groups import single_exception
from .peer.connection import RSocket
from .peer.handler import RequestHandler
from .protocol.policy import Backoff, Resume
from .wire.errors import ConnectionClosedError, RSocketError
from .wire.payload import Payload

EXIT_OK = 0
EXIT_RSOCKET_ERROR = 1
EXIT_CONNECTION_FAILED = 2
EXIT_USAGE = 64
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130

PROG = "anyio-rsocket"
CLIENT_COMMANDS = ("request", "stream", "channel", "fnf", "push")
#: The client commands that take --resume and --reconnect (one interaction that can outlive a loss).
SESSION_COMMANDS = ("request", "stream", "channel")

#: The backoff between dials with ``--reconnect``.
RECONNECT_BACKOFF = Backoff(initial=0.1, maximum=30.0)


class UsageError(Exception):
    """A bad combination of options or an unreadable input (exit status 64)."""


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on errors, which we use for connection failures: use 64 instead."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (one sub-command per interaction, plus ``serve``)."""
    parser = _Parser(
        prog=PROG,
        description="Send RSocket requests, or run a demo server.",
        epilog="Exit status: 0 ok, 1 RSocket error, 2 connection failed, 64 usage, 124 timeout.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    helps = {
        "request": "request-response: print the answer",
        "stream": "request-stream: print each item as it arrives",
        "channel": "request-channel: send stdin (or --data) line by line, print each answer",
        "fnf": "fire-and-forget",
        "push": "metadata-push (the metadata is --metadata, or the --route)",
    }
    for name in CLIENT_COMMANDS:
        command = commands.add_parser(name, help=helps[name], description=helps[name])
        command.add_argument("url", help="server URL: tcp://host:port (also tcps, ws, wss when available)")
        data_help = "data: literal text, @file, or - for stdin"
        if name == "channel":
            data_help += " (elements are lines; default: stdin, read progressively)"
        if name != "push":
            command.add_argument("-d", "--data", help=data_help)
        command.add_argument("-m", "--metadata", help="metadata: literal text, @file, or - for stdin")
        command.add_argument("-r", "--route", help="route (routing metadata; implies composite metadata)")
        command.add_argument("--auth-bearer", metavar="TOKEN", help="bearer token, sent in SETUP")
        command.add_argument("--auth-simple", metavar="USER:PASS", help="simple credentials, sent in SETUP")
        command.add_argument("--setup-data", help="SETUP data: literal text, @file, or - for stdin")
        command.add_argument("--data-mime", default="application/octet-stream", help="data MIME type")
        command.add_argument("--metadata-mime", help="metadata MIME type (default: octet-stream/composite)")
        if name in ("stream", "channel"):
            command.add_argument("--request-n", type=_positive_int, default=256, help="initial credit")
            command.add_argument("--take", type=_positive_int, help="cancel after this many items")
        command.add_argument(
            "--connect-timeout",
            type=_positive_float,
            metavar="SECONDS",
            help="give up connecting (TCP, TLS, WebSocket upgrade, SETUP) after this long (default 10)",
        )
        if name in SESSION_COMMANDS:
            _add_resume(command, server=False)
            command.add_argument(
                "--reconnect",
                action="store_true",
                help="after a lost connection, dial a new one (new SETUP, no resume): the interaction "
                "in progress fails, so this helps only a request not yet sent; see --resume",
            )
        _add_common(command)
    serve = commands.add_parser("serve", help="run a demo server", description="run a demo server")
    serve.add_argument("url", help="address to listen on: tcp://host:port (port 0 picks one)")
    serve.add_argument("--echo", action="store_true", help="echo every request back")
    _add_resume(serve, server=True)
    _add_common(serve)
    return parser


def _add_resume(command: argparse.ArgumentParser, *, server: bool) -> None:
    if server:
        resume_help = "keep the sessions of resumable clients across lost connections"
        duration_help = "how long a session without a connection is kept (default 60; implies --resume)"
    else:
        resume_help = (
            "resumable session: after a lost connection, dial again and go on where it was, "
            "nothing lost or repeated (the server must allow resumption)"
        )
        duration_help = (
            "give the session up after this long without a connection (default 60; implies --resume)"
        )
    command.add_argument("--resume", action="store_true", help=resume_help)
    command.add_argument("--resume-duration", type=_positive_float, metavar="SECONDS", help=duration_help)


def _add_common(command: argparse.ArgumentParser) -> None:
    command.add_argument("--timeout", type=_positive_float, help="give up after this many seconds")
    command.add_argument("--fragment-size", type=_positive_int, help="fragment frames above this size")
    command.add_argument("--debug", action="store_true", help="trace every frame to stderr")
    command.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio", help=argparse.SUPPRESS)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


# --- inputs -----------------------------------------------------------------------------------------


def read_source(value: str | None) -> bytes | None:
    """``literal`` as UTF-8, ``@path`` as the file's bytes, ``-`` as all of stdin."""
    if value is None:
        return None
    if value == "-":
        return sys.stdin.buffer.read()
    if value.startswith("@"):
        try:
            with open(value[1:], "rb") as file:
                return file.read()
        except OSError as exc:
            raise UsageError(f"cannot read {value[1:]!r}: {exc.strerror or exc}") from None
    return value.encode("utf-8")


def _split_lines(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line.removesuffix(b"\r") for line in lines]


async def _stdin_lines() -> AsyncIterator[bytes]:
    """Lines of stdin as they arrive, read by a daemon thread (it never blocks exit)."""
    send, receive = anyio.create_memory_object_stream[bytes](16)
    token = anyio.lowlevel.current_token()

    def reader() -> None:
        pending = b""
        try:
            while True:
                chunk = os.read(0, 65536)  # the raw fd: no buffer lock is held at interpreter exit
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    anyio.from_thread.run(send.send, line.removesuffix(b"\r"), token=token)
            if pending:
                anyio.from_thread.run(send.send, pending.removesuffix(b"\r"), token=token)
        except Exception:  # the event loop is gone or the reader was closed: just stop
            pass
        finally:
            with suppress(Exception):
                anyio.from_thread.run_sync(send.close, token=token)

    threading.Thread(target=reader, name="anyio-rsocket-stdin", daemon=True).start()
    async with receive:
        async for line in receive:
            yield line


async def _lines_of(data: bytes) -> AsyncIterator[bytes]:
    for line in _split_lines(data):
        yield line


# --- the request options ----------------------------------------------------------------------------


@dataclass
class ClientPlan:
    """What a client command will do, worked out from the options before connecting.

    ``data`` is ``None`` for a channel reading stdin progressively.
    """

    command: str
    url: str
    data: bytes | None
    data_mime_type: str
    metadata_mime_type: str
    request_metadata: bytes | None
    setup_payload: Payload | None
    connect_options: dict[str, Any] = field(default_factory=dict)


def plan_client(args: argparse.Namespace) -> ClientPlan:
    """Check option combinations and build metadata; raises :class:`UsageError`."""
    auth: list[CompositeEntry] = []
    if args.auth_bearer is not None:
        auth.append(bearer(args.auth_bearer))
    if args.auth_simple is not None:
        username, colon, password = args.auth_simple.partition(":")
        if not colon:
            raise UsageError("--auth-simple takes USER:PASS")
        auth.append(simple_auth(username, password))
    metadata_mime_type = args.metadata_mime
    if metadata_mime_type is None:
        routed = args.route is not None or auth
        metadata_mime_type = MESSAGE_COMPOSITE_METADATA if routed else "application/octet-stream"
    raw_metadata = read_source(args.metadata)
    try:
        if metadata_mime_type == MESSAGE_COMPOSITE_METADATA:
            if raw_metadata is not None and (args.route is not None or auth):
                raise UsageError("--metadata cannot be combined with --route or --auth-*: they build it")
            request_metadata = raw_metadata
            if args.route is not None:
                request_metadata = composite(route(args.route))
            setup_metadata = composite(*auth) if auth else None
        else:
            if auth:
                raise UsageError(
                    f"--auth-* needs composite metadata, not --metadata-mime {metadata_mime_type}"
                )
            if args.route is not None and metadata_mime_type != MESSAGE_ROUTING:
                raise UsageError(f"--route needs composite or routing metadata, not {metadata_mime_type}")
            if args.route is not None and raw_metadata is not None:
                raise UsageError("--metadata cannot be combined with --route")
            request_metadata = encode_routing(args.route) if args.route is not None else raw_metadata
            setup_metadata = None
    except ValueError as exc:  # a route too long for routing metadata, an unencodable credential
        raise UsageError(str(exc)) from None
    setup_data = read_source(args.setup_data)
    setup_payload = None
    if setup_data is not None or setup_metadata is not None:
        setup_payload = Payload(setup_data or b"", setup_metadata)
    if args.command == "push" and request_metadata is None:
        raise UsageError("push needs --metadata or --route")
    connect_options: dict[str, Any] = {}
    if args.fragment_size is not None:
        connect_options["fragment_size"] = args.fragment_size
    if args.connect_timeout is not None:
        connect_options["connect_timeout"] = args.connect_timeout
    resume = resume_option(args)
    if getattr(args, "reconnect", False):
        if resume is not None:
            raise UsageError("choose --resume (or --resume-duration) or --reconnect, not both")
        connect_options["reconnect"] = RECONNECT_BACKOFF
    elif resume is not None:
        connect_options["resume"] = resume
    data_source = getattr(args, "data", None)
    if args.command == "channel" and data_source in (None, "-"):
        data = None  # read stdin line by line while the channel runs
    else:
        data = read_source(data_source) or b""
    return ClientPlan(
        command=args.command,
        url=args.url,
        data=data,
        data_mime_type=args.data_mime,
        metadata_mime_type=metadata_mime_type,
        request_metadata=request_metadata,
        setup_payload=setup_payload,
        connect_options=connect_options,
    )


def resume_option(args: argparse.Namespace) -> Resume | None:
    """The ``resume=`` value that ``--resume`` and ``--resume-duration`` ask for, if any."""
    duration: float | None = getattr(args, "resume_duration", None)
    if duration is not None:
        return Resume(session_duration=duration)
    if getattr(args, "resume", False):
        return Resume()
    return None


# --- connecting -------------------------------------------------------------------------------------


def _emit_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _accepts(function: Callable[..., Any], option: str) -> bool:
    """Whether ``function`` takes keyword ``option``, directly or through ``**options: Unpack[TD]``."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    if option in parameters:
        return True
    for parameter in parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            target = inspect.unwrap(function)
            hint = getattr(target, "__annotations__", {}).get(parameter.name)
            try:
                if isinstance(hint, str):
                    hint = eval(hint, dict(getattr(target, "__globals__", {})))
            except Exception:
                return True  # cannot tell: pass it through and let the function decide
            if hint is None:
                return True
            return any(option in getattr(arg, "__annotations__", {}) for arg in typing.get_args(hint))
    return False


def _url_module() -> Any | None:
    """``anyio_rsocket.url`` when this installation has it (it brings tcps/ws/wss)."""
    try:
        from .peer import url
    except ImportError:
        return None
    return url


def _tcp_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"invalid port in {url!r}") from None
    if not parts.hostname or port is None:
        raise UsageError(f"tcp:// URLs need a host and a port: {url!r}")
    return parts.hostname, port


def open_connection(plan: ClientPlan, debug: bool) -> AbstractAsyncContextManager[RSocket]:
    """Connect as ``plan`` says; ``debug`` traces frames to stderr (tcp:// only)."""
    options: dict[str, Any] = {
        "data_mime_type": plan.data_mime_type,
        "metadata_mime_type": plan.metadata_mime_type,
        "setup_payload": plan.setup_payload,
        **plan.connect_options,
    }
    scheme = urlsplit(plan.url).scheme.lower()
    if scheme == "tcp":
        return _connect_tcp(plan.url, options, debug)
    url_module = _url_module()
    if url_module is None:
        raise UsageError(f"unsupported URL {plan.url!r}: this installation speaks tcp:// only")
    schemes = getattr(url_module, "SCHEMES", ())
    if scheme not in schemes:
        raise UsageError(f"unsupported URL scheme in {plan.url!r}; use one of {', '.join(schemes)}")
    connect = url_module.connect
    if "fragment_size" in options and not _accepts(connect, "fragment_size"):
        raise UsageError(f"--fragment-size is not supported yet for {scheme}:// URLs")
    for option, flag in (("resume", "--resume"), ("reconnect", "--reconnect")):
        if option in options and not _accepts(connect, option):
            raise UsageError(f"{flag} is not supported yet for {scheme}:// URLs")
    if debug:
        _emit_stderr(f"{PROG}: --debug frame tracing covers tcp:// URLs only")
    context: AbstractAsyncContextManager[RSocket] = connect(plan.url, **options)
    return context


@asynccontextmanager
async def _connect_tcp(url: str, options: dict[str, Any], debug: bool) -> AsyncIterator[RSocket]:
    from .peer.client import closing_unless_entered, open_client, open_tcp_transport, remaining_time
    from .peer.options import DEFAULT_CONNECT_TIMEOUT
    from .transports.base import Transport
    from .transports.tracing import TracingTransport

    if "fragment_size" in options and not _accepts(open_client, "fragment_size"):
        raise UsageError("--fragment-size is not supported yet")
    host, port = _tcp_address(url)
    connect_timeout = options.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    deadline = anyio.current_time() + connect_timeout

    async def dial() -> Transport:
        """A new TCP connection (traced with --debug): the first one, and each one after a loss."""
        transport: Transport = await open_tcp_transport(host, port, connect_timeout=connect_timeout)
        return TracingTransport(transport, _emit_stderr) if debug else transport

    transport = await dial()
    options = {**options, "connect_timeout": remaining_time(deadline)}
    async with (
        closing_unless_entered(transport),
        open_client(transport, redial=dial, **options) as rsocket,
    ):
        yield rsocket


# --- the client commands ----------------------------------------------------------------------------


def _print_item(payload: Payload) -> None:
    out = sys.stdout.buffer
    out.write(payload.data + b"\n")
    out.flush()


async def run_client(args: argparse.Namespace, plan: ClientPlan) -> int:
    """Run one client command as planned."""
    async with open_connection(plan, args.debug) as rsocket:
        metadata = plan.request_metadata
        data = plan.data
        if plan.command == "request":
            _print_item(await rsocket.request_response(Payload(data or b"", metadata)))
        elif plan.command == "fnf":
            await rsocket.fire_and_forget(Payload(data or b"", metadata))
        elif plan.command == "push":
            assert metadata is not None
            await rsocket.metadata_push(metadata)
        elif plan.command == "stream":
            await _stream(rsocket, Payload(data or b"", metadata), args.request_n, args.take)
        else:
            lines = _lines_of(data) if data is not None else _stdin_lines()
            await _channel(rsocket, lines, metadata, args.request_n, args.take)
    return EXIT_OK


def _initial_n(request_n: int, take: int | None) -> int:
    return min(request_n, take) if take is not None else request_n


async def _stream(rsocket: RSocket, payload: Payload, request_n: int, take: int | None) -> None:
    count = 0
    async with rsocket.request_stream(payload, initial_n=_initial_n(request_n, take)) as stream:
        async for item in stream:
            _print_item(item)
            count += 1
            if take is not None and count >= take:
                break


async def _channel(
    rsocket: RSocket, lines: AsyncIterator[bytes], metadata: bytes | None, request_n: int, take: int | None
) -> None:
    first = await anext(lines, None)
    initial_n = _initial_n(request_n, take)
    payload = Payload(first or b"", metadata)
    async with rsocket.request_channel(payload, initial_n=initial_n, complete=first is None) as channel:
        async with anyio.create_task_group() as task_group:
            if first is not None:

                async def send_rest() -> None:
                    try:
                        async for line in lines:
                            await channel.send(Payload(line))
                        await channel.send_eof()
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        pass  # the responder stopped accepting elements; keep printing answers

                task_group.start_soon(send_rest)
            count = 0
            async for item in channel:
                _print_item(item)
                count += 1
                if take is not None and count >= take:
                    break
            task_group.cancel_scope.cancel()


# --- the demo server --------------------------------------------------------------------------------


class EchoHandler(RequestHandler):
    """The ``serve --echo`` responder: answers with what it receives; logs fnf/push on stdout."""

    async def request_response(self, payload: Payload) -> Payload:
        return payload

    async def fire_and_forget(self, payload: Payload) -> None:
        _print_item(Payload(b"fnf: " + payload.data))

    async def metadata_push(self, metadata: bytes) -> None:
        _print_item(Payload(b"push: " + metadata))

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        yield payload

    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        yield payload
        async for item in inbound:
            yield item


async def run_server(args: argparse.Namespace) -> int:
    """Serve until interrupted, printing ``listening on URL`` once ready."""
    if not args.echo:
        raise UsageError("choose what the server does: --echo")
    parts = urlsplit(args.url)
    scheme = parts.scheme.lower()
    options: dict[str, Any] = {}
    if args.fragment_size is not None:
        options["fragment_size"] = args.fragment_size
    resume = resume_option(args)
    if resume is not None:
        options["resume"] = resume
    serve: Callable[..., Any]
    if scheme == "tcp":
        from .peer.server import serve_tcp

        # Options are checked against serve_tcp, whose options the traced variant passes on.
        checked = serve_tcp
        serve = _serve_tcp_traced if args.debug else serve_tcp
    elif scheme == "ws":
        try:
            from .peer.websocket import serve_websocket
        except ImportError:
            raise UsageError("this installation serves tcp:// only") from None
        checked = serve = serve_websocket
        if args.debug:
            _emit_stderr(f"{PROG}: --debug frame tracing covers tcp:// only")
    else:
        raise UsageError(f"serve supports tcp:// and ws:// URLs, not {args.url!r}")
    if "fragment_size" in options and not _accepts(checked, "fragment_size"):
        raise UsageError("--fragment-size is not supported yet")
    if "resume" in options and not _accepts(checked, "resume"):
        raise UsageError(f"--resume is not supported yet for {scheme}:// servers")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"invalid port in {args.url!r}") from None
    host = parts.hostname or "127.0.0.1"

    async def serve_echo(*, task_status: anyio.abc.TaskStatus[int]) -> None:
        await serve(lambda rsocket: EchoHandler(), host, port or 0, task_status=task_status, **options)

    async with anyio.create_task_group() as task_group:
        bound = await task_group.start(serve_echo)
        shown_host = f"[{host}]" if ":" in host else host
        _print_item(Payload(f"listening on {scheme}://{shown_host}:{bound}".encode()))
    return EXIT_OK


async def _serve_tcp_traced(
    handler_factory: Callable[[RSocket], RequestHandler],
    host: str,
    port: int,
    *,
    task_status: anyio.abc.TaskStatus[int],
    **options: Any,
) -> None:
    """``serve_tcp`` with every connection's frames traced to stderr (``serve --debug``)."""
    from .peer.options import ServerOptions
    from .peer.server import registry_for, serve_connection
    from .transports.tcp import ByteStreamTransport
    from .transports.tracing import TracingTransport

    # One registry for every connection, so that a RESUME finds its session (serve_tcp does the same).
    sessions = registry_for(typing.cast("ServerOptions", options))
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    async with listener:
        task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))

        async def handle(stream: anyio.abc.SocketStream) -> None:
            transport = TracingTransport(ByteStreamTransport(stream), _emit_stderr)
            await serve_connection(transport, handler_factory, sessions=sessions, **options)

        await listener.serve(handle)


# --- entry point ------------------------------------------------------------------------------------


def _describe(error: BaseException) -> str:
    if isinstance(error, RSocketError):
        return f"{type(error).__name__} (0x{error.code:X}): {error.message}"
    return str(error) or type(error).__name__


async def _run(args: argparse.Namespace, plan: ClientPlan | None) -> int:
    if plan is None:
        return await run_server(args)
    if args.timeout is None:
        return await run_client(args, plan)
    with anyio.fail_after(args.timeout):
        return await run_client(args, plan)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""
    args = build_parser().parse_args(argv)
    try:
        plan = None if args.command == "serve" else plan_client(args)
        return anyio.run(_run, args, plan, backend=args.backend)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BaseException as caught:
        error = caught
        if isinstance(caught, BaseExceptionGroup):
            error = single_exception(caught) or caught
        if isinstance(error, UsageError):
            status = EXIT_USAGE
        elif isinstance(error, ConnectionClosedError):
            status = EXIT_CONNECTION_FAILED
        elif isinstance(error, RSocketError):
            status = EXIT_RSOCKET_ERROR
        elif isinstance(error, TimeoutError):
            status, error = EXIT_TIMEOUT, TimeoutError(f"no result within {args.timeout:g} s")
        elif isinstance(error, KeyboardInterrupt):
            return EXIT_INTERRUPTED
        elif isinstance(error, BrokenPipeError):
            return EXIT_OK  # our reader went away (e.g. `| head -1`)
        else:
            raise
        _emit_stderr(f"{PROG}: {_describe(error)}")
        return status


if __name__ == "__main__":
    sys.exit(main())
