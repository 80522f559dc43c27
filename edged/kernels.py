"""The echo canceller's per-bin loops, compiled with numba, or as numpy expressions.

Each 10 ms frame the canceller does a few hundred multiply-adds per frequency bin. As numpy
expressions that is about a hundred array operations of 161 bins each, and at that size
every operation costs its Python call (0.3-0.6 µs) far more than its arithmetic: the
canceller took 1.5 times the CPU of WebRTC's AEC3. Compiled, the same arithmetic runs as one
loop over the bins per stage (bins innermost: contiguous, so it vectorises), and costs 0.85
times AEC3's. FFTs stay with numpy (`fastfft`): numba has none.

numba's compiler costs memory: about 35 MB of heap and 70 MB of shared-library pages in the
daemon. On a 512 MB board that may matter more than 35 µs a frame, so EDGED_JIT=0 in the
environment keeps numba unloaded and runs the numpy twins below (same arithmetic,
tests/test_kernels.py). With numba, `cache=True` keeps the compiled code beside this module
(or in NUMBA_CACHE_DIR, which the systemd unit points at its cache directory), so only the
first start compiles; `aec.warm_up` compiles or loads everything before the first frame,
where a compile would stall audio.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

JIT = os.environ.get("EDGED_JIT", "1") != "0"


# -- numpy twins: the same arithmetic as the loops further down ------------------------------


def _np_push_block(xcur, x_ring, xpow, pow_sum, h, p):
    power = xcur.real**2 + xcur.imag**2
    pow_sum += power - xpow[h]
    xpow[h] = power
    x_ring[h] = xcur
    x_ring[h + p] = xcur


def _np_filter_paths(w, x, out):
    out[:] = (w * x).sum(axis=1)


def _np_adapt(w, x, e, pow_sum, step, reg_fraction, mu_e):
    power = np.maximum(pow_sum, 0.0)
    reg = reg_fraction / x.shape[1] * float(power.sum()) + 1e-9
    np.multiply(e, np.divide(step, power + reg, dtype=np.float32), out=mu_e)
    w += np.conjugate(x) * mu_e


def _np_suppress_bins(spec, power, estimates, sey, band, out, constants):
    a, coh_bias, coh_unbias, distortion, decay, oversubtraction, gmin, gate_decay = constants[:8]
    tail, tail_a, gentle, sure = constants[8:]
    s_ee_yy, echo_psd, gain, gate_psd, held, talk_psd, leak, least = (
        estimates[0:2],
        estimates[2],
        estimates[3],
        estimates[4],
        estimates[5],
        estimates[6],
        estimates[7],
        estimates[8],
    )
    power[:] = np.multiply(spec, spec.conj()).real
    s_ee_yy += a * (power[:2] - s_ee_yy)
    see, syy = s_ee_yy
    sey += a * (spec[0] * spec[1].conj() - sey)
    coh = np.multiply(sey, sey.conj()).real / (see * syy + 1e-10)
    coherent = np.maximum(coh - coh_bias, 0.0) * (see * coh_unbias)
    np.maximum(np.maximum(coherent, distortion * syy), echo_psd * decay, out=echo_psd)
    g = np.maximum(1.0 - oversubtraction * echo_psd / (power[0] + 1e-10), gmin)
    np.minimum(g, gain + 0.5 * (g - gain), out=gain)
    np.multiply(spec[0], gain, out=out[0])
    if gentle >= 0:  # the gentle gains, only while the user talks over the reply
        np.multiply(spec[0], np.maximum(1.0 - gentle * echo_psd / (power[0] + 1e-10), gmin), out=out[1])
    held += tail_a * (syy - held)
    floor = np.maximum(distortion * syy, tail * held)
    np.maximum(np.maximum(coherent, floor), gate_psd * gate_decay, out=gate_psd)
    lower = see < least * syy  # (where the compiled loop divides)
    least[lower] = (see / (syy + 1e-10))[lower]
    surely = np.maximum(np.maximum(coh - sure, 0.0) * (see * coh_unbias), leak * syy)
    np.maximum(np.maximum(surely, floor), talk_psd * gate_decay, out=talk_psd)
    excess = np.maximum(coh - coh_bias, 0.0)
    return float(power[0] @ band), float(gate_psd @ band), float(talk_psd @ band), float(excess @ band)


_BITS = (1 << np.arange(32)).astype(np.uint32)


def _np_band_bits(power, edges, med, step):
    above = np.add.reduceat(power, edges, axis=1) > med
    med *= np.where(above, step, 1 / step)
    return above @ _BITS[: len(edges)]


def _np_lag_costs(hist, mic_bits, cost, rate, bands, near):
    cost += rate * (np.bitwise_count(hist ^ mic_bits) / bands - cost)
    return int(np.argmax(cost <= cost.min() + near))


def _np_errors(d, ys, e):
    np.subtract(d, ys, out=e)
    diff = ys[0] - ys[1]
    return float(e[0] @ e[0]), float(e[1] @ e[1]), float(d @ d), float(diff @ diff)


def _np_stage(e, ys, path, buf, ring, at, fwd, win):
    n = e.shape[1]
    buf[0, n:] = e[path]
    buf[1, n:] = ys[path]
    ring[:, at : at + n] = buf[:2, n:]
    fwd[0, n:] = e[0]
    np.multiply(buf, win, out=fwd[1:])


def _np_shift_in(block, x, a):
    n = x.shape[0]
    block[:n] = block[n:]
    out = block[n:]
    np.multiply(x, x, out=out)
    out *= x
    out *= -a
    out += x


# -- the loops numba compiles ---------------------------------------------------------------


def _loop_push_block(xcur, x_ring, xpow, pow_sum, h, p):  # pragma: no cover - compiled
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


def _loop_filter_paths(w, x, out):  # pragma: no cover - compiled
    """out[f] = sum over partitions of w[f] * x: both filters' echo spectra. The bins are
    the inner loop: contiguous, so it vectorises (four times faster than partitions inner)."""
    paths, parts, k = w.shape
    for f in range(paths):
        for b in range(k):
            out[f, b] = 0
        for i in range(parts):
            for b in range(k):
                out[f, b] += w[f, i, b] * x[i, b]


def _loop_adapt(w, x, e, pow_sum, step, reg_fraction, mu_e):  # pragma: no cover - compiled
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


def _loop_suppress_bins(spec, power, estimates, sey, band, out, constants):  # pragma: no cover - compiled
    """The suppressor's and the gate's per-bin estimates for one frame (see
    `EchoCanceller._suppress`); writes the gained error spectrum to `out[0]` (and to `out[1]`
    with the gentle gains, margin `gentle` over the expected residual, when `gentle` >= 0: the
    user talks over the reply) and returns the
    speech band's output power, the echo the gate expects there (at least `distortion` of
    the echo estimate, as the suppressor expects: with the loudspeaker's saturation fitted, the
    residual is often no longer coherent with the estimate; and at least `tail` of the echo
    estimate averaged over the filter's span, `tail_a` its smoothing: the reverberation
    beyond the span, the echo of what played that long ago), the echo the talk-over decision
    expects there (the same, but counting only coherence above `sure` instead of above chance,
    and at least the `leak` share of the echo estimate per bin), and the band's summed
    coherence of output and echo estimate above chance. `estimates` rows: smoothed output
    power, smoothed echo-estimate power, expected residual echo, gains, the gate's expected
    echo, the long-smoothed echo estimate, the talk-over's expected echo, the leak, and the
    least ratio of smoothed output to echo estimate since the row was reset (what the leak is
    taken from); `sey`: their smoothed cross-spectrum."""
    a, coh_bias, coh_unbias, distortion, decay, oversubtraction, gmin, gate_decay = constants[:8]
    tail, tail_a, gentle, sure = constants[8:]
    s_ee_yy = estimates[0:2]
    echo_psd, gain, gate_psd, held = estimates[2], estimates[3], estimates[4], estimates[5]
    talk_psd, leak, least = estimates[6], estimates[7], estimates[8]
    k = spec.shape[1]
    rows = spec.shape[0]
    near = 0.0
    expected = 0.0
    expected_talk = 0.0
    excess = 0.0
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
        out[0, b] = err * g
        if gentle >= 0:
            out[1, b] = err * max(1.0 - gentle * resid / (pe + 1e-10), gmin)
        h = held[b] + tail_a * (syy - held[b])
        held[b] = h
        floor = max(distortion * syy, tail * h)
        gp = max(max(coherent, floor), gate_psd[b] * gate_decay)
        gate_psd[b] = gp
        if see < least[b] * syy:  # (a division only where it lowers the least)
            least[b] = see / (syy + 1e-10)
        surely = max(max(coh - sure, 0.0) * (see * coh_unbias), leak[b] * syy)
        tp = max(max(surely, floor), talk_psd[b] * gate_decay)
        talk_psd[b] = tp
        near += pe * band[b]
        expected += gp * band[b]
        expected_talk += tp * band[b]
        excess += max(coh - coh_bias, 0.0) * band[b]
    return near, expected, expected_talk, excess


def _loop_band_bits(power, edges, med, step):  # pragma: no cover - compiled
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


def _loop_lag_costs(hist, mic_bits, cost, rate, bands, near):  # pragma: no cover - compiled
    """Each lag's share of bands that differ between the microphone and the reference that
    many frames back, smoothed into `cost`; returns the earliest lag within `near` of the
    lowest cost."""
    low = np.inf
    for lag in range(cost.shape[0]):
        diff = np.int64(hist[lag]) ^ np.int64(mic_bits)
        count = 0
        while diff:
            diff &= diff - 1
            count += 1
        cost[lag] += rate * (count / bands - cost[lag])
        low = min(low, cost[lag])
    for lag in range(cost.shape[0]):
        if cost[lag] <= low + near:
            return lag
    return 0


def _loop_errors(d, ys, e):  # pragma: no cover - compiled
    """e = d - ys for both filters' echo estimates; returns the energies of both errors, of
    the microphone frame and of the difference between the two estimates."""
    eb = ef = dd = yy = 0.0
    for t in range(d.shape[0]):
        v = d[t]
        b = v - ys[0, t]
        f = v - ys[1, t]
        e[0, t] = b
        e[1, t] = f
        eb += b * b
        ef += f * f
        dd += v * v
        y = ys[0, t] - ys[1, t]
        yy += y * y
    return eb, ef, dd, yy


def _loop_stage(e, ys, path, buf, ring, at, fwd, win):  # pragma: no cover - compiled
    """The output path's error and echo estimate (`path`: 0 background, 1 foreground) into the
    suppressor's rows and the pitch ring (from `at`), the background's error into the row
    whose spectrum adapts the filter, and the suppressor's rows, windowed (`win`), into the
    rows after it: five numpy calls in one."""
    n = e.shape[1]
    for t in range(n):
        v = e[path, t]
        y = ys[path, t]
        buf[0, n + t] = v
        buf[1, n + t] = y
        ring[0, at + t] = v
        ring[1, at + t] = y
        fwd[0, n + t] = e[0, t]
    for r in range(buf.shape[0]):
        for t in range(2 * n):
            fwd[1 + r, t] = buf[r, t] * win[t]


def _loop_shift_in(block, x, a):  # pragma: no cover - compiled
    """The filter's two-frame block moves on by a frame and takes in x - a x³: the reference
    through the loudspeaker's saturation as fitted (a = 0: the reference as it is)."""
    n = x.shape[0]
    for t in range(n):
        block[t] = block[t + n]
        v = x[t]
        block[t + n] = v - a * v * v * v


def _compiled(fn: Callable[..., Any]) -> Any:
    """Compiled, with the machine code cached on disk when there is a writable place for it
    (numba refuses `cache=True` outright when there is none: then every start compiles)."""
    from numba import njit

    try:
        return njit(cache=True)(fn)
    except RuntimeError:
        return njit(fn)


NAMES = (
    "push_block",
    "filter_paths",
    "adapt",
    "suppress_bins",
    "band_bits",
    "lag_costs",
    "errors",
    "shift_in",
    "stage",
)
NUMPY = {name: globals()[f"_np_{name}"] for name in NAMES}
COMPILED = {name: _compiled(globals()[f"_loop_{name}"]) for name in NAMES} if JIT else {}
push_block, filter_paths, adapt, suppress_bins, band_bits, lag_costs, errors, shift_in, stage = (
    (COMPILED or NUMPY)[name] for name in NAMES
)
