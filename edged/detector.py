"""Per-frame speech decision in two stages, on the 16 kHz, 10 ms frames of the sample clock.

Fast stage: webrtcvad, gated by level over the tracked noise floor. It reacts
within tens of ms, so it marks where speech began, but it says "speech" to
music, traffic and clatter.

Second stage: Silero VAD, which tells speech from those, but reacts late and,
on reverberant far-field speech, only when the audio is loud: measured on the
development corpus, a sentence through a real room response scored 62 % of
frames at -10 dBFS and 0 % at -40 dBFS, while dry speech scored the same at
any level. So the second stage hears the room through its own automatic gain
(a peak follower that brings the loud parts to `agc_target_dbfs`); the fast
stage and the energy gate still see the true levels.

Under broadband noise (a tap, dishes) far-field speech stays invisible to the
second stage even so; it hears the room a second time through WebRTC's noise
suppressor (`denoise_level`), where those sentences stand out. That hearing
also makes a babble of distant talkers sound like a speaking user, so while it
has heard speech nearly all the recent time (`talking_room_share`: the room
itself is talking) only the plain hearing may start or keep a turn, and it
starts one only when surer (`talking_start_probability`): Silero's memory of a
long babble sometimes settles where it reads 0.3-0.5 for minutes on end (one
alignment of the corpus babble in 16 gave 15 false turns in 5 minutes at the
quiet room's threshold, 4 at 0.7), while a voice close to the device reads
near 1. One user talking on and on stays under that share (their own pauses:
at most 0.77 of 5 s in the bundled kitchen recording, against 0.90 and more for
babble), so a long request is not cut off by it. There the plain hearing also keeps
a turn only on a surer frame (`talking_hold_probability`): a sentence said 3 dB over
a babble kept its turn for 15 s after its last word, on the babble's voices reading
over `hold_probability`. On the development corpus, 0 dB babble held turns a median
12 s past the utterance's end, and the next sentence was lost in them (recall 75 %;
98 % with the surer bar).

Not every voice close to the device reads near 1: through a bright room
response (the corpus's clap recording) a sentence at -10 dBFS, 40 dB over a
room of distant talkers, read under 0.15 on the plain hearing and mostly
0.7-0.98 on the denoised one. Talk in the background seldom stands that far
over the floor, so a frame `talking_room_over_floor_db` over it is heard as in
a quiet room.

A babble of voices, denoised, also reads as speech to Silero: after a sentence
said over it, the denoised hearing kept the turn going until the babble paused
(a reply 4-6 s late at 5 dB SNR on the development corpus). Over such a babble
the suppressor removes as much as from the room alone, and over a voice far
less; so the denoised hearing keeps a turn only while it removes little of the
sound, for this room (`RemovedEnergy`).

Carried through a never-ending stream, Silero's recurrent memory drifts deaf: after
a minute of a kitchen, far-field sentences 5 dB over it read 0.03-0.16 where the
model wiped a second before them read 0.8-0.97. Its long memory is also what
rejects music and a babble, so it still decides; two short memories, wiped in
turn (`ShortMemories`), may add a turn where they are sure. Every hearing and
memory runs in one batched inference a chunk (`SileroBank`).

Silero also takes some chimes for a voice (a notification sound of three hummed
notes started a turn each time it played): a frame it would start a turn on must
also hold more partials than a tone (`tones.py`). Denoised, it takes some music
for a voice too: a turn the denoised hearing alone would start must not be made
of held notes (`music.py`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace

import numpy as np
import webrtcvad

from .config import DetectorConfig
from .denoise import Denoiser
from .frames import FRAME_MS, RATE_HZ
from .music import HISTORY_SAMPLES, HeldNotes
from .silero import CHUNK, SileroBank
from .tones import ToneEar
from .wavio import to_pcm16

SILENT_DBFS = -120.0


def frame_power(frame: np.ndarray) -> float:
    """Mean power of a float frame (full scale ±1)."""
    return float(np.dot(frame, frame)) / max(len(frame), 1)


def power_dbfs(power: float) -> float:
    """A mean power in dB of full scale (SILENT_DBFS for digital silence)."""
    return 10.0 * math.log10(power) if power > 1e-12 else SILENT_DBFS


def level_dbfs(frame: np.ndarray) -> float:
    """Mean power of a float frame in dB; a full-scale sine reads -3 dBFS."""
    return power_dbfs(frame_power(frame))


@dataclass(frozen=True, slots=True)
class Decision:
    level_dbfs: float
    noise_floor_dbfs: float
    vad: bool  # webrtcvad's verdict on the latest complete analysis block
    loud: bool  # level over floor + margin and over the absolute minimum
    probability: float  # the second stage's latest speech probability (0 when it does not run)
    onset: bool  # speech may have begun here: anchors how far back a turn's upload reaches
    trigger: bool  # strong enough evidence to start a turn
    speech: bool  # evidence that keeps a turn going
    denoised_probability: float = 0.0  # the second stage on noise-suppressed audio (0 when off)
    room_talking: bool = False  # the denoised hearing heard speech over talking_room_share of late
    removed_db: float = 0.0  # what the suppressor removed of the last second's sound (RemovedEnergy)
    room_removed_db: float = 0.0  # ... and the most it removed from any second of the last five
    tonal: bool = False  # the second stage would have started a turn, but it was a tone (tones.py)
    held_notes: bool = False  # the denoised hearing or the short memories alone would have started
    # one, on music (music.py)
    short_probability: float = 0.0  # the plain hearing's short memory (ShortMemories; 0 when off)
    short_denoised_probability: float = 0.0  # ... and the denoised hearing's


SILENT = Decision(SILENT_DBFS, SILENT_DBFS, False, False, 0.0, False, False, False)

# a denoised probability at or above this counts as "sounded like speech" for the talking-room share
TALKING_PROBABILITY = 0.5

# the keys that build what has listened to the room: a reload that changes none of them keeps it
HEARING_KEYS = (
    "mode",
    "denoise_level",
    "fresh_memory_ms",
    "agc_target_dbfs",
    "agc_release_db_per_s",
    "agc_max_gain_db",
)
FLOOR_KEYS = ("noise_floor_rise_db_per_s", "noise_floor_fall_db_per_s", "noise_floor_window_ms")


def _alike(a: DetectorConfig, b: DetectorConfig, keys: tuple[str, ...]) -> bool:
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def hears_alike(a: DetectorConfig, b: DetectorConfig) -> bool:
    """Are the second stage's models built the same way under both configurations?"""
    return _alike(a, b, HEARING_KEYS)


class BlockMaximum:
    """The largest value of the last `blocks` whole blocks of `block_frames` values and of the
    block under way: a comparison per value, and a maximum over the blocks once a block, so a
    window of seconds costs next to nothing per frame. `skip_first` leaves the first block out."""

    def __init__(self, blocks: int, block_frames: int, skip_first: bool = False) -> None:
        self._blocks: deque[float] = deque(maxlen=blocks)  # whole blocks' maxima, oldest first
        self._block_frames = block_frames
        self._skip = skip_first
        self._blocks_max = -math.inf
        self._current = -math.inf  # of the block under way
        self._count = 0

    @property
    def filled(self) -> bool:
        """At least one whole block is in the window."""
        return bool(self._blocks)

    @property
    def value(self) -> float:
        return max(self._current, self._blocks_max)

    def push(self, x: float) -> None:
        self._current = max(self._current, x)
        self._count += 1
        if self._count == self._block_frames:
            if self._skip:
                self._skip = False
            else:
                self._blocks.append(self._current)
                self._blocks_max = max(self._blocks)
            self._current, self._count = -math.inf, 0


class NoiseFloor:
    """Asymmetric level follower: drops quickly to the quiet parts, rises slowly,
    so it sits at the room's floor and speech (brief, loud) barely lifts it.

    The slow rise alone left it far too low for as long as half a minute whenever it
    started below the room (a microphone that fades in, as every file of the development
    corpus does) or the room got louder for good (a fan switched on): every sound then
    stood over it, and the fast stage's level gate let the room itself through. So it
    never stays below the quietest frame of the last `window_ms`: the room is no louder
    than that, and a user talking leaves quieter moments within a few seconds. From the
    start that holds over the time heard so far, less the first quarter second, where a
    microphone fades in: the floor knows the room by the end of the detector's warm-up
    (on the bundled recordings, speech, babble, a tap and a street, the window changes
    nothing after their first 7 s)."""

    BLOCK_FRAMES = 25  # the window's minimum is kept per block of frames

    def __init__(self, rise_db_per_s: float, fall_db_per_s: float, window_ms: int = 0) -> None:
        self._rise = rise_db_per_s * FRAME_MS / 1000.0
        self._fall = fall_db_per_s * FRAME_MS / 1000.0
        self.value_dbfs: float | None = None
        blocks = -(-window_ms // (FRAME_MS * self.BLOCK_FRAMES))  # whole blocks, at least the window
        # the quietest frame of the window, as the largest of the levels negated; without the
        # first block, where a microphone fades in
        self._window = BlockMaximum(blocks, self.BLOCK_FRAMES, skip_first=True) if blocks else None

    def update(self, level: float) -> float:
        v = self.value_dbfs
        if v is None:
            if level <= SILENT_DBFS:  # digital silence (a device starting up) is not the room
                return level
            v = level
        elif level > v:
            v = min(level, v + self._rise)
        else:
            v = max(level, v - self._fall)
        window = self._window
        if window is not None:
            window.push(-level)
            if window.filled:
                v = max(v, -window.value)
        self.value_dbfs = v
        return v


class PeakGain:
    """Gain that brings the room's recent loud parts to a target level: follows a louder
    frame at once, recovers at a fixed rate, never attenuates."""

    def __init__(self, target_dbfs: float, release_db_per_s: float, max_gain_db: float) -> None:
        self.target = target_dbfs
        self.release = release_db_per_s * FRAME_MS / 1000.0
        self.max_gain = max_gain_db
        self.peak_dbfs: float | None = None

    def gain(self, level: float) -> float:
        """Follow this frame's level (dBFS) and return the linear gain for it."""
        p = self.peak_dbfs
        self.peak_dbfs = p = level if p is None or level > p else max(level, p - self.release)
        gain_db = min(max(self.target - p, 0.0), self.max_gain)
        return 10 ** (gain_db / 20) if gain_db else 1.0


class ShortMemories:
    """The second stage's short memories: in each hearing two rows of the bank whose memories
    are wiped in turn, each every 2 × `fresh_memory_ms`; the older one speaks, so what speaks
    has always heard between one and two spans of the room.

    Silero carried through a never-ending stream drifts deaf: on the development corpus,
    after a minute of a kitchen, sentences through a bright room response 5 dB over it read
    at most 0.03-0.16, where the model wiped 0.8-6 s before them read 0.8-0.97 (and the same
    model, its chunks 10 ms earlier, 0.7). But a long memory is also what rejects music, a
    babble and a kitchen's clatter: with the memory faded by 3 % a chunk (a second's span)
    music started 477 false turns an hour, a babble 876. So the long memory decides as
    before, and the short ones may add a turn only when sure (`fresh_start_probability`),
    where the fast stage hears speech, the room is not talking, and what is heard is neither a
    tone nor held notes; they keep a turn going at `fresh_hold_probability`."""

    def __init__(self, span_chunks: int, rows_per_hearing: int) -> None:
        self._span = span_chunks
        self._per = rows_per_hearing
        self._ages = [0, span_chunks]  # chunks since each short memory was last wiped
        self.speaking = 1  # which short memory (0 or 1) speaks

    def chunk_heard(self, bank: SileroBank) -> None:
        """After each inference: age both short memories and wipe the one that has lived 2 spans."""
        for k in (0, 1):
            self._ages[k] += 1
            if self._ages[k] >= 2 * self._span:
                self._ages[k] = 0
                for h in range(bank.streams):
                    bank.wipe(h * self._per + 1 + k)
        self.speaking = 0 if self._ages[0] >= self._ages[1] else 1

    def row(self, hearing: int) -> int:
        return hearing * self._per + 1 + self.speaking


class RemovedEnergy:
    """How much of the sound the noise suppressor removed over the last second (dB), and the
    most it removed from any second of the last five: from the room alone.

    Far-field speech under a tap reads as speech only once denoised, and then it is most
    of what is left: over the second around it the suppressor removed a few dB (median
    1-4 dB on the development corpus). A babble of distant voices also reads as speech
    once denoised, but there the suppressor removed 8-9 dB, as much as from the babble
    alone: what the denoised hearing hears is a residue of the room. Compared with the
    room, not with a fixed bar: from the bundled running tap it removes 19 dB, and from
    the second around a far-field sentence 3 dB under it 12.5 dB, which must still hold
    the turn. A backward window, not a follower that drops with each quiet frame: a
    sentence's soft tail stays held while the words before it are still in the window."""

    WINDOW_FRAMES = 100  # one second
    BLOCK_FRAMES = 25  # the room's maximum is kept per block of frames ...
    ROOM_BLOCKS = 20  # ... over five seconds

    def __init__(self) -> None:
        self._frames: deque[tuple[float, float]] = deque(maxlen=self.WINDOW_FRAMES)
        self._in = 0.0
        self._out = 0.0
        self.db = 0.0
        self._room = BlockMaximum(self.ROOM_BLOCKS, self.BLOCK_FRAMES)

    def push(self, power_in: float, power_out: float) -> None:
        if len(self._frames) == self.WINDOW_FRAMES:
            old_in, old_out = self._frames[0]
            self._in -= old_in
            self._out -= old_out
        self._frames.append((power_in, power_out))
        self._in += power_in
        self._out += power_out
        # the running sums may drift a hair below zero once loud frames leave the window
        self.db = 10.0 * math.log10((max(self._in, 0.0) + 1e-12) / (max(self._out, 0.0) + 1e-12))
        self._room.push(self.db)

    @property
    def room_db(self) -> float:
        return self._room.value


def removal_bar(cfg: DetectorConfig, room_removed_db: float) -> float:
    """The most the suppressor may remove of the last second's sound for the denoised hearing
    to keep a turn going, in a room it removes `room_removed_db` from (see RemovedEnergy)."""
    return max(cfg.denoised_hold_removed_db, room_removed_db - cfg.denoised_hold_under_room_db)


class DenoisedHearing:
    """The room once more, through the noise suppressor, at its own gain, plus the share of
    recent time the second stage heard speech in it and how much the suppressor removed. The
    share starts full, so a device switched on in a talking room does not take the babble for a
    user before it has listened."""

    def __init__(self, cfg: DetectorConfig) -> None:
        self._denoiser = Denoiser(cfg.denoise_level)
        self._agc = PeakGain(cfg.agc_target_dbfs, cfg.agc_release_db_per_s, cfg.agc_max_gain_db)
        self.set_window(cfg.talking_room_window_ms)
        self.talking_share = 1.0
        self.removed = RemovedEnergy()

    def set_window(self, window_ms: int) -> None:
        self._alpha = FRAME_MS / window_ms

    def denoise(self, frame: np.ndarray, level: float) -> tuple[np.ndarray, float]:
        """The frame denoised and the gain to hear it at (`frame`: float or PCM16, as
        `Denoiser.process` takes it; `level`: its dBFS)."""
        y = self._denoiser.process(frame)
        power = frame_power(y)
        self.removed.push(10 ** (level / 10), power)
        return y, self._agc.gain(power_dbfs(power))

    def heard(self, probability: float) -> None:
        self.talking_share += self._alpha * ((probability >= TALKING_PROBABILITY) - self.talking_share)


PLAIN, DENOISED = 0, 1  # the hearings, as streams of the bank


class SecondStage:
    """Silero hearing the room plainly and, with `denoise_level`, through the noise suppressor;
    each hearing with its long memory and, with `fresh_memory_ms`, two short ones
    (`ShortMemories`); all in one batch a chunk (`SileroBank`). The plain hearing has its own
    gain (see the module note)."""

    def __init__(self, cfg: DetectorConfig) -> None:
        self._agc = PeakGain(cfg.agc_target_dbfs, cfg.agc_release_db_per_s, cfg.agc_max_gain_db)
        self.denoised = DenoisedHearing(cfg) if cfg.denoise_level > 0 else None
        # rows per hearing, the long memory first; the short memories need the fast stage
        fresh = cfg.fresh_memory_ms if cfg.mode == "combined" else 0
        self._per = 3 if fresh else 1
        hearings = 1 if self.denoised is None else 2
        self.bank = SileroBank([h for h in range(hearings) for _ in range(self._per)])
        span = max(1, round(fresh * RATE_HZ / 1000 / CHUNK))
        self.short = ShortMemories(span, self._per) if fresh else None

    def hear(self, frame: np.ndarray, pcm: np.ndarray, level: float) -> None:
        """This frame as float and as PCM16 (`level`: its dBFS)."""
        frames, gains = [frame], [self._agc.gain(level)]
        denoised = self.denoised
        if denoised is not None:
            y, gain = denoised.denoise(pcm, level)  # the same frame, converted once
            frames.append(y)
            gains.append(gain)
        if self.bank.process(frames, gains) and self.short is not None:
            self.short.chunk_heard(self.bank)
        if denoised is not None:
            denoised.heard(self.probability(DENOISED))

    def probability(self, hearing: int) -> float:
        """The latest speech probability of this hearing's long memory."""
        return self.bank.probabilities[hearing * self._per]

    def short_probability(self, hearing: int) -> float:
        """... of its short memory that speaks (0 without short memories)."""
        if self.short is None:
            return 0.0
        return self.bank.probabilities[self.short.row(hearing)]


class SpeechDetector:
    def __init__(self, cfg: DetectorConfig, previous: SpeechDetector | None = None) -> None:
        """`previous`: the detector of the configuration this one replaces on a reload. What
        it has learnt of the room is carried over wherever the part that learnt it is built
        the same way: the models' memory and gain, the talking share, webrtcvad's block, the
        noise floor. A fresh detector warms up for half a second and learns the floor again,
        and Silero fresh from start takes the first bars of music for a voice, so a reload
        that only moves a threshold must not start it over (nor load the models again)."""
        self.cfg = cfg
        self._second: SecondStage | None = None
        self._warming = cfg.warmup_ms // FRAME_MS  # frames left before a turn may start
        if previous is not None and hears_alike(cfg, previous.cfg):
            self._second = previous._second
            if self._second is not None and self._second.denoised is not None:
                self._second.denoised.set_window(cfg.talking_room_window_ms)
            self._warming = previous._warming
        elif cfg.mode != "webrtcvad":
            self._second = SecondStage(cfg)
        self._block_frames = cfg.vad_frame_ms // FRAME_MS
        if previous is not None and _alike(cfg, previous.cfg, ("vad_mode", "vad_frame_ms")):
            self._vad, self._block, self._filled = previous._vad, previous._block, previous._filled
            self._vad_state = previous._vad_state
        else:
            self._vad = webrtcvad.Vad(cfg.vad_mode)
            self._block = np.zeros(self._block_frames * RATE_HZ * FRAME_MS // 1000, dtype="<i2")
            self._filled = 0
            self._vad_state = False
        if previous is not None and _alike(cfg, previous.cfg, FLOOR_KEYS):
            self._floor = previous._floor
        else:
            self._floor = NoiseFloor(
                cfg.noise_floor_rise_db_per_s, cfg.noise_floor_fall_db_per_s, cfg.noise_floor_window_ms
            )
            if previous is not None:
                self._floor.value_dbfs = previous._floor.value_dbfs
        # frames since the second stage last heard speech
        self._since_held = previous._since_held if previous is not None else 0
        # what the tone check has heard of late carries over; only its bar may change. It keeps
        # the room's audio for the held-notes check too.
        if previous is not None:
            self._tones, self._notes = previous._tones, previous._notes
        else:
            self._tones = ToneEar(cfg.tone_max_partials, HISTORY_SAMPLES)
            self._notes = HeldNotes(self._tones)
        self._tones.max_partials = cfg.tone_max_partials

    def memory(self) -> list[np.ndarray]:
        """The second stage's recurrent state (every memory of every hearing; none without a
        second stage), to be recalled once the device has stopped speaking: see `Pipeline`."""
        return [] if self._second is None else [self._second.bank.memory()]

    def recall(self, memory: list[np.ndarray]) -> None:
        if self._second is not None:
            (state,) = memory
            self._second.bank.recall(state)

    @property
    def hears_denoised(self) -> bool:
        """The second stage also hears the room through noise suppression (denoise_level)."""
        return self._second is not None and self._second.denoised is not None

    @property
    def hears_short(self) -> bool:
        """The second stage also has short memories (fresh_memory_ms, combined mode)."""
        return self._second is not None and self._second.short is not None

    def process(self, frame: np.ndarray) -> Decision:
        """One 10 ms float frame in, one decision out (webrtcvad's verdict is the
        latest complete block's, so it lags by at most vad_frame_ms - 10 ms)."""
        d = self._decide(frame)
        if self._warming:
            # fresh from start the floor, the gain and the second stage's memory know nothing
            # of the room, and Silero takes the first bars of music or babble for a voice
            self._warming -= 1
            if d.trigger:
                d = replace(d, trigger=False)
        return d

    def _decide(self, frame: np.ndarray) -> Decision:
        n = len(frame)
        pcm = to_pcm16(frame)
        self._block[self._filled * n : (self._filled + 1) * n] = pcm
        self._filled += 1
        if self._filled == self._block_frames:
            self._vad_state = self._vad.is_speech(self._block.tobytes(), RATE_HZ)
            self._filled = 0
        level = level_dbfs(frame)
        floor = self._floor.update(level)
        cfg = self.cfg
        audible = level >= cfg.min_level_dbfs
        loud = audible and level >= floor + cfg.energy_margin_db
        fast = self._vad_state and loud
        second = self._second
        if second is None:
            return Decision(level, floor, self._vad_state, loud, 0.0, fast, fast, fast)
        second.hear(frame, pcm, level)
        prob = second.probability(PLAIN)
        self._tones.push(frame)
        trigger = prob >= cfg.start_probability
        held = prob >= cfg.hold_probability
        p_dn, talking, removed_db, room_db, notes = 0.0, False, 0.0, 0.0, False
        denoised = second.denoised
        # in a pause the suppressor's murmur reads near hold_probability: the denoised hearing
        # (long memory or short) keeps a turn only on a frame that stands over the floor, and
        # only while what it hears is not mostly the room (RemovedEnergy)
        denoised_may_hold = False
        if denoised is not None:
            p_dn = second.probability(DENOISED)
            talking = denoised.talking_share >= cfg.talking_room_share
            removed_db, room_db = denoised.removed.db, denoised.removed.room_db
            denoised_may_hold = level >= floor + cfg.onset_margin_db and removed_db <= removal_bar(
                cfg, room_db
            )
            if talking and level < floor + cfg.talking_room_over_floor_db:  # background talk
                trigger = prob >= max(cfg.start_probability, cfg.talking_start_probability)
                held = prob >= max(cfg.hold_probability, cfg.talking_hold_probability)
            else:
                if not trigger and p_dn >= cfg.denoised_start_probability:
                    # the denoised hearing alone would start a turn: not on held notes (music.py)
                    notes = self._held_notes()
                    trigger = not notes
                held = held or (p_dn >= cfg.hold_probability and denoised_may_hold)
        short = (0.0, 0.0)
        if second.short is not None:
            short = (second.short_probability(PLAIN), second.short_probability(DENOISED) if denoised else 0.0)
            if not talking:  # the short memories take a babble for a user: see ShortMemories
                sure = (
                    short[0] >= cfg.fresh_start_probability
                    or short[1] >= cfg.fresh_denoised_start_probability
                )
                if not trigger and sure and fast:
                    notes = self._held_notes()
                    trigger = not notes
                # the denoised one as its long memory (without that, it took a babble's voices
                # for a user and held the turn of words said over one for 13 s)
                held = (
                    held
                    or short[0] >= cfg.fresh_hold_probability
                    or (short[1] >= cfg.fresh_denoised_hold_probability and denoised_may_hold)
                )
        tonal = trigger and self._tones.tonal()  # a chime or a beep: see tones.py
        trigger = trigger and not tonal
        # what the second stage reports besides
        heard = (p_dn, talking, removed_db, room_db, tonal, notes, *short)
        if cfg.mode == "silero":
            return Decision(level, floor, self._vad_state, loud, prob, trigger, trigger, held, *heard)
        # combined: Silero starts turns; the fast stage anchors where speech began and,
        # once a turn runs, bridges the dips of Silero's probability on reverberant speech
        onset = self._vad_state and audible and level >= floor + cfg.onset_margin_db
        # ... but only for so long: a tap or traffic starting right after the user's words is
        # loud over the floor and webrtcvad calls it speech, yet the second stage hears none
        self._since_held = 0 if held else self._since_held + 1
        speech = held or (fast and (cfg.bridge_ms == 0 or self._since_held * FRAME_MS <= cfg.bridge_ms))
        return Decision(level, floor, self._vad_state, loud, prob, onset, trigger, speech, *heard)

    def _held_notes(self) -> bool:
        """Is the sound made of held notes (music.py)? A turn only the denoised hearing or the
        short memories would start is not started on them."""
        share = self.cfg.held_notes_share
        return bool(share) and self._notes.held_share() >= share
