"""The echo path as a least-squares fit over the last seconds, for the adaptive filter to start from.

The adaptive filter (`edged.aec`) takes its small normalised steps on speech, whose spectrum
is steep and changes every syllable: on benchmarks/echo.py's rooms it cancelled 11-15 dB after
2-4 s of playback and was still gaining at 12 s. Yet a least-squares fit of the same taps, over
those 10 s, cancels 26-31 dB. And the loudspeaker's distortion, which no linear filter removes,
caps the fit at 29-31 dB in the close rooms: with the speaker's saturation modelled as a cubic
branch (x³ through its own short filter: a Hammerstein model), the fit cancels 38-45 dB there
(offline, with the cubic branch barely regularised; see CUBIC_REGULARISATION).

So this keeps running cross-spectra of the reference and the microphone (and, with `cubic`,
the reference's cube) over long windows (1 s, Hann, a new one every `HOP_FRAMES`; older ones
fade over `MEMORY_S`), solves per bin (a 2 x 2 system with the cube), and truncates the
responses to the filter's span (the linear one) and to `CUBIC_PARTITIONS` frames (the
distortion rides on the direct path and the first reflections). A window's overlap with
itself moved by a tap's lag shrinks that tap in the cross-spectra (by a third at the span's
end); that is undone. A fit is judged on the hop heard after it was made, which it has not
seen: a fit from a few windows matches its own data almost exactly and predicts nothing. Only
a fit that cancels clearly better there than both the output filter and the adaptive one is
offered; the canceller's copy rule then decides, as for its own filter.

The per-bin cubic branch (`cubic`, the canceller's experimental `distortion_fit`) needs such
strong regularisation not to blow up on speech louder than it was fitted on that it keeps only
a quarter of what it is worth. What ships instead (`saturation`) measures one number: the
loudspeaker's saturation as x - a x³, which the canceller applies to the reference, so that the
linear filter cancels the distortion over its whole span, reverberation included. On
aec_bench's rooms `a` settles at 0.26-0.30 (the speaker there is tanh), and the echo left in
double talk falls by 10-15 dB in three of the four rooms (benchmarks/echo_bound.py).

A user talking over the reply is not echo: their voice in the cross-spectra averages out only
slowly, so the canceller stops feeding the fit while its output filter cancels far worse than
usual, until that has lasted a tenth of a second with no user heard (`edged.aec.LOST_FRAMES`: a
moved path). When the path moves (`reset`), what was learnt is dropped and the windows start
afresh: the first ones would still hold the old path's audio.

Cost: the frames are the canceller's (`FrameHistory`), so nothing but three sums a frame;
a few long FFTs every 26 frames, over three frames (about 0.3 ms each here; 1.5 ms with the
cube).
"""

from __future__ import annotations

import numpy as np

from .frame_history import FrameHistory

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
# the loudspeaker's saturation, x - a x³: `a` stays where that is monotonic over full scale,
# is measured only once the fit has this many windows, and moves by at most SATURATION_STEP
# a hop (a young fit's residual is mostly its own error)
SATURATION_MAX = 1.0 / 3.0
SATURATION_MIN_WINDOWS = 4
SATURATION_STEP = 0.02
SATURATION_SIGNIFICANCE = 3.0  # standard errors of the faded estimate
SATURATION_SAMPLES_PER_DOF = 16  # the residual is coloured: this many samples count as one
# per frame, how fast a room's reverberation decays: at most 3 dB (RT60 0.2 s, faster is read
# as that) and at least 0.46 dB (RT60 1.3 s; slower, or no decay at all, is the fit's noise)
TAIL_DECAY_MIN, TAIL_DECAY_MAX = 0.5, 0.9


class BlockEstimate:
    """Feed it every frame the filter runs (`push`); when a fit has proven itself on fresh
    audio, `push` returns its time-domain taps: (linear taps, cubic taps or None)."""

    def __init__(
        self,
        frame_samples: int,
        linear_taps: int,
        history: FrameHistory,
        rate_hz: int = 16000,
        cubic: bool = False,
        saturation: bool = False,
    ) -> None:
        self.n = n = frame_samples
        self.linear_taps = linear_taps
        self.cubic = cubic  # also fit the distortion's branch
        # or instead measure the loudspeaker's saturation: `saturation` is the `a` of x - a x³,
        # which the canceller applies to the reference (the frames here have it applied)
        self._fit_saturation = saturation and not cubic
        self.saturation = 0.0
        # over the hops measured, faded: a·G - R, G (the cube's echo energy, R its product with
        # what the fit left), what the fit left per independent sample, and the hops' weight
        self._saturation_sums = [0.0, 0.0, 0.0, 0.0]
        self.cubic_taps = min(linear_taps, CUBIC_PARTITIONS * n)
        self._history = history  # the canceller's frames, holding at least a window's worth
        self._window_frames = -(-WINDOW // n)
        self._window = np.hanning(WINDOW).astype(np.float32)
        # a response tap at lag L is seen through the overlap of a window with itself moved by
        # L: cross-spectra of windows shrink it by that overlap, which is undone on the taps
        overlap = np.fft.irfft(np.abs(np.fft.rfft(self._window.astype(np.float64), 2 * WINDOW)) ** 2)[
            : WINDOW // 2
        ]
        self._unshrink = overlap[0] / np.maximum(overlap, overlap[0] * 0.1)
        bins = WINDOW // 2 + 1
        self._auto = np.zeros((3, bins), dtype=np.complex128)  # x·x, x·x³, x³·x³
        self._cross = np.zeros((2, bins), dtype=np.complex128)  # x·d, x³·d
        self._fade = float(np.exp(-HOP_FRAMES * n / rate_hz / MEMORY_S))
        self._frames = 0
        self._windows = 0
        self._heard = [0.0, 0.0, 0.0]  # this hop's energies: microphone, output error, background error
        self._playing = 0
        self._pending: np.ndarray | None = None  # the last fit's taps, to be judged
        self._deferred: tuple[np.ndarray, np.ndarray | None, np.ndarray] | None = None  # a window to fit
        self._saturation_due: tuple[np.ndarray, ...] | None = None  # a hop to measure
        # the echo the fit finds beyond the filter's span (the room's tail), as a share of
        # what lies within: the filter cannot cancel it, so the speech gate must expect it
        self.tail_share = 0.0

    def reset(self) -> None:
        """The path moved: what was learnt of it misleads."""
        self._auto[:] = 0
        self._cross[:] = 0
        self._windows = 0
        self._frames = 0  # the next window holds only frames heard after the move
        self._pending = None
        self._deferred = None
        self._saturation_due = None
        self._saturation_sums = [0.0, 0.0, 0.0, 0.0]  # the loudspeaker's saturation is its own: kept

    def push(
        self, mic: float, out_err: float, bg_err: float, learn: bool
    ) -> tuple[np.ndarray, np.ndarray | None] | None:
        """A frame has joined the history; its energies of the microphone, the output filter's
        error and the background filter's. `learn`: the speaker plays and no one talks over
        it, so the frame may enter the fit."""
        self._frames += 1
        heard = self._heard
        heard[0] += mic
        heard[1] += out_err
        heard[2] += bg_err
        self._playing += learn
        if self._deferred is not None:  # the last hop's window: fitted a frame later, so that
            self._learn(*self._deferred)  # no frame carries both halves of a hop's long FFTs
            self._deferred = None
            return None
        if self._saturation_due is not None:  # and its saturation measured a frame after that
            self._measure_saturation(*self._saturation_due)
            self._saturation_due = None
            return None
        if self._frames % HOP_FRAMES or self._frames < self._window_frames:
            return None
        mic, out_err, bg_err = heard
        heard[:] = [0.0, 0.0, 0.0]
        playing_frames, self._playing = self._playing, 0
        x_win, d_win = self._history.last(self._window_frames)[:, -WINDOW:]
        offer = None
        cube = x_win * x_win * x_win if self.cubic else None
        if self._pending is not None:
            offer, room, echo = self._judge(x_win, cube, d_win, min(out_err, bg_err) / (mic + 1e-12))
            if self._fit_saturation and playing_frames >= HOP_FRAMES // 2:
                self._saturation_due = (x_win, d_win, room, echo)
        if playing_frames >= HOP_FRAMES // 2:
            self._deferred = (x_win, cube, d_win)
        return offer

    def _judge(
        self, x: np.ndarray, cube: np.ndarray | None, d: np.ndarray, best_ratio: float
    ) -> tuple[tuple[np.ndarray, np.ndarray | None] | None, np.ndarray, np.ndarray]:
        """The pending fit's error on the last hop, which it was made before: its taps if they
        are to be offered (else None), and the fit's spectrum and echo of the hop, which the
        saturation is measured against."""
        taps, self._pending = self._pending, None
        spectra = np.fft.rfft(taps if cube is not None else taps[:1])  # type: ignore[index]
        hop = HOP_FRAMES * self.n
        if cube is None:
            echo = np.fft.irfft(spectra[0] * np.fft.rfft(x), WINDOW)[-hop:]
        else:
            spec = np.fft.rfft(np.stack([x, cube]))
            echo = np.fft.irfft(spectra[0] * spec[0] + spectra[1] * spec[1], WINDOW)[-hop:]
        heard = d[-hop:]
        ratio = float(np.sum((heard - echo) ** 2)) / (float(heard @ heard) + 1e-12)
        if ratio < OFFER_RATIO * best_ratio:
            linear = taps[0, : self.linear_taps].astype(np.float32)  # type: ignore[index]
            cubic = taps[1, : self.cubic_taps].astype(np.float32) if cube is not None else None  # type: ignore[index]
            return (linear, cubic), spectra[0], echo
        return None, spectra[0], echo

    def _measure_saturation(self, x: np.ndarray, d: np.ndarray, room: np.ndarray, echo: np.ndarray) -> None:
        """On the hop heard after the fit was made: what the fit leaves, against the cube of the
        reference through the fit's room (`room`, the fit's spectrum; `echo`, its echo of the hop,
        both from `_judge`). If the reference is bent less than the loudspeaker
        bends it, by Δ, the residual holds Δ times that cube's echo, so Δ is one least-squares
        number over the hop, and the sums of several hops make the estimate (each hop was heard
        with the `a` of its time). One number, so it needs no regularisation; a per-bin cubic
        branch does, and a strong one (`distortion_fit` keeps a quarter of the 10-20 dB such a
        branch is worth in aec_bench's close rooms; benchmarks/echo_bound.py). And on fresh
        audio in the time domain: measured from the fit's cross-spectra instead, the
        reverberant rooms read half as much again (the room's tail beyond the span leaks into
        the windows)."""
        if self._windows < SATURATION_MIN_WINDOWS:
            return
        hop = HOP_FRAMES * self.n
        cube = np.fft.irfft(room * np.fft.rfft(x * x * x), WINDOW)[-hop:]
        left = d[-hop:] - echo
        # the fit took in the part of the distortion that looks like the echo itself (a
        # compressing speaker is quieter): only the rest of the cube's echo is left to match
        cube = cube - (float(cube @ echo) / (float(echo @ echo) + 1e-30)) * echo
        energy = float(cube @ cube)
        sums = self._saturation_sums
        sums[0] = self._fade * sums[0] + self.saturation * energy - float(left @ cube)
        sums[1] = self._fade * sums[1] + energy
        sums[2] = self._fade * sums[2] + float(left @ left) / (hop / SATURATION_SAMPLES_PER_DOF)
        sums[3] = self._fade * sums[3] + 1.0
        if sums[1] <= 0:
            return
        a = self.saturation
        goal = sums[0] / sums[1]
        # move only for a difference the residual could not make by chance: a clean speaker's
        # `a` wandered to 0.025 on its own and cost 5 dB of a 45 dB cancellation
        if (goal - a) ** 2 * sums[1] < SATURATION_SIGNIFICANCE**2 * sums[2] / sums[3]:
            return
        goal = float(np.clip(goal, a - SATURATION_STEP, a + SATURATION_STEP))
        self.saturation = float(np.clip(goal, 0.0, SATURATION_MAX))

    def _learn(self, x: np.ndarray, cube: np.ndarray | None, d: np.ndarray) -> None:
        w = self._window
        auto, cross = self._auto, self._cross
        auto *= self._fade
        cross *= self._fade
        if cube is None:
            X, D = np.fft.rfft(np.stack([w * x, w * d]))
            auto[0] += X.real**2 + X.imag**2
            cross[0] += X.conj() * D
        else:
            X, X3, D = np.fft.rfft(np.stack([w * x, w * cube, w * d]))
            auto[0] += X.real**2 + X.imag**2
            auto[1] += X.conj() * X3
            auto[2] += X3.real**2 + X3.imag**2
            cross[0] += X.conj() * D
            cross[1] += X3.conj() * D
        self._windows += 1
        if self._windows < MIN_WINDOWS:
            return
        s11 = auto[0].real + REGULARISATION * auto[0].real.mean()
        if cube is None:
            taps = np.zeros((2, WINDOW))
            taps[0] = np.fft.irfft(cross[0] / s11, WINDOW)
        else:
            s22 = auto[2].real + CUBIC_REGULARISATION * auto[2].real.mean()
            s12 = auto[1]
            det = s11 * s22 - (s12.real**2 + s12.imag**2)
            h = np.stack(
                [(s22 * cross[0] - s12 * cross[1]) / det, (s11 * cross[1] - s12.conj() * cross[0]) / det]
            )
            taps = np.fft.irfft(h, WINDOW)
        taps[:, : WINDOW // 2] *= self._unshrink
        self._measure_tail(taps[0])
        taps[0, self.linear_taps :] = 0
        taps[1, self.cubic_taps :] = 0
        self._pending = taps

    def _measure_tail(self, taps: np.ndarray) -> None:
        """The room beyond the filter's span, from the fit's taps within it: their energy decays
        over the span's last half as the room's reverberation does, and the tail beyond is that
        decay carried on. (The taps beyond the span are not summed: the window's overlap shrinks
        them, and undoing that there lifts the fit's noise above the tail.) Taps at negative
        lags hold only the fit's estimation noise, which is taken off, or a young fit would
        read its noise as a slowly decaying room; what is left and does not decay like a room
        is noise too (a fit made while the room was loud with other sounds)."""
        span, n = self.linear_taps, self.n
        energy = taps**2
        noise = float(energy[WINDOW // 2 + WINDOW // 8 : WINDOW - WINDOW // 8].mean())
        gain = self._unshrink**2  # the noise on each tap was scaled with it
        quarter = span // 4
        early, late = (
            float(energy[a : a + quarter].sum()) - noise * float(gain[a : a + quarter].sum())
            for a in (2 * quarter, 3 * quarter)
        )
        frames = quarter / n  # the quarter's decay, bounded per frame
        if late <= 0 or early <= 0 or late >= early * TAIL_DECAY_MAX**frames:
            self.tail_share = 0.0  # nothing but noise that late (a dry room), or noise that does not decay
            return
        ratio = max(late / early, TAIL_DECAY_MIN**frames)
        self.tail_share = late * ratio / (1 - ratio) / (float(energy[:span].sum()) + 1e-20)
