"""Running interactions through interceptors and travelling deadlines, on both sides.

Connections without interceptors (and without deadlines to carry) never reach this module: the
requester methods and the driver's request dispatch test one attribute and take their usual path.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Any

import anyio

from ..protocol.streams import InteractionKind
from ..wire.errors import ErrorCode
from ..wire.payload import Payload
from .deadlines import with_deadline
from .handler import RequestHandler
from .interaction import Hooks, Interaction, Interceptor, Side
from .link import StreamLink
from .requester import DEFAULT_INITIAL_N, PendingResponse, RequestChannel, RequestStream
from .responder import ResponderTask, log_handler_failure, stream_error_code

_RR = InteractionKind.REQUEST_RESPONSE
_FNF = InteractionKind.FIRE_AND_FORGET


def record_end(interaction: Interaction, exc: BaseException) -> None:
    """Note how an interaction ended when it ended with ``exc``."""
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        interaction.cancelled = True
    elif interaction.error is None:
        interaction.error = exc


@asynccontextmanager
async def intercepting(
    interceptors: tuple[Interceptor, ...], interaction: Interaction
) -> AsyncIterator[None]:
    """Enter every interceptor (the first outermost) around the block; record how it ended."""
    async with AsyncExitStack() as stack:
        try:
            for interceptor in interceptors:
                await stack.enter_async_context(interceptor.intercept(interaction))
        except BaseException as exc:
            record_end(interaction, exc)  # refused on entry: the outer interceptors see why
            raise
        try:
            yield
        except BaseException as exc:
            record_end(interaction, exc)
            raise


def requester_interaction(hooks: Hooks, kind: InteractionKind, payload: Payload) -> Interaction:
    if hooks.propagate_deadlines:
        payload = with_deadline(payload)
    return Interaction(kind, Side.REQUESTER, payload, hooks.setup)


# --- requester side --------------------------------------------------------------------------------


async def request_response(link: StreamLink, hooks: Hooks, payload: Payload) -> Payload:
    """``RSocket.request_response`` through the interceptors (the same steps, plus the interaction)."""
    interaction = requester_interaction(hooks, _RR, payload)
    async with intercepting(hooks.interceptors, interaction):
        await link.admit()
        pending = PendingResponse(anyio.Event())
        pending.stream_id = interaction.stream_id = link.open_stream(pending, _RR, interaction.payload)
        try:
            await pending.event.wait()
        except BaseException:
            if not pending.done:
                pending.done = True
                link.cancel(pending.stream_id)
            raise
        if pending.error is not None:
            raise pending.error
        result = pending.result
        assert result is not None
        interaction.items_received = 1
        for interceptor in hooks.interceptors:
            interceptor.on_item(interaction, result, outbound=False)
        return result


async def fire_and_forget(link: StreamLink, hooks: Hooks, payload: Payload) -> None:
    interaction = requester_interaction(hooks, _FNF, payload)
    async with intercepting(hooks.interceptors, interaction):
        await link.admit()
        interaction.stream_id = link.open_stream(None, _FNF, interaction.payload)
        await link.wait_writable()


class _Intercepted(RequestStream):
    """The requester's stream objects with interceptors around the whole block, seeing every item."""

    _interceptors: tuple[Interceptor, ...]
    _interaction: Interaction
    _stack: AsyncExitStack | None

    def _intercept(self, hooks: Hooks, kind: InteractionKind, payload: Payload) -> None:
        self._interceptors = hooks.interceptors
        self._interaction = requester_interaction(hooks, kind, payload)
        self._payload = self._interaction.payload
        self._stack = None

    async def _start(self) -> None:
        if self._started:
            return
        if self._stack is None:
            await self._enter_interceptors()
            self._payload = self._interaction.payload
        await super()._start()
        self._interaction.stream_id = self.stream_id

    async def _enter_interceptors(self) -> None:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            for interceptor in self._interceptors:
                await stack.enter_async_context(interceptor.intercept(self._interaction))
        except BaseException as exc:
            record_end(self._interaction, exc)
            await stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._stack = stack

    async def receive(self) -> Payload:
        item = await super().receive()
        interaction = self._interaction
        interaction.items_received += 1
        for interceptor in self._interceptors:
            interceptor.on_item(interaction, item, outbound=False)
        return item

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        abandoned = self._started and not self._finished
        try:
            await super().__aexit__(exc_type, exc_val, exc_tb)
        finally:
            await self._leave_interceptors(abandoned, self._error, exc_type, exc_val, exc_tb)

    async def aclose(self) -> None:
        abandoned = self._started and not self._finished
        await super().aclose()
        await self._leave_interceptors(abandoned, self._error)

    async def _leave_interceptors(
        self,
        abandoned: bool,
        error: BaseException | None,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        interaction = self._interaction
        if exc is not None:
            record_end(interaction, exc)
        elif error is not None and interaction.error is None:
            interaction.error = error
        elif abandoned:
            interaction.cancelled = True  # left before the responder completed: CANCEL was sent
        await stack.__aexit__(exc_type, exc, tb)


class InterceptedRequestStream(_Intercepted):
    """A request-stream whose interceptors wrap the block and see every item received."""

    def __init__(
        self,
        link: StreamLink,
        hooks: Hooks,
        payload: Payload,
        initial_n: int = DEFAULT_INITIAL_N,
        auto_request: bool = True,
    ) -> None:
        super().__init__(link, payload, initial_n, auto_request)
        self._intercept(hooks, InteractionKind.REQUEST_STREAM, payload)


class InterceptedRequestChannel(_Intercepted, RequestChannel):
    """A request-channel whose interceptors wrap the block and see every item both ways."""

    def __init__(
        self,
        link: StreamLink,
        hooks: Hooks,
        payload: Payload,
        initial_n: int = DEFAULT_INITIAL_N,
        auto_request: bool = True,
        complete: bool = False,
        outbound: AsyncIterable[Payload] | None = None,
    ) -> None:
        RequestChannel.__init__(self, link, payload, initial_n, auto_request, complete, outbound)
        self._intercept(hooks, InteractionKind.REQUEST_CHANNEL, payload)

    async def send(self, item: Payload) -> None:
        await super().send(item)
        interaction = self._interaction
        interaction.items_sent += 1
        for interceptor in self._interceptors:
            interceptor.on_item(interaction, item, outbound=True)


# --- responder side --------------------------------------------------------------------------------


class InterceptedHandler(RequestHandler):
    """The connection's handler seen through one interaction: counts items, records errors."""

    def __init__(
        self, inner: RequestHandler, interaction: Interaction, interceptors: tuple[Interceptor, ...]
    ):
        self._inner = inner
        self._interaction = interaction
        self._interceptors = interceptors

    async def request_response(self, payload: Payload) -> Payload | None:
        try:
            result = await self._inner.request_response(payload)
        except BaseException as exc:
            record_end(self._interaction, exc)
            raise
        if isinstance(result, Payload):
            interaction = self._interaction
            interaction.items_sent = 1
            for interceptor in self._interceptors:
                interceptor.on_item(interaction, result, outbound=True)
        return result

    async def fire_and_forget(self, payload: Payload) -> None:
        try:
            await self._inner.fire_and_forget(payload)
        except BaseException as exc:
            record_end(self._interaction, exc)
            raise

    def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        return self._outbound(self._inner.request_stream(payload))

    def request_channel(self, payload: Payload, inbound: AsyncIterator[Payload]) -> AsyncIterator[Payload]:
        return self._outbound(self._inner.request_channel(payload, self._inbound(inbound)))

    async def _outbound(
        self, produced: AsyncIterator[Payload] | Awaitable[AsyncIterator[Payload]]
    ) -> AsyncIterator[Payload]:
        interaction, interceptors = self._interaction, self._interceptors
        generator: Any = None
        try:
            generator = await produced if inspect.isawaitable(produced) else produced
            async for item in generator:
                if not isinstance(item, Payload):
                    raise TypeError(f"the handler yielded {type(item).__name__}, not a Payload")
                interaction.items_sent += 1
                for interceptor in interceptors:
                    interceptor.on_item(interaction, item, outbound=True)
                yield item
        except GeneratorExit:
            raise
        except BaseException as exc:
            record_end(interaction, exc)
            raise
        finally:
            aclose = getattr(generator, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _inbound(self, inbound: AsyncIterator[Payload]) -> AsyncIterator[Payload]:
        interaction, interceptors = self._interaction, self._interceptors
        async for item in inbound:
            interaction.items_received += 1
            for interceptor in interceptors:
                interceptor.on_item(interaction, item, outbound=False)
            yield item


def refusal(exc: BaseException, expose: bool) -> tuple[int, str]:
    """The ERROR a refused request gets: the error's own for an RSocketError, else REJECTED."""
    code = stream_error_code(exc)
    if code is not None:
        return code, str(getattr(exc, "message", ""))
    return ErrorCode.REJECTED, f"{type(exc).__name__}: {exc}" if expose else type(exc).__name__


async def run_intercepted(
    link: StreamLink,
    interceptors: tuple[Interceptor, ...],
    interaction: Interaction,
    state: ResponderTask | None,
    runner: Callable[..., Awaitable[None]],
    *args: Any,
) -> None:
    """Run a responder ``runner`` inside the interceptors; a refusal on entry answers ERROR."""
    started = False
    try:
        async with intercepting(interceptors, interaction):
            started = True
            await runner(*args)
            if state is not None and state.scope.cancel_called:
                interaction.cancelled = True  # the requester cancelled, or the connection ended
    except Exception as exc:
        log_handler_failure(interaction.kind.value, interaction.stream_id, exc)
        if not started and state is not None and state.live:
            state.end()
            link.send_error(interaction.stream_id, *refusal(exc, link.expose_errors))


__all__ = [
    "InterceptedHandler",
    "InterceptedRequestChannel",
    "InterceptedRequestStream",
    "fire_and_forget",
    "intercepting",
    "request_response",
    "run_intercepted",
]
