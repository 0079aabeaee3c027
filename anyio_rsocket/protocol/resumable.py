"""The resumption layer of the core (checklist section 14): detach, RESUME, RESUME_OK.

Between the inbound layer (:mod:`.inbound`) and the public API (:mod:`.connection`). The pieces
every frame passes through (positions, the store of sent frames, KEEPALIVE positions) are in
:mod:`.core` and :mod:`.inbound`; this layer is what a driver calls when a transport is lost and
when a new one arrives.
"""

from __future__ import annotations

from ..wire.errors import ErrorCode
from ..wire.frames import ErrorFrame, ResumeFrame, ResumeOkFrame, encode_frame
from .core import Phase
from .errors import LocalProtocolError
from .events import Event, TerminationCause
from .inbound import InboundCore
from .resumption import decide_resume


class ResumableCore(InboundCore):
    """Received frames, plus what a session that outlives its transport needs."""

    def detach(self, now: float) -> list[Event]:
        """A resumable session lost its transport: keep every stream and wait to be resumed.

        Frames queued and not yet written are dropped from the outbox (the store keeps the
        resumable ones for the replay, R6); local intents keep working and their frames wait in
        the store. Keepalive timers stop and :meth:`next_deadline` becomes the end of the session,
        ``session_duration`` after the first detach. Detaching again (a resume attempt failed)
        keeps that deadline.
        """
        if self._store is None:
            raise LocalProtocolError("only a resumable session can be detached")
        if self._phase is not Phase.OPEN:
            return self._take_events()
        self._resuming = False
        if self._session_deadline is None:
            self._session_deadline = now + self.config.session_duration
        self._outbox = []
        self.bytes_to_send = 0
        self._frame_buffer = None  # a partial frame of the old transport is replayed whole
        self._keepalive.stop()
        self._position_asked = False
        return self._take_events()

    def resume_frame(self) -> bytes:
        """Client: the RESUME to send first, alone, on a new transport (R4).

        Until RESUME_OK arrives (fed as usual to ``receive_frames``), nothing else may be sent.
        """
        if not self._client or self._store is None or self._resume_token is None:
            raise LocalProtocolError("only a resumable client sends RESUME")
        if self._session_deadline is None:
            raise LocalProtocolError("resume_frame() needs a detached session: call detach() first")
        self._resuming = True
        return encode_frame(
            ResumeFrame(self._resume_token, self._received_position, self._store.first_available)
        )

    def accept_resume(
        self, last_received_server_position: int, first_available_client_position: int, now: float
    ) -> list[Event]:
        """Server: continue this session on a new transport whose RESUME reported these positions.

        On success (R5) the outbox holds RESUME_OK and then every frame the client has not
        received (R6), and SessionResumed is returned; the driver writes them to the new
        transport. When the positions cannot be met the outbox holds ERROR[REJECTED_RESUME] and
        the session ends (ConnectionTerminated, cause RESUME_REJECTED): the client will not retry
        (R7). A session still attached to its old transport is detached first.
        """
        if self._client or self._store is None:
            raise LocalProtocolError("only a resumable server session accepts RESUME")
        if self._phase is not Phase.OPEN:
            return self._take_events()
        self.detach(now)
        self._now = now
        decision = decide_resume(
            self._store,
            self._received_position,
            last_received_server_position,
            first_available_client_position,
        )
        if decision.frames is None:
            self._queue_frame(ErrorFrame(0, ErrorCode.REJECTED_RESUME, decision.reason.encode()))
            self._terminate(ErrorCode.REJECTED_RESUME, decision.reason, TerminationCause.RESUME_REJECTED)
            return self._take_events()
        self._confirm(last_received_server_position)
        self._outbox = [encode_frame(ResumeOkFrame(self._received_position))]
        self.bytes_to_send = len(self._outbox[0])
        self._reattach(decision.frames, now)
        return self._take_events()

    def reject_resume(self, message: str) -> list[Event]:
        """Server: refuse the RESUME this connection opened with (unknown or expired session, R5)."""
        if self._phase is not Phase.RESUME_RECEIVED:
            raise LocalProtocolError("reject_resume() needs a connection that opened with RESUME")
        self._queue_frame(ErrorFrame(0, ErrorCode.REJECTED_RESUME, message.encode("utf-8", "replace")))
        self._terminate(ErrorCode.REJECTED_RESUME, message, TerminationCause.LOCAL)
        return self._take_events()
