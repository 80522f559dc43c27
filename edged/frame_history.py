"""The last frames of the aligned reference and the microphone, kept once for every part of
the echo canceller that looks back over them (the path's fine realignment, the block fit): one
row copy a frame, and a window is cut out of them only when it is looked at."""

from __future__ import annotations

import numpy as np


class FrameHistory:
    def __init__(self, frames: int, frame_samples: int) -> None:
        self._ring = np.zeros((frames, 2, frame_samples), dtype=np.float32)
        self._at = 0  # next row written

    def push(self, x: np.ndarray, d: np.ndarray) -> None:
        """One frame of the aligned reference `x` and the microphone `d`."""
        at = self._at
        self._ring[at, 0] = x
        self._ring[at, 1] = d
        self._at = at + 1 if at + 1 < len(self._ring) else 0

    def last(self, frames: int) -> np.ndarray:
        """The last `frames` frames, oldest first, as two rows: reference, microphone."""
        size = len(self._ring)
        rows = self._ring[np.arange(self._at - frames, self._at) % size]
        return rows.transpose(1, 0, 2).reshape(2, -1)
