"""SETUP validation (checklist section 5: S1, S2, S7, F2) and the client's default SETUP."""

from __future__ import annotations

from ..wire.errors import ErrorCode, FrameError, SetupError
from ..wire.frames import ResumeFrame, SetupFrame, decode_frame
from .config import ProtocolConfig

#: Data of the KEEPALIVE that confirms SETUP: any echo proves the server accepted it (S4).
SETUP_PROBE = b"anyio-rsocket:setup"


#: RESUME versions we accept: 1.0, and 0.1 as rsocket-js 1.0.0-alpha.3 writes it (fields swapped).
RESUME_VERSIONS = frozenset({(1, 0), (0, 1)})


def validate_setup(raw: bytes, *, resumable: bool = False) -> SetupFrame | ResumeFrame:
    """Check a connection's first frame; raise :class:`SetupError` (with the code to send) if unusable.

    The same rules, in the same order and with the same messages, as the AnyIO server's
    ``_validate_setup``: a malformed frame is INVALID_SETUP (even with the I flag), RESUME is
    REJECTED_RESUME, anything but SETUP on stream 0 is INVALID_SETUP, so are a version other than
    1.0 and a zero keepalive interval or lifetime (F2); a resume token is REJECTED_SETUP (S7).

    With ``resumable`` (the server keeps sessions), a SETUP with a resume token is accepted (R1)
    unless it also asks for leasing (UNSUPPORTED_SETUP: a lease does not survive a resume, R8, and
    we do not combine them), and a RESUME with a token and a known version is returned for the
    driver to match with a session (R4, R5).
    """
    try:
        frame = decode_frame(raw)
    except FrameError as exc:
        raise SetupError(f"malformed SETUP: {exc}") from exc
    if isinstance(frame, ResumeFrame):
        if resumable:
            version = (frame.major_version, frame.minor_version)
            if version not in RESUME_VERSIONS:
                raise SetupError(
                    f"unsupported protocol version {version[0]}.{version[1]} in RESUME",
                    ErrorCode.REJECTED_RESUME,
                )
            if not frame.resume_token:
                raise SetupError("RESUME without a resume token", ErrorCode.REJECTED_RESUME)
            return frame
        raise SetupError("resumption is not supported by this server", ErrorCode.REJECTED_RESUME)
    if not isinstance(frame, SetupFrame):
        raise SetupError(f"the first frame must be SETUP, got {type(frame).__name__}")
    if frame.stream_id != 0:
        raise SetupError(f"SETUP must be sent on stream 0, not {frame.stream_id}")
    if (frame.major_version, frame.minor_version) != (1, 0):
        raise SetupError(
            f"unsupported protocol version {frame.major_version}.{frame.minor_version}; "
            "this server speaks 1.0"
        )
    if frame.keepalive_interval <= 0 or frame.max_lifetime <= 0:
        raise SetupError("keepalive interval and max lifetime must be positive")
    if frame.resume_token is not None:
        if not resumable:
            raise SetupError("resumption is not supported by this server", ErrorCode.REJECTED_SETUP)
        if not frame.resume_token:
            raise SetupError("SETUP asks for resumption with an empty resume token")
        if frame.lease:
            raise SetupError(
                "resumption together with leasing is not supported by this server",
                ErrorCode.UNSUPPORTED_SETUP,
            )
    return frame


def default_setup(config: ProtocolConfig) -> SetupFrame:
    """The SETUP a client sends when its driver does not build one: octet-stream MIME types."""
    return SetupFrame(
        keepalive_interval=max(1, round(config.keepalive_interval * 1000)),
        max_lifetime=max(1, round(config.max_lifetime * 1000)),
        metadata_mime_type="application/octet-stream",
        data_mime_type="application/octet-stream",
        lease=config.lease,
    )
