"""Echo canceller slot.

The pipeline always calls `process(mic, ref)` with the exact samples the
speaker played when `mic` was captured, so a real canceller drops in without
touching the frame loop. Until it lands this slot passes the microphone through.
"""

from __future__ import annotations

import numpy as np


class PassThrough:
    """Keeps the contract of an echo canceller (16 kHz, 160-sample frames) and changes nothing."""

    def __init__(self, rate_hz: int = 16000, frame_samples: int = 160) -> None:
        self.rate_hz = rate_hz
        self.frame_samples = frame_samples

    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        return mic
