"""The compiled kernels do the arithmetic the canceller's numpy expressions did: each is
checked against that expression on random spectra (the canceller's own tests check what
the arithmetic is for)."""

from __future__ import annotations

import numpy as np
import pytest

from edged import kernels

K, PARTS, N = 161, 26, 160


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(11)


def spectra(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def test_both_filters_echo_spectra(rng) -> None:
    w, x = spectra(rng, 2, PARTS, K), spectra(rng, PARTS, K)
    out = np.zeros((2, K), np.complex64)
    kernels.filter_paths(w, x, out)
    np.testing.assert_allclose(out, (w * x).sum(axis=1), rtol=1e-4, atol=1e-4)


def test_a_normalised_step_of_the_background_filter(rng) -> None:
    w, x, e = spectra(rng, PARTS, K), spectra(rng, PARTS, K), spectra(rng, K)
    pw = (np.abs(x) ** 2).sum(axis=0).astype(np.float64)
    pw[:3] = -1e-3  # rounding can leave a running sum just under zero
    step, reg_fraction = 0.5, 0.1
    reg = reg_fraction / K * np.maximum(pw, 0).sum() + 1e-9
    expected = w + np.conj(x) * (step / (np.maximum(pw, 0) + reg)).astype(np.float32) * e
    kernels.adapt(w, x, e, pw, step, reg_fraction, np.zeros(K, np.complex64))
    np.testing.assert_allclose(w, expected, rtol=1e-5, atol=1e-6)


def test_a_new_reference_block_enters_the_ring_and_the_power_over_the_span(rng) -> None:
    ring = spectra(rng, 2 * PARTS, K)
    xpow = (np.abs(ring[:PARTS]) ** 2).astype(np.float32)
    total = xpow.sum(axis=0).astype(np.float64)
    new, h = spectra(rng, K), 7
    kernels.push_block(new, ring, xpow, total, h, PARTS)
    assert np.array_equal(ring[h], new) and np.array_equal(ring[h + PARTS], new)
    np.testing.assert_allclose(xpow[h], np.abs(new) ** 2, rtol=1e-5)
    np.testing.assert_allclose(total, xpow.sum(axis=0), rtol=1e-5)


def test_both_errors_and_their_energies(rng) -> None:
    d, ys = rng.standard_normal(N).astype(np.float32), rng.standard_normal((2, N)).astype(np.float32)
    e = np.zeros((2, N), np.float32)
    energies = kernels.errors(d, ys, e)
    np.testing.assert_allclose(e, d - ys)
    np.testing.assert_allclose(energies, [e[0] @ e[0], e[1] @ e[1], d @ d], rtol=1e-5)


def test_the_suppressors_gains_and_the_gates_expectation(rng) -> None:
    spec = spectra(rng, 4, K)
    estimates = rng.uniform(0.5, 2, (5, K)).astype(np.float32)
    s_ee_yy, echo_psd, gain, gate_psd = estimates[:2].copy(), *estimates[2:].copy()
    gain /= 2  # gains are at most 1
    estimates[3] = gain
    sey = spectra(rng, K) * 0.3
    band = (rng.uniform(size=K) > 0.3).astype(np.float32)
    constants = np.array([0.3, 0.18, 1.2, 5e-4, 0.8, 4.0, 0.005, 0.88])
    a, bias, unbias, dist, decay, over, gmin, gdecay = constants
    # the numpy expressions the kernel replaced
    power = (spec * spec.conj()).real
    s2 = s_ee_yy + a * (power[:2] - s_ee_yy)
    c = sey + a * (spec[0] * spec[1].conj() - sey)
    coh = (c * c.conj()).real / (s2[0] * s2[1] + 1e-10)
    coherent = np.maximum(coh - bias, 0) * (s2[0] * unbias)
    resid = np.maximum(np.maximum(coherent, dist * s2[1]), echo_psd * decay)
    g = np.maximum(1 - over * resid / (power[0] + 1e-10), gmin)
    g = np.minimum(g, gain + 0.5 * (g - gain))
    gate = np.maximum(coherent, gate_psd * gdecay)
    out, got_power = np.zeros(K, np.complex64), np.zeros((4, K), np.float32)
    near, expected = kernels.suppress_bins(spec, got_power, estimates, sey, band, out, constants)
    for got, want in ((got_power, power), (estimates, [*s2, resid, g, gate]), (sey, c)):
        np.testing.assert_allclose(got, np.asarray(want), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out, spec[0] * g, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose([near, expected], [power[0] @ band, gate @ band], rtol=1e-4)


def test_band_bits_and_the_lag_costs(rng) -> None:
    power = rng.uniform(0, 1, (2, K)).astype(np.float32)
    edges = np.linspace(8, K - 1, 25).astype(int)[:-1]
    med = rng.uniform(2, 6, (2, 24))
    above = np.add.reduceat(power, edges, axis=1) > med
    want_med = med * np.where(above, 1.05, 1 / 1.05)
    bits = kernels.band_bits(power, edges, med, 1.05)
    assert list(bits) == list(above @ (1 << np.arange(24)))
    np.testing.assert_allclose(med, want_med)
    hist = rng.integers(0, 1 << 24, 31).astype(np.uint32)
    cost = rng.uniform(0, 1, 31)
    want = cost + 0.06 * (np.bitwise_count(hist ^ bits[0]) / 24 - cost)
    kernels.lag_costs(hist, bits[0], cost, 0.06, 24)
    np.testing.assert_allclose(cost, want)
