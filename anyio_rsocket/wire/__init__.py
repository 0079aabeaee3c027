"""Layer 1, the wire: RSocket frames and their codec, length-prefix framing, fragmentation, payloads,
lease values and the error codes. Pure: no I/O, no event loop, no clock.

Above it: :mod:`anyio_rsocket.protocol` (the sans-IO core), :mod:`anyio_rsocket.transports`,
:mod:`anyio_rsocket.peer` (the AnyIO driver and its entry points), then the conveniences.
"""
