"""Echo canceller: the device must not hear itself, and must still hear the user.

Three stages, per 10 ms frame on the 16 kHz clock (numpy, and numba for the per-bin loops):

1. Delay tracking. The speaker reference may lead the microphone by 0-300 ms
   and jump after an xrun. Binary band-energy spectra of microphone and
   reference are matched over all lags; the best lag (with hysteresis) sets
   how far the reference is delayed before the filter sees it, in whole frames.
   A jump of a few ms is found to the sample (`PathShift`) once the filter
   cancels much worse than it did, and the learnt response is moved by it.
2. Linear echo filter: a partitioned-block frequency-domain adaptive filter
   (overlap-save, 2N-point FFT, partitions of one frame), normalised by the
   reference power over the whole span the filter sees. Two paths: a
   background filter adapts all the time; the foreground filter, whose output
   is used, copies it only when it cancels better. Double talk thus never
   corrupts the output filter (the background is reset from it when it
   diverges), and after an echo-path change the background re-learns and is
   copied as soon as it is better.
   With `aec.block_fit` (on by default), a least-squares fit of the path over the last
   seconds (`edged.block_estimate`) is offered to the background filter whenever it
   predicts fresh audio clearly better: the filter has the room after two seconds of a
   reply instead of ten. The fit also measures the room's reverberation beyond the
   filter's span, which the speech gate then expects, and (`aec.saturation_fit`) how the
   loudspeaker saturates: the reference is bent the same way (x - a x³) before the filter,
   which then cancels the distortion with the echo. With `aec.distortion_fit`
   (experimental) it also fits the loudspeaker's distortion: a cubed reference through
   a short filter of its own, kept beside both filters.
3. Residual echo suppression for what a linear filter cannot remove (the
   loudspeaker's distortion, the tail beyond the filter): per-bin gains from
   the part of the output coherent with the filter's echo estimate, but at
   least `distortion_db` below that estimate (distortion is not coherent with
   it), with a decay like a room's reverberation, floored at `suppression_db`.
   While the gate hears the user over the reply and the output is no more coherent
   with the estimate than chance, the output is suppressed with the gentler
   `talk_over_oversubtraction`, through the pauses between their words too: the usual
   margin took a third of the user's voice (webrtcvad mode 3 kept 48 % of their speech
   frames on aec_bench, 88 % now). The speech detector hears the usual suppression
   throughout (`heard`).

`near_ratio_db` tells the speech gate how far the output stands above the
echo the canceller expects to have left: during playback only frames well
above it can be the user. At 7 cm the echo is 20 dB louder than the user, and
in the first seconds after the room changes the linear filter leaves a
residual within a few dB of the user's voice, which that ratio cannot tell
apart. Their pitch can: whatever the filter gets wrong, the residual repeats
at the periods of the device's own voice, which the filter's echo estimate
shows. `near_pitch` is how much more periodic the filter's error is, at its
strongest period, than the echo estimate has been at that period over the
last moments (a maximum that fades like the room's reverberation, for the
tail the filter misses). On benchmarks/echo.py's 20 rooms it caught 75 of 140
barge-ins within 300 ms instead of 62, with no more false ones.

Cost: arrays of 161 bins cost numpy's call overhead far more than their arithmetic, so
the per-bin loops are compiled (`kernels`, numba) and only the FFTs stay numpy calls.
FFTs of this size cost mostly their call too, so spectra that are needed together are
computed in one batched call, two filter partitions are constrained every other frame,
and while the speaker has been silent for longer than the filter's span the filter is
skipped entirely.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from . import fastfft, kernels
from .block_estimate import CUBIC_PARTITIONS, WINDOW, BlockEstimate
from .config import AecConfig
from .frame_history import FrameHistory

EPS = np.float32(1e-10)
INT16_UNIT = np.float32(1 / 32768)
LAG_PERSIST = 25  # updates (every other frame: 0.5 s) a new lag must stay best before it is taken
MEDIAN_STEP = 10**0.02  # the band medians move by 0.2 dB a frame
REG_FRACTION = 0.1  # step regularisation, relative to the mean reference power per bin
COPY_RATIO = 0.7  # background error below this share of the foreground's: copy it
# In double talk the background filter, adapting on the user's voice, can cancel a little of
# it for a few frames: copied then, it left the output filter 8 dB worse for the rest of the
# user's turn (aec_bench's close7cm_rt0.5), and a false barge-in after it. Its gain must stand
# out from how much the voice moves it. Only with the block fit: without it the filter's own
# steps are all it has to converge, and a strict rule slowed them (a false barge-in more on
# benchmarks/echo.py's rooms)
COPY_SIGNIFICANCE = 1.0
# ... but that test takes the output filter's whole error for the voice. Once the block fit has
# handed the background the room, the output filter's error is all its own misadjustment, the
# estimates' difference is that same error, and the test weighs the gain against itself: a
# coin toss, lost for seconds on end (an output filter held at 16 dB while the background
# cancelled 60). A voice cannot be cancelled 10 dB by a filter from the reference: a background
# that much better is taken whatever the test says
COPY_CLEAR = 0.1
RESET_RATIO = 4.0  # background error above this multiple (and above the mic's): reset it
ERR_SMOOTHING = 0.15
# while the gate's ratio says the user talks over the reply, and the output is no more
# coherent with the echo estimate than chance would make it (band mean above chance), the
# suppressor eases to talk_over_oversubtraction for the output. That begins once ONSET such
# frames outweigh the others (a leaky count: at 20 dB under the echo, a voice seldom keeps the
# ratio for frames in a row), and holds through the pauses between the user's words, HOLD
# frames after the last one: PESQ in double talk scores the whole stretch, pauses included
# (aec_bench's rooms, measured at 61f6ae3: 1.42 with a hold of 10 frames, 1.76 with 70, 1.85
# with 100, which costs a µs or two more a frame: more frames take the gentle path). In a
# pause, after RECENT frames, the margin is PAUSE_OVERSUBTRACTION at least: a hold begun by a
# residual burst must not let most of a second of residual through (webrtcvad started on it
# on aec_bench's other seeds). No hold in the first SETTLE frames after the canceller idled
# (its estimates are young and the coherence reads nothing), nor before the output filter has
# cancelled 20 dB of late (MIN_ERLE, a power ratio): then residual bursts pass for a user
TALK_OVER_COHERENCE = 0.1
TALK_OVER_ONSET_FRAMES = 4
TALK_OVER_HOLD_FRAMES = 70
TALK_OVER_RECENT_FRAMES = 30
TALK_OVER_PAUSE_OVERSUBTRACTION = 1.0
TALK_OVER_SETTLE_FRAMES = 20
TALK_OVER_MIN_ERLE = 100.0
# The talk-over decision weighs the output against an echo expectation of its own. The gate's
# counts all coherence above chance as echo; but averaged over few frames, the coherence of a
# voice with the echo estimate reads well above chance in some bins by chance alone, so that,
# with the user's voice in the output, the expectation rises with it: the voice stood only 2-9 dB
# over it. Once the output filter has cancelled TALK_OVER_SURE_ERLE (30 dB) of late, only
# coherence above TALK_OVER_SURE times chance counts; instead, the residual's least share of the
# echo estimate per bin over the last LEAK_BLOCKS blocks of LEAK_BLOCK_FRAMES frames (the leak;
# its minimum is taken, so the user's words do not raise it), times LEAK_MARGIN, is expected at
# least. On aec_bench's rooms that took double-talk PESQ from 1.86 to 2.02 and webrtcvad's
# recall there from 87.8 to 92.9 %, with no more triggers on its other seeds. The gate keeps its
# own expectation: with this one, it caught 2 more barge-ins of 28 but started on the reply
# once, and lost 5 of 112 elsewhere
TALK_OVER_SURE = 3.0
TALK_OVER_SURE_ERLE = 1000.0
LEAK_BLOCK_FRAMES = 25
LEAK_BLOCKS = 4
LEAK_MARGIN = 2.0
# A frame whose output filter leaves more than the microphone heard (by ADDS_ECHO, an energy
# ratio) holds echo the filter itself adds: the path has moved under it (aec_bench's path change
# put the output 3-4 dB over the microphone within 20 ms). A user cannot do that: their voice is
# in the microphone as much as in the output, and a filter that fits leaves less than the
# microphone. Such a frame is not evidence of the user, however far it stands above the expected
# echo, which follows a moved path only as the coherence builds, over 5-10 frames: a filter that
# cancelled 24 dB instead of 20 before the change made that a false barge-in. A user far louder
# than the echo leaves the output just under the microphone: a margin of 0 dB lost 11 % of the
# barge-ins caught on benchmarks/echo.py's rooms and 16 more; 1-3 dB lost none, and a moved room in the
# tests put frames of the move only 1.1 dB over the microphone
ADDS_ECHO = 10 ** (1.0 / 10)
# The block fit learns while the filter cancels worse than its best of late (`suspect`) only once
# that has lasted LOST_FRAMES frames in a row and the talk-over decision heard no user in them.
# Never fed then, a moved path starved it for as long as that best takes to fade (4-5 s, the
# filter at 15-22 dB meanwhile); fed at once, a user's first words, before the talk-over decision
# can hear them, went in too (the demo's reply then started a false barge-in). aec_bench's 4 rooms,
# and the gate on benchmarks/echo.py's 20 rooms and 16 held-out ones (252 barge-ins, and all
# 36 with nobody talking), never fed / fed at once / after 10 / 50 frames: ERLE after the path
# change 31.8 / 42.1 / 41.4 / 36.8 dB, double-talk PESQ 2.02 / 2.12 / 2.09 / 2.02, barge-ins
# caught 170 / 176 / 180 / 173, false barge-ins 6 / 8 / 5 / 6
LOST_FRAMES = 10
UNSET = np.float32(1e30)  # a least not yet seen (finite: times a silent bin's zero, it is zero)
TAIL_CONSTANT, GENTLE_CONSTANT, SURE_CONSTANT = 8, 10, 11  # places in kernels.suppress_bins' constants
SETTLE_FRAMES = 20  # after the echo tail, frames for the suppressor's gains to recover before idling
NO_ECHO_RATIO_DB = 60.0  # near_ratio_db while nothing is playing
CONVERGED_ERLE = 10.0  # mic over foreground-error energy (10 dB) at which the filter is trusted
LEARN_FRAMES = 150  # frames of playback after which an unconverged filter means: no echo to learn
COHERENCE_SMOOTHING = np.float32(0.3)
PITCH_WINDOW = 512  # samples of error and echo estimate whose periodicity is compared (32 ms)
PITCH_LAGS = (32, 200)  # the periods of a voice: 80-500 Hz
PITCH_AGES = tuple(range(0, 16))  # frames back: the echo estimate's windows of the last moments
REALIGN_HOP = 4  # frames between two looks at where the echo's main path lies, to the sample
REALIGN_MIC_FRAMES = 4  # microphone frames correlated with ...
REALIGN_REF_FRAMES = 8  # ... this much of the aligned reference: lags of 0 to 4 frames
REALIGN_MIN_LAG = 2  # lags 0-1, the window's edge, peak spuriously (double talk, path changes)
REALIGN_SMOOTHING = 0.5  # per look: the cross-spectrum remembers about 80 ms
REALIGN_PEAK = 0.3  # the phase-only correlation's peak that counts as a clear path
REALIGN_PERSIST = 2  # looks in a row that must agree on a shift before it is offered
REALIGN_PAUSE = 25  # looks (1 s) after an offer before the next one
REALIGN_DROP = 10 ** (6.0 / 10)  # the output filter 6 dB under its best of late: has the path moved?
REALIGN_BEST_FADE = 10 ** (-0.05 / 10)  # per frame, how fast that best is forgotten (5 dB/s)


class DelayTracker:
    """Lag (in frames) at which the reference best explains the microphone."""

    BANDS = 24  # each frame's bands packed as the bits of one uint32

    def __init__(self, max_frames: int, n_bins: int) -> None:
        self.max_frames = max_frames
        self._edges = np.linspace(8, n_bins - 1, self.BANDS + 1).astype(int)[:-1]  # 400 Hz up
        self._hist = np.zeros(2 * (max_frames + 1), dtype=np.uint32)  # mirrored ring of reference bands
        self._head = 0
        self._med = np.full((2, self.BANDS), 1e-6)  # running band medians: microphone, reference
        self._cost = np.full(max_frames + 1, 0.5)
        self._active = 0
        self._candidate = 0
        self._pending = 0
        self.lag = 0

    def _push(self, b: int | np.uint32) -> None:
        size = self.max_frames + 1
        self._head = (self._head - 1) % size
        self._hist[self._head] = b
        self._hist[self._head + size] = b

    def push_silence(self) -> None:
        """A frame with the speaker silent: keeps the history aligned with the sample clock."""
        self._push(0)

    def update(self, power: np.ndarray, ref_active: bool) -> int:
        """`power`: this frame's power spectra of microphone and reference, one row each."""
        mic_b, ref_b = kernels.band_bits(power, self._edges, self._med, MEDIAN_STEP)
        size = self.max_frames + 1
        self._push(ref_b)
        if not ref_active:
            return self.lag
        self._active += 1
        if self._active % 2:  # the lag moves slowly: every other frame is enough
            return self.lag
        # reverberation smears the match towards later lags: the earliest near-best one
        best = kernels.lag_costs(
            self._hist[self._head : self._head + size], mic_b, self._cost, 0.06, self.BANDS, 0.01
        )
        # switch only for a clear improvement that persists: every jump costs re-convergence
        if best != self.lag and self._cost[best] < self._cost[self.lag] - 0.05:
            self._pending = self._pending + 1 if best == self._candidate else 1
            self._candidate = best
            if self._pending >= LAG_PERSIST and self._active > 50:
                self.lag = best
        else:
            self._pending = 0
        return self.lag


class PathShift:
    """Where the echo's main path lies, to the sample: the peak of a phase-only (PHAT)
    cross-correlation of the microphone with the aligned reference, over the last frames.

    After an xrun the playout delay jumps by any number of samples. `DelayTracker` follows
    whole frames only, and only once a new lag has held for half a second, so a jump left the
    filter to learn the room again: on aec_bench's rooms a 4 ms jump cost it its 27 dB for
    more than a second, and the old response still dominated its taps 0.6 s later. This
    correlation shows the new delay 100-150 ms after, for jumps that leave the main path
    within the 4 frames after the aligned reference (about -10 to +28 ms); the learnt
    response, moved by the difference, is then offered to the background filter, and the copy
    rule keeps it only if it cancels better. Larger jumps are the tracker's, about a second
    later; the correlation then finds whatever of the jump the tracker's whole frames did not
    absorb (benchmarks/delay_jumps.py)."""

    def __init__(self, n: int, history: FrameHistory) -> None:
        self.n = n
        size = 2 * REALIGN_REF_FRAMES * n
        # row 0: the microphone at the end of the reference's span; row 1: the reference
        self._rows = np.zeros((2, size), dtype=np.float32)
        self._mic_at = (REALIGN_REF_FRAMES - REALIGN_MIC_FRAMES) * n
        self._history = history  # the canceller's, holding at least REALIGN_REF_FRAMES
        self._cross = np.zeros(size // 2 + 1, dtype=np.complex64)
        self._frames = 0
        self._candidate = 0
        self._pending = 0
        self._pause = 0
        self._looking = False  # a suspicion is under way: the correlation has state

    def restart(self) -> None:
        """The aligned reference moved by whole frames: frames of the old alignment would join
        those of the new in one look, so forget them and the correlation built on them."""
        self._frames = 0
        self._cross[:] = 0
        self._pending = 0

    def push(self, suspect: bool, main_tap: Callable[[], int]) -> int:
        """A frame of microphone and aligned reference has joined the history while the filter
        runs; returns the shift (samples, later positive) to offer the filter, 0 for none. The
        correlation costs two long FFTs, so it runs only while the filter cancels well under
        its best of late (`suspect`), every REALIGN_HOP frames. `main_tap`: where the output
        filter's strongest tap lies now (asked only on a look)."""
        k = REALIGN_REF_FRAMES
        self._frames += 1
        if not suspect:
            if self._looking:  # the next suspicion starts from what is heard then
                self._cross[:] = 0
                self._pending = self._pause = 0
                self._looking = False
            return 0
        self._looking = True
        if self._frames % REALIGN_HOP or self._frames < k:
            return 0
        if self._pause:
            self._pause -= 1
            return 0
        rows, m, span = self._rows, self._mic_at, k * self.n
        ref, mic = self._history.last(k)
        rows[1, :span] = ref
        rows[0, m:span] = mic[m:]
        spec = fastfft.rfft(rows)
        self._cross += REALIGN_SMOOTHING * (spec[0] * spec[1].conj() - self._cross)
        g = fastfft.irfft(self._cross / (np.abs(self._cross) + EPS), rows.shape[1])
        # the last lag sits on the window's far edge: left out too
        lag = REALIGN_MIN_LAG + int(np.argmax(g[REALIGN_MIN_LAG:m]))
        # the filter's main tap costs an inverse FFT of every partition: only for a clear peak
        shift = lag - main_tap() if g[lag] >= REALIGN_PEAK else 0
        if abs(shift) < 2:
            self._pending = 0
            return 0
        self._pending = self._pending + 1 if abs(shift - self._candidate) <= 1 else 1
        self._candidate = shift
        if self._pending < REALIGN_PERSIST:
            return 0
        self._pending = 0
        self._pause = REALIGN_PAUSE
        return shift


class EchoCanceller:
    """`process(mic, ref)`: one frame of each (int16 or float; the output keeps the input's
    scale). `ref` is what the speaker played when `mic` was captured."""

    def __init__(self, rate_hz: int = 16000, frame_samples: int = 160, cfg: AecConfig | None = None) -> None:
        cfg = cfg or AecConfig()
        self.cfg = cfg
        self.n = n = frame_samples
        self.k = k = n + 1
        self.parts = p = max(1, round(cfg.tail_ms * rate_hz / 1000 / n))
        f32, c64 = np.float32, np.complex64
        max_lag = cfg.max_delay_ms * rate_hz // 1000 // n
        self._tracker = DelayTracker(max_lag, k) if max_lag else None
        # the same "speaker plays" threshold as the gate's, as frame energy
        self._active_energy = n * 10 ** (cfg.far_end_active_dbfs / 10)
        self._refs = np.zeros((2 * (max_lag + 2), n), dtype=f32)  # mirrored ring of reference frames
        self._ref_head = 0
        self._X = np.zeros((2 * p, k), dtype=c64)  # mirrored ring: X[h:h+p] is newest-first
        self._x_head = 0
        self._W = np.zeros((2, p, k), dtype=c64)  # [background, foreground]
        self._pow = np.zeros(k, dtype=np.float64)  # reference power per bin over the p partitions
        self._xpow = np.zeros((p, k), dtype=f32)  # power of each block in the filter's span
        # the last two reference frames, and their cube (kept only to fit the distortion): one
        # array, so that both blocks' spectra come from one FFT call
        self._xbufs = np.zeros((2, 2 * n), dtype=f32)
        self._xbuf = self._xbufs[0]
        self._xbuf_new = self._xbuf[n:]
        # the loudspeaker's distortion: the cubed reference through a short filter of its own,
        # learnt only by the block fit (`edged.block_estimate`), kept beside both linear filters
        self.cubic_parts = p3 = min(p, CUBIC_PARTITIONS)
        self._X3 = np.zeros((2 * p3, k), dtype=c64)  # mirrored ring, as _X
        self._x3_head = 0
        self._W3 = np.zeros((2, p3, k), dtype=c64)  # [background, foreground]
        self._paths3 = np.zeros((2, k), dtype=c64)
        self._cubic = False  # a fit has given the filters a distortion branch
        self._distortion = cfg.block_fit and cfg.distortion_fit  # the cube's blocks are kept
        # rows of the one forward FFT after the filter: the background error (zeros, then the
        # frame) and the suppressor's four windowed rows
        self._fwd = np.zeros((5, 2 * n), dtype=f32)
        self._err_b = 0.0  # smoothed error energy of the background filter
        self._err_f = 0.0  # ... and of the foreground
        self._err_diff = 0.0  # ... and of the difference of their echo estimates
        self._copy_significance = COPY_SIGNIFICANCE if cfg.block_fit else 0.0
        self._copy_clear = 0.0 if self._distortion else COPY_CLEAR
        self._paths = np.zeros((2, k), dtype=c64)  # both filters' echo spectra
        self._mu_e = np.zeros(k, dtype=c64)  # the adaptation's step times error, per bin
        self._e = np.zeros((2, n), dtype=f32)  # both filters' error frames
        self._mic_energy = 0.0
        self._constrain = 0
        self._quiet_frames = p  # frames since the speaker last played: start idle
        self._win = np.sqrt(np.hanning(2 * n + 1)[:-1]).astype(f32)  # sqrt-Hann, 50 % overlap
        self._buf = np.zeros((4, 2 * n), dtype=f32)  # error, estimate, mic, reference: last two frames
        self._analysis = self._fwd[1:]  # the suppressor's windowed rows
        self._ola = np.zeros(n, dtype=f32)
        self._win_tail = self._win[n:] ** 2  # synthesis-window share of the next frame
        self._suppressed = False  # the last frame went through the suppressor: _power holds it
        # the suppressor's and the gate's running estimates per bin, one array for its kernel:
        # smoothed power of output and echo estimate, the expected residual echo, the gains,
        # the echo the speech gate expects, the echo estimate averaged over the filter's span
        # (what the room's tail beyond the span is the echo of), the echo the talk-over decision
        # expects, the leak, and the least share of the echo estimate in the output since the
        # last leak block (see TALK_OVER_SURE)
        self._estimates = np.zeros((9, k), dtype=f32)
        self._s_ee_yy = self._estimates[0:2]
        self._echo_psd, self._gain = self._estimates[2:4]
        self._gate_psd, self._held_psd, self._talk_psd, self._leak, self._least = self._estimates[4:]
        self._expectations = self._estimates[4:7]  # what idling forgets
        self._gain[:] = 1.0
        self._least[:] = UNSET
        self._leasts = np.full((LEAK_BLOCKS, k), UNSET, dtype=f32)  # of the last blocks
        self._leak_frames = 0
        self._sey = np.zeros(k, dtype=np.complex64)
        self._power = np.zeros((4, k), dtype=f32)  # power spectra of the suppressed frame's rows
        # the error spectrum after the suppressor's gains: the usual ones, and the gentle ones
        self._gained = np.zeros((2, k), dtype=c64)
        self._gained_usual = self._gained[0]
        coh_bias = COHERENCE_SMOOTHING / (2 - COHERENCE_SMOOTHING)
        self._coh_bias, self._sure_bias = coh_bias, coh_bias * TALK_OVER_SURE
        self._talk_margin = 10 ** (cfg.barge_in_margin_db / 10)
        self._sure = False  # the talk-over's expectation counts only coherence over TALK_OVER_SURE
        self._gate_decay = np.float32(np.exp(-n / rate_hz / (cfg.barge_in_decay_ms / 1000)))
        self._suppressor_constants = np.array(  # the constants, in kernels.suppress_bins' order
            [
                COHERENCE_SMOOTHING,
                coh_bias,
                1.0 / (1.0 - coh_bias),
                10 ** (-cfg.distortion_db / 10),
                np.exp(-n / rate_hz / (cfg.echo_decay_ms / 1000)),
                cfg.oversubtraction,
                10 ** (-cfg.suppression_db / 20),
                self._gate_decay,
                0.0,  # the room's tail beyond the filter, as a share of the echo estimate (a fit's)
                1.0 / p,  # the echo estimate it applies to is averaged over the filter's span
                cfg.talk_over_oversubtraction,  # the gentle gains' margin (this frame's)
                coh_bias,  # the coherence the talk-over's expectation counts above (this frame's)
            ],
            dtype=f32,
        )
        # keep estimating for as long as the frame loop still treats the room as echoing
        self._settle = max(SETTLE_FRAMES, cfg.echo_hangover_ms * rate_hz // 1000 // n - self.parts)
        # the bins from 300 to 3400 Hz, where a voice stands out, as weights for a dot product
        self._speech_band = np.zeros(k, dtype=f32)
        self._speech_band[int(300 * 2 * n / rate_hz) : int(3400 * 2 * n / rate_hz) + 1] = 1.0
        self._chance_excess = TALK_OVER_COHERENCE * float(self._speech_band.sum())
        self._talk_over = 0  # frames left of gentle suppression for the output (the user talks)
        self._adds_echo = False  # this frame's output filter left more than the microphone heard
        self._lost_frames = 0  # frames in a row the filter cancelled worse, no user heard (LOST_FRAMES)
        self._user_frames = 0  # a leaky count of frames the gate's ratio and the coherence call the user's
        self._estimated = 0  # frames the suppressor's estimates have run since the canceller idled
        self._ola_talk_over = np.zeros(n, dtype=f32)
        # the frame the speech detector hears: the output, suppressed as usual even while the
        # user talks over the reply (where the output is suppressed gently), so that the
        # detector's hearing of the device's residual does not change with the user
        self.heard = np.zeros(n, dtype=f32)
        self.near_ratio_db = NO_ECHO_RATIO_DB
        # a ring of the output filter's error and echo estimate of the last moments, by frame;
        # the next frame goes to slot _pitch_head, so the oldest sample is there
        slots = -(-PITCH_WINDOW // n) + PITCH_AGES[-1]
        self._pitch_ring = np.zeros((2, slots * n), dtype=f32)
        self._pitch_head = 0
        self._pitch_valid = False  # the ring holds a filter's error and estimate
        ends = slots * n - n * np.array(PITCH_AGES)  # counted from the oldest sample
        self._pitch_windows = ends[:, None] - PITCH_WINDOW + np.arange(PITCH_WINDOW)
        self._pitch_weights = self._gate_decay ** np.array(PITCH_AGES, dtype=f32)
        # the error's window, then the estimate's at each age, zero-padded against wrap-around
        self._pitch_rows = np.zeros((1 + len(PITCH_AGES), 2 * PITCH_WINDOW), dtype=f32)
        self.delay_frames = 0
        fit_frames = -(-WINDOW // n) if cfg.block_fit else 0
        self._history = FrameHistory(max(REALIGN_REF_FRAMES, fit_frames), n)
        self._path = PathShift(n, self._history)
        # the loudspeaker's saturation as fitted (`a` of x - a x³), applied to the reference
        self._saturation_fit = cfg.block_fit and cfg.saturation_fit and not self._distortion
        self._saturation = 0.0
        self._estimate = (
            BlockEstimate(n, p * n, self._history, rate_hz, self._distortion, self._saturation_fit)
            if cfg.block_fit
            else None
        )
        self._best = 0.0  # the output filter's best mic-to-error ratio of late (see PathShift)
        # the suppressor's analysis/synthesis holds one frame; half duplex only mutes
        self.latency_samples = 0 if cfg.half_duplex else n
        # until the filter has learnt the room once, its echo estimate means nothing
        self.converged = False
        self.learnt = False  # the filter has explained the echo once (convergence may time out first)
        self._learning_frames = 0

    # -- the frame ------------------------------------------------------------------------------
    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        mic, ref = np.asarray(mic), np.asarray(ref)
        ints = mic.dtype.kind in "iu"
        n = self.n
        buf = self._buf  # rows: error, echo estimate, mic, reference; last two frames each
        buf[:, :n] = buf[:, n:]
        # this frame's mic and reference go straight into their rows, as floats in [-1, 1]
        d, r = buf[2, n:], buf[3, n:]
        if ints:
            np.multiply(mic, INT16_UNIT, out=d)
            np.multiply(ref, INT16_UNIT, out=r)
        else:
            d[:] = mic
            r[:] = ref
        ref_active = float(np.dot(r, r)) > self._active_energy
        if self.cfg.half_duplex:
            self.near_ratio_db = -120.0 if ref_active else 0.0
            self.heard = np.zeros(n) if ref_active else np.array(mic, dtype=np.float32)
            return self.heard
        self._quiet_frames = 0 if ref_active else self._quiet_frames + 1
        if self._quiet_frames > self.parts + self._settle:
            out = self._idle(d, r)
        else:
            x = self._aligned(r, ref_active)
            if self._quiet_frames > self.parts:
                # the speaker has been silent longer than the echo lasts: nothing to cancel
                buf[0, n:] = d
                buf[1, n:] = 0.0
                self._pitch_valid = False  # nothing estimated to compare with
                self._adds_echo = False  # no filter ran: it added nothing
                self._lost_frames = 0  # and the frames in a row are broken
                np.multiply(buf, self._win, out=self._analysis)
                spec = fastfft.rfft(self._analysis)
            else:
                spec = self._cancel(d, x, ref_active)
            out = self._suppress(spec)
        if ints:
            scaled = out * np.float32(32768.0)
            self.heard = scaled if self.heard is out else self.heard * np.float32(32768.0)
            return scaled
        return out

    @property
    def saturation(self) -> float:
        """The loudspeaker's saturation as fitted: the `a` of x - a x³ applied to the reference
        before the filter (0: none, or `aec.saturation_fit` off)."""
        return self._saturation

    @property
    def echo_estimate(self) -> np.ndarray:
        """The output filter's estimate of the echo in the microphone frame just processed,
        in [-1, 1] and on the microphone's clock (before the suppressor and its latency);
        zeros while the filter does not run. benchmarks/echo_bound.py compares it with the
        true echo: what the linear stage leaves is what the suppressor must remove, and in
        double talk what masks the user."""
        return self._buf[1, self.n :]

    def _idle(self, d: np.ndarray, r: np.ndarray) -> np.ndarray:
        """No echo for a while: pass the microphone through with the suppressor's one frame of
        latency (what its analysis and synthesis give at unity gain) and keep its state as if
        it had run, so playback can start on any frame. Costs a few array copies."""
        n = self.n
        self._push_ref(r)
        if self._tracker is not None:
            self._tracker.push_silence()
        buf = self._buf
        buf[0, n:] = d
        buf[1, n:] = 0.0
        self._ola = self._win_tail * d
        if self._suppressed:  # the first idle frame: forget the last reply's voice
            self._pitch_ring[:] = 0.0
        self._suppressed = False
        self._gain[:] = 1.0
        self._echo_psd[:] = 0.0
        self._expectations[:] = 0.0
        self.near_ratio_db = NO_ECHO_RATIO_DB
        self._talk_over = 0
        self._user_frames = 0
        self._estimated = 0
        self.heard = buf[2, :n].copy()  # the last frame's microphone
        return self.heard

    def _push_ref(self, r: np.ndarray) -> int:
        size = len(self._refs) // 2
        self._ref_head = h = (self._ref_head - 1) % size
        self._refs[h] = r
        self._refs[h + size] = r
        return h

    def _aligned(self, r: np.ndarray, ref_active: bool) -> np.ndarray:
        size = len(self._refs) // 2
        h = self._push_ref(r)
        if self._tracker is None:
            return r
        if not self._suppressed:  # first frame after idling: keep the delay found before
            return self._refs[h + min(self.delay_frames, size - 1)]
        lag = self._tracker.update(self._power[2:], ref_active)  # the last frame's mic and ref
        shift = max(0, lag - 1)  # one frame of margin: the filter covers the last ms of the path
        if shift != self.delay_frames:
            self._shift_filters(shift - self.delay_frames)
            self.delay_frames = shift
        return self._refs[h + min(shift, size - 1)]

    def _shift_filters(self, frames: int) -> None:
        """The reference moved by whole partitions: move the learnt response with it, and the
        reference history the filter holds, so that it cancels on without a gap."""
        for w in self._W:
            shifted = np.zeros_like(w)
            if 0 < frames < self.parts:
                shifted[:-frames] = w[frames:]
            elif 0 < -frames < self.parts:
                shifted[-frames:] = w[:frames]
            w[:] = shifted
        self._forget_distortion()
        self._path.restart()
        n, p, h = self.n, self.parts, self._x_head
        # under the new alignment the block that ended i frames ago ended i + frames ago
        # under the old one: held already, or (delay shrinking) still in the raw reference
        blocks = np.zeros((p, self.k), dtype=np.complex64)
        fresh = min(p, max(0, -frames))  # the newest blocks, not yet seen under the old delay
        end = min(p, p - frames)
        if fresh < end:
            blocks[fresh:end] = self._X[h + fresh + frames : h + end + frames]
        # the raw reference ring: this frame at _ref_head, the frame before at +1
        at = self._ref_head + 1 + self.delay_frames + frames
        if fresh:
            raw = np.stack([self._refs[at + i + 1 : at + i - 1 : -1].reshape(-1) for i in range(fresh)])
            blocks[:fresh] = fastfft.rfft(self._bent(raw))
        self._x_head = 0
        self._X[:p] = blocks
        self._X[p:] = blocks
        self._xpow[:] = blocks.real**2 + blocks.imag**2
        self._pow[:] = self._xpow.sum(axis=0)
        last = self._refs[at]  # the last aligned frame, the next block's first half
        self._xbufs[0, n:] = self._bent(last)
        self._xbufs[1, n:] = last * last * last

    def _bent(self, x: np.ndarray) -> np.ndarray:
        """The reference as the loudspeaker plays it, its saturation as fitted (what
        `kernels.shift_in` does frame by frame)."""
        return x - self._saturation * x * x * x

    def _forget_distortion(self) -> None:
        """The reference moved under the filters: the fit's cross-spectra and the distortion
        branch belong to the old alignment (its cubed blocks are rebuilt over the next frames;
        the branch is off until the next fit)."""
        self._W3[:] = 0
        self._X3[:] = 0
        self._cubic = False
        if self._estimate is not None:
            self._estimate.reset()

    # -- linear filter ------------------------------------------------------------------------------
    def _cancel(self, d: np.ndarray, x: np.ndarray, ref_active: bool) -> np.ndarray:
        """Filters and adapts; writes the output filter's error and echo estimate into the
        suppressor's rows and returns their spectra. An FFT this small costs mostly its call,
        so the background error's spectrum is taken in the same call as the suppressor's."""
        n, p, p3 = self.n, self.parts, self.cubic_parts
        fitting = self._estimate is not None
        self._x_head = h = (self._x_head - 1) % p
        if self._distortion:  # the cube's block too, in the same FFT call
            xb = self._xbufs
            xb[:, :n] = xb[:, n:]
            xb[0, n:] = x
            np.multiply(x * x, x, out=xb[1, n:])
            block, cubed = fastfft.rfft(xb)
            self._x3_head = h3 = (self._x3_head - 1) % p3
            self._X3[h3] = self._X3[h3 + p3] = cubed
        else:
            xb = self._xbuf
            # what the loudspeaker plays, as its saturation is fitted; the history keeps it too
            kernels.shift_in(xb, x, self._saturation)
            x = self._xbuf_new
            block = fastfft.rfft(xb)
        kernels.push_block(block, self._X, self._xpow, self._pow, h, p)
        X = self._X[h : h + p]
        kernels.filter_paths(self._W, X, self._paths)
        if self._cubic:
            h3 = self._x3_head
            kernels.filter_paths(self._W3, self._X3[h3 : h3 + p3], self._paths3)
            self._paths += self._paths3
        ys = fastfft.irfft(self._paths, 2 * n)[:, n:]  # both paths at once
        e = self._e  # [background, foreground]
        energy_b, energy_f, energy_d, energy_diff = kernels.errors(d, ys, e)
        self._adds_echo = energy_f > ADDS_ECHO * energy_d
        a = ERR_SMOOTHING
        self._err_b += a * (energy_b - self._err_b)
        self._err_f += a * (energy_f - self._err_f)
        self._mic_energy += a * (energy_d - self._mic_energy)
        self._err_diff += a * (energy_diff - self._err_diff)
        # the background must cancel better by more than chance: its gain over the output
        # filter, squared, against the output's error times the two estimates' difference,
        # which is how much a voice in the error moves that gain by chance (see COPY_SIGNIFICANCE),
        # unless it is clearly better (COPY_CLEAR)
        gap = self._err_f - self._err_b
        copy = self._err_b < COPY_RATIO * self._err_f and (
            self._err_b < self._copy_clear * self._err_f
            or gap * gap >= self._copy_significance * self._err_f * self._err_diff
        )
        buf = self._buf
        h = self._pitch_head
        kernels.stage(e, ys, 0 if copy else 1, buf, self._pitch_ring, h * n, self._fwd, self._win)
        self._pitch_head = (h + 1) % (self._pitch_ring.shape[1] // n)
        self._pitch_valid = True
        if ref_active:
            spec = fastfft.rfft(self._fwd)  # the background error's, then the suppressor's
            self._adapt(X, spec[0])
            spec = spec[1:]
            if not self.learnt:
                # learnt the room, or after a while of playback still nothing the reference
                # explains (a speaker the microphone barely hears): stop withholding barge-in.
                # The filter may learn only later, once the delay tracker has found a long
                # lag; from then on a drop in cancelling can mean the path moved (PathShift).
                self.learnt = self._mic_energy > CONVERGED_ERLE * self._err_f > 0
                self._learning_frames += 1
                self.converged = self.learnt or self._learning_frames > LEARN_FRAMES
        else:
            spec = fastfft.rfft(self._analysis)
        wb, wf = self._W
        w3 = self._W3  # [background, foreground]: zeros until a fit gives them a distortion branch
        if copy:
            wf[:] = wb
            if self._cubic:
                w3[1] = w3[0]
            self._err_f = self._err_b
        elif self._err_b > RESET_RATIO * self._err_f and self._err_b > self._mic_energy:
            wb[:] = wf
            if self._cubic:
                w3[0] = w3[1]
            self._err_b = self._err_f
        suspect = False
        if ref_active and self.learnt:
            erle = self._mic_energy / (self._err_f + 1e-12)
            self._best = max(erle, self._best * REALIGN_BEST_FADE)
            suspect = erle * REALIGN_DROP < self._best
        self._lost_frames = self._lost_frames + 1 if suspect and not self._talk_over else 0
        # every frame the filter runs, so the correlation sees consecutive ones
        self._history.push(x, d)
        shift = self._path.push(suspect, self._main_tap)
        if shift:
            wb[:] = self._shifted(wf, shift)
            if self._cubic:
                w3[0] = self._shifted(w3[1], shift)
            if fitting:
                self._estimate.reset()
            self._err_b = self._err_f  # judged afresh by the copy rule
        fit = None
        if fitting:
            learn = ref_active and (not suspect or self._lost_frames > LOST_FRAMES)
            fit = self._estimate.push(energy_d, energy_f, energy_b, learn)  # type: ignore[union-attr]
        if self._saturation_fit:
            self._saturation = self._estimate.saturation  # type: ignore[union-attr]
        if fit is not None:
            wb[:] = self._partitions(fit[0], p)
            if fit[1] is not None:
                w3[0] = self._partitions(fit[1], p3)
                self._cubic = True
            self._err_b = self._err_f  # judged by the copy rule, as the filter's own steps are
            self._suppressor_constants[TAIL_CONSTANT] = self._estimate.tail_share  # type: ignore[union-attr]
        return spec

    def _partitions(self, taps: np.ndarray, parts: int) -> np.ndarray:
        """Time-domain taps as the spectra of `parts` partitions of one frame each."""
        n = self.n
        blocks = np.zeros((parts, 2 * n), dtype=np.float32)
        blocks[:, :n] = np.pad(taps, (0, parts * n - len(taps))).reshape(parts, n)
        return fastfft.rfft(blocks)

    def _main_tap(self) -> int:
        """Where the output filter's strongest tap lies (samples after the aligned reference):
        the loudspeaker's direct path. Over the whole filter: when the delay tracker has moved
        by whole frames for a jump the filter had not learnt, the learnt path lies frames
        away from where the correlation then finds it."""
        return int(np.argmax(np.abs(fastfft.irfft(self._W[1], 2 * self.n)[:, : self.n])))

    def _shifted(self, w: np.ndarray, samples: int) -> np.ndarray:
        """The filter's response moved `samples` later (earlier if negative)."""
        n, p = self.n, len(w)
        taps = fastfft.irfft(w, 2 * n)[:, :n].reshape(-1)
        moved = np.zeros((p, 2 * n), dtype=np.float32)
        flat = np.zeros(p * n, dtype=np.float32)
        if samples >= 0:
            flat[samples:] = taps[: p * n - samples]
        else:
            flat[:samples] = taps[-samples:]
        moved[:, :n] = flat.reshape(p, n)
        return fastfft.rfft(moved)

    def near_pitch(self) -> float:
        """How much more periodic the filter's error is, at its strongest period, than the echo
        estimate has been at that period of late (see the module note); 0 while the filter
        does not run. Costs two FFTs of 17 rows (about 80 µs here): the frame loop asks only where
        the answer changes its decision (5 % of the frames of a reply nobody talks over)."""
        if not self._pitch_valid:
            return 0.0
        ring, w = self._pitch_ring, PITCH_WINDOW
        at = (self._pitch_windows + self._pitch_head * self.n) % ring.shape[1]
        rows = self._pitch_rows
        rows[0, :w] = ring[0, at[0]]
        rows[1:, :w] = ring[1, at]
        spec = fastfft.rfft(rows)
        acf = fastfft.irfft(spec.real**2 + spec.imag**2, 2 * w)
        lo, hi = PITCH_LAGS
        lag = lo + int(np.argmax(acf[0, lo : hi + 1]))
        mine = float(acf[0, lag]) / (float(acf[0, 0]) + EPS)
        echo = acf[1:, lag - 2 : lag + 3].max(axis=1) / (acf[1:, 0] + EPS)
        return mine - max(float((echo * self._pitch_weights).max()), 0.0)

    def _adapt(self, X: np.ndarray, E: np.ndarray) -> None:
        """`E`: spectrum of the background filter's error frame."""
        kernels.adapt(self._W[0], X, E, self._pow, self.cfg.step, REG_FRACTION, self._mu_e)
        if self._constrain % 2 == 0:  # keep each partition a causal N-tap response, two at a time
            n, p, c = self.n, self.parts, self._constrain
            # a slice where it can be (fancy indexing costs more); with an odd count, the last
            # partition pairs with the first
            rows: slice | list[int] = slice(c, c + 2) if c + 2 <= p else [c % p, (c + 1) % p]
            w = fastfft.irfft(self._W[0, rows], 2 * n)
            w[:, n:] = 0
            self._W[0, rows] = fastfft.rfft(w)
        self._constrain = (self._constrain + 1) % (2 * ((self.parts + 1) // 2))

    def _take_leak(self) -> None:
        """A leak block is over: the leak is the least share of the echo estimate in the output
        over the last blocks, with a margin (see TALK_OVER_SURE)."""
        self._leak_frames = 0
        leasts = self._leasts
        leasts[:-1] = leasts[1:]
        leasts[-1] = self._least
        self._least[:] = UNSET
        least = leasts.min(axis=0)
        np.multiply(np.where(least < UNSET, least, 0.0), LEAK_MARGIN, out=self._leak)

    # -- residual echo suppression ----------------------------------------------------------------
    def _suppress(self, spec: np.ndarray) -> np.ndarray:
        """`spec`: this frame's windowed spectra of error, echo estimate, mic and reference."""
        n = self.n
        # Per bin (kernels.suppress_bins), residual echo = the part of the output coherent with
        # the filter's echo estimate: the user's voice is not, so double talk does not inflate
        # it. A coherence averaged over few frames reads about 1/N even for unrelated signals,
        # which is taken off. The loudspeaker's distortion is not coherent with the linear
        # estimate, yet it follows its level: at least that share of the estimate is residual,
        # with a reverberant tail (rises with the estimate, decays like the room). Gains fall at
        # once on echo and recover over a few frames (no musical noise, no clipped onsets). The
        # gate's expectation lingers like the room's reverberation, which the filter's tail does
        # not cover: a pause in the device's speech is not a user's word.
        self._suppressed = True  # its power spectra are also the delay tracker's
        margin = -1.0  # none: the gentle gains are not needed
        if self._talk_over:  # the gentle gains' margin: in a pause between words, less gentle
            margin = self.cfg.talk_over_oversubtraction
            if self._talk_over < TALK_OVER_HOLD_FRAMES - TALK_OVER_RECENT_FRAMES:
                margin = max(margin, TALK_OVER_PAUSE_OVERSUBTRACTION)
        self._suppressor_constants[GENTLE_CONSTANT] = margin
        sure = self._best > TALK_OVER_SURE_ERLE
        if sure is not self._sure:
            self._sure = sure
            self._suppressor_constants[SURE_CONSTANT] = self._sure_bias if sure else self._coh_bias
        near, expected, expected_talk, excess = kernels.suppress_bins(
            spec,
            self._power,
            self._estimates,
            self._sey,
            self._speech_band,
            self._gained,
            self._suppressor_constants,
        )
        # the user talks over the reply: the output is suppressed gently (both rows in one call)
        out = fastfft.irfft(self._gained if self._talk_over else self._gained_usual, 2 * n)
        out *= self._win
        usual = out[0] if self._talk_over else out
        frame = self._ola + usual[:n]
        self._ola = usual[n:]
        self.heard = frame
        if self._talk_over:
            frame = self._ola_talk_over + out[1, :n]
            self._ola_talk_over = out[1, n:]
        else:
            self._ola_talk_over = self._ola
        self._leak_frames += 1
        if self._leak_frames == LEAK_BLOCK_FRAMES:
            self._take_leak()
        if self.converged:
            self.near_ratio_db = 10 * math.log10((near + EPS) / (expected + EPS))
            if self._adds_echo:  # the path moved (see ADDS_ECHO)
                self.near_ratio_db = min(self.near_ratio_db, 0.0)
            self._estimated += 1
            user = (
                not self._adds_echo
                and near >= self._talk_margin * expected_talk
                and excess < self._chance_excess
                and self._estimated > TALK_OVER_SETTLE_FRAMES
                and self._best > TALK_OVER_MIN_ERLE
            )
            self._user_frames = self._user_frames + 1 if user else max(0, self._user_frames - 1)
            onset = self._user_frames >= TALK_OVER_ONSET_FRAMES or (user and self._talk_over > 0)
            self._talk_over = TALK_OVER_HOLD_FRAMES if onset else max(0, self._talk_over - 1)
        else:
            self.near_ratio_db = -NO_ECHO_RATIO_DB
        return frame


def warm_up() -> None:
    """Runs a canceller over a few frames of noise, so its compiled kernels are built (or
    loaded from numba's cache) now rather than on the first frames of live audio, where a
    first compile (seconds on a Pi) would stall the stream."""
    ec = EchoCanceller()
    noise = np.random.default_rng(0).standard_normal((6, ec.n)).astype(np.float32) * 0.1
    for frame in noise:  # the tracker's lag costs run every other frame with the speaker on
        ec.process(frame, frame)


class PassThrough:
    """The slot's contract with nothing cancelled: used when the canceller is disabled."""

    near_ratio_db = NO_ECHO_RATIO_DB
    latency_samples = 0

    def __init__(self, rate_hz: int = 16000, frame_samples: int = 160) -> None:
        self.rate_hz = rate_hz
        self.frame_samples = frame_samples
        self.heard = np.zeros(frame_samples, dtype=np.float32)

    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        self.heard = mic
        return mic

    def near_pitch(self) -> float:
        return 0.0
