"""What leaves the device: 16 kHz frames as the API's 24 kHz PCM16, base64-encoded."""

from __future__ import annotations

import base64

import numpy as np

from .frames import RATE_HZ
from .resample import StreamingResampler
from .wavio import to_pcm16

API_RATE_HZ = 24000


class UploadEncoder:
    """One per turn: the resampler's group delay is trimmed at the start and flushed at
    the end, so a turn of N ms becomes exactly N ms of 24 kHz audio, aligned."""

    def __init__(self) -> None:
        self._rs = StreamingResampler(RATE_HZ, API_RATE_HZ)
        self._skip = round(self._rs.delay_out_samples)
        self._in = 0
        self._out = 0

    def start(self) -> None:
        self._rs.reset()
        self._skip = round(self._rs.delay_out_samples)
        self._in = 0
        self._out = 0

    def _emit(self, y: np.ndarray, limit: int | None = None) -> bytes:
        if self._skip:
            cut = min(self._skip, len(y))
            y = y[cut:]
            self._skip -= cut
        if limit is not None:
            y = y[: max(0, limit - self._out)]
        self._out += len(y)
        return to_pcm16(y).tobytes()

    def encode(self, frame: np.ndarray) -> bytes:
        """PCM16 little-endian bytes at 24 kHz for this 16 kHz chunk (delayed by the filter)."""
        self._in += len(frame)
        return self._emit(self._rs.process(frame))

    def finish(self) -> bytes:
        want = self._in * API_RATE_HZ // RATE_HZ
        return self._emit(self._rs.flush(), limit=want)


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode("ascii")
