"""What a client announced in SETUP, as seen by both ends of a connection."""

from __future__ import annotations

from dataclasses import dataclass

from ..wire.frames import SetupFrame
from ..wire.payload import Payload


@dataclass(frozen=True)
class SetupInfo:
    """The parameters of a connection's SETUP frame.

    Times are in seconds. ``payload`` is the setup payload (``None`` when the client sent no data and
    no metadata).
    """

    data_mime_type: str
    metadata_mime_type: str
    keepalive_interval: float
    max_lifetime: float
    payload: Payload | None = None
    lease: bool = False
    resume_token: bytes | None = None
    version: tuple[int, int] = (1, 0)

    @classmethod
    def from_frame(cls, frame: SetupFrame) -> SetupInfo:
        """Build the info a server sees from the SETUP frame it received."""
        payload = None
        if frame.data or frame.metadata is not None:
            payload = Payload(frame.data, frame.metadata)
        return cls(
            data_mime_type=frame.data_mime_type,
            metadata_mime_type=frame.metadata_mime_type,
            keepalive_interval=frame.keepalive_interval / 1000,
            max_lifetime=frame.max_lifetime / 1000,
            payload=payload,
            lease=frame.lease,
            resume_token=frame.resume_token,
            version=(frame.major_version, frame.minor_version),
        )

    def to_frame(self) -> SetupFrame:
        """The SETUP frame a client sends for these parameters."""
        payload = self.payload or Payload()
        return SetupFrame(
            keepalive_interval=max(1, round(self.keepalive_interval * 1000)),
            max_lifetime=max(1, round(self.max_lifetime * 1000)),
            metadata_mime_type=self.metadata_mime_type,
            data_mime_type=self.data_mime_type,
            data=payload.data,
            metadata=payload.metadata,
            major_version=self.version[0],
            minor_version=self.version[1],
            lease=self.lease,
            resume_token=self.resume_token,
        )
