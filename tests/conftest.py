"""Every async test runs on asyncio and on trio (AnyIO's pytest plugin).

Tests marked ``virtual_time`` (keepalive and lifetime timing) run on trio under a ``MockClock``
with autojump: their timers fire as soon as every task waits, so they take no real time and do
not depend on how busy the machine is. asyncio has no such clock; there they run in real time.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    backend = str(request.param)
    if backend == "trio" and request.node.get_closest_marker("virtual_time") is not None:
        from trio.testing import MockClock

        return ("trio", {"clock": MockClock(autojump_threshold=0)})
    return backend
