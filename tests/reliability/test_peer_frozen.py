"""The server process is frozen with SIGSTOP: its socket stays open but nothing comes back.

No FIN or RST ever arrives, so only the keepalive lifetime check (K3) can notice. With a keepalive
every 0.2 s and a max lifetime of 1 s, our client must end the connection about one lifetime after
the freeze (the last echo came at most one interval before it, and the check wakes at least four
times per lifetime), and a request pending at that moment must fail with ConnectionClosedError.
"""

from __future__ import annotations

import signal

import anyio
import pytest

from anyio_rsocket import Payload, connect_tcp
from anyio_rsocket.errors import ConnectionClosedError

from .processes import server_child

pytestmark = pytest.mark.anyio

KEEPALIVE_INTERVAL = 0.2
MAX_LIFETIME = 1.0


async def test_frozen_server_is_detected_after_about_max_lifetime(anyio_backend: str) -> None:
    async with (
        server_child(anyio_backend) as (server, port),
        connect_tcp(
            "127.0.0.1", port, keepalive_interval=KEEPALIVE_INTERVAL, max_lifetime=MAX_LIFETIME
        ) as rsocket,
    ):
        with anyio.fail_after(5):
            assert (await rsocket.request_response(Payload(b"ping"))).data == b"ping"
        pending_failed = anyio.Event()

        async def pending_call() -> None:
            with pytest.raises(ConnectionClosedError):
                await rsocket.request_response(Payload(b"hang"))
            pending_failed.set()

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(pending_call)
            await anyio.wait_all_tasks_blocked()
            server.signal(signal.SIGSTOP)
            frozen_at = anyio.current_time()
            with anyio.fail_after(3 * MAX_LIFETIME):
                await rsocket.wait_closed()
                detected_after = anyio.current_time() - frozen_at
                await pending_failed.wait()

        reason = rsocket.close_reason
        assert isinstance(reason, ConnectionClosedError)
        assert "keepalive lifetime" in str(reason), reason
        print(f"frozen server detected after {detected_after:.3f} s (max lifetime {MAX_LIFETIME} s)")
        assert 0.75 * MAX_LIFETIME <= detected_after <= 2 * MAX_LIFETIME
        # Leaving server_child continues the frozen process, closes its stdin and reaps it.
