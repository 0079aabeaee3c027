"""Request-stream streams share their unused direction's credit (one zero for all streams).

The requester of a request-stream never sends items and its responder never receives any, so the
core gives each of them one credit object, not two. Nothing may ever change the shared zero.
"""

from __future__ import annotations

import pytest

from anyio_rsocket.frames import PayloadFrame, RequestNFrame, encode_frame
from anyio_rsocket.payload import Payload
from anyio_rsocket.protocol import LocalProtocolError
from anyio_rsocket.protocol.streams import STREAM_REQUESTER_STREAM, STREAM_RESPONDER_STREAM

from .helpers import Pair


def shared_zeros() -> tuple[int, int]:
    return STREAM_REQUESTER_STREAM.send_credit.value, STREAM_RESPONDER_STREAM.recv_credit.value


def test_the_shared_zero_credit_never_changes() -> None:
    pair = Pair()
    stream_id = pair.client.request_stream(Payload(b""), 2)
    pair.pump()
    # A peer granting credit to the requester, or sending items to the responder: ignored (U2, RN7).
    pair.client.receive_frames([encode_frame(RequestNFrame(stream_id, 5))], pair.now)
    pair.server.receive_frames([encode_frame(PayloadFrame(stream_id, b"x", next=True))], pair.now)
    assert shared_zeros() == (0, 0)
    assert pair.client.send_credit(stream_id) == 0 and pair.server.recv_credit(stream_id) == 0
    # Local misuse is refused before any credit is touched.
    with pytest.raises(LocalProtocolError):
        pair.client.send_next(stream_id, Payload(b"x"))
    with pytest.raises(LocalProtocolError):
        pair.server.request_n(stream_id, 3)
    assert shared_zeros() == (0, 0)
    # The direction that is used has credit of its own per stream.
    other = pair.client.request_stream(Payload(b""), 7)
    pair.pump()
    assert pair.server.send_credit(stream_id) == 2 and pair.server.send_credit(other) == 7
    assert pair.server.send_next(stream_id, Payload(b"a"))
    assert pair.server.send_credit(stream_id) == 1 and pair.server.send_credit(other) == 7
    pair.client.request_n(other, 3)
    pair.pump()
    assert pair.client.recv_credit(other) == 10 and pair.client.recv_credit(stream_id) == 1
    assert shared_zeros() == (0, 0)
