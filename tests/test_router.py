"""The responder Router and the client-side route binding (X3-X11), on asyncio and trio.

Most tests run a client and a server over the in-memory transport (``connected_pair``); one serves
a Router over TCP with ``serve_tcp``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from anyio_rsocket import (
    DEADLINE_MIME_TYPE,
    ApplicationError,
    InvalidError,
    Payload,
    RejectedError,
    RejectedSetupError,
    RequestHandler,
    Router,
    RSocket,
    connect_tcp,
    serve_tcp,
)
from anyio_rsocket.codecs import CodecRegistry
from anyio_rsocket.extensions import (
    MESSAGE_COMPOSITE_METADATA,
    MESSAGE_ROUTING,
    Authentication,
    BearerAuthentication,
    CompositeMetadata,
    accept_mime,
    bearer,
    composite,
    data_mime,
    encode_routing,
    entry,
    route,
    simple_auth,
)
from anyio_rsocket.routed import RoutedRequester, route_requester
from anyio_rsocket.router import AuthRequest, RequestContext
from anyio_rsocket.testing import connected_pair

pytestmark = pytest.mark.anyio

TIMEOUT = 5


@dataclasses.dataclass
class User:
    id: int
    name: str


@asynccontextmanager
async def routed_pair(
    router: Router, *, metadata_mime_type: str = MESSAGE_COMPOSITE_METADATA, **options: Any
) -> AsyncIterator[RSocket]:
    """A client connected to ``router`` with JSON data and composite (or the given) metadata."""
    async with connected_pair(
        router, data_mime_type="application/json", metadata_mime_type=metadata_mime_type, **options
    ) as rsocket:
        yield rsocket


# --- dispatch and argument binding ------------------------------------------------------------------


async def test_x5_response_with_variables_dataclasses_and_raw_payloads() -> None:
    """X5: ``{id}`` becomes an int keyword argument; dataclasses are decoded and encoded as JSON."""
    router = Router()

    @router.response("user.{id}")
    async def get_user(id: int, patch: dict[str, str]) -> User:
        return User(id, patch["name"])

    @router.response("users.create")
    async def create(user: User) -> dict[str, Any]:
        return {"created": dataclasses.asdict(user)}

    @router.response("raw")
    async def raw(payload: Payload) -> Payload:
        return Payload(payload.data[::-1], b"kept as is")

    @router.response("nothing")
    def nothing() -> None:  # plain functions work too; None completes without a value
        return None

    with anyio.fail_after(TIMEOUT):
        async with routed_pair(router) as rs:
            assert await route_requester(rs, "user.42").retrieve({"name": "Ada"}, User) == User(42, "Ada")
            created = await route_requester(rs, "users.create").retrieve(User(1, "Bo"))
            assert created == {"created": {"id": 1, "name": "Bo"}}
            assert await route_requester(rs, "raw").request_response(b"abc") == Payload(b"cba", b"kept as is")
            assert (await route_requester(rs, "nothing").request_response()).data == b""


async def test_x5_stream_and_channel_routes() -> None:
    """X5: stream and channel routes are async generators; inbound elements are decoded by type."""
    router = Router()

    @router.stream("count.{start}")
    async def count(start: int, limit: int) -> AsyncIterator[int]:
        for value in range(start, start + limit):
            yield value

    @router.channel("upper")
    async def upper(words: AsyncIterator[str]) -> AsyncIterator[str]:
        async for word in words:  # every element, the first one included
            yield word.upper()

    @router.channel("prefix")
    async def prefix(first: str, rest: AsyncIterator[str]) -> AsyncIterator[str]:
        async for word in rest:  # the first element went to ``first``
            yield first + word

    with anyio.fail_after(TIMEOUT):
        async with routed_pair(router) as rs:
            async with route_requester(rs, "count.3").request_stream(4, initial_n=2) as stream:
                assert [json.loads(item.data) async for item in stream] == [3, 4, 5, 6]
            for name, expected in (("upper", ["A", "B", "C"]), ("prefix", ["ab", "ac"])):
                words = route_requester(rs, name)
                async with words.request_channel("a") as channel:
                    await channel.send(words.element("b"))
                    await channel.send(words.element("c"))
                    await channel.send_eof()
                    assert [words.decode(item) async for item in channel] == expected


async def test_x5_fire_and_forget_and_metadata_push_routes() -> None:
    """X4, X5: fire-and-forget and metadata-push are routed too (metadata-push by its own metadata)."""
    router = Router()
    received: list[Any] = []
    done = anyio.Event()

    @router.fire_and_forget("audit")
    async def audit(event: dict[str, str]) -> None:
        received.append(event)

    @router.metadata_push("config.{key}")
    async def config(key: str, metadata: CompositeMetadata) -> None:
        received.append((key, metadata.get("text/x")))
        done.set()

    with anyio.fail_after(TIMEOUT):
        async with routed_pair(router) as rs:
            await route_requester(rs, "audit").fire_and_forget({"who": "me"})
            await route_requester(rs, "config.color", metadata=[entry("text/x", b"red")]).metadata_push()
            await done.wait()  # frames are handled in order, so the fire-and-forget came first
    assert received == [{"who": "me"}, ("color", b"red")]


async def test_handlers_receive_the_connection_and_the_context() -> None:
    """A parameter annotated RSocket gets the connection (here used to call the client back);
    RequestContext, CompositeMetadata and Authentication parameters get the request's details."""
    router = Router()

    class ClientSide(RequestHandler):
        async def request_response(self, payload: Payload) -> Payload:
            return Payload(b"client says " + payload.data)

    @router.response("callback")
    async def callback(
        rsocket: RSocket, context: RequestContext, auth: Authentication, metadata: CompositeMetadata
    ) -> dict[str, Any]:
        reply = await rsocket.request_response(Payload(b"hi"))
        return {
            "reply": reply.data.decode(),
            "route": context.route,
            "interaction": context.interaction,
            "token": auth.token if isinstance(auth, BearerAuthentication) else None,
            # Route and authentication, plus the caller's remaining time (it runs under fail_after).
            "entries": len(metadata),
            "deadline": metadata.get(DEADLINE_MIME_TYPE) is not None,
            "server_side": not rsocket.is_client,
        }

    with anyio.fail_after(TIMEOUT):
        async with routed_pair(router, client_handler=ClientSide()) as rs:
            requester = route_requester(rs, "callback", authentication=BearerAuthentication("t"))
            assert await requester.retrieve() == {
                "reply": "client says hi",
                "route": "callback",
                "interaction": "response",
                "token": "t",
                "entries": 3,
                "deadline": True,
                "server_side": True,
            }


async def test_x5_bare_routing_metadata_connection() -> None:
    """X5: with metadata MIME message/x.rsocket.routing.v0 the metadata is the routing tags alone."""
    router = Router()

    @router.response("echo")
    async def echo(text: str, context: RequestContext) -> str:
        return f"{text} via {context.route}"

    with anyio.fail_after(TIMEOUT):
        async with routed_pair(router, metadata_mime_type=MESSAGE_ROUTING) as rs:
            requester = route_requester(rs, "echo", "extra-tag")
            assert requester.metadata == encode_routing("echo", "extra-tag")
            assert await requester.retrieve("hi") == "hi via echo"
            with pytest.raises(ValueError, match="only routing tags"):
                route_requester(rs, "echo", authentication=BearerAuthentication("t"))


# --- errors -------------------------------------------------------------------------------------------


async def test_unknown_and_missing_routes_are_invalid() -> None:
    """X5: an unknown route gets ERROR[INVALID] naming it; so does a request without a route."""
    router = Router()

    @router.response("known")
    async def known() -> str:
        return "ok"

    with anyio.fail_after(TIMEOUT):
        async with routed_pair(router) as rs:
            with pytest.raises(InvalidError, match="no request-response route 'nope'"):
                await route_requester(rs, "nope").request_response()
            with pytest.raises(InvalidError, match="no request-stream route 'known'"):
                async with route_requester(rs, "known").request_stream() as stream:
                    await stream.receive()
            with pytest.raises(InvalidError, match="no route"):
                await rs.request_response(Payload(b"{}", composite(bearer("t"))))
            with pytest.raises(InvalidError, match="malformed"):
                await rs.request_response(Payload(b"{}", b"\xfe\x00"))
            assert await route_requester(rs, "known").retrieve() == "ok"  # the connection is fine


async def test_fallback_handler_sees_the_route() -> None:
    """A fallback handles routes nothing else matches, for the interactions it is registered for."""
    router = Router()

    @router.fallback("response")
    async def anything(context: RequestContext) -> str:
        return f"fallback for {context.route}"

    with anyio.fail_after(TIMEOUT):
        async with routed_pair(router) as rs:
            assert await route_requester(rs, "a.b.c").retrieve() == "fallback for a.b.c"
            assert await rs.request_response(Payload(b"")) == Payload(b'"fallback for None"')
            with pytest.raises(InvalidError, match=r"no request-stream route 'a\.b\.c'"):
                async with route_requester(rs, "a.b.c").request_stream() as stream:
                    await stream.receive()


async def test_undecodable_data_and_variables_are_invalid() -> None:
    """Data the codec cannot decode into the parameter's type, or a bad variable, is ERROR[INVALID];
    handler exceptions keep their usual mapping (APPLICATION_ERROR)."""
    router = Router()

    @router.response("user.{id}")
    async def user(id: int, body: User) -> str:
        raise ValueError("handler bug")

    with anyio.fail_after(TIMEOUT):
        async with routed_pair(router) as rs:
            with pytest.raises(InvalidError, match="not a valid int"):
                await route_requester(rs, "user.abc").request_response({"id": 1, "name": "x"})
            with pytest.raises(InvalidError, match="cannot decode the application/json data"):
                await route_requester(rs, "user.1").request_response(b"{not json")
            with pytest.raises(InvalidError, match="User"):
                await route_requester(rs, "user.1").request_response({"id": "x"})
            with pytest.raises(ApplicationError, match="ValueError"):
                await route_requester(rs, "user.1").request_response({"id": 1, "name": "x"})


async def test_stream_handler_is_closed_when_the_requester_cancels() -> None:
    """Leaving a stream early sends CANCEL; the route's generator is closed (its finally runs)."""
    router = Router()
    closed = anyio.Event()

    @router.stream("forever")
    async def forever() -> AsyncIterator[int]:
        try:
            value = 0
            while True:
                yield value
                value += 1
        finally:
            closed.set()

    with anyio.fail_after(TIMEOUT):
        async with routed_pair(router) as rs:
            async with route_requester(rs, "forever").request_stream(initial_n=1) as stream:
                assert json.loads((await stream.receive()).data) == 0
            await closed.wait()


# --- authentication -----------------------------------------------------------------------------------


def _auth_router(seen: list[AuthRequest]) -> Router:
    async def authenticate(request: AuthRequest) -> Any:
        seen.append(request)
        auth = request.authentication
        if request.is_setup:
            if auth is None:
                return None  # anonymous connections are allowed...
            if auth != BearerAuthentication("good"):
                raise PermissionError("unknown token")
            return "user:good"
        if request.route == "admin":
            return request.principal == "user:good" or (isinstance(auth, BearerAuthentication) and "admin")
        return request.principal

    router = Router(authenticate=authenticate)

    @router.response("admin")
    async def admin(context: RequestContext) -> Any:
        return context.principal

    @router.response("whoami")
    async def whoami(context: RequestContext) -> Any:
        return context.principal

    return router


async def test_x6_setup_authentication_establishes_a_principal() -> None:
    """X6, X8: the hook sees SETUP's bearer token; its result is each request's principal."""
    seen: list[AuthRequest] = []
    with anyio.fail_after(TIMEOUT):
        async with routed_pair(
            _auth_router(seen), setup_payload=Payload(b"", composite(bearer("good")))
        ) as rs:
            assert await route_requester(rs, "whoami").retrieve() == "user:good"
            assert await route_requester(rs, "admin").retrieve() is True
    assert seen[0].is_setup and seen[0].route is None
    assert (seen[1].is_setup, seen[1].route, seen[1].interaction) == (False, "whoami", "response")
    assert seen[1].principal == "user:good"


async def test_x6_setup_rejection_raises_rejected_setup_error() -> None:
    """X6: an exception from the hook at SETUP refuses the connection with REJECTED_SETUP."""
    with anyio.fail_after(TIMEOUT):
        with pytest.raises(RejectedSetupError, match="unknown token"):
            async with routed_pair(_auth_router([]), setup_payload=Payload(b"", composite(bearer("bad")))):
                pytest.fail("a bad token was accepted")
        with pytest.raises(RejectedSetupError, match="malformed SETUP metadata"):
            async with routed_pair(_auth_router([]), setup_payload=Payload(b"", b"\x05")):
                pytest.fail("malformed metadata was accepted")


async def test_x6_per_request_rejection_raises_rejected_error() -> None:
    """X6, X7: per request, a hook returning False (or raising) answers ERROR[REJECTED]."""
    with anyio.fail_after(TIMEOUT):
        async with routed_pair(_auth_router([])) as rs:  # anonymous connection
            assert await route_requester(rs, "whoami").retrieve() is None
            with pytest.raises(RejectedError, match="authentication failed"):
                await route_requester(rs, "admin").request_response()
            with_token = route_requester(rs, "admin", metadata=[bearer("any")])
            assert await with_token.retrieve() == "admin"
            with_password = route_requester(rs, "admin", metadata=[simple_auth("u", "p")])
            with pytest.raises(RejectedError):
                await with_password.request_response()


# --- per-stream MIME types (X9-X11) and codecs --------------------------------------------------------


async def test_x9_x11_per_stream_data_mime_and_accept() -> None:
    """X9: a mime-type entry overrides SETUP's data MIME for the request; X10/X11: the answer uses
    the first accepted MIME we can encode and declares it in a mime-type entry."""
    router = Router()

    @router.response("shout")
    async def shout(text: str, context: RequestContext) -> str:
        return text.upper() + " " + context.data_mime_type

    with anyio.fail_after(TIMEOUT):
        async with routed_pair(router) as rs:
            text = route_requester(rs, "shout", data_mime_type="text/plain")
            assert (await text.request_response("hi")).data == b"HI text/plain"  # answered in kind
            answer = await route_requester(
                rs, "shout", data_mime_type="text/plain", accept=["application/cbor", "text/plain"]
            ).request_response("hi")
            assert answer.data == b"HI text/plain" and answer.metadata is None  # same MIME: no entry
            answer = await route_requester(rs, "shout", accept=["text/plain"]).request_response("yo")
            assert answer.data == b"YO application/json"
            assert answer.metadata is not None
            assert CompositeMetadata.decode(answer.metadata).data_mime_type == "text/plain"
            requester = route_requester(rs, "shout", accept=["text/plain"])
            assert await requester.retrieve("ok") == "OK application/json"  # decoded as declared


async def test_router_with_a_custom_codec() -> None:
    """Codecs are pluggable per MIME type, for the router and the requester alike."""

    class Csv:
        def encode(self, value: Any) -> bytes:
            return ",".join(map(str, value)).encode()

        def decode(self, data: bytes, into: Any = object) -> Any:
            return [int(part) for part in data.decode().split(",")]

    codecs = CodecRegistry({"application/x-csv": Csv()})
    router = Router(codecs=codecs)

    @router.response("sum")
    async def total(values: list[int]) -> list[int]:
        return [sum(values)]

    with anyio.fail_after(TIMEOUT):
        async with connected_pair(
            router, data_mime_type="application/x-csv", metadata_mime_type=MESSAGE_COMPOSITE_METADATA
        ) as rs:
            assert await route_requester(rs, "sum", codecs=codecs).retrieve([1, 2, 3]) == [6]
            with pytest.raises(ValueError, match="no codec"):
                route_requester(rs, "sum").payload({"not": "csv"})


async def test_routed_requester_metadata() -> None:
    """X3-X10: the requester builds route + per-stream entries once; a Payload's metadata is appended."""
    with anyio.fail_after(TIMEOUT):
        async with connected_pair(
            lambda rs: RequestHandler(), metadata_mime_type=MESSAGE_COMPOSITE_METADATA
        ) as rs:
            requester = RoutedRequester(
                rs,
                "a",
                "b",
                data_mime_type="text/plain",
                accept=["application/json"],
                authentication=BearerAuthentication("t"),
                metadata=[entry("text/x", b"1")],
            )
            assert requester.metadata == composite(
                route("a", "b"), data_mime("text/plain"), accept_mime("application/json"), bearer("t"),
                entry("text/x", b"1"),
            )  # fmt: skip
            payload = requester.payload(Payload(b"raw", composite(entry("text/y", b"2"))))
            assert payload.data == b"raw"
            assert payload.metadata == requester.metadata + composite(entry("text/y", b"2"))
            assert requester.payload("hi") == Payload(b"hi", requester.metadata)
            assert repr(requester) == "RoutedRequester('a')"
        async with connected_pair(lambda rs: RequestHandler()) as rs:
            with pytest.raises(ValueError, match="composite or routing metadata"):
                route_requester(rs, "a")


# --- registration ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "handler", "error"),
    [
        ("a.{id}", lambda: None, TypeError),  # no parameter for the variable
        ("a", lambda x, y: None, TypeError),  # two payload parameters
        ("a.{x}.{x}", lambda x: None, ValueError),  # duplicate variable
        ("a.{", lambda: None, ValueError),  # unbalanced brace
        ("", lambda: None, ValueError),  # empty route
    ],
)
def test_registration_errors(pattern: str, handler: Callable[..., Any], error: type[Exception]) -> None:
    """Mistakes are reported when the route is registered, not when a request arrives."""
    with pytest.raises(error):
        Router().response(pattern)(handler)


def test_duplicate_routes_are_refused_and_listed() -> None:
    """A route can be registered once per interaction; routes() lists them."""
    router = Router()
    router.response("a")(lambda: None)
    router.stream("a")(lambda: None)
    router.response("b.{x}")(lambda x: None)
    with pytest.raises(ValueError, match="already registered"):
        router.response("a")(lambda: None)
    assert router.routes()["response"] == ["a", "b.{x}"]
    assert router.routes()["stream"] == ["a"]
    with pytest.raises(ValueError, match="unknown interaction"):
        router.fallback("bogus")  # type: ignore[arg-type]


# --- over TCP -----------------------------------------------------------------------------------------


async def test_serve_tcp_accepts_a_router() -> None:
    """A Router is a handler factory: ``serve_tcp(router, host, port)`` serves it over TCP."""
    router = Router()

    @router.response("ping")
    async def ping() -> str:
        return "pong"

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:
            port = await task_group.start(serve_tcp, router, "127.0.0.1", 0)
            async with connect_tcp(
                "127.0.0.1",
                port,
                data_mime_type="application/json",
                metadata_mime_type=MESSAGE_COMPOSITE_METADATA,
            ) as rs:
                assert await route_requester(rs, "ping").retrieve() == "pong"
            task_group.cancel_scope.cancel()


async def test_router_as_the_clients_handler() -> None:
    """Routing works both ways: ``router.handler_for`` answers the server's routed requests."""
    client_router = Router()

    @client_router.response("client.version")
    async def version() -> dict[str, str]:
        return {"version": "1.2.3"}

    server_router = Router()

    @server_router.response("ask.client")
    async def ask(rsocket: RSocket) -> Any:
        return await route_requester(rsocket, "client.version").retrieve()

    with anyio.fail_after(TIMEOUT):
        async with routed_pair(server_router, client_handler=client_router.handler_for) as rs:
            assert await route_requester(rs, "ask.client").retrieve() == {"version": "1.2.3"}


async def test_rsocket_route_binds_a_route_once_X5() -> None:
    """``rs.route(...)`` is the connection-level spelling of ``route_requester``."""
    router = Router()

    @router.response("user.{id}")
    async def get_user(id: int) -> dict[str, Any]:
        return {"id": id}

    with anyio.fail_after(TIMEOUT):
        async with routed_pair(router) as rs:
            bound = rs.route("user.7")
            assert isinstance(bound, RoutedRequester)
            assert await bound.retrieve() == {"id": 7}
            assert json.loads((await rs.route("user.8").request_response()).data) == {"id": 8}
