"""Target sources for :func:`~anyio_rsocket.connect_pool`: async iterables of URL lists.

A pool applies every list a source yields (the new list replaces the target set), so a source is
service discovery: these two poll a file and DNS; anything that yields lists of URLs works
(a registry's watch API, a message bus).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncGenerator
from os import PathLike

import anyio

logger = logging.getLogger("anyio_rsocket.pool")


def parse_targets(text: str) -> list[str]:
    """URLs from a targets file: one per line; blank lines and ``#`` comments are skipped."""
    urls = []
    for line in text.splitlines():
        url = line.split("#", 1)[0].strip()
        if url:
            urls.append(url)
    return urls


async def file_targets(
    path: str | PathLike[str], *, interval: float = 5.0
) -> AsyncGenerator[list[str], None]:
    """Yield the URLs listed in ``path`` now, then again whenever the list changes.

    The file is re-read every ``interval`` seconds (see :func:`parse_targets` for its format). A
    file that cannot be read keeps the last list (a warning is logged); if the first read fails,
    an empty list is yielded, so the pool starts with no target and calls wait. Cancelling the
    iteration (leaving the pool) stops the polling.
    """
    if not interval > 0:
        raise ValueError("interval must be positive")
    last: list[str] | None = None
    file = anyio.Path(path)
    while True:
        try:
            urls = parse_targets(await file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            logger.warning("cannot read targets from %s: %s", path, exc)
            urls = last if last is not None else []
        if urls != last:
            last = urls
            yield urls
        await anyio.sleep(interval)


def _url(scheme: str, address: str, port: int, path: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{scheme}://{host}:{port}{path}"


async def dns_targets(
    host: str, port: int, *, interval: float = 30.0, scheme: str = "tcp", path: str = ""
) -> AsyncGenerator[list[str], None]:
    """Yield one URL per address ``host`` resolves to (A and AAAA records), now and on change.

    ``host`` is resolved every ``interval`` seconds; the URLs are ``scheme://address:port`` plus
    ``path`` (for ``ws://``), in a stable order. A failed lookup keeps the last list (a warning is
    logged); if the first lookup fails, an empty list is yielded. Note that ``tcps``/``wss`` URLs
    made of addresses are verified against the address, not ``host``: give such a pool an
    ``ssl_context`` whose certificates name the addresses, or use a file source with host names.
    """
    if not interval > 0:
        raise ValueError("interval must be positive")
    last: list[str] | None = None
    while True:
        try:
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addresses = sorted({str(info[4][0]) for info in infos})
            urls = [_url(scheme, address, port, path) for address in addresses]
        except OSError as exc:
            logger.warning("cannot resolve %s: %s", host, exc)
            urls = last if last is not None else []
        if urls != last:
            last = urls
            yield urls
        await anyio.sleep(interval)


__all__ = ["dns_targets", "file_targets", "parse_targets"]
