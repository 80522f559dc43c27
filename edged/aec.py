"""Echo canceller: the device must not hear itself, and must still hear the user.

Three stages, all per 10 ms frame on the 16 kHz clock, numpy only:

1. Delay tracking. The speaker reference may lead the microphone by 0-300 ms
   and jump after an xrun. Binary band-energy spectra of microphone and
   reference are matched over all lags; the best lag (with hysteresis) sets
   how far the reference is delayed before the filter sees it.
2. Linear echo filter: a partitioned-block frequency-domain adaptive filter
   (overlap-save, 2N-point FFT, partitions of one frame). Two paths: a
   background filter adapts fast all the time; the foreground filter, whose
   output is used, copies it only when it cancels better. Double talk thus
   never corrupts the output filter (the background is reset from it when it
   diverges), and after an echo-path change the background re-learns within
   a few frames and is copied at once.
3. Residual echo suppression for what a linear filter cannot remove (the
   loudspeaker's distortion, the tail beyond the filter): per-bin gains from
   the filter's echo estimate times a learned leakage, with a decay like a
   room's reverberation, floored at `suppression_db`.

`near_ratio_db` tells the speech gate how far the output stands above the
echo the canceller expects to have left: during playback only frames well
above it can be the user.
"""

from __future__ import annotations

import numpy as np

from .config import AecConfig

EPS = 1e-10
CONSTRAIN_ALL = True
REF_ACTIVE_POWER = 10 ** (-60 / 10)  # per sample: below -60 dBFS the speaker is silent, nothing to learn
REG_FRACTION = 0.01
ONLY_BACKGROUND = False


class DelayTracker:
    """Lag (in frames) at which the reference best explains the microphone."""

    BANDS = 24

    def __init__(self, max_frames: int, frame_samples: int) -> None:
        self.max_frames = max_frames
        n_bins = frame_samples + 1
        edges = np.linspace(4, n_bins - 1, self.BANDS + 1).astype(int)  # 400 Hz .. 8 kHz
        self._edges = edges
        self._ref_hist = np.zeros((max_frames + 1, self.BANDS), dtype=bool)
        self._mic_med = np.zeros(self.BANDS)
        self._ref_med = np.zeros(self.BANDS)
        self._cost = np.full(max_frames + 1, 0.5)
        self._active = 0
        self.lag = 0

    def _binary(self, power: np.ndarray, median: np.ndarray) -> np.ndarray:
        band = np.add.reduceat(power, self._edges[:-1])
        logb = np.log10(band + EPS)
        median += np.where(logb > median, 0.02, -0.02)  # running median of each band
        return logb > median

    def update(self, mic_power: np.ndarray, ref_power: np.ndarray, ref_active: bool) -> int:
        mic_b = self._binary(mic_power, self._mic_med)
        ref_b = self._binary(ref_power, self._ref_med)
        self._ref_hist = np.roll(self._ref_hist, 1, axis=0)
        self._ref_hist[0] = ref_b
        if not ref_active:
            return self.lag
        self._active += 1
        dist = np.mean(self._ref_hist != mic_b[None, :], axis=1)
        self._cost += 0.03 * (dist - self._cost)
        best = int(np.argmin(self._cost))
        # switch only for a clear, settled improvement: a wrong jump costs re-convergence
        if self._active > 50 and best != self.lag and self._cost[best] < self._cost[self.lag] - 0.05:
            self.lag = best
        return self.lag


class EchoCanceller:
    """`process(mic, ref)`: mic and ref are one frame each (int16 scale or ±1 floats are both
    accepted; the output has the scale of the input)."""

    def __init__(
        self,
        rate_hz: int = 16000,
        frame_samples: int = 160,
        cfg: AecConfig | None = None,
    ) -> None:
        cfg = cfg or AecConfig()
        self.cfg = cfg
        self.n = n = frame_samples
        self.rate = rate_hz
        self.k = n + 1
        self.parts = max(1, round(cfg.tail_ms * rate_hz / 1000 / n))
        self._delay = DelayTracker(cfg.max_delay_ms * rate_hz // 1000 // n, n) if cfg.max_delay_ms else None
        hist = (self._delay.max_frames if self._delay else 0) + 2
        self._ref_frames = np.zeros((hist, n))  # recent reference frames, newest first
        self._x_prev = np.zeros(n)
        self._X = np.zeros((self.parts, self.k), dtype=np.complex128)  # newest partition first
        self._Wf = np.zeros_like(self._X)  # foreground
        self._Wb = np.zeros_like(self._X)  # background
        self._pow = np.zeros(self.k)  # reference power per bin summed over the partitions
        self._ef = 0.0  # smoothed error energies of the two paths
        self._eb = 0.0
        self._d_energy = 0.0
        self._constrain_next = 0
        # suppressor: sqrt-Hann analysis/synthesis with 50 % overlap (one frame of latency)
        self._win = np.sqrt(np.hanning(2 * n + 1)[:-1])
        self._e_prev = np.zeros(n)
        self._y_prev = np.zeros(n)
        self._ola = np.zeros(n)
        self._echo_psd = np.zeros(self.k)
        self._leak = np.ones(self.k)
        self._gain = np.ones(self.k)
        self._gmin = 10 ** (-cfg.suppression_db / 20)
        self._decay = np.exp(-n / rate_hz / max(cfg.echo_decay_ms / 1000, 1e-3))
        lo, hi = int(300 * 2 * n / rate_hz), int(3400 * 2 * n / rate_hz)
        self._speech_bins = slice(lo, hi + 1)
        self.near_ratio_db = 0.0
        self.echo_dbfs = -120.0
        self.delay_frames = 0

    # -- reference alignment ------------------------------------------------------------------
    def _aligned_ref(self, ref: np.ndarray, mic_power: np.ndarray) -> np.ndarray:
        self._ref_frames = np.roll(self._ref_frames, 1, axis=0)
        self._ref_frames[0] = ref
        if self._delay is None:
            return ref
        ref_power = np.abs(np.fft.rfft(ref, 2 * self.n)) ** 2
        active = float(np.dot(ref, ref)) > self.n * 1e-7
        lag = self._delay.update(mic_power, ref_power, active)
        # keep one frame of margin: the filter itself covers the last few ms of the path
        shift = max(0, lag - 1)
        if shift != self.delay_frames:
            self._shift_filters(shift - self.delay_frames)
            self.delay_frames = shift
        return self._ref_frames[shift]

    def _shift_filters(self, frames: int) -> None:
        """The reference moved by whole partitions: move the learnt response with it."""
        for w in (self._Wf, self._Wb):
            if frames > 0:  # more delay applied outside: the response starts earlier in the filter
                w[:-frames] = w[frames:].copy() if frames < self.parts else 0
                w[-frames:] = 0
            else:
                f = -frames
                w[f:] = w[:-f].copy() if f < self.parts else 0
                w[:f] = 0
        self._X[:] = 0
        self._pow[:] = 0

    # -- the frame ------------------------------------------------------------------------------
    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        scale = 32768.0 if np.asarray(mic).dtype.kind in "iu" else 1.0
        d = np.asarray(mic, dtype=np.float64) / scale
        x_new = np.asarray(ref, dtype=np.float64) / scale
        n = self.n
        if self.cfg.half_duplex:
            playing = float(np.dot(x_new, x_new)) > n * 10 ** (self.cfg.far_end_active_dbfs / 10)
            self.near_ratio_db = -120.0 if playing else 0.0
            return (np.zeros(n) if playing else d) * scale

        d_spec = np.fft.rfft(d, 2 * n)
        x = self._aligned_ref(x_new, np.abs(d_spec) ** 2)

        Xcur = np.fft.rfft(np.concatenate((self._x_prev, x)))
        self._x_prev = x
        pcur = Xcur.real**2 + Xcur.imag**2
        old = self._X[-1]
        self._pow += pcur - (old.real**2 + old.imag**2)  # reference power over all partitions
        self._X = np.roll(self._X, 1, axis=0)
        self._X[0] = Xcur

        yb = np.fft.irfft(np.einsum("pk,pk->k", self._Wb, self._X))[n:]
        yf = np.fft.irfft(np.einsum("pk,pk->k", self._Wf, self._X))[n:]
        eb = d - yb
        ef = d - yf

        # background: NLMS per bin, constrained one partition per frame (round robin)
        Eb = np.fft.rfft(np.concatenate((np.zeros(n), eb)))
        ref_active = float(np.dot(x, x)) > n * REF_ACTIVE_POWER
        # regularised by the average reference power: a quiet bin must not blow up the step
        # normalised by the reference power over the whole span the filter sees (not the newest
        # block alone: just after a loud stretch the newest block is quiet, older ones are not)
        pw = np.maximum(self._pow, 0.0)
        mu = self.cfg.step / (pw + REG_FRACTION * float(pw.mean()) + 1e-9)
        grad = (mu * Eb)[None, :] * np.conj(self._X)
        if not ref_active:
            pass
        elif CONSTRAIN_ALL:
            g = np.fft.irfft(grad, axis=1)
            g[:, n:] = 0
            self._Wb += np.fft.rfft(g, axis=1)
        else:
            self._Wb += grad
            p = self._constrain_next
            w = np.fft.irfft(self._Wb[p])
            w[n:] = 0
            self._Wb[p] = np.fft.rfft(w)
            self._constrain_next = (p + 1) % self.parts

        # two paths: copy the background when it is clearly better, reset it when it diverged
        a = 0.15
        self._eb += a * (float(np.dot(eb, eb)) - self._eb)
        self._ef += a * (float(np.dot(ef, ef)) - self._ef)
        self._d_energy += a * (float(np.dot(d, d)) - self._d_energy)
        if ONLY_BACKGROUND:
            return self._suppress(eb, yb) * scale
        if self._eb < 0.7 * self._ef:
            self._Wf[:] = self._Wb
            self._ef = self._eb
            ef = eb
            yf = yb
        elif self._eb > 4.0 * self._ef and self._eb > self._d_energy:
            self._Wb[:] = self._Wf
            self._eb = self._ef

        return self._suppress(ef, yf) * scale

    # -- residual echo suppression ----------------------------------------------------------------
    def _suppress(self, e: np.ndarray, y: np.ndarray) -> np.ndarray:
        n = self.n
        E = np.fft.rfft(self._win * np.concatenate((self._e_prev, e)))
        Y = np.fft.rfft(self._win * np.concatenate((self._y_prev, y)))
        self._e_prev, self._y_prev = e, y
        pe = np.abs(E) ** 2
        py = np.abs(Y) ** 2
        # echo estimate with a reverberant tail: rises with the filter's estimate, decays slowly
        self._echo_psd = np.maximum(py, self._echo_psd * self._decay)
        # leakage: residual / estimate when the residual looks like echo only; falls fast, rises slowly
        ratio = pe / (self._echo_psd + EPS)
        active = self._echo_psd > 1e-9
        target = np.minimum(ratio, 1.0)
        rate = np.where(target < self._leak, 0.3, 0.01)
        self._leak = np.where(active, self._leak + rate * (target - self._leak), self._leak)
        self._leak = np.clip(self._leak, 1e-4, 1.0)
        resid = self._leak * self._echo_psd
        g = 1.0 - self.cfg.oversubtraction * resid / (pe + EPS)
        g = np.clip(g, self._gmin, 1.0)
        # fall at once (echo), recover over a few frames (no musical noise, no clipped onsets)
        self._gain = np.where(g < self._gain, g, self._gain + 0.5 * (g - self._gain))
        out = np.fft.irfft(E * self._gain) * self._win
        frame = self._ola + out[:n]
        self._ola = out[n:]
        sb = self._speech_bins
        self.near_ratio_db = float(10 * np.log10((pe[sb].sum() + EPS) / (resid[sb].sum() + EPS)))
        self.echo_dbfs = float(10 * np.log10(resid.sum() / (n * n) + 1e-12))
        return frame


class PassThrough:
    """The slot's contract with nothing cancelled: used when the canceller is disabled."""

    near_ratio_db = 0.0

    def __init__(self, rate_hz: int = 16000, frame_samples: int = 160) -> None:
        self.rate_hz = rate_hz
        self.frame_samples = frame_samples

    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        return mic
