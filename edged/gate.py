"""Turn gate: turns per-frame speech decisions into turn actions.

Hysteresis state machine, sans-I/O, on the sample clock:

    idle ──(enough trigger frames in the start window)──► speech
    speech ──(non-speech frame)──► trailing silence (still "speech" phase)
    speech ──(min_speech_ms of speech in all)──► confirm: the turn will not be discarded
    trailing ──(end silence of non-speech)──► commit, or discard if too little speech
    speech ──(max_turn_ms)──► forced commit; idle again once the sound pauses (end silence)

Money and the user pull in opposite directions here: every appended byte is
billed, but a clipped first syllable or a turn cut in a pause loses the user.
The second stage that triggers a turn reacts late, so at the start the gate
looks back through its ring for where the fast stage first heard activity
(bridging short gaps) and uploads from there, plus `pre_roll_ms`. The fast
stage misses what barely stands over the room's floor (a breath or a soft
first sound before the words, up to ~450 ms early on the development corpus),
so the pre-roll covers that, not the second stage's delay. It uploads only
`post_roll_ms` of a pause until speech resumes (a pause that ends the turn is
never sent, so the next turn's pre-roll may reach into it), and shortens long
pauses inside a turn.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from math import ceil
from typing import Protocol

import numpy as np

from .config import GateConfig
from .frames import FRAME_MS, FRAME_SAMPLES, RATE_HZ


@dataclass(frozen=True, slots=True)
class Start:
    turn: int
    speech_start: int  # sample of the first voiced frame that led to the start
    upload_start: int  # first sample uploaded (pre-roll included)
    at: int  # sample at which the decision was taken
    barge_in: bool


@dataclass(frozen=True, slots=True)
class Confirm:
    """The turn now holds `min_speech_ms` of speech: it can no longer be discarded. A
    barge-in pauses the reply at its Start and cancels it only here, so a start on a
    cough or on the device's own echo costs a pause, not the reply."""

    turn: int
    at: int


@dataclass(frozen=True, slots=True)
class Append:
    turn: int
    start: int
    audio: np.ndarray = field(repr=False)


@dataclass(frozen=True, slots=True)
class Commit:
    turn: int
    speech_start: int
    speech_end: int
    upload_start: int
    upload_end: int
    uploaded_samples: int
    at: int
    reason: str  # "end_silence" | "max_length" | "end_of_input"
    barge_in: bool


@dataclass(frozen=True, slots=True)
class Discard:
    turn: int
    speech_start: int
    speech_end: int
    uploaded_samples: int
    at: int
    reason: str  # "too_short"


Action = Start | Confirm | Append | Commit | Discard


class Evidence(Protocol):
    """What the gate needs from a detector decision."""

    @property
    def onset(self) -> bool: ...  # speech may have begun here (fast stage)
    @property
    def trigger(self) -> bool: ...  # may start a turn
    @property
    def speech(self) -> bool: ...  # keeps a turn going


@dataclass(frozen=True, slots=True)
class Verdict:
    onset: bool
    trigger: bool
    speech: bool

    @classmethod
    def of(cls, speech: bool) -> Verdict:
        """One detector whose every frame decision serves all three purposes."""
        return cls(speech, speech, speech)


class Phase(Enum):
    IDLE = "idle"
    SPEECH = "speech"
    TRAILING = "trailing"


def _frames(ms: int) -> int:
    return max(0, round(ms / FRAME_MS))


@dataclass
class _Turn:
    number: int
    speech_start: int
    upload_start: int
    barge_in: bool
    speech_end: int
    upload_end: int
    voiced_frames: int = 0
    uploaded_samples: int = 0
    confirmed: bool = False  # a Confirm was emitted


class TurnGate:
    def __init__(self, cfg: GateConfig) -> None:
        self.cfg = cfg
        self._win = _frames(cfg.start_window_ms)
        self._need = self._frames_of_window(cfg.start_voiced_ratio)
        self._need_after_turn = self._frames_of_window(cfg.after_turn_voiced_ratio)
        self._after_turn = cfg.after_turn_ms * RATE_HZ // 1000
        self._last_commit: int | None = None  # sample at which the last turn was committed
        self._pre_roll = cfg.pre_roll_ms * RATE_HZ // 1000
        self._lookback = _frames(cfg.onset_lookback_ms)
        self._onset_gap = _frames(cfg.onset_gap_ms)
        self._post_frames = _frames(cfg.post_roll_ms)
        self._end_frames = _frames(cfg.end_silence_ms)
        self._early_end_frames = _frames(cfg.early_end_silence_ms)
        self._settled = _frames(cfg.settled_speech_ms)
        self._gap_frames = _frames(cfg.max_gap_upload_ms)
        self._min_voiced = _frames(cfg.min_speech_ms)
        self._max_turn = cfg.max_turn_ms * RATE_HZ // 1000
        # the onset search reaches back `onset_lookback_ms`, the pre-roll further still
        self._ring: deque[tuple[int, np.ndarray, bool]] = deque(
            maxlen=max(self._lookback, self._win) + _frames(cfg.pre_roll_ms)
        )
        self._window: deque[tuple[int, bool]] = deque(maxlen=self._win)
        self._held: deque[tuple[int, np.ndarray]] = deque(
            maxlen=max(1, self._end_frames, self._early_end_frames)
        )
        self._silence = 0
        self._hushed = False  # a turn ran to max_turn_ms: wait for the sound to pause
        self._turn: _Turn | None = None
        self._turns = 0
        self.phase = Phase.IDLE
        self.discards = 0

    def take_over(self, old: TurnGate) -> None:
        """Carry into this gate, built for a reloaded configuration between turns, what `old`
        holds: the recent audio its pre-roll and onset search reach back into (a fresh gate
        clipped the first turn after a reload by up to the whole pre-roll), the turn count and
        the last commit."""
        if old._turn is not None:
            raise ValueError("a gate is reconfigured only between turns")
        self._ring.extend(old._ring)
        self._window.extend(old._window)
        self._turns, self._last_commit, self.discards = old._turns, old._last_commit, old.discards
        self._hushed, self._silence = old._hushed, old._silence

    def _frames_of_window(self, share: float) -> int:
        # the share is a user-facing decimal: 0.3 of 10 frames is 3, not ceil(3.0000000000000004)
        return max(1, ceil(round(share * self._win, 9)))

    @property
    def in_turn(self) -> bool:
        return self._turn is not None

    def push(self, frame: np.ndarray, start: int, d: Evidence, playing: bool = False) -> list[Action]:
        """Feed one 10 ms frame starting at sample `start` with the detector's evidence."""
        if self._turn is None:
            return self._idle(frame, start, d, playing)
        return self._in_turn(frame, start, d.speech, playing)

    def finish(self, at: int) -> list[Action]:
        """End of input: close an open turn as the daemon does on shutdown or device loss."""
        if self._turn is None:
            return []
        return self._end(at, "end_of_input")

    # -- idle: wait for enough trigger frames in the start window -------------------------------
    def _idle(self, frame: np.ndarray, start: int, d: Evidence, playing: bool) -> list[Action]:
        self._ring.append((start, frame, d.onset))
        if self._hushed:
            self._silence = 0 if d.speech else self._silence + 1
            if self._silence < self._end_frames:
                return []
            self._hushed = False
            self._silence = 0
        self._window.append((start, d.trigger))
        if not d.trigger or sum(v for _, v in self._window) < self._needed(start, playing):
            return []
        first_voiced = min(next(s for s, v in self._window if v), self._onset())
        upload_from = first_voiced - self._pre_roll
        frames = [(s, f) for s, f, _ in self._ring if s >= upload_from]
        self._turns += 1
        t = _Turn(
            number=self._turns,
            speech_start=first_voiced,
            upload_start=frames[0][0],
            barge_in=playing,
            speech_end=start + FRAME_SAMPLES,
            upload_end=frames[0][0],
            voiced_frames=sum(v for _, v in self._window),
        )
        self._turn = t
        self._ring.clear()
        self._window.clear()
        self._silence = 0
        self.phase = Phase.SPEECH
        out: list[Action] = [Start(t.number, t.speech_start, t.upload_start, start, playing)]
        out.append(self._append(np.concatenate([f for _, f in frames]), frames[0][0]))
        return out + self._confirm(start + FRAME_SAMPLES)

    def _needed(self, start: int, playing: bool) -> int:
        """Trigger frames in the start window that start a turn. Right after a sentence the
        second stage still hears speech in a dish or a door (on the development corpus 13 of
        the 14 false turns among its speech began within a second of an utterance's end), so
        until the reply plays a new turn needs more. While it plays, the echo-aware gate
        decides instead."""
        recent = self._last_commit is not None and start - self._last_commit < self._after_turn
        return self._need_after_turn if recent and not playing else self._need

    def _onset(self) -> int:
        """First sample of the fast stage's activity run that reaches the present, within
        the lookback, gaps up to `onset_gap_ms` bridged; the present frame if there is none."""
        ring = self._ring
        found = ring[-1][0]
        gap = 0
        for k in range(len(ring) - 1, max(-1, len(ring) - 1 - self._lookback), -1):
            s, _, onset = ring[k]
            if onset:
                found, gap = s, 0
            else:
                gap += 1
                if gap > self._onset_gap:
                    break
        return found

    # -- in a turn --------------------------------------------------------------------------------
    def _in_turn(self, frame: np.ndarray, start: int, speech: bool, playing: bool) -> list[Action]:
        t = self._turn
        assert t is not None
        end = start + len(frame)
        out: list[Action] = []
        if speech:
            if self._held:
                # a pause inside the turn: upload at most max_gap_upload_ms of it in all
                keep = max(0, self._gap_frames - self._post_frames)
                tail = list(self._held)[len(self._held) - keep :] if keep else []
                if tail:
                    out.append(self._append(np.concatenate([f for _, f in tail]), tail[0][0]))
                self._held.clear()
            out.append(self._append(frame, start))
            t.voiced_frames += 1
            t.speech_end = end
            self._silence = 0
            self.phase = Phase.SPEECH
            out += self._confirm(end)
        else:
            self._silence += 1
            self.phase = Phase.TRAILING
            if self._silence <= self._post_frames:
                out.append(self._append(frame, start))
            else:
                self._held.append((start, frame))
            if self._silence >= self._end_silence(t):
                return out + self._end(end, "end_silence")
        if end - t.upload_start >= self._max_turn:
            out += self._end(end, "max_length")
            # no user talks this long without a pause: it is the room (a TV, a crowd), and
            # starting the next turn right here billed it turn after turn for as long as it went
            # on; the gate listens again once the sound has paused
            self._hushed = speech
        return out

    def _end_silence(self, t: _Turn) -> int:
        """Frames of silence that end this turn. A pause after the first word or two is
        usually the user thinking, so it waits longer; once a sentence is under way a shorter
        silence ends it, which is most of the reply's delay saved on most turns."""
        settled = t.voiced_frames >= self._settled
        return self._end_frames if settled else self._early_end_frames

    def _confirm(self, at: int) -> list[Action]:
        """Confirm the turn once, when it can no longer end as too short."""
        t = self._turn
        assert t is not None
        if t.confirmed or t.voiced_frames < self._min_voiced:
            return []
        t.confirmed = True
        return [Confirm(t.number, at)]

    def _append(self, audio: np.ndarray, start: int) -> Append:
        t = self._turn
        assert t is not None
        t.uploaded_samples += len(audio)
        t.upload_end = start + len(audio)
        return Append(t.number, start, audio)

    def _end(self, at: int, reason: str) -> list[Action]:
        t = self._turn
        assert t is not None
        self._turn = None
        self._ring.clear()
        # the pause that ended the turn was never sent: the next turn's pre-roll may reach into it
        self._ring.extend((s, f, False) for s, f in self._held)
        self._held.clear()
        self._window.clear()
        self._silence = 0
        self.phase = Phase.IDLE
        if t.voiced_frames < self._min_voiced and reason != "max_length":
            self.discards += 1
            return [Discard(t.number, t.speech_start, t.speech_end, t.uploaded_samples, at, "too_short")]
        self._last_commit = at
        return [
            Commit(
                t.number,
                t.speech_start,
                t.speech_end,
                t.upload_start,
                t.upload_end,
                t.uploaded_samples,
                at,
                reason,
                t.barge_in,
            )
        ]
