"""The processing clock: 16 kHz mono, 10 ms frames, positions counted in samples."""

from __future__ import annotations

import numpy as np

RATE_HZ = 16000
FRAME_MS = 10
FRAME_SAMPLES = RATE_HZ * FRAME_MS // 1000


def samples_to_ms(samples: float) -> float:
    return samples * 1000.0 / RATE_HZ


class Framer:
    """Cuts a stream of arbitrary chunks into whole 10 ms frames; the remainder waits
    for the next chunk (bounded by one frame)."""

    def __init__(self, frame_samples: int = FRAME_SAMPLES) -> None:
        self.frame_samples = frame_samples
        self._rest = np.zeros(0, dtype=np.float32)

    def push(self, x: np.ndarray) -> list[np.ndarray]:
        x = np.asarray(x, dtype=np.float32)
        buf = np.concatenate((self._rest, x)) if len(self._rest) else x
        n = len(buf) // self.frame_samples
        frames = [buf[i * self.frame_samples : (i + 1) * self.frame_samples] for i in range(n)]
        self._rest = np.array(buf[n * self.frame_samples :], dtype=np.float32)
        return frames
