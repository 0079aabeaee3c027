"""A routed service with authentication: a Router-based server and a client, in one process.

The server declares one function per route (Spring-style ``@MessageMapping``): route variables become
keyword arguments, JSON data is decoded into the annotated types and results are encoded back. Clients
authenticate in SETUP with a bearer token; an admin route also wants a per-request token. Runs on
asyncio by default; pass ``trio`` as the first argument to use Trio.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio

from anyio_rsocket import Payload, RejectedError, RejectedSetupError, Router, connect_tcp, serve_tcp
from anyio_rsocket.extensions import MESSAGE_COMPOSITE_METADATA, BearerAuthentication, bearer, composite
from anyio_rsocket.routed import route_requester
from anyio_rsocket.router import AuthRequest, RequestContext

TOKENS = {"token-ada": "ada", "token-bob": "bob"}
ADMIN_TOKEN = "root-secret"


@dataclasses.dataclass
class User:
    id: int
    name: str
    email: str


USERS = {1: User(1, "Ada", "ada@example.org"), 2: User(2, "Bob", "bob@example.org")}

router = Router()


@router.authenticator
def authenticate(request: AuthRequest) -> Any:
    """SETUP: a known bearer token names the user. Requests: ``admin.*`` needs the admin token."""
    auth = request.authentication
    if request.is_setup:
        if isinstance(auth, BearerAuthentication) and auth.token in TOKENS:
            return TOKENS[auth.token]
        raise RejectedSetupError("a valid bearer token is required")
    admin_route = request.route is not None and request.route.startswith("admin.")
    if admin_route and auth != BearerAuthentication(ADMIN_TOKEN):
        raise RejectedError("admin token required")
    return request.principal


@router.response("users.{id}")
async def get_user(id: int) -> User:
    """request-response: ``users.1`` -> the user as JSON."""
    return USERS[id]


@router.response("whoami")
async def whoami(context: RequestContext) -> dict[str, Any]:
    """The principal the authentication hook established at SETUP."""
    return {"principal": context.principal, "route": context.route}


@router.stream("users.list")
async def list_users(query: dict[str, Any]) -> AsyncIterator[User]:
    """request-stream: every user whose name contains ``query["name"]``."""
    for user in USERS.values():
        if query.get("name", "").lower() in user.name.lower():
            yield user


@router.channel("echo.upper")
async def upper(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """request-channel: each inbound string, upper-cased."""
    async for line in lines:
        yield line.upper()


@router.fire_and_forget("audit")
async def audit(event: dict[str, str], context: RequestContext) -> None:
    print(f"  server audit log: {context.principal} {event}")


@router.response("admin.stats")
async def stats() -> dict[str, int]:
    return {"users": len(USERS)}


async def main() -> None:
    async with anyio.create_task_group() as task_group:
        port = await task_group.start(serve_tcp, router, "127.0.0.1", 0)
        print(f"routed service listening on port {port}")

        async with connect_tcp(
            "127.0.0.1",
            port,
            data_mime_type="application/json",
            metadata_mime_type=MESSAGE_COMPOSITE_METADATA,
            setup_payload=Payload(b"", composite(bearer("token-ada"))),
        ) as rs:
            print("whoami:", await route_requester(rs, "whoami").retrieve())
            # retrieve(into=User) decodes the JSON answer into a User, and type checkers know it is one.
            user: User = await route_requester(rs, "users.1").retrieve(into=User)
            print("users.1:", user, "- name:", user.name)

            async with route_requester(rs, "users.list").request_stream({"name": "b"}) as stream:
                async for item in stream:
                    print("users.list item:", item.data.decode())

            echo = route_requester(rs, "echo.upper")
            async with echo.request_channel("hello") as channel:
                await channel.send(echo.element("channel"))
                await channel.send_eof()
                print("echo.upper:", [echo.decode(item) async for item in channel])

            await route_requester(rs, "audit").fire_and_forget({"action": "looked around"})

            try:
                await route_requester(rs, "admin.stats").request_response()
            except RejectedError as error:
                print("admin.stats without the admin token:", repr(error))
            admin = route_requester(rs, "admin.stats", authentication=BearerAuthentication(ADMIN_TOKEN))
            print("admin.stats with it:", await admin.retrieve())

            try:
                await route_requester(rs, "no.such.route").request_response()
            except Exception as error:
                print("unknown route:", repr(error))

        try:
            async with connect_tcp(
                "127.0.0.1",
                port,
                metadata_mime_type=MESSAGE_COMPOSITE_METADATA,
                setup_payload=Payload(b"", composite(bearer("forged"))),
            ):
                pass
        except RejectedSetupError as error:
            print("connecting with a forged token:", repr(error))

        task_group.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
