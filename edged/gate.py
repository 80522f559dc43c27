"""Turn gate: turns per-frame speech decisions into turn actions.

Hysteresis state machine, sans-I/O, on the sample clock:

    idle ──(voiced share of the start window reached)──► speech
    speech ──(non-speech frame)──► trailing silence (still "speech" phase)
    trailing ──(end_silence_ms of non-speech)──► commit, or discard if too little speech
    speech ──(max_turn_ms)──► forced commit (a new turn follows if speech goes on)

Money and the user pull in opposite directions here: every appended byte is
billed, but a clipped first syllable or a turn cut in a pause loses the user.
So the gate keeps a pre-roll ring (the onset is always uploaded), uploads only
`post_roll_ms` of a pause until speech resumes (a pause that ends the turn is
never sent), and shortens long pauses inside a turn.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

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


Action = Start | Append | Commit | Discard


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
    continued: bool = False  # follows a forced commit: the tail of a long utterance, never "too short"


class TurnGate:
    def __init__(self, cfg: GateConfig) -> None:
        self.cfg = cfg
        self._win = _frames(cfg.start_window_ms)
        self._need = max(1, int(np.ceil(cfg.start_voiced_ratio * self._win)))
        self._pre_roll = cfg.pre_roll_ms * RATE_HZ // 1000
        self._post_frames = _frames(cfg.post_roll_ms)
        self._end_frames = _frames(cfg.end_silence_ms)
        self._gap_frames = _frames(cfg.max_gap_upload_ms)
        self._min_voiced = _frames(cfg.min_speech_ms)
        self._max_turn = cfg.max_turn_ms * RATE_HZ // 1000
        # pre-roll must reach back from the first voiced frame of a full window
        self._ring: deque[tuple[int, np.ndarray]] = deque(maxlen=self._win + _frames(cfg.pre_roll_ms))
        self._window: deque[tuple[int, bool]] = deque(maxlen=self._win)
        self._held: deque[tuple[int, np.ndarray]] = deque(maxlen=max(1, self._end_frames))
        self._silence = 0
        self._turn: _Turn | None = None
        self._turns = 0
        self.phase = Phase.IDLE
        self.discards = 0

    @property
    def in_turn(self) -> bool:
        return self._turn is not None

    def push(self, frame: np.ndarray, start: int, speech: bool, playing: bool = False) -> list[Action]:
        """Feed one 10 ms frame starting at sample `start` with the detector's verdict."""
        if self._turn is None:
            return self._idle(frame, start, speech, playing)
        return self._in_turn(frame, start, speech, playing)

    def finish(self, at: int) -> list[Action]:
        """End of input: close an open turn as the daemon does on shutdown or device loss."""
        if self._turn is None:
            return []
        return self._end(at, "end_of_input")

    # -- idle: wait for enough voiced frames in the start window ---------------------------------
    def _idle(self, frame: np.ndarray, start: int, speech: bool, playing: bool) -> list[Action]:
        self._ring.append((start, frame))
        self._window.append((start, speech))
        if not speech or sum(v for _, v in self._window) < self._need:
            return []
        first_voiced = next(s for s, v in self._window if v)
        upload_from = first_voiced - self._pre_roll
        frames = [(s, f) for s, f in self._ring if s >= upload_from]
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
        return out

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
        else:
            self._silence += 1
            self.phase = Phase.TRAILING
            if self._silence <= self._post_frames:
                out.append(self._append(frame, start))
            else:
                self._held.append((start, frame))
            if self._silence >= self._end_frames:
                return out + self._end(end, "end_silence")
        if end - t.upload_start >= self._max_turn:
            out += self._end(end, "max_length")
            if speech:
                # speech goes on: the next turn starts right here, nothing is lost
                self._turns += 1
                nt = _Turn(self._turns, end, end, playing, end, end, continued=True)
                self._turn = nt
                self.phase = Phase.SPEECH
                out.append(Start(nt.number, end, end, end, playing))
        return out

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
        self._held.clear()
        self._ring.clear()
        self._window.clear()
        self._silence = 0
        self.phase = Phase.IDLE
        if t.voiced_frames < self._min_voiced and reason != "max_length" and not t.continued:
            self.discards += 1
            return [Discard(t.number, t.speech_start, t.speech_end, t.uploaded_samples, at, "too_short")]
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
