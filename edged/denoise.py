"""WebRTC noise suppression for the second stage's second hearing of the room.

Silero VAD misses far-field speech under broadband noise (a running tap,
dishes): on the development corpus it never rose above 0.16 on sentences
spoken 5 dB over a kitchen through a reverberant room, while the same audio
after WebRTC's noise suppressor scored up to 0.94. The suppressor is WebRTC's
own (the `webrtc-noise-gain` wheel, also used by Home Assistant's voice
pipeline), not ours: it tracks the noise spectrum with a speech-presence
model we would otherwise have to write and tune. Only the detector hears its
output; what is uploaded stays untouched, and the service's own noise
reduction sees the original audio.
"""

from __future__ import annotations

import numpy as np

from .frames import FRAME_SAMPLES
from .wavio import to_pcm16


class Denoiser:
    """16 kHz float frames of 10 ms in, the same frames noise-suppressed out."""

    def __init__(self, level: int) -> None:
        from webrtc_noise_gain import AudioProcessor  # imported only when the hearing is on

        if not 1 <= level <= 4:
            raise ValueError(f"noise suppression level must be 1 to 4, not {level}")
        self._ap = AudioProcessor(0, level)  # auto gain off: the detector has its own

    def process(self, frame: np.ndarray) -> np.ndarray:
        """`frame`: float, or already PCM16 (the detector has converted it for webrtcvad)."""
        if len(frame) != FRAME_SAMPLES:
            raise ValueError(f"the suppressor takes {FRAME_SAMPLES}-sample frames, not {len(frame)}")
        pcm = frame if frame.dtype == np.int16 else to_pcm16(frame)
        out = self._ap.Process10ms(pcm.tobytes()).audio
        return np.frombuffer(out, dtype="<i2").astype(np.float32) * np.float32(1 / 32768)
