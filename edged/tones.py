"""Counting the prominent partials of a frame: a chime or a beep is not a voice.

Silero takes some synthetic chimes for speech. On the development corpus the
freedesktop "service-login" sound (three notes with a wobbling pitch, like a
phone's or a computer's notification) started a turn each time it played,
7 billed turns in 20 minutes. Over 32 ms its spectrum holds one or two partials
in nearly every frame (98 % of the frames Silero triggered on), where a voice
holds a comb of harmonics under its formants: in four of the corpus's speech
files, 8-12 % of the frames Silero triggered on held two or fewer.

32 ms (31 Hz bins) does not resolve the harmonics of a deep voice, though:
synthetic vowels at 70-90 Hz showed one or two partials there in up to 62 %
of their frames. 64 ms resolves them (10 or more in every frame), while the
chime still shows at most three there in 97 % of its frames (its weak
harmonics resolve too). So a frame is a tone
only if both windows say so; the long count is taken only when the short one
has said it, so it costs nothing on most of a voice's frames. On three
corpora at four alignments each (about 2,700 utterances), no utterance
changed but for one split that no longer was; the seed-11 chime's 7 turns
went, and one false turn in the speech files.

A frame with no prominent partial at all (a fricative, a noise) is not a tone
by itself (see `ToneEar`).
"""

from __future__ import annotations

import numpy as np

from .fastfft import rfft
from .frames import RATE_HZ

WINDOW_SAMPLES = 512  # 32 ms: resolves the harmonics of a voice from about 100 Hz (31 Hz bins)
LONG_WINDOW_SAMPLES = 1024  # 64 ms: down to about 70 Hz (16 Hz bins)
LONG_MAX_PARTIALS = 3  # a tone shows at most this many in the long window
LOW_HZ, HIGH_HZ = 150.0, 4000.0  # where a voice's harmonics and formants stand out
PROMINENCE_DB = 10.0  # a partial stands this far over the lowest bin within REACH_BINS on each side
# each side: past the valley before the next harmonic of the lowest voice each window resolves
# (half-way to it is 1.6 bins at 100 Hz in 32 ms, 2.2 bins at 70 Hz in 64 ms)
REACH_BINS = 3
RANGE_DB = 30.0  # partials this far below the strongest one in the band are not counted

_PROMINENCE = 10.0 ** (PROMINENCE_DB / 10.0)
_RANGE = 10.0 ** (-RANGE_DB / 10.0)
_FLOOR = 1e-12  # digital silence holds no partial


class _Spectrum:
    """What a partial count of one window length needs, computed once."""

    def __init__(self, samples: int) -> None:
        self.hann = np.hanning(samples).astype(np.float32)
        freqs = np.fft.rfftfreq(samples, 1.0 / RATE_HZ)
        self.lo = int(np.searchsorted(freqs, LOW_HZ))
        self.hi = int(np.searchsorted(freqs, HIGH_HZ))


_SPECTRA = {n: _Spectrum(n) for n in (WINDOW_SAMPLES, LONG_WINDOW_SAMPLES)}


def partial_count(window: np.ndarray) -> int:
    """Prominent spectral peaks between LOW_HZ and HIGH_HZ of a window of WINDOW_SAMPLES or
    LONG_WINDOW_SAMPLES."""
    return int(np.count_nonzero(partial_mask(window)))


def partial_mask(window: np.ndarray) -> np.ndarray:
    """Which bins between LOW_HZ and HIGH_HZ of a window of WINDOW_SAMPLES or
    LONG_WINDOW_SAMPLES hold a prominent spectral peak. Compared as powers, not dB: the
    same verdicts without a logarithm per bin."""
    sp = _SPECTRA.get(len(window))
    if sp is None:
        raise ValueError(
            f"a partial count takes {WINDOW_SAMPLES} or {LONG_WINDOW_SAMPLES} samples, not {len(window)}"
        )
    r = REACH_BINS
    spec = rfft(window.astype(np.float32, copy=False) * sp.hann)[sp.lo - r : sp.hi + r]
    power = spec.real * spec.real + spec.imag * spec.imag + _FLOOR
    n = len(power) - 2 * r
    centre = power[r : r + n]
    left = power[r - 1 : r - 1 + n]
    right = power[r + 1 : r + 1 + n]
    low_left, low_right = left, right
    for k in range(2, r + 1):
        low_left = np.minimum(low_left, power[r - k : r - k + n])
        low_right = np.minimum(low_right, power[r + k : r + k + n])
    return (
        (centre > left)
        & (centre >= right)
        & (centre >= _PROMINENCE * np.maximum(low_left, low_right))
        & (centre >= _RANGE * centre.max())
    )


class ToneEar:
    """Keeps the latest LONG_WINDOW_SAMPLES of the room and says whether they sound like a
    tone: 1 to `max_partials` partials over 32 ms and at most LONG_MAX_PARTIALS over 64 ms.
    As a note changes or fades, a chime's spectrum holds no prominent partial for a frame
    or two; such a frame counts as the tone it is part of when most of the recent frames
    asked about were tonal, and not otherwise (a fricative, or a whisper, which has no
    harmonics at all). Counted only when asked, so only on frames where the second stage
    would start a turn: a voice costs about 10 µs a frame, a quiet room nothing. (Once per
    32 ms chunk of the second stage's is not enough: a turn starts on three trigger frames
    in ten, and one chunk's count, taken at a note change, let a chime through.)

    `history_samples` keeps more of the room, for the held-notes check (`music.py`), which
    reads it from here rather than keeping a second copy of the same audio."""

    RECENT_WEIGHT = 0.2  # each frame asked about moves the recent tonal share this much

    def __init__(self, max_partials: int, history_samples: int = LONG_WINDOW_SAMPLES) -> None:
        self.max_partials = max_partials
        # the latest samples of the room, oldest first
        self.window = np.zeros(max(history_samples, LONG_WINDOW_SAMPLES), dtype=np.float32)
        self.frames = 0  # frames pushed
        self.recent_share = 0.0  # of the frames asked about lately, the share that were tonal

    def push(self, frame: np.ndarray) -> None:
        size = len(self.window)
        n = min(len(frame), size)
        self.window[: size - n] = self.window[n:]
        self.window[size - n :] = frame[len(frame) - n :]
        self.frames += 1

    def tonal(self) -> bool:
        if not self.max_partials:
            return False
        count = partial_count(self.window[-WINDOW_SAMPLES:])
        long_window = self.window[-LONG_WINDOW_SAMPLES:]
        tone = 1 <= count <= self.max_partials and partial_count(long_window) <= LONG_MAX_PARTIALS
        verdict = tone or (count == 0 and self.recent_share >= 0.5)
        self.recent_share += self.RECENT_WEIGHT * (tone - self.recent_share)
        return verdict
