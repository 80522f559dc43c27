"""The echo path as a least-squares fit over the last seconds, for the adaptive filter to start from.

The adaptive filter (`edged.aec`) takes its small normalised steps on speech, whose spectrum
is steep and changes every syllable: on benchmarks/echo.py's rooms it cancelled 11-15 dB after
2-4 s of playback and was still gaining at 12 s. Yet a least-squares fit of the same taps, over
those 10 s, cancels 26-31 dB. And the loudspeaker's distortion, which no linear filter removes,
caps the fit at 29-31 dB in the close rooms: with the speaker's saturation modelled as a cubic
branch (x³ through its own short filter: a Hammerstein model), the fit cancels 38-45 dB there
(offline, with the cubic branch barely regularised; see CUBIC_REGULARISATION).

So this keeps running cross-spectra of the reference, its cube and the microphone over long
windows (1 s, Hann, a new one every `HOP_FRAMES`; older ones fade over `MEMORY_S`), solves
the 2 x 2 system per bin, and truncates the responses to the filter's span (the linear one) and
to `CUBIC_PARTITIONS` frames (the distortion rides on the direct path and the first
reflections). A fit is judged on the hop heard after it was made, which it has not seen: a fit
from a few windows matches its own data almost exactly and predicts nothing. Only a fit that
cancels clearly better there than both the output filter and the adaptive one is offered; the
canceller's copy rule then decides, as for its own filter.

A user talking over the reply is not echo: their voice in the cross-spectra averages out only
slowly, so the canceller stops feeding the fit while its output filter cancels far worse than
usual. Cost: a few long FFTs every 26 frames (about 1 ms here), none in between.
"""

from __future__ import annotations

import numpy as np

WINDOW = 16384  # samples per fit window (about 1 s at 16 kHz): 4 x the filter's span
HOP_FRAMES = 26  # frames between two windows (a quarter window)
MEMORY_S = 4.0  # the cross-spectra forget over this long
REGULARISATION = 1e-4  # per branch, relative to its mean power over the bins
# the distortion's branch: much stronger, because a cubic filter fitted on quiet speech, where
# x³ is tiny, is barely determined and blew up when loud speech followed (a fit at 1e-4 then
# cancelled 8 dB less than no fit at all for a second; at 1 it never did worse in that test)
CUBIC_REGULARISATION = 1.0
CUBIC_PARTITIONS = 4  # frames of the distortion's response that are modelled (40 ms)
OFFER_RATIO = 0.7  # offered only below this share of the better filter's error on fresh audio
MIN_WINDOWS = 2  # windows in the cross-spectra before a fit is made


class BlockEstimate:
    """Feed it every frame the filter runs (`push`); when a fit has proven itself on fresh
    audio, `push` returns its time-domain taps: (linear taps, cubic taps)."""

    def __init__(self, frame_samples: int, linear_taps: int, rate_hz: int = 16000) -> None:
        self.n = n = frame_samples
        self.linear_taps = linear_taps
        self.cubic_taps = min(linear_taps, CUBIC_PARTITIONS * n)
        self._ring = np.zeros((2, WINDOW), dtype=np.float32)  # aligned reference, microphone
        self._at = 0  # next write position in the ring
        self._window = np.hanning(WINDOW).astype(np.float32)
        bins = WINDOW // 2 + 1
        self._auto = np.zeros((3, bins), dtype=np.complex128)  # x·x, x·x³, x³·x³
        self._cross = np.zeros((2, bins), dtype=np.complex128)  # x·d, x³·d
        self._fade = float(np.exp(-HOP_FRAMES * n / rate_hz / MEMORY_S))
        self._frames = 0
        self._windows = 0
        self._heard = np.zeros(3)  # this hop's energies: microphone, output error, background error
        self._playing = 0
        self._pending: tuple[np.ndarray, np.ndarray] | None = None  # taps, and their spectra
        # the echo the fit finds beyond the filter's span (the room's tail), as a share of
        # what lies within: the filter cannot cancel it, so the speech gate must expect it
        self.tail_share = 0.0

    def reset(self) -> None:
        """The path moved: what was learnt of it misleads."""
        self._auto[:] = 0
        self._cross[:] = 0
        self._windows = 0
        self._pending = None

    def push(
        self, x: np.ndarray, d: np.ndarray, errors: np.ndarray, playing: bool, learn: bool
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """One frame of the aligned reference `x`, the microphone `d` and both filters' errors
        (rows: background, output). `learn`: the frame may enter the fit (no one talks over it)."""
        n, at = self.n, self._at
        first = min(n, WINDOW - at)  # the window is not a whole number of frames: wrap
        self._ring[0, at : at + first] = x[:first]
        self._ring[1, at : at + first] = d[:first]
        self._ring[0, : n - first] = x[first:]
        self._ring[1, : n - first] = d[first:]
        self._at = (at + n) % WINDOW
        self._frames += 1
        heard = self._heard
        heard[0] += float(d @ d)
        heard[1] += float(errors[1] @ errors[1])
        heard[2] += float(errors[0] @ errors[0])
        self._playing += playing and learn
        if self._frames % HOP_FRAMES or self._frames * n < WINDOW:
            return None
        mic, out_err, bg_err = heard
        heard[:] = 0
        playing_frames, self._playing = self._playing, 0
        x_win, d_win = (np.roll(row, -self._at) for row in self._ring)  # oldest first
        offer = None
        cube = x_win**3
        if self._pending is not None:
            offer = self._judge(x_win, cube, d_win, min(out_err, bg_err) / (mic + 1e-12))
        if playing_frames >= HOP_FRAMES // 2:
            self._learn(x_win, cube, d_win)
        return offer

    def _judge(
        self, x: np.ndarray, cube: np.ndarray, d: np.ndarray, best_ratio: float
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The pending fit's error on the last hop, which it was made before."""
        taps, spectra = self._pending  # type: ignore[misc]
        self._pending = None
        hop = HOP_FRAMES * self.n
        spec = np.fft.rfft(np.stack([x, cube]))
        echo = np.fft.irfft(spectra[0] * spec[0] + spectra[1] * spec[1], WINDOW)[-hop:]
        heard = d[-hop:]
        ratio = float(np.sum((heard - echo) ** 2)) / (float(heard @ heard) + 1e-12)
        if ratio < OFFER_RATIO * best_ratio:
            return taps[0, : self.linear_taps], taps[1, : self.cubic_taps]
        return None

    def _learn(self, x: np.ndarray, cube: np.ndarray, d: np.ndarray) -> None:
        w = self._window
        spec = np.fft.rfft(np.stack([w * x, w * cube, w * d]))
        X, X3, D = spec
        auto, cross = self._auto, self._cross
        auto *= self._fade
        cross *= self._fade
        auto[0] += X.real**2 + X.imag**2
        auto[1] += X.conj() * X3
        auto[2] += X3.real**2 + X3.imag**2
        cross[0] += X.conj() * D
        cross[1] += X3.conj() * D
        self._windows += 1
        if self._windows < MIN_WINDOWS:
            return
        s11 = auto[0].real + REGULARISATION * auto[0].real.mean()
        s22 = auto[2].real + CUBIC_REGULARISATION * auto[2].real.mean()
        s12 = auto[1]
        det = s11 * s22 - (s12.real**2 + s12.imag**2)
        h1 = (s22 * cross[0] - s12 * cross[1]) / det
        h3 = (s11 * cross[1] - s12.conj() * cross[0]) / det
        taps = np.fft.irfft(np.stack([h1, h3]), WINDOW)
        inside = float(taps[0, : self.linear_taps] @ taps[0, : self.linear_taps])
        beyond = taps[0, self.linear_taps : WINDOW // 2]  # the later half holds negative lags
        self.tail_share = float(beyond @ beyond) / (inside + 1e-20)
        taps[0, self.linear_taps :] = 0
        taps[1, self.cubic_taps :] = 0
        self._pending = (taps.astype(np.float32), np.fft.rfft(taps))
