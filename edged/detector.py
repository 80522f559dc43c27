"""Per-frame speech decision: webrtcvad, gated by level over the tracked noise floor.

webrtcvad alone answers "does this look like speech" and says yes to much
steady noise; the energy gate adds "and is it louder than the room", which is
what a user tunes when the device triggers on the fridge. Both work on the
16 kHz, 10 ms frames of the sample clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import webrtcvad

from .config import DetectorConfig
from .frames import FRAME_MS, RATE_HZ

SILENT_DBFS = -120.0


def level_dbfs(frame: np.ndarray) -> float:
    """Mean power of a float frame (full scale ±1) in dB; a full-scale sine reads -3 dBFS."""
    p = float(np.dot(frame, frame)) / max(len(frame), 1)
    return 10.0 * np.log10(p) if p > 1e-12 else SILENT_DBFS


def to_pcm16(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, -1.0, 32767 / 32768) * 32768.0).astype("<i2")


@dataclass(frozen=True, slots=True)
class Decision:
    level_dbfs: float
    noise_floor_dbfs: float
    vad: bool  # webrtcvad's verdict on the latest complete analysis block
    loud: bool  # level over floor + margin and over the absolute minimum
    speech: bool


class NoiseFloor:
    """Asymmetric level follower: drops quickly to the quiet parts, rises slowly,
    so it sits at the room's floor and speech (brief, loud) barely lifts it."""

    def __init__(self, rise_db_per_s: float, fall_db_per_s: float) -> None:
        self._rise = rise_db_per_s * FRAME_MS / 1000.0
        self._fall = fall_db_per_s * FRAME_MS / 1000.0
        self.value_dbfs: float | None = None

    def update(self, level: float) -> float:
        v = self.value_dbfs
        if v is None:
            v = level
        elif level > v:
            v = min(level, v + self._rise)
        else:
            v = max(level, v - self._fall)
        self.value_dbfs = v
        return v


class SpeechDetector:
    def __init__(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        self._vad = webrtcvad.Vad(cfg.vad_mode)
        self._block_frames = cfg.vad_frame_ms // FRAME_MS
        self._block = np.zeros(self._block_frames * RATE_HZ * FRAME_MS // 1000, dtype="<i2")
        self._filled = 0
        self._vad_state = False
        self._floor = NoiseFloor(cfg.noise_floor_rise_db_per_s, cfg.noise_floor_fall_db_per_s)

    def process(self, frame: np.ndarray) -> Decision:
        """One 10 ms float frame in, one decision out (webrtcvad's verdict is the
        latest complete block's, so it lags by at most vad_frame_ms - 10 ms)."""
        n = len(frame)
        self._block[self._filled * n : (self._filled + 1) * n] = to_pcm16(frame)
        self._filled += 1
        if self._filled == self._block_frames:
            self._vad_state = self._vad.is_speech(self._block.tobytes(), RATE_HZ)
            self._filled = 0
        level = level_dbfs(frame)
        floor = self._floor.update(level)
        cfg = self.cfg
        loud = level >= floor + cfg.energy_margin_db and level >= cfg.min_level_dbfs
        return Decision(level, floor, self._vad_state, loud, self._vad_state and loud)
