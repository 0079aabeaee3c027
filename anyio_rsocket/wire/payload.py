"""The unit of data every interaction carries."""

from __future__ import annotations


class Payload:
    """Data plus optional metadata.

    ``metadata`` is ``None`` when absent and ``b""`` when present but empty; the two stay distinct on
    the wire (checklist MD3). Payloads are immutable by convention and compare by value. Data and
    metadata must be bytes-like: ``Payload("text")`` raises ``TypeError``.
    """

    __slots__ = ("data", "metadata")

    data: bytes
    metadata: bytes | None

    def __init__(self, data: bytes = b"", metadata: bytes | None = None) -> None:
        # Checked here, where the mistake is made, rather than later when the frame is encoded.
        if data.__class__ is not bytes and not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"Payload data must be bytes, not {type(data).__name__}")
        if (
            metadata is not None
            and metadata.__class__ is not bytes
            and not isinstance(metadata, (bytes, bytearray, memoryview))
        ):
            raise TypeError(f"Payload metadata must be bytes or None, not {type(metadata).__name__}")
        self.data = data
        self.metadata = metadata

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Payload):
            return NotImplemented
        return self.data == other.data and self.metadata == other.metadata

    def __hash__(self) -> int:
        return hash((self.data, self.metadata))

    def __repr__(self) -> str:
        if self.metadata is None:
            return f"Payload({self.data!r})"
        return f"Payload({self.data!r}, {self.metadata!r})"


class NoValue(Payload):
    """The type of :data:`NO_VALUE`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_VALUE"


#: What ``request_response`` returns when the responder completed without a value (its handler
#: returned ``None``; on the wire, a PAYLOAD with C and without N). It is an empty payload, equal
#: to ``Payload()``, so code that ignores the difference keeps working; test for it with ``is``.
NO_VALUE: Payload = NoValue()
