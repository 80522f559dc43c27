"""The compiled kernels and their numpy twins do the same arithmetic: each pair is run on the
same random inputs, and a whole canceller on either gives the same output. (The canceller's
own tests check what the arithmetic is for.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from edged import kernels
from edged.aec import EchoCanceller

K, PARTS, N = 161, 26, 160


def spectra(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def inputs(name: str, rng: np.random.Generator) -> tuple[Any, ...]:
    """Arguments as the canceller passes them (dtypes, shapes, in-place outputs)."""
    f32 = np.float32
    if name == "push_block":
        ring = spectra(rng, 2 * PARTS, K)
        xpow = (np.abs(ring[:PARTS]) ** 2).astype(f32)
        return spectra(rng, K), ring, xpow, xpow.sum(axis=0).astype(np.float64), 7, PARTS
    if name == "filter_paths":
        return spectra(rng, 2, PARTS, K), spectra(rng, PARTS, K), np.zeros((2, K), np.complex64)
    if name == "adapt":
        x = spectra(rng, PARTS, K)
        pw = (np.abs(x) ** 2).sum(axis=0).astype(np.float64)
        pw[:3] = -1e-3  # rounding can leave a running sum just under zero
        return spectra(rng, PARTS, K), x, spectra(rng, K), pw, 0.5, 0.1, np.zeros(K, np.complex64)
    if name == "suppress_bins":
        estimates = rng.uniform(0.5, 2, (9, K)).astype(f32)
        estimates[3] /= 2  # gains are at most 1
        constants = np.array([0.3, 0.18, 1.2, 5e-4, 0.8, 4.0, 0.005, 0.88, 2e-3, 0.05, 0.25, 0.5], f32)
        band = (rng.uniform(size=K) > 0.3).astype(f32)
        power, out = np.zeros((4, K), f32), np.zeros((2, K), np.complex64)
        return spectra(rng, 4, K), power, estimates, spectra(rng, K) * 0.3, band, out, constants
    if name == "band_bits":
        power = rng.uniform(0, 1, (2, K)).astype(f32)
        edges = np.linspace(8, K - 1, 25).astype(int)[:-1]
        return power, edges, rng.uniform(2, 6, (2, 24)), 10**0.02
    if name == "lag_costs":
        hist = rng.integers(0, 1 << 24, 31).astype(np.uint32)
        return hist, np.uint32(rng.integers(0, 1 << 24)), rng.uniform(0, 1, 31), 0.06, 24, 0.01
    if name == "errors":
        ys = rng.standard_normal((2, N)).astype(f32)
        return rng.standard_normal(N).astype(f32), ys, np.zeros((2, N), f32)
    if name == "stage":
        e, ys = rng.standard_normal((2, N)).astype(f32), rng.standard_normal((2, N)).astype(f32)
        buf, fwd = rng.standard_normal((4, 2 * N)).astype(f32), np.zeros((5, 2 * N), f32)
        win = rng.uniform(0, 1, 2 * N).astype(f32)
        return e, ys, 1, buf, np.zeros((2, 8 * N), f32), 3 * N, fwd, win
    if name == "shift_in":
        return rng.uniform(-1, 1, 2 * N).astype(f32), rng.uniform(-1, 1, N).astype(f32), 0.3
    raise AssertionError(name)


def compiled_kernel(name: str) -> Callable[..., Any]:
    """Compiled even where EDGED_JIT=0 left numba unloaded."""
    return kernels.COMPILED.get(name) or kernels._compiled(getattr(kernels, f"_loop_{name}"))


@pytest.mark.parametrize("name", kernels.NAMES)
def test_the_compiled_loop_does_what_its_numpy_twin_does(name: str) -> None:
    compiled = compiled_kernel(name)
    twin = kernels.NUMPY[name]
    args = inputs(name, np.random.default_rng(11))
    mine = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    theirs = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    got, want = compiled(*mine), twin(*theirs)
    np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(want, dtype=float), rtol=1e-4)
    changed = 0
    for before, a, b in zip(args, mine, theirs, strict=True):
        if isinstance(a, np.ndarray):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
            changed += not np.array_equal(a, before)
    assert changed or got is not None  # every kernel writes something or returns it


def test_a_canceller_on_the_numpy_twins_gives_the_same_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """The switch EDGED_JIT=0 selects: the whole canceller, not only each kernel."""
    rng = np.random.default_rng(5)
    ref = (0.1 * rng.standard_normal(4 * 16000)).astype(np.float32)
    h = np.exp(-np.arange(800) / 120.0) * rng.standard_normal(800) * 0.1
    h[40] = 0.8
    mic = (np.convolve(ref, h)[: len(ref)] + 1e-3 * rng.standard_normal(len(ref))).astype(np.float32)
    mic[2 * 16000 : 3 * 16000] += 0.05 * rng.standard_normal(16000).astype(np.float32)  # double talk

    def run() -> np.ndarray:
        ec = EchoCanceller()
        return np.concatenate([ec.process(mic[i : i + N], ref[i : i + N]) for i in range(0, len(ref), N)])

    outputs = []
    for implementation in ({name: compiled_kernel(name) for name in kernels.NAMES}, kernels.NUMPY):
        for name, fn in implementation.items():
            monkeypatch.setattr(kernels, name, fn)
        outputs.append(run())
    compiled, numpy_out = outputs
    echo_only = slice(16000, 2 * 16000)  # it cancels: the comparison means something
    assert np.sum(compiled[echo_only] ** 2) < 0.01 * np.sum(mic[echo_only] ** 2)
    err_db = 10 * np.log10(np.sum((compiled - numpy_out) ** 2) / np.sum(compiled**2))
    assert err_db < -80, err_db
