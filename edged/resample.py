"""Streaming rational resampler (polyphase FIR).

Devices run at 44.1/48 kHz, the detector at 16 kHz and the API wants 24 kHz.
Chunks arrive in whatever sizes the sound card delivers, so the resampler
keeps its filter history between calls: feeding a signal in any chunking
yields the same samples as filtering it whole (`resample_whole`), which is
what makes a replayed WAV decide exactly like the live device.
"""

from __future__ import annotations

from math import gcd

import numpy as np
from scipy.signal import firwin, upfirdn

HALF_TAPS_PER_PHASE = 16  # filter length per polyphase branch is about twice this
KAISER_BETA = 7.0  # about 70 dB stop-band attenuation
CONVOLVE_MAX_PHASES = 4  # up to this many branches, convolve each whole chunk instead of gathering
CACHE_ENTRIES = 64  # gather tables kept per resampler (steady block sizes need only a few)


def design_filter(rate_in: int, rate_out: int) -> tuple[np.ndarray, int, int]:
    """Low-pass prototype for up-by-L, down-by-M; gain L so the level is preserved."""
    g = gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    ntaps = 2 * HALF_TAPS_PER_PHASE * max(up, down) + 1
    cutoff = 0.92 / max(up, down)  # leave a transition band below the lower Nyquist
    h = firwin(ntaps, cutoff, window=("kaiser", KAISER_BETA)) * up
    return h.astype(np.float64), up, down


def resample_whole(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Reference: the same filter applied to the whole signal at once (length as streaming gives)."""
    if rate_in == rate_out:
        return np.asarray(x, dtype=np.float32).copy()
    h, up, down = design_filter(rate_in, rate_out)
    n_out = (len(x) * up + down - 1) // down
    return upfirdn(h, np.asarray(x, dtype=np.float64), up, down)[:n_out].astype(np.float32)


class StreamingResampler:
    """Resamples float32 mono chunks; output sample n sits at input time n*rate_in/rate_out
    delayed by `delay_out_samples` (the filter's group delay, constant and known)."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        self.rate_in = rate_in
        self.rate_out = rate_out
        self.identity = rate_in == rate_out
        h, self.up, self.down = design_filter(rate_in, rate_out) if not self.identity else (None, 1, 1)
        if self.identity:
            self.delay_out_samples = 0.0
            return
        assert h is not None
        taps = -(-len(h) // self.up)
        padded = np.zeros(taps * self.up)
        padded[: len(h)] = h
        # poly[p, k] = h[p + k*L]: branch p applied to x[base - k]
        self._poly = padded.reshape(taps, self.up).T.astype(np.float32).copy()
        self._taps = taps
        self._hist = np.zeros(taps - 1, dtype=np.float32)
        self._k = np.arange(taps)
        self._n_in = 0  # input samples consumed so far
        self._n_out = 0  # output samples produced so far
        self._cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.delay_out_samples = (len(h) - 1) / 2 / self.down

    def _tables(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Branch and newest-input index (into history + chunk) of each output for the next `n` inputs.

        They depend only on the input position modulo M and on `n`, so steady
        device blocks reuse a handful of tables instead of rebuilding them
        every frame (the cache is bounded).
        """
        key = (self._n_in % self.down, n)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        n_end = ((self._n_in + n) * self.up + self.down - 1) // self.down
        t = np.arange(self._n_out, n_end, dtype=np.int64) * self.down
        entry = (t % self.up, t // self.up - (self._n_in - (self._taps - 1)))
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = entry
        return entry

    def reset(self) -> None:
        if not self.identity:
            self._hist[:] = 0
            self._n_in = 0
            self._n_out = 0

    def process(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if self.identity:
            return x.copy()
        n_total = self._n_in + len(x)
        # output n needs input floor(n*M/L); the last producible n satisfies floor(n*M/L) <= n_total-1
        n_end = (n_total * self.up + self.down - 1) // self.down
        buf = np.concatenate((self._hist, x))
        if n_end > self._n_out:
            phase, base = self._tables(len(x))
            if self.up <= CONVOLVE_MAX_PHASES:
                # one full convolution per branch beats gathering taps for every output
                conv = np.stack([np.convolve(buf, self._poly[p], "valid") for p in range(self.up)])
                y = conv[phase, base - (self._taps - 1)]
            else:
                y = np.einsum("ij,ij->i", self._poly[phase], buf[base[:, None] - self._k[None, :]])
        else:
            y = np.zeros(0, dtype=np.float32)
        self._hist = buf[len(buf) - (self._taps - 1) :].copy()
        self._n_in = n_total
        self._n_out = max(self._n_out, n_end)
        return y.astype(np.float32, copy=False)

    def flush(self) -> np.ndarray:
        """Outputs still held in the filter (its group delay), as if zeros followed."""
        if self.identity:
            return np.zeros(0, dtype=np.float32)
        pad = int(np.ceil(self.delay_out_samples * self.down / self.up)) + 1
        return self.process(np.zeros(pad, dtype=np.float32))
