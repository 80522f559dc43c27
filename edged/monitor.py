"""`edged monitor`: watch the detector and the turn gate react, to tune the YAML on the device.

Tuning thresholds blind (edit, restart, speak, read the journal) is slow; this runs
the real frame loop (`Pipeline`: resampler, echo canceller, detector, turn gate) on
the live microphone, or on a recording at real time, and shows ten times a second
what it decided and against which thresholds. Nothing is sent anywhere: there is no
Realtime session, the gate's actions are only counted.

The pure parts are separate from the terminal: `Summariser` folds per-frame results
into one `Snapshot` per 100 ms of audio, `format_line` and `format_screen` turn a
snapshot into text. The shell (`run_monitor`) only moves audio and writes text, so
the tests drive the whole command on real recordings with no audio device or TTY.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import numpy as np

from .config import Config
from .detector import removal_bar
from .frames import FRAME_MS, FRAME_SAMPLES
from .gate import Commit, Discard, Phase, Start
from .pipeline import FrameResult, Pipeline
from .wavio import EX_UNAVAILABLE, AudioFileError, read_mono

UPDATE_MS = 100  # one snapshot per this much audio: fast enough to follow a syllable
HISTORY = 60  # snapshots kept for the screen's history strip (6 s)
CHUNK_MS = 20  # a recording is fed in the chunks a sound card hands over
MIC_POLL_S = 0.01
MIC_STALL_S = 2.0  # a stream that delivers nothing this long has stopped
SCREEN_FPS = 30.0  # redraws per wall-clock second at most (matters with --speed 0)
LEVEL_LO_DBFS, LEVEL_HI_DBFS = -90.0, 0.0  # span of the level bar

# What a user tunes while watching: (section, key, unit). Values are read from the config
# dataclasses, so the screen shows exactly what the pipeline runs with.
THRESHOLD_KEYS: tuple[tuple[str, str, str], ...] = (
    ("detector", "mode", ""),
    ("detector", "vad_mode", ""),
    ("detector", "energy_margin_db", "dB"),
    ("detector", "onset_margin_db", "dB"),
    ("detector", "min_level_dbfs", "dBFS"),
    ("detector", "start_probability", ""),
    ("detector", "hold_probability", ""),
    ("detector", "denoise_level", ""),
    ("detector", "denoised_hold_removed_db", "dB"),
    ("detector", "denoised_hold_under_room_db", "dB"),
    ("detector", "tone_max_partials", ""),
    ("detector", "fresh_memory_ms", "ms"),
    ("gate", "start_window_ms", "ms"),
    ("gate", "start_voiced_ratio", ""),
    ("gate", "end_silence_ms", "ms"),
    ("gate", "early_end_silence_ms", "ms"),
    ("gate", "min_speech_ms", "ms"),
    ("gate", "max_turn_ms", "ms"),
)

_PHASE_CHAR = {Phase.IDLE: ".", Phase.SPEECH: "s", Phase.TRAILING: "t"}
_EVENT_CHAR = {"discard": "x", "commit": "C", "start": "|"}  # in this order of precedence


@dataclass(frozen=True, slots=True)
class TurnEvent:
    """A gate action worth seeing: a turn began, was committed or was discarded."""

    kind: str  # "start" | "commit" | "discard"
    turn: int
    t_s: float  # when the gate decided, on the input's clock
    reason: str = ""  # commit/discard reason, e.g. "end_silence", "too_short"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What happened in one update interval: peaks and "any" flags, so a single voiced frame
    between two redraws is still seen, plus the state at its end."""

    t_s: float  # end of the interval on the input's clock (s)
    frames: int
    level_dbfs: float  # loudest frame
    floor_dbfs: float  # the tracked noise floor at the end
    vad: bool  # webrtcvad said speech on some frame
    loud: bool  # some frame stood energy_margin_db over the floor
    fast: bool  # the fast stage's own speech decision (vad and loud) on some frame
    onset: bool  # some frame was marked as a possible onset
    probability: float  # highest second-stage probability
    denoised_probability: float | None  # highest on the denoised audio; None: that hearing is off
    short_probability: float | None  # highest of the plain hearing's short memory; None: they are off
    short_denoised_probability: float | None  # ... of the denoised hearing's (None: either is off)
    room_talking: bool  # at the end, the room itself talks: the denoised hearing cannot start turns
    removed_db: float | None  # at the end, what the suppressor removed of the last second (dB)
    room_removed_db: float | None  # ... and the most from any second of the last five: the room
    trigger: bool  # some frame could start a turn
    tonal: bool  # some frame would have started one, but was heard as a tone (a chime, a beep)
    held_notes: bool  # some frame the denoised audio alone would have started one on was music
    speech: bool  # the final speech decision held on some frame
    phase: Phase  # the gate's phase at the end
    active: bool  # the gate was out of idle on some frame
    events: tuple[TurnEvent, ...]
    turn: int | None  # the turn open at the end, if any
    turn_start_s: float | None
    committed: int  # turns committed since the monitor started
    discarded: int
    last_event: TurnEvent | None  # the latest event so far, in this interval or before
    history: str  # one character per update, oldest first (see HISTORY_LEGEND)


HISTORY_LEGEND = ". idle s speech t trailing | start C commit x discard, 100 ms each"


class Summariser:
    """Folds per-frame results into one snapshot per `every_ms` of audio.

    `to_input_ms` maps the 16 kHz processing clock to the input's own clock (the
    pipeline's `to_input_ms`, which removes the resampler's and canceller's delay), so
    the times shown match a recording's labels or a stopwatch.
    """

    def __init__(
        self,
        to_input_ms: Callable[[int], float],
        every_ms: int = UPDATE_MS,
        denoised: bool = False,
        short: bool = False,
    ) -> None:
        self._to_ms = to_input_ms
        self._denoised = denoised
        self._short = short
        self._every = max(1, every_ms // FRAME_MS)
        self._pending: list[FrameResult] = []
        self._committed = 0
        self._discarded = 0
        self._turn: int | None = None
        self._turn_start_s: float | None = None
        self._last_event: TurnEvent | None = None
        self._history: deque[str] = deque(maxlen=HISTORY)
        self._prev: Snapshot | None = None

    def push(self, results: Iterable[FrameResult]) -> list[Snapshot]:
        out = []
        for r in results:
            self._pending.append(r)
            if len(self._pending) >= self._every:
                out.append(self._snapshot())
        return out

    def flush(self, closing: Sequence[FrameResult] = ()) -> Snapshot | None:
        """The last, partial interval (end of a recording, --seconds reached), with what
        `Pipeline.finish` returned: its actions count (the open turn's commit), its
        placeholder decision is no audio and does not."""
        if not self._pending and not any(r.actions for r in closing):
            return None
        return self._snapshot(closing)

    def _snapshot(self, closing: Sequence[FrameResult] = ()) -> Snapshot:
        rs, self._pending = self._pending, []
        events = self._events([*rs, *closing])
        phase = (closing or rs)[-1].phase
        kinds = {e.kind for e in events}
        self._history.append(next((c for k, c in _EVENT_CHAR.items() if k in kinds), _PHASE_CHAR[phase]))
        in_turn = phase is not Phase.IDLE
        state = {
            "phase": phase,
            "active": any(r.phase is not Phase.IDLE for r in rs) or bool(events),
            "events": tuple(events),
            "turn": self._turn if in_turn else None,
            "turn_start_s": self._turn_start_s if in_turn else None,
            "committed": self._committed,
            "discarded": self._discarded,
            "last_event": self._last_event,
            "history": "".join(self._history),
        }
        if not rs and self._prev is not None:  # only a closing action: the audio is as it was
            snap = replace(self._prev, frames=0, **state)
        else:
            ds = [r.decision for r in rs]
            snap = Snapshot(
                t_s=self._to_ms(rs[-1].start + FRAME_SAMPLES) / 1000,
                frames=len(rs),
                level_dbfs=max(d.level_dbfs for d in ds),
                floor_dbfs=ds[-1].noise_floor_dbfs,
                vad=any(d.vad for d in ds),
                loud=any(d.loud for d in ds),
                fast=any(d.vad and d.loud for d in ds),
                onset=any(d.onset for d in ds),
                probability=max(d.probability for d in ds),
                denoised_probability=max(d.denoised_probability for d in ds) if self._denoised else None,
                short_probability=max(d.short_probability for d in ds) if self._short else None,
                short_denoised_probability=(
                    max(d.short_denoised_probability for d in ds) if self._short and self._denoised else None
                ),
                room_talking=ds[-1].room_talking,
                removed_db=ds[-1].removed_db if self._denoised else None,
                room_removed_db=ds[-1].room_removed_db if self._denoised else None,
                trigger=any(d.trigger for d in ds),
                tonal=any(d.tonal for d in ds),
                held_notes=any(d.held_notes for d in ds),
                speech=any(d.speech for d in ds),
                **state,
            )
        self._prev = snap
        return snap

    def _events(self, rs: Iterable[FrameResult]) -> list[TurnEvent]:
        """The gate's starts, commits and discards, keeping the running totals."""
        events = []
        for r in rs:
            for a in r.actions:
                if isinstance(a, Start):
                    self._turn, self._turn_start_s = a.turn, self._to_ms(a.speech_start) / 1000
                    events.append(TurnEvent("start", a.turn, self._to_ms(a.at) / 1000))
                elif isinstance(a, Commit | Discard):
                    if isinstance(a, Commit):
                        self._committed += 1
                    else:
                        self._discarded += 1
                    kind = "commit" if isinstance(a, Commit) else "discard"
                    events.append(TurnEvent(kind, a.turn, self._to_ms(a.at) / 1000, a.reason))
                    if self._turn == a.turn:
                        self._turn = self._turn_start_s = None
        if events:
            self._last_event = events[-1]
        return events


# -- text -----------------------------------------------------------------------------------------


def thresholds(cfg: Config) -> list[tuple[str, str, str]]:
    """(key path, value, unit) of the keys that decide turns, as the pipeline runs them."""
    return [
        (f"{sec}.{key}", _fmt(getattr(getattr(cfg, sec), key)), unit) for sec, key, unit in THRESHOLD_KEYS
    ]


def _fmt(v: object) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    return f"{v:g}"


def format_thresholds(cfg: Config) -> str:
    """One line, `key=value` pairs: the header of the plain output, greppable in a log."""
    return "# thresholds: " + " ".join(f"{k}={v}" for k, v, _unit in thresholds(cfg))


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _trigger_text(s: Snapshot) -> str:
    """Says "tone" where the second stage heard a voice that was a chime or a beep (tones.py),
    "music" where the denoised hearing heard one in held notes (music.py)."""
    return "yes" if s.trigger else "tone" if s.tonal else "music" if s.held_notes else "no"


def _events_text(events: Sequence[TurnEvent]) -> str:
    return ",".join(f"{e.kind}#{e.turn}" + (f":{e.reason}" if e.reason else "") for e in events) or "-"


def format_line(s: Snapshot) -> str:
    """One plain line per update: `key=value` tokens separated by spaces, right-aligned so
    columns line up when scrolling, and split cleanly by `str.split()` in a script."""
    fast = ",".join(n for n, on in (("vad", s.vad), ("loud", s.loud), ("onset", s.onset)) if on) or "-"
    denoised: tuple[str, ...] = ()
    if s.denoised_probability is not None:  # only while that hearing is on: the line stays short
        room = "talking" if s.room_talking else "quiet"
        denoised = (
            f"p_dn={s.denoised_probability:.2f}",
            f"room={room}".ljust(12),
            f"removed={s.removed_db:.1f}".rjust(12),
            f"room_removed={s.room_removed_db:.1f}".rjust(17),
        )
    short = tuple(
        f"{key}={p:.2f}"
        for key, p in (("p_short", s.short_probability), ("p_dn_short", s.short_denoised_probability))
        if p is not None
    )
    return " ".join(
        (
            f"t={s.t_s:.2f}".rjust(9),
            f"level={s.level_dbfs:.1f}".rjust(12),
            f"floor={s.floor_dbfs:.1f}".rjust(12),
            f"over={s.level_dbfs - s.floor_dbfs:+.1f}".rjust(10),
            f"fast={_yes(s.fast)}".ljust(8),
            f"cues={fast}".ljust(19),
            f"p={s.probability:.2f}",
            *denoised,
            *short,
            f"trigger={_trigger_text(s)}".ljust(12),
            f"speech={_yes(s.speech)}".ljust(10),
            f"phase={s.phase.value}".ljust(14),
            f"event={_events_text(s.events)}",
        )
    )


def _col(db: float, width: int) -> int:
    x = (db - LEVEL_LO_DBFS) / (LEVEL_HI_DBFS - LEVEL_LO_DBFS)
    return min(width - 1, max(0, round(x * (width - 1))))


def level_bar(s: Snapshot, cfg: Config, width: int) -> tuple[str, str]:
    """The level as a bar from LEVEL_LO to LEVEL_HI dBFS, and under it where the thresholds
    sit right now: m min level, F floor, o onset margin, E energy margin over the floor."""
    d = cfg.detector
    n = _col(s.level_dbfs, width) + 1 if s.level_dbfs > LEVEL_LO_DBFS else 0
    bar = "#" * n + "." * (width - n)
    marks = [" "] * width
    for ch, db in (
        ("m", d.min_level_dbfs),
        ("F", s.floor_dbfs),
        ("o", s.floor_dbfs + d.onset_margin_db),
        ("E", s.floor_dbfs + d.energy_margin_db),
    ):
        marks[_col(db, width)] = ch
    return bar, "".join(marks)


def prob_bar(p: float, start: float, hold: float, width: int) -> str:
    """A probability from 0 to 1, with H (hold) and S (start) marked."""
    n = round(min(max(p, 0.0), 1.0) * (width - 1)) + (p > 0)
    cells = ["#"] * n + ["."] * (width - n)
    for ch, mark in (("H", hold), ("S", start)):
        cells[min(width - 1, round(mark * (width - 1)))] = ch
    return "".join(cells)


def format_screen(s: Snapshot, cfg: Config, source: str, width: int = 80) -> list[str]:
    """The full-screen view, one string per row, none wider than `width`."""
    width = max(width, 50)
    bar_w = width - 28  # label (13) + value (13) + the bar's brackets

    def row(label: str, value: str, rest: str = "") -> str:
        return f"{label:<13}{value:<13}{rest}".rstrip()

    bar, marks = level_bar(s, cfg, bar_w)
    d, g = cfg.detector, cfg.gate
    if s.turn is not None and s.turn_start_s is not None:
        turn = f"turn #{s.turn}, speech since {s.turn_start_s:.2f} s"
    else:
        turn = "no turn open"
    last = s.last_event
    rows = [
        f"edged monitor   {source}   audio {s.t_s:.2f} s   Ctrl-C quits",
        "",
        row("input level", f"{s.level_dbfs:6.1f} dBFS", f"[{bar}]"),
        row("", "", f" {marks}"),
        row(
            "noise floor",
            f"{s.floor_dbfs:6.1f} dBFS",
            f"over floor {s.level_dbfs - s.floor_dbfs:+5.1f} dB"
            f"   (F floor, o +{d.onset_margin_db:g}, E +{d.energy_margin_db:g} dB, m min)",
        ),
        row(
            "fast stage",
            f"speech {_yes(s.fast).upper()}",
            f"vad {_yes(s.vad):3}   loud {_yes(s.loud):3}   onset {_yes(s.onset)}",
        ),
    ]
    if d.mode == "webrtcvad":
        rows.append(row("second stage", "off", "(detector.mode = webrtcvad)"))
    else:
        bar = prob_bar(s.probability, d.start_probability, d.hold_probability, bar_w)
        rows.append(row("second stage", f"p {s.probability:4.2f}", f"[{bar}]"))
        rows.append(row("", "", f" H hold {d.hold_probability:g}, S start {d.start_probability:g}"))
        if s.denoised_probability is not None:
            pdn = s.denoised_probability
            bar = prob_bar(pdn, d.denoised_start_probability, d.hold_probability, bar_w)
            rows.append(row("denoised", f"p {pdn:4.2f}", f"[{bar}]"))
            room = "TALKING: only the plain hearing starts or keeps turns" if s.room_talking else "quiet"
            rows.append(row("", "", f" S start {d.denoised_start_probability:g}   room {room}"))
            if s.removed_db is not None and s.room_removed_db is not None:
                bar_db = removal_bar(d, s.room_removed_db)
                keeps = "keeps turns" if s.removed_db <= bar_db else "keeps none: mostly the room"
                rows.append(
                    row(
                        "suppressor",
                        f"{s.removed_db:4.1f} dB off",
                        f"room {s.room_removed_db:.1f} dB, bar {bar_db:.1f} dB: {keeps}",
                    )
                )
    for label, p, start, hold in (
        ("short memory", s.short_probability, d.fresh_start_probability, d.fresh_hold_probability),
        (
            "short, dn",
            s.short_denoised_probability,
            d.fresh_denoised_start_probability,
            d.fresh_denoised_hold_probability,
        ),
    ):
        if p is not None:
            rows.append(row(label, f"p {p:4.2f}", f"[{prob_bar(p, start, hold, bar_w)}]"))
    rows += [
        row("decision", f"speech {_yes(s.speech).upper()}", f"trigger {_trigger_text(s)}"),
        row("turn gate", s.phase.value.upper(), turn),
        row("", "", f"{s.committed} committed, {s.discarded} discarded")
        + (f"   last: {_events_text([last])} at {last.t_s:.2f} s" if last else ""),
        row("history", "", s.history[-(width - 26) :]),
        row("", "", HISTORY_LEGEND),
        "",
        f"thresholds in force (end silence {g.end_silence_ms} ms, {g.early_end_silence_ms} ms in a turn's"
        f" first {g.settled_speech_ms} ms of speech; min speech {g.min_speech_ms} ms)",
    ]
    items = [f"{k} = {v}{' ' + u if u else ''}" for k, v, u in thresholds(cfg)]
    half = (len(items) + 1) // 2
    colw = max(len(x) for x in items[:half]) + 3
    if 2 + colw + max(len(x) for x in items[half:]) > width:  # a narrow terminal: one column
        rows += [f"  {x}" for x in items]
    else:
        for i in range(half):
            right = items[half + i] if half + i < len(items) else ""
            rows.append(f"  {items[i]:<{colw}}{right}".rstrip())
    return [r[:width] for r in rows]


# -- output ---------------------------------------------------------------------------------------


class PlainView:
    """One line per update, flushed: works in a pipe, a log file or `| grep`."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._mid_line = False  # a line was being written when Ctrl-C came

    def begin(self, header: Sequence[str]) -> None:
        for line in header:
            print(line, file=self.out)
        self.out.flush()

    def show(self, s: Snapshot, final: bool = False) -> None:
        self._mid_line = True
        self.out.write(format_line(s) + "\n")
        self.out.flush()
        self._mid_line = False

    def end(self, footer: str) -> None:
        # the footer always starts a line of its own, so `tail -1` finds it
        print(("\n" if self._mid_line else "") + footer, file=self.out, flush=True)


class ScreenView:
    """Redraws in place with plain ANSI escapes (home, clear to end of line/screen), so
    it needs no curses and leaves the last view on the terminal after Ctrl-C."""

    def __init__(self, out: TextIO, cfg: Config, source: str) -> None:
        self.out = out
        self.cfg = cfg
        self.source = source
        self._last = 0.0
        self._shown: Snapshot | None = None
        self._latest: Snapshot | None = None

    def begin(self, header: Sequence[str]) -> None:
        self.out.write("\x1b[?25l\x1b[2J\x1b[H")  # hide the cursor, clear the screen
        self.out.flush()

    def show(self, s: Snapshot, final: bool = False) -> None:
        self._latest = s
        now = time.monotonic()
        if not final and now - self._last < 1.0 / SCREEN_FPS:
            return
        self._last = now
        self._shown = s
        width = shutil.get_terminal_size((80, 24)).columns - 1
        rows = format_screen(s, self.cfg, self.source, width)
        self.out.write("\x1b[H" + "".join(r + "\x1b[K\n" for r in rows) + "\x1b[J")
        self.out.flush()

    def end(self, footer: str) -> None:
        if self._latest is not None and self._latest is not self._shown:
            self.show(self._latest, final=True)
        self.out.write("\x1b[?25h" + footer + "\n")  # the cursor back
        self.out.flush()


# -- sources --------------------------------------------------------------------------------------


def _file_chunks(x: np.ndarray, rate: int, speed: float) -> Iterator[tuple[np.ndarray, None]]:
    """A recording in sound-card-sized chunks, paced to `speed` times real time (0: unpaced)."""
    block = max(1, rate * CHUNK_MS // 1000)
    t0 = time.monotonic()
    for i in range(0, len(x), block):
        if speed > 0:
            ahead = t0 + i / rate / speed - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        yield x[i : i + block], None


def _mic_chunks(audio, limit: int | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """What the microphone captured (and the silence the speaker played) as it arrives."""
    got = 0
    last = time.monotonic()
    while limit is None or got < limit:
        mic, played = audio.read()
        now = time.monotonic()
        if not len(mic):
            if now - last > MIC_STALL_S:
                raise AudioFileError("the microphone stopped delivering audio", EX_UNAVAILABLE)
            time.sleep(MIC_POLL_S)
            continue
        last = now
        if limit is not None:
            mic, played = mic[: limit - got], played[: limit - got]
        got += len(mic)
        yield mic, played


def _open_mic(cfg: Config):
    """The live stream; a missing device or PortAudio is a user-fixable error, not a traceback."""
    from .audio import DeviceError, DuplexAudio

    try:
        audio = DuplexAudio(cfg.audio)
        audio.open()
    except (OSError, DeviceError) as e:
        raise AudioFileError(f"cannot open the microphone: {e}", EX_UNAVAILABLE) from None
    return audio


def run_monitor(
    cfg: Config,
    input_path: str | None = None,
    speed: float = 1.0,
    seconds: float | None = None,
    plain: bool | None = None,
    out: TextIO | None = None,
) -> int:
    """Run until the recording ends, `seconds` of audio have passed, or Ctrl-C (exit 0)."""
    out = out or sys.stdout
    if plain is None:
        plain = not out.isatty()
    audio = None
    view: PlainView | ScreenView | None = None
    last: Snapshot | None = None
    try:
        if input_path:
            x, rate = read_mono(input_path)
            if seconds is not None:
                x = x[: int(seconds * rate)]
            pace = f"x{speed:g}" if speed > 0 else "as fast as possible"
            source = f"{Path(input_path).name} @ {rate} Hz, {pace}"
            chunks: Iterator[tuple[np.ndarray, np.ndarray | None]] = _file_chunks(x, rate, speed)
        else:
            audio = _open_mic(cfg)
            rate = audio.rate_hz
            source = f"microphone @ {rate} Hz"
            limit = None if seconds is None else int(seconds * rate)
            chunks = _mic_chunks(audio, limit)
        pipeline = Pipeline(cfg, rate, rate)
        summary = Summariser(
            pipeline.to_input_ms,
            denoised=pipeline.detector.hears_denoised,
            short=pipeline.detector.hears_short,
        )
        view = PlainView(out) if plain else ScreenView(out, cfg, source)
        view.begin([f"# edged monitor: {source}; one line per {UPDATE_MS} ms", format_thresholds(cfg)])
        for mic, far in chunks:
            for snap in summary.push(pipeline.process(mic, far)):
                last = snap  # first: the footer sums up what was shown, even if Ctrl-C cuts the line
                view.show(snap)
        # the end of the audio closes the turn it was in, as replay does
        snap = summary.flush(pipeline.finish())
        if snap is not None:
            last = snap
            view.show(snap, final=True)
    except KeyboardInterrupt:
        pass
    finally:
        if audio is not None:
            audio.close()
        if view is not None:
            view.end(_footer(last))
    return 0


def _footer(last: Snapshot | None) -> str:
    if last is None:
        return "# no audio"
    return f"# {last.t_s:.2f} s of audio: {last.committed} turns committed, {last.discarded} discarded"


__all__ = [
    "Snapshot",
    "Summariser",
    "TurnEvent",
    "format_line",
    "format_screen",
    "format_thresholds",
    "run_monitor",
    "thresholds",
]
