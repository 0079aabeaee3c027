"""A client for a Spring Boot RSocket service (``@MessageMapping`` controllers, Spring Security).

Spring's ``RSocketRequester`` sends composite metadata with a routing entry per request, JSON data, and
(with Spring Security) the credentials in the SETUP frame's metadata. This client does the same::

    python examples/spring_style_client.py tcp://localhost:7000 [trio]

It expects a controller like::

    @MessageMapping("greet.{name}")        Mono<Greeting> greet(@DestinationVariable String name)
    @MessageMapping("quotes")              Flux<Quote> quotes(QuoteRequest request)
    @MessageMapping("chat")                Flux<String> chat(Flux<String> messages)
    @MessageMapping("events")              Mono<Void> event(Event event)   // fire-and-forget

Without a URL it starts an embedded stand-in for that service (an ``anyio_rsocket.Router``), so the
example runs on its own.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio

from anyio_rsocket import Payload, RejectedSetupError, Router, connect, serve_tcp
from anyio_rsocket.extensions import (
    MESSAGE_COMPOSITE_METADATA,
    SimpleAuthentication,
    composite,
    simple_auth,
)
from anyio_rsocket.routed import route_requester
from anyio_rsocket.router import AuthRequest

USERNAME, PASSWORD = "user", "password"  # Spring Security's classic in-memory demo user


@dataclasses.dataclass
class Greeting:
    message: str


@dataclasses.dataclass
class Quote:
    symbol: str
    price: float


async def talk_to(url: str) -> None:
    """What an application does with Spring's RSocketRequester, written with anyio_rsocket."""
    async with connect(
        url,
        data_mime_type="application/json",  # Spring's default for objects
        metadata_mime_type=MESSAGE_COMPOSITE_METADATA,  # routing + auth entries
        setup_payload=Payload(b"", composite(simple_auth(USERNAME, PASSWORD))),  # Spring Security
    ) as rs:
        # requester.route("greet.{name}", "Ada").retrieveMono(Greeting.class)
        greeting = await route_requester(rs, "greet.Ada").retrieve(into=Greeting)
        print("greet.Ada ->", greeting)

        # requester.route("quotes").data(request).retrieveFlux(Quote.class).take(3)
        quotes = route_requester(rs, "quotes")
        async with quotes.request_stream({"symbols": ["ACME", "INIT"]}, initial_n=8) as stream:
            received = 0
            async for item in stream:
                print("quotes ->", quotes.decode(item, Quote))
                received += 1
                if received == 3:
                    break  # leaving the block cancels the Flux on the server

        # requester.route("chat").data(Flux.just("hi", "there")).retrieveFlux(String.class)
        chat = route_requester(rs, "chat")
        async with chat.request_channel("hi") as channel:
            await channel.send(chat.element("there"))
            await channel.send_eof()
            print("chat ->", [chat.decode(item, str) async for item in channel])

        # requester.route("events").data(event).send()
        await route_requester(rs, "events").fire_and_forget({"type": "example-finished"})


def stand_in_service() -> Router:
    """An embedded stand-in for the Spring controller described in the module docstring."""
    router = Router()

    @router.authenticator
    def authenticate(request: AuthRequest) -> Any:
        if request.is_setup and request.authentication != SimpleAuthentication(USERNAME, PASSWORD):
            raise RejectedSetupError("Invalid Credentials")
        return request.principal

    @router.response("greet.{name}")
    async def greet(name: str) -> Greeting:
        return Greeting(f"Hello, {name}!")

    @router.stream("quotes")
    async def quotes(request: dict[str, list[str]]) -> AsyncIterator[Quote]:
        price = 100.0
        while True:  # an endless Flux: the client decides when to stop
            for symbol in request["symbols"]:
                price += 0.25
                yield Quote(symbol, price)

    @router.channel("chat")
    async def chat(messages: AsyncIterator[str]) -> AsyncIterator[str]:
        async for message in messages:
            yield f"echo: {message}"

    @router.fire_and_forget("events")
    async def events(event: dict[str, str]) -> None:
        print("  stand-in service got event:", event)

    return router


async def main(url: str | None) -> None:
    if url is not None:
        await talk_to(url)
        return
    async with anyio.create_task_group() as task_group:
        port = await task_group.start(serve_tcp, stand_in_service(), "127.0.0.1", 0)
        await talk_to(f"tcp://127.0.0.1:{port}")
        task_group.cancel_scope.cancel()


if __name__ == "__main__":
    arguments = sys.argv[1:]
    backend = "trio" if "trio" in arguments else "asyncio"
    urls = [argument for argument in arguments if "://" in argument]
    anyio.run(main, urls[0] if urls else None, backend=backend)
