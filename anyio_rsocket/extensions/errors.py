"""The error every metadata decoder raises for malformed input."""

from __future__ import annotations


class MetadataDecodeError(ValueError):
    """Metadata bytes do not follow the extension's format (truncated, overrunning, bad text, ...).

    Decoders raise only this for malformed input, never ``IndexError`` or ``UnicodeDecodeError``, so a
    responder can turn any of them into one ERROR[INVALID].
    """
