"""``anyio-rsocket``: talk to an RSocket server from the shell, or run a demo echo server.

::

    anyio-rsocket request tcp://localhost:7000 -r user.get -d '{"id": 7}' --data-mime application/json
    anyio-rsocket stream tcp://localhost:7000 -r ticks --take 5
    printf 'a\\nb\\n' | anyio-rsocket channel tcp://localhost:7000 -r chat
    anyio-rsocket serve tcp://127.0.0.1:7000 --echo
    anyio-rsocket stream tcp://localhost:7000 -r ticks --resume   # survives a lost connection
    anyio-rsocket serve tcp://0.0.0.0:7000 --echo --workers 4     # 4 processes share the port
    anyio-rsocket request --target tcp://a:7000 --target tcp://b:7000 -d hi   # a pool of servers

Each answer's data is printed on its own line as soon as it arrives. ``--route`` and the
authentication options switch the metadata MIME type to composite metadata; authentication is sent
in SETUP (as Spring Security expects).

``--resume`` (request, stream, channel and serve) makes the session resumable: after a lost
connection the client dials again and the interaction goes on where it was, nothing lost or repeated,
as long as the session is resumed within ``--resume-duration`` seconds (default 60). ``--reconnect``
(request, stream, channel) dials a new connection after a loss instead: the interaction in progress
fails (status 2), so it helps only a request that had not gone out yet. See ``docs/resumption.md``.

``--target URL`` (repeatable; request, stream, channel) talks to a pool of servers through
:func:`~anyio_rsocket.connect_pool` instead of one connection: every target is dialled, and the
interaction goes to one available target picked at random (so repeated commands spread over the
servers); a positional URL given as well is one more target. Targets that are down are skipped; with
none available the command waits up to ``--connect-timeout`` (default 10 s) for one, then fails with
status 2.

``serve --workers N`` runs N worker processes that share the port (``SO_REUSEPORT``; Linux, macOS,
BSD): with port 0 the first worker picks the port and the others join it. The parent prints the
``listening on`` line once every worker listens, passes the workers' output on, forwards SIGINT and
SIGTERM to them, and stops them all when one exits (it then exits with that worker's status) or when
it exits itself; a worker whose parent is gone (its stdin closes) stops too. ``serve --reuse-port``
sets ``SO_REUSEPORT`` on a single server, for processes started some other way. The demo server
answers a request-response routed ``worker`` (``-r worker``) with ``worker K/N pid P`` instead of
echoing it, which shows which process served a connection. Resumable sessions (``--resume``) live
in one worker: see ``docs/scaling.md``.

``serve ws://host:port/path`` accepts WebSocket upgrades on ``/path`` only (``/`` without a path);
``tcp://`` URLs take no path. ``--show-metadata`` (request, stream, channel) prints each answer as
its metadata, then ``data: DATA``: one ``metadata: ...`` line (``metadata: none`` without
metadata), or with composite metadata one ``metadata: MIME-TYPE: VALUE`` line per entry (routing
tags, MIME types, authentication types and tracing ids decoded; credentials are not shown). Values
print as UTF-8 text when they are printable, else as ``hex:`` and the bytes in hex. ``--version``
prints the version.

Exit status (also in ``--help``; :data:`EXIT_STATUS_HELP`): 0 success, 1 the peer answered with an
error, 2 a connection problem (refused, unreachable, address in use, SETUP rejected, lost and not
resumed, no ``--target`` available), 64 usage error (no traceback, a one-line message), 70 internal
error (a bug: the traceback is printed), 124 ``--timeout`` expired, 130 interrupted (Ctrl-C);
``serve --workers``: 128 + the signal number for SIGINT and SIGTERM, or the status of a worker that
exited by itself.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import traceback
import typing
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import urlsplit

if sys.version_info < (3, 11):  # pragma: no cover - exercised on 3.10 only
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.buffered import BufferedByteReceiveStream

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
from .pool import Pool
from .protocol.policy import Backoff, Resume
from .wire.errors import ConnectionClosedError, RSocketError
from .wire.payload import Payload

EXIT_OK = 0
EXIT_RSOCKET_ERROR = 1
EXIT_CONNECTION_FAILED = 2
EXIT_USAGE = 64
EXIT_INTERNAL_ERROR = 70
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130

PROG = "anyio-rsocket"
CLIENT_COMMANDS = ("request", "stream", "channel", "fnf", "push")
#: The client commands that take --resume and --reconnect (one interaction that can outlive a loss).
SESSION_COMMANDS = ("request", "stream", "channel")

#: The backoff between dials with ``--reconnect``.
RECONNECT_BACKOFF = Backoff(initial=0.1, maximum=30.0)


#: The exit status table of ``--help`` (kept in step with :func:`main`).
EXIT_STATUS_HELP = """\
exit status:
  0    success (also when whoever reads the output stops early, as `| head -1` does)
  1    the peer answered with an error (ApplicationError, RejectedError, InvalidError,
       CanceledError; a hint follows when the data MIME type looks wrong)
  2    connection problem: could not connect, or serve could not listen (refused,
       unreachable, unknown host, address in use), SETUP rejected, connection lost and
       not resumed, --connect-timeout expired, no --target available
  64   usage error: bad option, option value or URL, unreadable input, a payload too
       large to send without --fragment-size
  70   internal error (a bug: the traceback is printed; please report it)
  124  --timeout expired
  130  interrupted (Ctrl-C)
  128+N  serve --workers stopped by signal N (130 SIGINT, 143 SIGTERM); when a worker
       exits by itself the others are stopped and its status is the exit status"""


class UsageError(Exception):
    """A bad combination of options or an unreadable input (exit status 64)."""


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on errors, which we use for connection failures: use 64 instead."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _version() -> str:
    from . import __version__

    return f"{PROG} {__version__}"


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (one sub-command per interaction, plus ``serve``)."""
    parser = _Parser(
        prog=PROG,
        description="Send RSocket requests, or run a demo server.",
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    # Every sub-command's --help ends with the exit status table too.
    shown: dict[str, Any] = {
        "epilog": EXIT_STATUS_HELP,
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
    helps = {
        "request": "request-response: print the answer",
        "stream": "request-stream: print each item as it arrives",
        "channel": "request-channel: send stdin (or --data) line by line, print each answer",
        "fnf": "fire-and-forget",
        "push": "metadata-push (the metadata is --metadata, or the --route)",
    }
    for name in CLIENT_COMMANDS:
        command = commands.add_parser(name, help=helps[name], description=helps[name], **shown)
        url_help = "server URL: tcp://host:port (also tcps, ws, wss when available)"
        if name in SESSION_COMMANDS:
            command.add_argument("url", nargs="?", help=url_help + "; optional with --target")
            command.add_argument(
                "--target",
                action="append",
                metavar="URL",
                help="a server of a pool (repeatable): the interaction goes to one available target, "
                "picked at random; down targets are skipped, and with none up the command waits up to "
                "--connect-timeout for one. A positional URL is one more target",
            )
        else:
            command.add_argument("url", help=url_help)
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
        if name in SESSION_COMMANDS:
            command.add_argument(
                "--show-metadata",
                action="store_true",
                help="print each answer's metadata before its data: 'metadata: ...' lines (composite "
                "metadata one line per entry, 'metadata: MIME: VALUE', well-known entries decoded; "
                "printable UTF-8 as text, else 'hex:' and hex), then 'data: ...'",
            )
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
    serve = commands.add_parser("serve", help="run a demo server", description="run a demo server", **shown)
    serve.add_argument(
        "url",
        help="address to listen on: tcp://host:port or ws://host:port/path (port 0 picks one; "
        "WebSocket upgrades are accepted on /path only, / without one)",
    )
    serve.add_argument(
        "--echo",
        action="store_true",
        help="echo every request back (a request-response routed 'worker' is answered with "
        "'worker K/N pid P' instead)",
    )
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="run N worker processes sharing the port (SO_REUSEPORT; with port 0 they share the one "
        "the first picks); resumable sessions stay in one worker (default 1)",
    )
    serve.add_argument(
        "--reuse-port",
        action="store_true",
        help="set SO_REUSEPORT, so that other processes can listen on the same port",
    )
    serve.add_argument("--as-worker", metavar="K/N", help=argparse.SUPPRESS)  # set by --workers
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

    ``data`` is ``None`` for a channel reading stdin progressively. ``targets``, when not empty,
    are the URLs of a pool (``--target``, plus the positional URL if given); ``url`` is then the first.
    """

    command: str
    url: str
    data: bytes | None
    data_mime_type: str
    metadata_mime_type: str
    request_metadata: bytes | None
    setup_payload: Payload | None
    connect_options: dict[str, Any] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)


def plan_client(args: argparse.Namespace) -> ClientPlan:
    """Check option combinations and build metadata; raises :class:`UsageError`."""
    pool_targets: list[str] = getattr(args, "target", None) or []
    targets: list[str] = [*([args.url] if args.url is not None else []), *pool_targets]
    if not targets:
        raise UsageError("the following arguments are required: url (or --target URL)")
    if pool_targets and getattr(args, "reconnect", False):
        raise UsageError("--reconnect cannot be combined with --target: the pool dials its targets again")
    for url in targets:
        check_url(url)
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
    _check_client_options(args, setup_payload, metadata_mime_type, resume)
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
        url=targets[0],
        data=data,
        data_mime_type=args.data_mime,
        metadata_mime_type=metadata_mime_type,
        request_metadata=request_metadata,
        setup_payload=setup_payload,
        connect_options=connect_options,
        targets=targets if pool_targets else [],
    )


def resume_option(args: argparse.Namespace) -> Resume | None:
    """The ``resume=`` value that ``--resume`` and ``--resume-duration`` ask for, if any."""
    duration: float | None = getattr(args, "resume_duration", None)
    if duration is not None:
        with _option_error("--resume-duration", duration):
            return Resume(session_duration=duration)
    if getattr(args, "resume", False):
        return Resume()
    return None


#: The URL schemes ``serve`` listens on.
SERVE_SCHEMES = ("tcp", "ws")


def check_url(url: str, *, serving: bool = False) -> None:
    """Refuse a URL the command cannot use, before any I/O (raises :class:`UsageError`).

    Clients take ``tcp://host:port`` (also ``tcps``, and ``ws[s]://host[:port]/path`` when this
    installation has WebSocket support); ``serve`` takes ``tcp://host:port`` and ``ws://host:port/path``
    (the host and port may be left out: 127.0.0.1, and a free port).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if serving:
        schemes: tuple[str, ...] = SERVE_SCHEMES
        if scheme not in schemes:
            raise UsageError(f"serve supports tcp:// and ws:// URLs, not {url!r}")
    else:
        schemes = getattr(_url_module(), "SCHEMES", ("tcp",))
        if scheme not in schemes:
            if schemes == ("tcp",) and scheme:
                raise UsageError(f"unsupported URL {url!r}: this installation speaks tcp:// only")
            raise UsageError(f"unsupported URL scheme in {url!r}; use one of {', '.join(schemes)}")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"invalid port in {url!r}") from None
    if parts.query or parts.fragment:
        raise UsageError(f"URLs take no query or fragment: {url!r}")
    if scheme in ("tcp", "tcps"):
        if parts.path not in ("", "/"):
            raise UsageError(f"{scheme}:// URLs take no path: {url!r}")
        if not serving and (not parts.hostname or port is None):
            raise UsageError(f"{scheme}:// URLs need a host and a port: {url!r}")
    elif not serving and not parts.hostname:
        raise UsageError(f"{scheme}:// URLs need a host: {url!r}")


class _option_error:
    """Turn the ``ValueError`` or ``TypeError`` with which the library refuses an option's value into a
    :class:`UsageError` naming the option: ``with _option_error("--fragment-size", 10): ...``."""

    def __init__(self, flag: str, value: object) -> None:
        self.flag = flag
        self.value = value

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        if isinstance(error, ValueError | TypeError):
            value = f"{self.value:g}" if isinstance(self.value, float) else str(self.value)
            raise UsageError(f"{self.flag} {value}: {error}") from None


def check_fragment_size(fragment_size: int | None) -> None:
    """Refuse a ``--fragment-size`` the library refuses (checked by :class:`PeerOptions`)."""
    from .peer.settings import PeerOptions

    if fragment_size is not None:
        with _option_error("--fragment-size", fragment_size):
            PeerOptions(fragment_size=fragment_size)


def _check_client_options(
    args: argparse.Namespace, setup_payload: Payload | None, metadata_mime_type: str, resume: Resume | None
) -> None:
    """Refuse, before connecting, the option values the library would refuse once connected: the
    fragment size, the MIME types and anything else SETUP cannot carry."""
    from .peer.setup_info import SetupInfo
    from .wire.errors import FrameTooLargeError
    from .wire.frames import encode_frame

    check_fragment_size(args.fragment_size)
    octet_stream = "application/octet-stream"
    with _option_error("--data-mime", args.data_mime):
        encode_frame(SetupInfo(args.data_mime, octet_stream, 1.0, 1.0).to_frame())
    with _option_error("--metadata-mime", metadata_mime_type):
        encode_frame(SetupInfo(octet_stream, metadata_mime_type, 1.0, 1.0).to_frame())
    setup = SetupInfo(
        data_mime_type=args.data_mime,
        metadata_mime_type=metadata_mime_type,
        keepalive_interval=20.0,
        max_lifetime=90.0,
        payload=setup_payload,
        resume_token=None if resume is None else resume.token,
    )
    try:
        encode_frame(setup.to_frame())
    except FrameTooLargeError as exc:
        raise UsageError(f"the SETUP frame is too large (--setup-data, --auth-*): {exc}") from None
    except (ValueError, TypeError) as exc:
        raise UsageError(f"SETUP cannot carry these options: {exc}") from None


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


def _connection_options(plan: ClientPlan) -> dict[str, Any]:
    return {
        "data_mime_type": plan.data_mime_type,
        "metadata_mime_type": plan.metadata_mime_type,
        "setup_payload": plan.setup_payload,
        **plan.connect_options,
    }


def open_connection(plan: ClientPlan) -> AbstractAsyncContextManager[RSocket]:
    """Connect as ``plan`` says (``--debug`` traces through :func:`frame_trace`, for every scheme)."""
    options = _connection_options(plan)
    scheme = urlsplit(plan.url).scheme.lower()
    if scheme == "tcp":
        return _connect_tcp(plan.url, options)
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
    context: AbstractAsyncContextManager[RSocket] = connect(plan.url, **options)
    return context


@asynccontextmanager
async def _connect_tcp(url: str, options: dict[str, Any]) -> AsyncIterator[RSocket]:
    from .peer.client import closing_unless_entered, open_client, open_tcp_transport, remaining_time
    from .peer.options import DEFAULT_CONNECT_TIMEOUT
    from .transports.base import Transport

    if "fragment_size" in options and not _accepts(open_client, "fragment_size"):
        raise UsageError("--fragment-size is not supported yet")
    host, port = _tcp_address(url)
    connect_timeout = options.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    deadline = anyio.current_time() + connect_timeout

    async def dial() -> Transport:
        """A new TCP connection: the first one, and each one after a loss."""
        transport: Transport = await open_tcp_transport(host, port, connect_timeout=connect_timeout)
        return transport

    transport = await dial()
    options = {**options, "connect_timeout": remaining_time(deadline)}
    async with (
        closing_unless_entered(transport),
        open_client(transport, redial=dial, **options) as rsocket,
    ):
        yield rsocket


@asynccontextmanager
async def open_pool(plan: ClientPlan) -> AsyncIterator[Pool]:
    """A pool over ``plan.targets`` (``--target``), once one target is available.

    Waits up to the connect timeout (``--connect-timeout``, default 10 s) for an available target;
    raises :class:`ConnectionClosedError` naming why each target is down if none became available.
    """
    from .peer.options import DEFAULT_CONNECT_TIMEOUT
    from .pool import LeastLoaded, connect_pool

    url_module = _url_module()
    schemes: tuple[str, ...] = getattr(url_module, "SCHEMES", ("tcp",))
    for url in plan.targets:
        if urlsplit(url).scheme.lower() not in schemes:
            raise UsageError(f"unsupported URL scheme in {url!r}; use one of {', '.join(schemes)}")
    options = _connection_options(plan)
    connect_timeout: float = options.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    deadline = anyio.current_time() + connect_timeout
    # LeastLoaded with no latency measured yet picks a random available target: one interaction per
    # command, so repeated commands spread over the servers.
    async with connect_pool(plan.targets, strategy=LeastLoaded(), **options) as pool:
        with anyio.move_on_after(max(deadline - anyio.current_time(), 0.0)):
            await pool.wait_available()
        if not any(target.available for target in pool.targets):
            reasons = "; ".join(
                f"{target.url}: {_describe(target.last_error) if target.last_error else target.state.value}"
                for target in pool.targets
            )
            raise ConnectionClosedError(f"no target available within {connect_timeout:g} s ({reasons})")
        yield pool


# --- the client commands ----------------------------------------------------------------------------


def _print_item(payload: Payload) -> None:
    out = sys.stdout.buffer
    out.write(payload.data + b"\n")
    out.flush()


def _shown_bytes(value: bytes) -> str:
    """Metadata bytes for a person: the UTF-8 text when it is printable, else ``hex:`` and hex."""
    if not value:
        return "(empty)"
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.isprintable():
        return text
    return "hex:" + value.hex()


def _shown_entry(entry: CompositeEntry) -> str:
    """A composite metadata entry's value, decoded when its MIME type is a well-known extension."""
    from .extensions import (
        MESSAGE_ACCEPT_MIME_TYPES,
        MESSAGE_AUTHENTICATION,
        MESSAGE_MIME_TYPE,
        MESSAGE_TRACING_ZIPKIN,
        SimpleAuthentication,
        decode_accept_mime_types,
        decode_authentication,
        decode_data_mime_type,
        decode_routing,
        decode_tracing,
    )

    content = entry.content
    try:
        if entry.mime_type == MESSAGE_ROUTING:
            return ", ".join(decode_routing(content))
        if entry.mime_type == MESSAGE_MIME_TYPE:
            return str(decode_data_mime_type(content))
        if entry.mime_type == MESSAGE_ACCEPT_MIME_TYPES:
            return ", ".join(str(mime_type) for mime_type in decode_accept_mime_types(content))
        if entry.mime_type == MESSAGE_AUTHENTICATION:
            auth = decode_authentication(content)
            user = f" {auth.username}" if isinstance(auth, SimpleAuthentication) else ""
            return f"{auth.auth_type}{user} (credentials not shown)"
        if entry.mime_type == MESSAGE_TRACING_ZIPKIN:
            trace = decode_tracing(content)
            ids = [
                f"{name}={value:x}"
                for name, value in (
                    ("trace", trace.trace_id),
                    ("span", trace.span_id),
                    ("parent", trace.parent_span_id),
                )
                if value is not None
            ]
            return " ".join([*ids, f"sampling={trace.sampling.name.lower()}"])
    except ValueError:
        return f"{_shown_bytes(content)} (malformed)"
    return _shown_bytes(content)


def describe_metadata(metadata: bytes | None, metadata_mime_type: str) -> list[str]:
    """The lines ``--show-metadata`` prints for an answer's metadata (without the ``metadata: ``).

    Composite metadata gives one ``MIME-TYPE: VALUE`` line per entry, bare routing metadata its tags,
    anything else the bytes (see :func:`_shown_bytes`); ``none`` when the answer has no metadata.
    """
    from .extensions import CompositeMetadata, decode_routing

    if metadata is None:
        return ["none"]
    if metadata and metadata_mime_type == MESSAGE_COMPOSITE_METADATA:
        try:
            entries = CompositeMetadata.decode(metadata)
        except ValueError as exc:
            return [f"{_shown_bytes(metadata)} (not valid composite metadata: {exc})"]
        lines = []
        for entry in entries:
            mime_type = entry.mime_type
            name = mime_type if isinstance(mime_type, str) else f"well-known MIME id 0x{mime_type:02X}"
            lines.append(f"{name}: {_shown_entry(entry)}")
        return lines or ["(empty composite metadata)"]
    if metadata and metadata_mime_type == MESSAGE_ROUTING:
        try:
            return [", ".join(decode_routing(metadata))]
        except ValueError:
            return [f"{_shown_bytes(metadata)} (not valid routing metadata)"]
    return [_shown_bytes(metadata)]


def _answer_printer(args: argparse.Namespace, plan: ClientPlan) -> Callable[[Payload], None]:
    """How answers are printed: the data alone, or with ``--show-metadata`` the metadata lines first,
    then ``data: DATA``."""
    if not getattr(args, "show_metadata", False):
        return _print_item

    def show(payload: Payload) -> None:
        lines = [f"metadata: {line}" for line in describe_metadata(payload.metadata, plan.metadata_mime_type)]
        out = sys.stdout.buffer
        out.write("".join(line + "\n" for line in lines).encode("utf-8") + b"data: " + payload.data + b"\n")
        out.flush()

    return show


async def run_client(args: argparse.Namespace, plan: ClientPlan) -> int:
    """Run one client command as planned: over one connection, or a pool with ``--target``."""
    if plan.targets:
        async with open_pool(plan) as pool:
            await _interact(pool, args, plan)
    else:
        async with open_connection(plan) as rsocket:
            await _interact(rsocket, args, plan)
    return EXIT_OK


async def _interact(rsocket: RSocket | Pool, args: argparse.Namespace, plan: ClientPlan) -> None:
    metadata = plan.request_metadata
    data = plan.data
    show = _answer_printer(args, plan)
    if plan.command == "request":
        show(await rsocket.request_response(Payload(data or b"", metadata)))
    elif plan.command == "fnf":
        await rsocket.fire_and_forget(Payload(data or b"", metadata))
    elif plan.command == "push":
        assert metadata is not None
        await rsocket.metadata_push(metadata)
    elif plan.command == "stream":
        await _stream(rsocket, Payload(data or b"", metadata), args.request_n, args.take, show)
    else:
        lines = _lines_of(data) if data is not None else _stdin_lines()
        await _channel(rsocket, lines, metadata, args.request_n, args.take, show)


def _initial_n(request_n: int, take: int | None) -> int:
    return min(request_n, take) if take is not None else request_n


async def _stream(
    rsocket: RSocket | Pool,
    payload: Payload,
    request_n: int,
    take: int | None,
    show: Callable[[Payload], None] = _print_item,
) -> None:
    count = 0
    async with rsocket.request_stream(payload, initial_n=_initial_n(request_n, take)) as stream:
        async for item in stream:
            show(item)
            count += 1
            if take is not None and count >= take:
                break


async def _channel(
    rsocket: RSocket | Pool,
    lines: AsyncIterator[bytes],
    metadata: bytes | None,
    request_n: int,
    take: int | None,
    show: Callable[[Payload], None] = _print_item,
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
                show(item)
                count += 1
                if take is not None and count >= take:
                    break
            task_group.cancel_scope.cancel()


# --- the demo server --------------------------------------------------------------------------------


#: The route the demo server answers with the identity of the process that serves it.
WORKER_ROUTE = "worker"
#: How long ``serve --workers`` gives its workers to stop after a signal before it kills them.
WORKER_STOP_GRACE = 10.0


def _route_of(metadata: bytes | None, metadata_mime_type: str) -> str | None:
    """The route of a request's metadata (composite or bare routing), ``None`` without one."""
    if not metadata:
        return None
    from .extensions import CompositeMetadata, decode_routing

    try:
        if metadata_mime_type == MESSAGE_COMPOSITE_METADATA:
            return CompositeMetadata.decode(metadata).route
        if metadata_mime_type == MESSAGE_ROUTING:
            tags = decode_routing(metadata)
            return tags[0] if tags else None
    except ValueError:  # not well-formed: an ordinary payload to echo
        return None
    return None


class EchoHandler(RequestHandler):
    """The ``serve --echo`` responder: answers with what it receives; logs fnf/push on stdout.

    A request-response routed ``worker`` is answered with ``worker K/N pid P``: which process of a
    ``--workers N`` server (``1/1`` without) served it.
    """

    def __init__(self, metadata_mime_type: str = "application/octet-stream", worker: str = "1/1") -> None:
        self._metadata_mime_type = metadata_mime_type
        self._worker = worker

    async def request_response(self, payload: Payload) -> Payload:
        if _route_of(payload.metadata, self._metadata_mime_type) == WORKER_ROUTE:
            return Payload(f"worker {self._worker} pid {os.getpid()}".encode())
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


def _parse_worker(text: str) -> tuple[int, int]:
    index, slash, count = text.partition("/")
    try:
        parsed = int(index), int(count)
    except ValueError:
        raise UsageError(f"--as-worker takes K/N, not {text!r}") from None
    if not slash or not 1 <= parsed[0] <= parsed[1]:
        raise UsageError(f"--as-worker takes K/N with 1 <= K <= N, not {text!r}")
    return parsed


async def run_server(args: argparse.Namespace) -> int:
    """Serve until interrupted, printing ``listening on URL`` once ready (``--workers``: supervise)."""
    if not args.echo:
        raise UsageError("choose what the server does: --echo")
    check_url(args.url, serving=True)
    check_fragment_size(args.fragment_size)
    if args.workers > 1 and args.as_worker is None:
        return await run_workers(args)
    parts = urlsplit(args.url)
    scheme = parts.scheme.lower()
    options: dict[str, Any] = {}
    if args.fragment_size is not None:
        options["fragment_size"] = args.fragment_size
    resume = resume_option(args)
    if resume is not None:
        options["resume"] = resume
    worker = "1/1"
    if args.as_worker is not None:
        index, count = _parse_worker(args.as_worker)
        worker = f"{index}/{count}"
    if args.reuse_port or args.as_worker is not None:
        from .peer.listener import reuse_port_supported

        if not reuse_port_supported():
            raise UsageError(f"--reuse-port and --workers need SO_REUSEPORT, which {sys.platform} lacks")
        options["reuse_port"] = True
    serve: Callable[..., Any]
    if scheme == "tcp":
        from .peer.server import serve_tcp

        checked = serve = serve_tcp
    elif scheme == "ws":
        try:
            from .peer.websocket import serve_websocket
        except ImportError:
            raise UsageError("this installation serves tcp:// only") from None
        checked = serve_websocket
        # Upgrades are accepted on the URL's path only (others get 404), "/" when it has none.
        serve = functools.partial(serve_websocket, path=parts.path or "/")
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

    def handler(rsocket: RSocket) -> EchoHandler:
        return EchoHandler(rsocket.setup.metadata_mime_type, worker)

    async def serve_echo(*, task_status: anyio.abc.TaskStatus[int]) -> None:
        await serve(handler, host, port or 0, task_status=task_status, **options)

    async with anyio.create_task_group() as task_group:
        try:
            bound = await task_group.start(serve_echo)
        except OSError as exc:  # the listener could not bind (in use, not allowed, no SO_REUSEPORT)
            raise _CannotListen(f"cannot listen on {args.url}: {exc}") from None
        shown_host = f"[{host}]" if ":" in host else host
        path = parts.path if parts.path not in ("", "/") else ""
        _print_item(Payload(f"listening on {scheme}://{shown_host}:{bound}{path}".encode()))
        if args.as_worker is not None:
            await _until_stdin_closes()  # the parent is gone (or stopped us): no orphan is left
            task_group.cancel_scope.cancel()
    return EXIT_OK


class _CannotListen(ConnectionClosedError):
    """``serve`` could not bind its address (exit status 2)."""


async def _until_stdin_closes() -> None:
    """Return once stdin reaches EOF: a ``--workers`` parent holds the other end of the pipe, so this
    happens when the parent exits, however it exits."""
    closed = anyio.Event()
    token = anyio.lowlevel.current_token()

    def reader() -> None:
        with suppress(OSError):
            while os.read(0, 4096):
                pass
        with suppress(Exception):  # the event loop may be gone already
            anyio.from_thread.run_sync(closed.set, token=token)

    threading.Thread(target=reader, name="anyio-rsocket-parent-watch", daemon=True).start()
    await closed.wait()


def _worker_command(args: argparse.Namespace, url: str, index: int) -> list[str]:
    """The command line of worker ``index`` (1-based) of a ``serve --workers`` server on ``url``."""
    command = [sys.executable, "-m", "anyio_rsocket.cli", "serve", url, "--echo"]
    command += ["--as-worker", f"{index}/{args.workers}", "--backend", args.backend]
    if args.debug:
        command.append("--debug")
    if args.fragment_size is not None:
        command += ["--fragment-size", str(args.fragment_size)]
    if args.resume_duration is not None:
        command += ["--resume-duration", repr(args.resume_duration)]
    elif args.resume:
        command.append("--resume")
    return command


def _exit_status(returncode: int) -> int:
    """A child's return code as a shell would report it (128 + N when signal N ended it)."""
    return 128 - returncode if returncode < 0 else returncode


class _Worker:
    def __init__(self, index: int, process: anyio.abc.Process) -> None:
        self.index = index
        self.process = process
        assert process.stdout is not None
        self.stdout = BufferedByteReceiveStream(process.stdout)


class _Supervision:
    """What ended a ``serve --workers`` run: a signal, or a worker that exited."""

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.workers: list[_Worker] = []
        self.signal: int | None = None
        self.exited: tuple[int, int] | None = None  # (worker index, exit status)

    def worker_exited(self, worker: _Worker, returncode: int) -> None:
        if self.exited is None and self.signal is None:
            self.exited = (worker.index, _exit_status(returncode))
        self.scope.cancel()


async def run_workers(args: argparse.Namespace) -> int:
    """``serve --workers N``: start N worker processes on one port, print where they listen, pass their
    output on, and supervise them (see the module docstring)."""
    from .peer.listener import reuse_port_supported

    if not reuse_port_supported():
        raise UsageError(f"--workers needs SO_REUSEPORT, which {sys.platform} lacks")
    parts = urlsplit(args.url)
    scheme = parts.scheme.lower()
    if scheme not in ("tcp", "ws"):
        raise UsageError(f"serve supports tcp:// and ws:// URLs, not {args.url!r}")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"invalid port in {args.url!r}") from None
    if args.resume or args.resume_duration is not None:
        _emit_stderr(
            f"{PROG}: with --workers each worker keeps its own resumable sessions: a client that "
            "reconnects to another worker cannot resume (see docs/scaling.md)"
        )
    run = _Supervision()
    async with anyio.create_task_group() as signals:
        if _signals_supported():
            await signals.start(_watch_signals, run)
        try:
            with run.scope:
                await _start_and_supervise(args, run, scheme, parts.hostname or "127.0.0.1", port, parts.path)
        finally:
            with anyio.CancelScope(shield=True):
                await _stop_workers(run.workers, run.signal or signal.SIGTERM)
        signals.cancel_scope.cancel()
    if run.signal is not None:
        return 128 + run.signal
    if run.exited is not None:
        index, status = run.exited
        _emit_stderr(f"{PROG}: worker {index} exited with status {status}; the others were stopped")
        return status
    return EXIT_OK


async def _start_and_supervise(
    args: argparse.Namespace, run: _Supervision, scheme: str, host: str, port: int | None, path: str
) -> None:
    async def start(index: int, url: str) -> str | None:
        process = await anyio.open_process(
            _worker_command(args, url, index),
            stdin=subprocess.PIPE,  # never written: it closes when we exit, however we exit
            stdout=subprocess.PIPE,
            stderr=None,  # ours: their errors and --debug traces go straight through
            start_new_session=True,  # a terminal's Ctrl-C reaches us only, and we forward it
        )
        worker = _Worker(index, process)
        run.workers.append(worker)
        try:
            line = await worker.stdout.receive_until(b"\n", 65536)
        except (anyio.EndOfStream, anyio.IncompleteRead):
            run.worker_exited(worker, await process.wait())  # it could not start (its error is shown)
            return None
        return line.decode()

    # The first worker binds (with port 0 it picks one); the others join its port.
    banner = await start(1, args.url)
    if banner is None:
        return
    shown_host = f"[{host}]" if ":" in host else host
    url = args.url if port else f"{scheme}://{shown_host}:{_banner_port(banner)}{path}"
    async with anyio.create_task_group() as starting:
        for index in range(2, args.workers + 1):
            starting.start_soon(start, index, url)
    if run.exited is not None:
        return
    _print_item(Payload(banner.encode()))
    async with anyio.create_task_group() as task_group:
        for worker in run.workers:
            task_group.start_soon(_supervise, worker, run)


def _banner_port(banner: str) -> int | None:
    """The port of a ``listening on URL`` line (the URL may end with a path)."""
    return urlsplit(banner.strip().rpartition(" ")[2]).port


def _signals_supported() -> bool:
    return sys.platform != "win32" and threading.current_thread() is threading.main_thread()


async def _watch_signals(run: _Supervision, *, task_status: anyio.abc.TaskStatus[None]) -> None:
    """The first SIGINT or SIGTERM ends the supervision (the workers then get the same signal); another
    one kills the workers at once."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            if run.signal is None:
                run.signal = int(signum)
                run.scope.cancel()
            else:
                for worker in run.workers:
                    if worker.process.returncode is None:
                        with suppress(ProcessLookupError):
                            worker.process.kill()


async def _supervise(worker: _Worker, run: _Supervision) -> None:
    """Pass the worker's output on, line by line; when it exits, end the supervision."""
    while True:
        try:
            line = await worker.stdout.receive_until(b"\n", 1 << 24)
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.DelimiterNotFound):
            break
        _print_item(Payload(line))
    run.worker_exited(worker, await worker.process.wait())


async def _stop_workers(workers: list[_Worker], signum: int) -> None:
    """Send ``signum`` to every worker still running, kill those left after the grace period, reap all."""
    for worker in workers:
        if worker.process.returncode is None:
            with suppress(ProcessLookupError):
                worker.process.send_signal(signal.Signals(signum))
    with anyio.move_on_after(WORKER_STOP_GRACE):
        for worker in workers:
            await worker.process.wait()
    for worker in workers:
        if worker.process.returncode is None:
            with suppress(ProcessLookupError):
                worker.process.kill()
        await worker.process.wait()
        await worker.process.aclose()


# --- entry point ------------------------------------------------------------------------------------


def _describe(error: BaseException) -> str:
    if isinstance(error, _CannotListen):
        return error.message
    if isinstance(error, RSocketError):
        return f"{type(error).__name__} (0x{error.code:X}): {error.message}"
    return str(error) or type(error).__name__


class _StderrHandler(logging.Handler):
    """Log records as bare lines on the current ``sys.stderr`` (``--debug`` frame traces)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _emit_stderr(record.getMessage())
        except Exception:
            self.handleError(record)


@contextmanager
def frame_trace(debug: bool) -> Iterator[None]:
    """With ``debug`` (``--debug``): every frame of every connection opened or served meanwhile, tcp,
    tcps, ws, wss and pool targets alike, one line on stderr (through the ``anyio_rsocket.frames``
    logger, which the library consults when a connection starts)."""
    if not debug:
        yield
        return
    from .transports.tracing import logger

    handler = _StderrHandler(logging.DEBUG)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


async def _run(args: argparse.Namespace, plan: ClientPlan | None) -> int:
    with frame_trace(args.debug):
        return await _run_traced(args, plan)


async def _run_traced(args: argparse.Namespace, plan: ClientPlan | None) -> int:
    if plan is None:
        return await run_server(args)
    if args.timeout is None:
        return await run_client(args, plan)
    with anyio.fail_after(args.timeout):
        return await run_client(args, plan)


_ENCODE_FAILED = re.compile(r"cannot encode the response as (\S+):")
_DECODE_FAILED = re.compile(r"cannot decode the (\S+) data:")


def data_mime_hint(error: BaseException) -> str | None:
    """What to change when the peer could not encode its answer, or decode our data, in the data MIME
    type (the errors of ``Router`` handlers); ``None`` for other errors."""
    if not isinstance(error, RSocketError):
        return None
    json = "application/json"
    if match := _ENCODE_FAILED.search(error.message):
        mime_type = match[1]
        if mime_type != json:
            return f"the server's data is not {mime_type}; try --data-mime {json}"
        return f"the server's data cannot be sent as {json}; try another --data-mime (text/plain?)"
    if match := _DECODE_FAILED.search(error.message):
        mime_type = match[1]
        if mime_type != json:
            return (
                f"the server expects other data than {mime_type}; try --data-mime {json} "
                "with JSON --data (-d 42, -d '\"text\"', -d '{\"id\": 7}')"
            )
        return f"--data is not the {json} the server expects (-d 42, -d '\"text\"', -d '{{\"id\": 7}}')"
    return None


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def _classify(error: BaseException, args: argparse.Namespace) -> tuple[int, BaseException | None]:
    """The exit status for ``error`` and what to report (``None``: nothing, or the traceback)."""
    from .protocol.errors import ConnectionClosingError, ConnectionEndedError, InvalidArgumentError
    from .wire.errors import FrameTooLargeError

    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED, None
    if isinstance(error, BrokenPipeError):
        return EXIT_OK, None  # our reader went away (e.g. `| head -1`)
    if isinstance(error, UsageError):
        return EXIT_USAGE, error
    if isinstance(error, FrameTooLargeError):  # ours: too large to send (a peer's is a lost connection)
        hint = "" if args.fragment_size else "; try --fragment-size 65536"
        return EXIT_USAGE, UsageError(f"{error.message}{hint}")
    if isinstance(error, InvalidArgumentError):
        return EXIT_USAGE, UsageError(str(error))
    if isinstance(error, ConnectionClosedError | ConnectionEndedError | ConnectionClosingError):
        return EXIT_CONNECTION_FAILED, error
    if isinstance(error, RSocketError):
        return EXIT_RSOCKET_ERROR, error
    if isinstance(error, TimeoutError) and args.timeout is not None:
        return EXIT_TIMEOUT, TimeoutError(f"no result within {args.timeout:g} s")
    return EXIT_INTERNAL_ERROR, None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see :data:`EXIT_STATUS_HELP`).

    Errors are reported on one line of stderr, without a traceback, except an internal error (a bug,
    status 70), whose traceback is printed.
    """
    args = build_parser().parse_args(argv)
    try:
        plan = None if args.command == "serve" else plan_client(args)
        return anyio.run(_run, args, plan, backend=args.backend)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BaseException as caught:
        # A lone exception inside groups stands for itself; of several, the first the table knows.
        leaves = _leaves(caught)
        single = single_exception(caught) if isinstance(caught, BaseExceptionGroup) else caught
        candidates = [single] if single is not None else leaves
        if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
            return EXIT_INTERRUPTED
        for candidate in candidates:
            status, report = _classify(candidate, args)
            if status != EXIT_INTERNAL_ERROR:
                break
        if status == EXIT_INTERNAL_ERROR:
            if isinstance(caught, SystemExit | GeneratorExit):
                raise
            traceback.print_exception(caught)
            _emit_stderr(f"{PROG}: internal error (a bug; please report it with the traceback above)")
            return EXIT_INTERNAL_ERROR
        if report is not None:
            _emit_stderr(f"{PROG}: {_describe(report)}")
            hint = data_mime_hint(report)
            if hint is not None:
                _emit_stderr(f"{PROG}: hint: {hint}")
        return status


if __name__ == "__main__":
    sys.exit(main())
