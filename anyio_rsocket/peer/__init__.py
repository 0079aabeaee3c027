"""Layer 4, the peer: the AnyIO driver of the protocol core and everything a program holds.

:class:`~.connection.RSocket` (the driver, :mod:`.driver`), requester and responder objects, the worker
pool, options, and the entry points: clients (:mod:`.client`, :mod:`.websocket`, :mod:`.url`), servers
(:mod:`.server`, :mod:`.asgi`) and test helpers (:mod:`.testing`). It imports only the layers below:
:mod:`anyio_rsocket.wire`, :mod:`anyio_rsocket.protocol` and :mod:`anyio_rsocket.transports`.
"""
