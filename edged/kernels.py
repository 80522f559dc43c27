"""The echo canceller's per-bin loops, compiled with numba.

Each 10 ms frame the canceller does a few hundred multiply-adds per frequency bin. As numpy
expressions that is about a hundred array operations of 161 bins each, and at that size
every operation costs its Python call (0.3-0.6 µs) far more than its arithmetic: the
canceller took 1.5 times the CPU of WebRTC's AEC3. Here the same arithmetic runs as one loop
over the bins per stage. FFTs stay with numpy (`fastfft`): numba has none.

`cache=True` keeps the compiled code beside this module (or in NUMBA_CACHE_DIR, which the
systemd unit points at its cache directory), so only the first start compiles; `warm_up`
compiles or loads everything before the first frame, where a compile would stall audio.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit


def _compiled(fn: Callable[..., Any]) -> Any:
    """Compiled, with the machine code cached on disk when there is a writable place for it
    (numba refuses `cache=True` outright when there is none: then every start compiles)."""
    try:
        return njit(cache=True)(fn)
    except RuntimeError:
        return njit(fn)


@_compiled
def push_block(xcur, x_ring, xpow, pow_sum, h, p):  # pragma: no cover - compiled
    """The newest reference block into the filter's mirrored ring; the per-bin power over
    the filter's span loses the block that falls off its end."""
    k = xcur.shape[0]
    for b in range(k):
        z = xcur[b]
        e = z.real * z.real + z.imag * z.imag
        pow_sum[b] += e - xpow[h, b]
        xpow[h, b] = e
        x_ring[h, b] = z
        x_ring[h + p, b] = z


@_compiled
def filter_paths(w, x, out):  # pragma: no cover - compiled
    """out[f] = sum over partitions of w[f] * x: both filters' echo spectra. The bins are
    the inner loop: contiguous, so it vectorises (four times faster than partitions inner)."""
    paths, parts, k = w.shape
    for f in range(paths):
        for b in range(k):
            out[f, b] = 0
        for i in range(parts):
            for b in range(k):
                out[f, b] += w[f, i, b] * x[i, b]


@_compiled
def adapt(w, x, e, pow_sum, step, reg_fraction, mu_e):  # pragma: no cover - compiled
    """One normalised step of the background filter `w` towards the error spectrum `e`,
    the step per bin divided by the reference power over the filter's span (regularised by
    a share of its mean, so quiet bins do not get huge steps). `mu_e`: scratch, one row."""
    parts, k = x.shape
    total = 0.0
    for b in range(k):
        total += max(pow_sum[b], 0.0)
    reg = reg_fraction / k * total + 1e-9
    for b in range(k):
        mu_e[b] = e[b] * np.float32(step / (max(pow_sum[b], 0.0) + reg))
    for i in range(parts):
        for b in range(k):
            w[i, b] += x[i, b].conjugate() * mu_e[b]


@_compiled
def suppress_bins(spec, power, estimates, sey, band, out, constants):  # pragma: no cover - compiled
    """The suppressor's and the gate's per-bin estimates for one frame (see
    `EchoCanceller._suppress`); writes the gained error spectrum to `out` and returns the
    speech band's output power and the echo the gate expects there. `estimates` rows:
    smoothed output power, smoothed echo-estimate power, expected residual echo, gains, the
    gate's expected echo; `sey`: their smoothed cross-spectrum."""
    a, coh_bias, coh_unbias, distortion, decay, oversubtraction, gmin, gate_decay = constants
    s_ee_yy = estimates[0:2]
    echo_psd, gain, gate_psd = estimates[2], estimates[3], estimates[4]
    k = spec.shape[1]
    rows = spec.shape[0]
    near = 0.0
    expected = 0.0
    for b in range(k):
        for r in range(rows):
            z = spec[r, b]
            power[r, b] = z.real * z.real + z.imag * z.imag
        err = spec[0, b]
        est = spec[1, b]
        pe = power[0, b]
        see = s_ee_yy[0, b] + a * (pe - s_ee_yy[0, b])
        syy = s_ee_yy[1, b] + a * (power[1, b] - s_ee_yy[1, b])
        s_ee_yy[0, b] = see
        s_ee_yy[1, b] = syy
        c = sey[b] + a * (err * est.conjugate() - sey[b])
        sey[b] = c
        coh = (c.real * c.real + c.imag * c.imag) / (see * syy + 1e-10)
        coherent = max(coh - coh_bias, 0.0) * (see * coh_unbias)
        resid = max(max(coherent, distortion * syy), echo_psd[b] * decay)
        echo_psd[b] = resid
        g = max(1.0 - oversubtraction * resid / (pe + 1e-10), gmin)
        g0 = gain[b]
        g = min(g, g0 + 0.5 * (g - g0))
        gain[b] = g
        out[b] = err * g
        gp = max(coherent, gate_psd[b] * gate_decay)
        gate_psd[b] = gp
        near += pe * band[b]
        expected += gp * band[b]
    return near, expected


@_compiled
def band_bits(power, edges, med, step):  # pragma: no cover - compiled
    """Each row's band energies against their running medians, packed as the bits of one
    integer per row (bit i: band i is above its median); the medians move by `step`."""
    rows, k = power.shape
    bands = edges.shape[0]
    out = np.zeros(rows, dtype=np.uint32)
    for r in range(rows):
        word = 0
        for i in range(bands):
            hi = edges[i + 1] if i + 1 < bands else k
            acc = 0.0
            for b in range(edges[i], hi):
                acc += power[r, b]
            if acc > med[r, i]:
                word |= 1 << i
                med[r, i] *= step
            else:
                med[r, i] /= step
        out[r] = word
    return out


@_compiled
def lag_costs(hist, mic_bits, cost, rate, bands):  # pragma: no cover - compiled
    """Each lag's share of bands that differ between the microphone and the reference that
    many frames back, smoothed into `cost`."""
    for lag in range(cost.shape[0]):
        diff = np.int64(hist[lag]) ^ np.int64(mic_bits)
        count = 0
        while diff:
            diff &= diff - 1
            count += 1
        cost[lag] += rate * (count / bands - cost[lag])


@_compiled
def errors(d, ys, e):  # pragma: no cover - compiled
    """e = d - ys for both filters' echo estimates; returns the energies of both errors and
    of the microphone frame."""
    eb = ef = dd = 0.0
    for t in range(d.shape[0]):
        v = d[t]
        b = v - ys[0, t]
        f = v - ys[1, t]
        e[0, t] = b
        e[1, t] = f
        eb += b * b
        ef += f * f
        dd += v * v
    return eb, ef, dd
