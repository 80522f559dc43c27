"""The least-squares fit of an echo path and a saturating loudspeaker (edged/block_estimate.py)."""

from __future__ import annotations

import numpy as np

from edged.block_estimate import HOP_FRAMES, MIN_WINDOWS, WINDOW, BlockEstimate
from edged.frame_history import FrameHistory

N = 160
TAPS = 2560


def played(demo_audio, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Recorded speech as the reference, through a clipping speaker and a short room."""
    x, _ = demo_audio
    ref = x[: int(seconds * 16000)].astype(np.float64)
    ref *= 0.05 / np.sqrt(np.mean(ref**2))
    rng = np.random.default_rng(7)
    h = rng.standard_normal(1200) * np.exp(-np.arange(1200) / 200) * 0.05
    h[20] = 1.0
    mic = np.convolve(np.tanh(2 * ref) / 2, h)[: len(ref)] + rng.standard_normal(len(ref)) * 1e-5
    return ref, mic


class Fit:
    """An estimate with the frame history a canceller would keep for it."""

    def __init__(self, cubic: bool = False) -> None:
        self.history = FrameHistory(-(-WINDOW // N), N)
        self.estimate = BlockEstimate(N, TAPS, self.history, cubic=cubic)


def feed(fit: Fit, ref: np.ndarray, mic: np.ndarray, playing: bool = True) -> list:
    """Frames in, as if the filters had cancelled nothing (their errors are the microphone)."""
    fits = []
    for i in range(0, len(ref) - N + 1, N):
        d = mic[i : i + N]
        fit.history.push(ref[i : i + N], d)
        energy = float(d @ d)
        taps = fit.estimate.push(energy, energy, energy, learn=playing)
        if taps is not None:
            fits.append(taps)
    return fits


def residual_db(ref: np.ndarray, mic: np.ndarray, linear: np.ndarray, cubic: np.ndarray) -> float:
    echo = np.convolve(ref, linear)[: len(ref)] + np.convolve(ref**3, cubic)[: len(ref)]
    return float(10 * np.log10(np.sum((mic - echo) ** 2) / np.sum(mic**2)))


def test_the_fit_finds_the_room_and_the_speaker_s_distortion(demo_audio) -> None:
    ref, mic = played(demo_audio, 12.0)
    fits = feed(Fit(cubic=True), ref[: 8 * 16000], mic[: 8 * 16000])
    assert fits, "a fit that predicts the echo is offered"
    linear, cubic = fits[-1]
    assert len(linear) == TAPS and len(cubic) < TAPS  # the distortion's filter is short
    later = slice(8 * 16000, None)  # audio the fit never heard
    with_cubic = residual_db(ref[later], mic[later], linear, cubic)
    without = residual_db(ref[later], mic[later], linear, 0 * cubic)
    # the distortion's branch is held back hard (CUBIC_REGULARISATION): it adds a little here
    assert with_cubic < -18
    assert with_cubic < without - 1


def test_nothing_is_offered_before_enough_audio_or_from_silence(demo_audio) -> None:
    ref, mic = played(demo_audio, 6.0)
    first = -(-WINDOW // (N * HOP_FRAMES)) * HOP_FRAMES  # the first hop with a whole window
    enough = (first + MIN_WINDOWS * HOP_FRAMES) * N  # the first fit, then the hop it is judged on
    assert feed(Fit(), ref[: enough - N], mic[: enough - N]) == []
    assert feed(Fit(), ref, mic, playing=False) == []


def test_a_reset_forgets_the_room(demo_audio) -> None:
    ref, mic = played(demo_audio, 6.0)
    fit = Fit()
    assert feed(fit, ref, mic)
    fit.estimate.reset()
    span = MIN_WINDOWS * HOP_FRAMES * N  # windows to gather again before a fit, none judged yet
    assert feed(fit, ref[:span], mic[:span]) == []


def test_the_fit_measures_the_room_s_tail_beyond_the_filter(demo_audio) -> None:
    """A room that rings past the filter's span leaves a residual the speech gate must
    expect: the fit reads its share from the decay within the span (within 4 dB), and next
    to none where the room is shorter than the span."""
    x, _ = demo_audio
    ref = x[: 10 * 16000].astype(np.float64)
    ref *= 0.05 / np.sqrt(np.mean(ref**2))
    rng = np.random.default_rng(5)
    t = np.arange(int(0.6 * 16000)) / 16000
    for rt60_s, length_s in ((0.6, 0.6), (0.3, 0.12)):
        h = rng.standard_normal(len(t)) * 10 ** (-3 * t / rt60_s)  # energy falls 60 dB per rt60_s
        h[int(length_s * 16000) :] = 0
        h[0] = 4.0  # the direct path
        mic = np.convolve(ref, h)[: len(ref)] * 0.05 + rng.standard_normal(len(ref)) * 1e-5
        fit = Fit()
        feed(fit, ref, mic)
        energy = h**2
        true_share = energy[TAPS:].sum() / energy[:TAPS].sum()
        if true_share > 0:
            assert abs(10 * np.log10(fit.estimate.tail_share / true_share)) < 4, (
                fit.estimate.tail_share,
                true_share,
            )
        else:  # nothing worth expecting: under -40 dB of the echo
            assert fit.estimate.tail_share < 1e-4, fit.estimate.tail_share
