"""A transport wrapper that reports every frame it carries, decoded, for debugging (``--debug``).

Every connection the library opens or serves goes through :func:`traced`: enable DEBUG on the
``anyio_rsocket.frames`` logger *before* connections are made and each frame is logged as one line,
``-> `` sent or ``<- `` received (``logging.getLogger("anyio_rsocket.frames").setLevel(logging.DEBUG)``
plus a handler). Off (the default), connections are not wrapped at all.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from ..wire.errors import FrameError
from ..wire.frames import decode_frame
from .base import Transport

logger = logging.getLogger("anyio_rsocket.frames")

#: Bytes fields longer than this are shown truncated.
MAX_SHOWN_BYTES = 64


def _show(value: object) -> str:
    if isinstance(value, bytes):
        if len(value) > MAX_SHOWN_BYTES:
            return f"{value[:MAX_SHOWN_BYTES]!r}...({len(value)} bytes)"
        return repr(value)
    return repr(value)


def describe_frame(raw: bytes) -> str:
    """One line describing an encoded frame: its type and fields (long bytes truncated)."""
    try:
        frame = decode_frame(raw)
    except FrameError as exc:
        return f"undecodable frame ({exc}): {raw[:MAX_SHOWN_BYTES].hex(' ')}"
    fields = []
    for field in dataclasses.fields(frame):
        value = getattr(frame, field.name)
        if value is None or value is False or (field.name == "data" and value == b""):
            continue
        fields.append(f"{field.name}={_show(value)}")
    name = type(frame).__name__.removesuffix("Frame")
    return f"{name}({', '.join(fields)}) [{len(raw)} bytes]"


def traced(transport: Transport) -> Transport:
    """``transport`` wrapped in a :class:`TracingTransport` when the ``anyio_rsocket.frames`` logger
    is enabled for DEBUG now, else ``transport`` itself (no cost when tracing is off)."""
    if logger.isEnabledFor(logging.DEBUG):
        return TracingTransport(transport)
    return transport


class TracingTransport(Transport):
    """Wraps ``inner`` and reports each frame sent (``->``) and received (``<-``) through ``emit``.

    ``emit`` defaults to DEBUG logging on the ``anyio_rsocket.frames`` logger.
    """

    def __init__(self, inner: Transport, emit: Callable[[str], None] | None = None) -> None:
        self.inner = inner
        self._emit = emit if emit is not None else logger.debug

    async def send(self, frames: list[bytes]) -> None:
        for frame in frames:
            self._emit(f"-> {describe_frame(frame)}")
        await self.inner.send(frames)

    async def receive(self) -> list[bytes]:
        frames = await self.inner.receive()
        for frame in frames:
            self._emit(f"<- {describe_frame(frame)}")
        return frames

    async def aclose(self) -> None:
        await self.inner.aclose()


__all__ = ["TracingTransport", "describe_frame", "traced"]
