"""Counting the prominent partials of a frame: a chime or a beep is not a voice.

Silero takes some synthetic chimes for speech. On the development corpus the
freedesktop "service-login" sound (three notes with a wobbling pitch, like a
phone's or a computer's notification) started a turn each time it played,
7 billed turns in 20 minutes. Its spectrum holds one or two partials in nearly
every frame (98 % of the frames Silero triggered on), where a voice holds a
comb of harmonics under its formants: in four of the corpus's speech files,
8-12 % of the frames Silero triggered on held two or fewer, and a turn still
starts on the frames around them: on three corpora at four alignments each
(about 2,700 utterances), one utterance at 0 dB went from clipped to missed,
one other was clipped, and the speech files gave 92 false turns instead of 100.
A frame with no prominent partial at all (a fricative, a noise) is not a tone
by itself (see `ToneEar`).
"""

from __future__ import annotations

import numpy as np

from .fastfft import rfft
from .frames import RATE_HZ

WINDOW_SAMPLES = 512  # 32 ms: resolves the harmonics of a 100 Hz voice (31 Hz bins)
LOW_HZ, HIGH_HZ = 150.0, 4000.0  # where a voice's harmonics and formants stand out
PROMINENCE_DB = 10.0  # a partial stands this far over the lowest bin within REACH_BINS on each side
REACH_BINS = 3  # ±94 Hz: wide enough to reach the valley between a low voice's harmonics
RANGE_DB = 30.0  # partials this far below the strongest one in the band are not counted

_HANN = np.hanning(WINDOW_SAMPLES).astype(np.float32)
_PROMINENCE = 10.0 ** (PROMINENCE_DB / 10.0)
_RANGE = 10.0 ** (-RANGE_DB / 10.0)
_FLOOR = 1e-12  # digital silence holds no partial
_FREQS = np.fft.rfftfreq(WINDOW_SAMPLES, 1.0 / RATE_HZ)
_LO = int(np.searchsorted(_FREQS, LOW_HZ))
_HI = int(np.searchsorted(_FREQS, HIGH_HZ))


def partial_count(window: np.ndarray) -> int:
    """Prominent spectral peaks between LOW_HZ and HIGH_HZ of the latest WINDOW_SAMPLES.
    Compared as powers, not dB: the same verdicts without a logarithm per bin."""
    if len(window) != WINDOW_SAMPLES:
        raise ValueError(f"a partial count takes {WINDOW_SAMPLES} samples, not {len(window)}")
    r = REACH_BINS
    spec = rfft(window.astype(np.float32, copy=False) * _HANN)[_LO - r : _HI + r]
    power = spec.real * spec.real + spec.imag * spec.imag + _FLOOR
    n = len(power) - 2 * r
    centre = power[r : r + n]
    left = power[r - 1 : r - 1 + n]
    right = power[r + 1 : r + 1 + n]
    low_left, low_right = left, right
    for k in range(2, r + 1):
        low_left = np.minimum(low_left, power[r - k : r - k + n])
        low_right = np.minimum(low_right, power[r + k : r + k + n])
    counted = (
        (centre > left)
        & (centre >= right)
        & (centre >= _PROMINENCE * np.maximum(low_left, low_right))
        & (centre >= _RANGE * centre.max())
    )
    return int(np.count_nonzero(counted))


class ToneEar:
    """Keeps the latest WINDOW_SAMPLES of the room and says whether they sound like a tone:
    1 to `max_partials` partials. As a note changes or fades, a chime's spectrum holds no
    prominent partial for a frame or two; such a frame counts as the tone it is part of
    when most of the recent frames asked about were tonal, and not otherwise (a fricative,
    or a whisper, which has no harmonics at all). Counted only when asked, so only on
    frames where the second stage would start a turn: a voice costs about 10 µs a frame, a
    quiet room nothing. (Once per 32 ms chunk of the second stage's is not enough: a turn
    starts on three trigger frames in ten, and one chunk's count, taken at a note change,
    let a chime through.)"""

    RECENT_WEIGHT = 0.2  # each frame asked about moves the recent tonal share this much

    def __init__(self, max_partials: int) -> None:
        self.max_partials = max_partials
        self.window = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
        self.recent_share = 0.0  # of the frames asked about lately, the share that were tonal

    def push(self, frame: np.ndarray) -> None:
        n = min(len(frame), WINDOW_SAMPLES)
        self.window[: WINDOW_SAMPLES - n] = self.window[n:]
        self.window[WINDOW_SAMPLES - n :] = frame[len(frame) - n :]

    def tonal(self) -> bool:
        if not self.max_partials:
            return False
        count = partial_count(self.window)
        tone = 1 <= count <= self.max_partials
        verdict = tone or (count == 0 and self.recent_share >= 0.5)
        self.recent_share += self.RECENT_WEIGHT * (tone - self.recent_share)
        return verdict
