"""Real FFTs for small frames without the per-call Python overhead.

At 320 points an FFT is a few µs of arithmetic, but `numpy.fft.rfft` and
`scipy.fft.rfft` spend 10-15 µs per call in argument handling, which made
the echo canceller cost three times WebRTC's. numpy 2 implements them as C
gufuncs in `numpy.fft._pocketfft_umath`; calling those directly takes 3 µs.
The module is private, so it is used only after it reproduces `numpy.fft` on
a test vector at import; otherwise these fall back to `numpy.fft`.
"""

from __future__ import annotations

import numpy as np


def _np_rfft(x: np.ndarray) -> np.ndarray:
    return np.fft.rfft(x)


def _np_irfft(spec: np.ndarray, n: int) -> np.ndarray:
    return np.fft.irfft(spec, n)


rfft = _np_rfft
irfft = _np_irfft
FAST = False

try:
    from numpy.fft import _pocketfft_umath as _pfu

    def _fast_rfft(x: np.ndarray) -> np.ndarray:
        """Last axis; the length must be even (frames here always are)."""
        cdt = np.complex64 if x.dtype == np.float32 else np.complex128
        out = np.empty((*x.shape[:-1], x.shape[-1] // 2 + 1), dtype=cdt)
        return _pfu.rfft_n_even(x, 1.0, out=out)

    def _fast_irfft(spec: np.ndarray, n: int) -> np.ndarray:
        out = np.empty((*spec.shape[:-1], n), dtype=spec.real.dtype)
        return _pfu.irfft(spec, 1.0 / n, out=out)

    _probe = np.random.default_rng(0).standard_normal((2, 320))
    if np.allclose(_fast_rfft(_probe), np.fft.rfft(_probe)) and np.allclose(
        _fast_irfft(np.fft.rfft(_probe), 320), _probe
    ):
        rfft, irfft, FAST = _fast_rfft, _fast_irfft, True
except (ImportError, AttributeError, TypeError, ValueError):  # another numpy: keep numpy.fft
    pass
