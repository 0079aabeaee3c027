"""RSocketASGIApp mounted beside HTTP routes in a FastAPI app (the app of examples/fastapi_app.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import anyio
import httpx
import pytest
from httpx_ws.transport import ASGIWebSocketTransport

from anyio_rsocket import Payload, connect_websocket

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_http_routes_and_rsocket_share_one_app() -> None:
    example = load_example()
    with anyio.fail_after(10):
        async with httpx.AsyncClient(transport=ASGIWebSocketTransport(example.app)) as client:
            health = await client.get("http://testserver/health")
            assert health.status_code == 200 and health.json() == {"status": "ok", "items": 3}
            async with connect_websocket("ws://testserver/rsocket/", client=client) as rs:
                assert await rs.request_response(Payload(b"plum")) == Payload(b"7")
                async with rs.request_stream(Payload(b"")) as stream:
                    items = [item.data async for item in stream]
                assert items == [b"apple=3", b"pear=5", b"plum=7"]
            missing = await client.get("http://testserver/nothing-here")
            assert missing.status_code == 404
