"""Synthetic household sounds that Silero takes for a voice (a notification chime, a
telephone ring), in a quiet room: shared by the tests of the tone check and of the monitor
that shows it."""

from __future__ import annotations

import numpy as np

RATE = 16000


def hummed_chime(second_harmonic_db: float = -6.0) -> np.ndarray:
    """Three notes in a voice's pitch range with a 5 Hz vibrato, the last one fading: the
    shape of the freedesktop 'service-login' sound that started a billed turn on the
    development corpus each time it played."""
    parts, phase = [], 0.0
    for k, (f0, seconds) in enumerate([(147.0, 0.25), (175.0, 0.25), (220.0, 1.5)]):
        t = np.arange(int(seconds * RATE)) / RATE
        inst = phase + 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 5.0 * t))) / RATE
        phase = float(inst[-1])
        envelope = np.exp(-t / 0.4) if k == 2 else np.ones_like(t)
        parts.append(envelope * (np.sin(inst) + 10 ** (second_harmonic_db / 20) * np.sin(2 * inst)))
    y = np.concatenate(parts)
    y[:160] *= np.linspace(0.0, 1.0, 160)  # no click at the start
    return y


def quiet_room_with(sound: np.ndarray, peak_dbfs: float, times: int, gap_s: float = 4.0) -> np.ndarray:
    """`sound` `times` times over a -60 dBFS pink floor, 2 s in and `gap_s` apart."""
    rng = np.random.default_rng(1)
    n = int((2 + times * (len(sound) / RATE + gap_s)) * RATE)
    f = np.fft.rfftfreq(n, 1 / RATE)
    pink = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) / np.sqrt(np.maximum(f, 20.0)), n)
    x = pink / np.sqrt(np.mean(pink**2)) * 10 ** (-60 / 20)
    sound = sound / np.abs(sound).max() * 10 ** (peak_dbfs / 20)
    for k in range(times):
        i = int((2 + k * (len(sound) / RATE + gap_s)) * RATE)
        x[i : i + len(sound)] += sound
    return x.astype(np.float32)


def telephone_ring(seconds: float = 2.0) -> np.ndarray:
    """A North American ring: 440 and 480 Hz together, switched on and off 20 times a second."""
    t = np.arange(int(seconds * RATE)) / RATE
    y = (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 480 * t)) * (np.sin(2 * np.pi * 20 * t) > 0)
    y[:80] *= np.linspace(0.0, 1.0, 80)
    y[-80:] *= np.linspace(1.0, 0.0, 80)
    return y
