"""A server's resumable sessions, by resume token, within its limits."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from ..protocol.policy import Resume
from ..wire.errors import RejectedResumeError
from .session import ConnectionState

if TYPE_CHECKING:
    from .session import SessionDriver

#: Default ``max_detached_sessions``.
DEFAULT_MAX_DETACHED_SESSIONS = 1024


class SessionRegistry:
    """The resumable sessions of one server (a ``serve_*`` call), looked up by resume token.

    At most ``max_detached`` sessions are kept detached at once; when one more detaches, the one
    detached longest ends (its calls raise RejectedResumeError). So what detached sessions hold
    is bounded by ``max_detached`` times ``resume.store_size`` (plus what each had in flight).
    """

    def __init__(self, resume: Resume, max_detached: int = DEFAULT_MAX_DETACHED_SESSIONS) -> None:
        if max_detached < 1:
            raise ValueError("max_detached_sessions must be positive")
        self.resume = resume
        self.max_detached = max_detached
        self._sessions: dict[bytes, SessionDriver] = {}
        self._detached: OrderedDict[bytes, SessionDriver] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def detached_count(self) -> int:
        return len(self._detached)

    def find(self, token: bytes) -> SessionDriver | None:
        return self._sessions.get(token)

    def register(self, token: bytes, session: SessionDriver) -> bool:
        """Track a new session; False when the token already names a live one (R1)."""
        if token in self._sessions:
            return False
        self._sessions[token] = session
        session._state_listener = lambda state: self._on_state(token, session, state)
        return True

    def _on_state(self, token: bytes, session: SessionDriver, state: ConnectionState) -> None:
        if self._sessions.get(token) is not session:
            return
        if state is ConnectionState.CLOSED:
            del self._sessions[token]
            self._detached.pop(token, None)
        elif state is ConnectionState.DETACHED:
            self._detached[token] = session
            while len(self._detached) > self.max_detached:
                _, oldest = self._detached.popitem(last=False)
                oldest._terminate(
                    RejectedResumeError("the server keeps too many detached sessions: this one was dropped")
                )
        else:
            self._detached.pop(token, None)
