"""Held notes: music is not a voice, though the denoised hearing may take it for one.

Through the noise suppressor, Silero reads some music as speech: on the seed-13
development corpus, one alignment of its noise-only music file started 7 turns
in 5 minutes, every one on the denoised hearing alone (the plain hearing read
0.00-0.03 there). The tone check does not stop them: music holds a comb of
partials, as a voice does. What tells them apart is how long the partials
stay put. An instrument holds a note, so most of a frame's prominent partials
are still in the same bin 90 ms later; a voice's pitch glides and its vowels
change, so its harmonics move. At the frames where the denoised hearing alone
would start a turn (corpora of seeds 7 and 13, one alignment), the share of
partials found again within one bin 100 ms earlier (the check takes 90 ms, on
its 30 ms grid), averaged over 300 ms, had a median of 0.21 on utterances at
0 dB SNR (0.17 at 5 dB), and of 0.57-0.61 on music alone and on the music
around utterances.

So such a turn is not started where that share reaches `held_notes_share`
(0.4). On the corpora of seeds 7, 11 and 13 at four alignments each, the
music-only files' false turns went from 0, 1 and 7 in 20 minutes to 0, 0 and
2. It costs 5 of some 2,700 utterances (3 corpora, 4 alignments): each spoken
over music through a reverberant room (four at 0 dB SNR, one at 10 dB), 4 now
missed and 1 clipped.

Counted only when asked, so only where the denoised hearing would start a
turn: a quiet room or the plain hearing's turns cost nothing. The partials are
found on a grid of `HOP_FRAMES`, so a run of such frames costs one FFT every
third frame, and the first of a run at most `GRID_WINDOWS`.
"""

from __future__ import annotations

import numpy as np

from .frames import FRAME_SAMPLES
from .tones import LONG_WINDOW_SAMPLES, ToneEar, partial_mask

HOP_FRAMES = 3  # partials are found in 64 ms windows ending every 30 ms ...
LAG_FRAMES = 9  # ... compared with the window 90 ms before ...
SPAN_FRAMES = 30  # ... over the last 300 ms
GRID_WINDOWS = (SPAN_FRAMES + LAG_FRAMES) // HOP_FRAMES + 1
HISTORY_SAMPLES = LONG_WINDOW_SAMPLES + (SPAN_FRAMES + LAG_FRAMES + HOP_FRAMES) * FRAME_SAMPLES


class HeldNotes:
    """Says how much of the room's partials were held, in the audio the tone check keeps
    (`ToneEar`, built with at least HISTORY_SAMPLES): one copy of the room for both."""

    def __init__(self, ear: ToneEar) -> None:
        if len(ear.window) < HISTORY_SAMPLES:
            raise ValueError(f"the held-notes check needs {HISTORY_SAMPLES} samples of the room")
        self._ear = ear
        # grid frame -> partials of the window ending there, and the same widened by a bin
        self._masks: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _partials(self, at: int) -> tuple[np.ndarray, np.ndarray]:
        found = self._masks.get(at)
        if found is None:
            history = self._ear.window
            end = len(history) - (self._ear.frames - at) * FRAME_SAMPLES
            peaks = partial_mask(history[end - LONG_WINDOW_SAMPLES : end])
            near = peaks.copy()
            near[1:] |= peaks[:-1]
            near[:-1] |= peaks[1:]
            self._masks[at] = found = (peaks, near)
        return found

    def held_share(self) -> float:
        """Of the partials of the last 300 ms, the share already there (within a bin) 90 ms
        before: 0 to 1, and 0 without partials or before the history is full."""
        frames = self._ear.frames
        if frames * FRAME_SAMPLES < HISTORY_SAMPLES:
            return 0.0
        grid = frames - frames % HOP_FRAMES
        oldest = grid - (GRID_WINDOWS - 1) * HOP_FRAMES
        for at in [k for k in self._masks if k < oldest]:
            del self._masks[at]
        shares = []
        for at in range(grid, grid - SPAN_FRAMES, -HOP_FRAMES):
            peaks, _ = self._partials(at)
            count = np.count_nonzero(peaks)
            if count:
                _, before = self._partials(at - LAG_FRAMES)
                shares.append(np.count_nonzero(peaks & before) / count)
        return float(np.mean(shares)) if shares else 0.0
