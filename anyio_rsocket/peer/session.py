"""Sessions that outlive a transport: resumption and reconnect, on top of :class:`~.driver.CoreDriver`.

- **Resumption** (``resume=``, checklist section 14): when the transport is lost (or silent for the
  keepalive lifetime), the core *detaches*: every stream stays, frames the peer has not confirmed
  stay in the core's store. A client dials again (``Resume.retry``) and sends RESUME; a server
  waits for a new connection whose RESUME names the session (:meth:`SessionDriver.take_over`).
  After RESUME_OK both sides replay what the other has not received, and nothing is lost,
  duplicated or reordered. A session not resumed within ``session_duration`` ends, and every call
  raises :class:`~anyio_rsocket.errors.RejectedResumeError`.
- **Reconnect** (``reconnect=``, clients only): after a loss, interactions that were live fail with
  :class:`~anyio_rsocket.errors.ConnectionLostError`, and a new connection (new SETUP) is dialled;
  new calls wait for it.

Both expose :attr:`SessionDriver.state` and ways to wait for it to change.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

import anyio

from ..protocol import (
    ConnectionTerminated,
    KeepaliveReceived,
    Phase,
    ProtocolConnection,
    ResumeReceived,
    SessionDetached,
    SessionResumed,
    TerminationCause,
)
from ..protocol.policy import Backoff, Resume
from ..transports.base import DEFAULT_CONNECT_TIMEOUT, Transport
from ..wire.errors import (
    ConnectionClosedError,
    ConnectionLostError,
    ErrorCode,
    RejectedResumeError,
    RSocketError,
)
from .driver import CoreDriver, protocol_config, termination_error

#: Opens a new transport to the same server (a resumable or reconnecting client's dialler).
Redial = Callable[[], Awaitable[Transport]]


class ConnectionState(Enum):
    """Where a connection is, as :attr:`SessionDriver.state` reports it."""

    CONNECTED = "connected"  # a transport carries the connection
    DETACHED = "detached"  # resumable: the transport was lost; the session waits to be resumed
    RECONNECTING = "reconnecting"  # reconnect=: dialling a new connection; new calls wait
    CLOSED = "closed"  # over for good (close_reason says why)


class SessionDriver(CoreDriver):
    """The connection driver plus what keeps a session going across transports."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._state = ConnectionState.CONNECTED
        self._state_event = anyio.Event()
        self._redial: Redial | None = None
        self._reconnect: Backoff | None = None
        self._resume: Resume | None = None
        self._redial_timeout = DEFAULT_CONNECT_TIMEOUT
        self._redial_scope = anyio.CancelScope()
        #: Told of every state change (a server's session registry listens).
        self._state_listener: Callable[[ConnectionState], None] | None = None
        self._on_event[SessionResumed] = self._on_resumed
        self._on_event[SessionDetached] = self._on_detached
        self._on_event[KeepaliveReceived] = self._on_keepalive

    def _enable_resume(self, resume: Resume, redial: Redial | None, timeout: float) -> None:
        """Make this connection resumable (client: ``redial`` opens new transports)."""
        self._resume = resume
        self._redial = redial
        self._redial_timeout = timeout
        self._gated = True

    def _enable_reconnect(self, backoff: Backoff, redial: Redial, timeout: float) -> None:
        self._reconnect = backoff
        self._redial = redial
        self._redial_timeout = timeout
        self._gated = True

    # --- public state ----------------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """CONNECTED, DETACHED (resumable, waiting to resume), RECONNECTING or CLOSED."""
        return self._state

    async def state_changed(self) -> ConnectionState:
        """Wait for the next change of :attr:`state` and return the new state.

        Cancelling the wait changes nothing.
        """
        await self._state_event.wait()
        return self._state

    async def wait_for_state(self, *states: ConnectionState) -> ConnectionState:
        """Return as soon as :attr:`state` is one of ``states`` (at once if it already is)."""
        while self._state not in states:
            await self._state_event.wait()
        return self._state

    def _set_state(self, state: ConnectionState) -> None:
        if state is self._state or self._state is ConnectionState.CLOSED:
            return
        self._state = state
        event, self._state_event = self._state_event, anyio.Event()
        event.set()
        if self._state_listener is not None:
            self._state_listener(state)

    # --- admission and back-pressure ------------------------------------------------------------

    async def admit(self) -> None:
        """Wait until a new request may go out: a reconnected transport, room in the resume
        store, a lease. Cancelling the wait sends nothing."""
        while self._error is None:
            if self._state is ConnectionState.RECONNECTING:
                await self._state_event.wait()
            elif not self._core.store_has_room():
                await self.wait_writable()
            else:
                break
        if self._error is not None:
            raise copy.copy(self._error)
        await super().admit()

    def _on_keepalive(self, event: KeepaliveReceived | SessionResumed) -> None:
        # The peer's position may have trimmed the store: producers waiting for room go on.
        writable = self._writable
        if writable is not None and self._core.store_has_room():
            self._writable = None
            writable.set()

    # --- losing a transport ----------------------------------------------------------------------

    def _transport_lost(self, transport: Transport, error: ConnectionClosedError) -> None:
        if transport is not self._transport or self._error is not None:
            return  # a replaced transport closing late changes nothing
        core = self._core
        if core.resumable and not core.draining and core.phase is Phase.OPEN:
            if self._is_client and self._redial is None:
                self._terminate(error)  # nothing to dial with: open_client() over a bare transport
                return
            self._handle_events(core.detach(self._clock()))
            self._detached()
        elif self._reconnect is not None and self._is_client and core.established:
            self._start_reconnecting(error)
        else:
            self._terminate(error)

    def _on_terminated(self, event: ConnectionTerminated) -> None:
        """reconnect=: the peer closing an established connection, or its silence (K3), is a loss
        like any other; the rest (a refused SETUP, our own violation) ends the connection."""
        if (
            self._reconnect is not None
            and self._is_client
            and self._error is None
            and self._core.established
            and event.cause in (TerminationCause.PEER_CLOSED, TerminationCause.TIMEOUT)
        ):
            self._start_reconnecting(termination_error(event))
            return
        super()._on_terminated(event)

    def _on_detached(self, event: SessionDetached) -> None:
        """K3 on a resumable session: the core detached itself; drop the silent transport."""
        self._detached()

    def _detached(self) -> None:
        self._drop_transport()
        self._set_state(ConnectionState.DETACHED)
        self._wake_timer()  # the next deadline is now the end of the session

    def _on_resumed(self, event: SessionResumed) -> None:
        self._on_keepalive(event)
        self._set_state(ConnectionState.CONNECTED)
        self._wake_timer()
        self._wake_writer()

    def _start_reconnecting(self, error: ConnectionClosedError) -> None:
        """reconnect=: fail what was live (the next connection knows nothing of it) and redial."""
        self._drop_transport()
        owners = list(self._streams.values())
        self._streams.clear()
        for owner in owners:
            owner.on_connection_closed(error)
        self._core.close()
        self._established = anyio.Event()
        self._set_state(ConnectionState.RECONNECTING)

    # --- the next transport ---------------------------------------------------------------------

    async def _next_transport(self) -> Transport | None:
        if not self._is_client or self._redial is None:
            return None  # a server session waits for take_over(); the timer ends it
        backoff = self._resume.retry if self._resume is not None else self._reconnect
        assert backoff is not None
        attempt = self._attempt_resume if self._resume is not None else self._attempt_reconnect
        self._redial_scope = anyio.CancelScope()
        with self._redial_scope:
            for delay in backoff.delays(random.random):
                await anyio.sleep(delay)
                transport = await attempt()
                if transport is not None:
                    return transport
                if self._error is not None:
                    return None
            attempts = backoff.max_attempts
            if self._resume is not None:
                self._terminate(RejectedResumeError(f"the session was not resumed after {attempts} attempts"))
            else:
                self._terminate(ConnectionLostError(f"no new connection after {attempts} attempts"))
        return None

    async def _dial(self) -> Transport | None:
        assert self._redial is not None
        try:
            with anyio.fail_after(self._redial_timeout):
                return await self._redial()
        except (RSocketError, OSError, TimeoutError):
            return None

    async def _attempt_resume(self) -> Transport | None:
        """Dial, send RESUME and read the answer (R4); the transport to go on with, if resumed."""
        transport = await self._dial()
        if transport is None:
            return None
        core = self._core
        try:
            with anyio.fail_after(self._redial_timeout):
                await transport.send([core.resume_frame()])
                frames = await transport.receive()
        except (RSocketError, OSError, TimeoutError):
            with anyio.CancelScope(shield=True):
                await transport.aclose()
            if self._error is None:
                core.detach(self._clock())  # the attempt failed: back to waiting
            return None
        self._receive(frames)  # RESUME_OK and the server's replay, or the refusal that ends us
        if self._error is not None or core.detached:
            with anyio.CancelScope(shield=True):
                await transport.aclose()
            return None
        return transport

    async def _attempt_reconnect(self) -> Transport | None:
        """Dial and start a new connection with a new SETUP on a fresh core."""
        transport = await self._dial()
        if transport is None:
            return None
        core = ProtocolConnection(client=True, config=protocol_config(self._options))
        core.initiate(self._clock(), self._setup.to_frame())
        self._core = core
        self._core_send_next = core.send_next
        self._set_state(ConnectionState.CONNECTED)
        self._wake_timer()
        return transport

    # --- server: a RESUME for this session ---------------------------------------------------------

    async def take_over(
        self, transport: Transport, request: ResumeReceived, initial_frames: list[bytes]
    ) -> None:
        """Server: continue this session on ``transport``, whose first frame was RESUME.

        Returns when that transport is lost or the session ends; the transport is closed either
        way. A session still attached to an older transport (its loss not yet noticed) leaves it.
        When the positions cannot be met, ERROR[REJECTED_RESUME] goes out on ``transport`` and the
        session ends (R5, R7).
        """
        if self._error is not None:
            return
        if self._state is ConnectionState.CONNECTED:
            self._drop_transport()
        events = self._core.accept_resume(
            request.last_received_server_position, request.first_available_client_position, self._clock()
        )
        self._handle_events(events)
        if self._error is not None:
            try:
                with anyio.move_on_after(2, shield=True):
                    await transport.send(self._core.data_to_send())
            except ConnectionClosedError:
                pass
            return
        await self._run_transport(transport, initial_frames)

    # --- closing ---------------------------------------------------------------------------------

    def _say_goodbye(self) -> None:
        """A resumable session closed on purpose tells the peer, so it does not keep the session."""
        core = self._core
        if core.resumable and not core.detached and not core.closed:
            core.close(ErrorCode.CONNECTION_CLOSE, "session closed")

    def _terminate(self, error: ConnectionClosedError) -> None:
        if self._error is not None:
            return
        super()._terminate(error)
        self._redial_scope.cancel()
        self._set_state(ConnectionState.CLOSED)
