"""`edged replay`: the live decision pipeline run on a WAV file, faster than real time.

Turn and discard events use the input's own clock (ms from its first sample),
so a user can find in an editor exactly the spot where a threshold misfired.
The JSON keys are a contract: fields may be added, never renamed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from .config import Config
from .frames import FRAME_SAMPLES, RATE_HZ
from .gate import Commit, Discard
from .pipeline import FrameResult, Pipeline
from .upload import API_RATE_HZ
from .wavio import EX_DATAERR, AudioFileError, read_mono, write_pcm16

DEVICE_BLOCK_MS = 20  # the chunk size a sound card typically hands over


@dataclass
class Trace:
    """Per-frame values for the plot; filled only when asked for, with the signal they came from."""

    signal: np.ndarray
    rate_hz: int
    level: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    vad: list[bool] = field(default_factory=list)
    probability: list[float] = field(default_factory=list)
    loud: list[bool] = field(default_factory=list)
    speech: list[bool] = field(default_factory=list)
    in_turn: list[bool] = field(default_factory=list)
    playing: list[bool] = field(default_factory=list)


@dataclass
class ReplayResult:
    input_ms: float
    events: list[dict[str, Any]]
    trace: Trace | None
    uploaded_pcm24: bytes

    @property
    def turns(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "turn"]

    @property
    def summary(self) -> dict[str, Any]:
        return self.events[-1]


def _ms(p: Pipeline, sample: int) -> float:
    return round(p.to_input_ms(sample), 1)


def _event(p: Pipeline, a: Commit | Discard) -> dict[str, Any]:
    if isinstance(a, Commit):
        return {
            "event": "turn",
            "start_ms": _ms(p, a.speech_start),
            "end_ms": _ms(p, a.speech_end),
            "commit_ms": _ms(p, a.at),
            "upload_start_ms": _ms(p, a.upload_start),
            "upload_end_ms": _ms(p, a.upload_end),
            "barge_in": a.barge_in,
            "uploaded_ms": round(a.uploaded_samples * 1000 / RATE_HZ, 1),
            "reason": a.reason,
        }
    return {
        "event": "discard",
        "start_ms": _ms(p, a.speech_start),
        "end_ms": _ms(p, a.speech_end),
        "reason": a.reason,
        "at_ms": _ms(p, a.at),
        "uploaded_ms": round(a.uploaded_samples * 1000 / RATE_HZ, 1),
    }


def _chunks(x: np.ndarray, size: int) -> Iterator[tuple[int, np.ndarray]]:
    for i in range(0, len(x), size):
        yield i, x[i : i + size]


def replay_signal(
    cfg: Config,
    mic: np.ndarray,
    rate_hz: int,
    far: np.ndarray | None = None,
    far_rate_hz: int | None = None,
    *,
    trace: bool = False,
    keep_upload: bool = False,
) -> ReplayResult:
    """Run the pipeline over a whole signal in device-sized chunks."""
    p = Pipeline(cfg, rate_hz, far_rate_hz or rate_hz)
    events: list[dict[str, Any]] = []
    tr = Trace(mic, rate_hz) if trace else None
    uploads: list[str] = []
    block = max(1, rate_hz * DEVICE_BLOCK_MS // 1000)
    far_rate = far_rate_hz or rate_hz

    def take(results: list[FrameResult]) -> None:
        for r in results:
            for a in r.actions:
                if isinstance(a, Commit | Discard):
                    events.append(_event(p, a))
            if keep_upload:
                uploads.extend(r.uploads)
            if tr is not None:
                d = r.decision
                tr.level.append(d.level_dbfs)
                tr.floor.append(d.noise_floor_dbfs)
                tr.vad.append(d.vad)
                tr.probability.append(d.probability)
                tr.loud.append(d.loud)
                tr.speech.append(d.speech)
                tr.in_turn.append(r.phase.value != "idle")
                tr.playing.append(r.playing)

    for i, chunk in _chunks(mic, block):
        f = None
        if far is not None:
            # the same span on the far end's own clock (exact at any pair of rates: no drift)
            f = far[i * far_rate // rate_hz : (i + len(chunk)) * far_rate // rate_hz]
        take(p.process(chunk, f))
    # push the resampler's tail and the canceller's frame through, counted at the input's
    # rate, so the last frame is decided too
    pad = int(np.ceil((p.delay_samples + FRAME_SAMPLES) * rate_hz / RATE_HZ))
    take(p.process(np.zeros(pad, dtype=np.float32)))
    take(p.finish())

    input_ms = len(mic) * 1000.0 / rate_hz
    turns = [e for e in events if e["event"] == "turn"]
    discards = [e for e in events if e["event"] == "discard"]
    uploaded = sum(e["uploaded_ms"] for e in turns)
    events.append(
        {
            "event": "summary",
            "input_ms": round(input_ms, 1),
            "uploaded_ms": round(uploaded, 1),
            "turns": len(turns),
            "discards": len(discards),
            "discarded_upload_ms": round(sum(e["uploaded_ms"] for e in discards), 1),
            "upload_share": round(uploaded / input_ms, 4) if input_ms else 0.0,
        }
    )
    return ReplayResult(input_ms, events, tr, b"".join(base64.b64decode(u) for u in uploads))


def replay_file(
    cfg: Config,
    input_path: str | Path,
    far_path: str | Path | None = None,
    *,
    trace: bool = False,
    keep_upload: bool = False,
) -> ReplayResult:
    mic, rate = read_mono(input_path)
    far = far_rate = None
    if far_path is not None:
        far, far_rate = read_mono(far_path)
        if abs(len(far) / far_rate - len(mic) / rate) > 0.5:
            raise AudioFileError(
                f"{far_path}: lasts {len(far) / far_rate:.2f} s but {input_path} lasts "
                f"{len(mic) / rate:.2f} s; the far end must be sample-aligned with the input",
                EX_DATAERR,
            )
    return replay_signal(cfg, mic, rate, far, far_rate, trace=trace, keep_upload=keep_upload)


def write_events(result: ReplayResult, out: IO[str]) -> None:
    for e in result.events:
        out.write(json.dumps(e) + "\n")


def format_table(result: ReplayResult) -> str:
    rows = ["  #   speech start → end (s)   commit (s)   upload start → end (s)   uploaded (s)  note"]
    n = 0
    for e in result.events:
        if e["event"] == "turn":
            n += 1
            note = ("barge-in " if e["barge_in"] else "") + (
                "" if e["reason"] == "end_silence" else e["reason"]
            )
            rows.append(
                f"{n:3d}   {e['start_ms'] / 1000:8.2f} → {e['end_ms'] / 1000:7.2f}"
                f"   {e['commit_ms'] / 1000:9.2f}"
                f"   {e['upload_start_ms'] / 1000:10.2f} → {e['upload_end_ms'] / 1000:7.2f}"
                f"   {e['uploaded_ms'] / 1000:11.2f}  {note}"
            )
        elif e["event"] == "discard":
            rows.append(
                f"  -   {e['start_ms'] / 1000:8.2f} → {e['end_ms'] / 1000:7.2f}   discarded: {e['reason']}"
            )
    s = result.summary
    rows.append(
        f"{s['turns']} turns, {s['discards']} discarded bursts; would upload {s['uploaded_ms'] / 1000:.2f} s "
        f"of {s['input_ms'] / 1000:.2f} s ({100 * s['upload_share']:.1f} %)"
    )
    return "\n".join(rows)


def write_clean(result: ReplayResult, path: str | Path) -> None:
    """What would have been uploaded, at 24 kHz, turns back to back."""
    pcm = np.frombuffer(result.uploaded_pcm24, dtype="<i2").astype(np.float32) / 32768.0
    write_pcm16(path, pcm, API_RATE_HZ)


def plot(result: ReplayResult, path: str | Path, cfg: Config) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise AudioFileError("--plot needs matplotlib: pip install 'edged[plot]'", EX_DATAERR) from None
    tr = result.trace
    assert tr is not None
    mic, rate_hz = tr.signal, tr.rate_hz
    t_frames = np.arange(len(tr.level)) * FRAME_SAMPLES / RATE_HZ
    t_wave = np.arange(len(mic)) / rate_hz
    fig, (a0, a1, a2) = plt.subplots(3, 1, sharex=True, figsize=(14, 7), height_ratios=[2, 2, 1])
    a0.plot(t_wave, mic, lw=0.3, color="0.3")
    a0.set_ylabel("waveform")
    for e in result.events:
        if e["event"] == "turn":
            a0.axvspan(e["upload_start_ms"] / 1000, e["upload_end_ms"] / 1000, color="tab:green", alpha=0.25)
            a0.axvline(e["commit_ms"] / 1000, color="tab:green", lw=1)
        elif e["event"] == "discard":
            a0.axvspan(e["start_ms"] / 1000, e["end_ms"] / 1000, color="tab:red", alpha=0.25)
    lvl = np.array(tr.level)
    floor = np.array(tr.floor)
    a1.plot(t_frames, lvl, lw=0.6, label="level (dBFS)")
    a1.plot(t_frames, floor, lw=1.2, label="noise floor")
    a1.plot(t_frames, floor + cfg.detector.energy_margin_db, lw=1, ls="--", label="floor + margin")
    a1.axhline(cfg.detector.min_level_dbfs, color="0.5", lw=0.8, ls=":", label="min level")
    a1.set_ylim(max(-100, float(np.percentile(lvl, 1)) - 10), 0)
    a1.legend(loc="upper right", fontsize=8)
    a1.set_ylabel("dBFS")
    for k, (name, vals) in enumerate(
        [
            ("speaker plays", tr.playing),
            ("webrtcvad", tr.vad),
            ("loud", tr.loud),
            ("speech", tr.speech),
            ("in turn", tr.in_turn),
        ]
    ):
        a2.fill_between(t_frames, k, k + 0.8 * np.array(vals, dtype=float), step="post", alpha=0.7)
        a2.text(-0.01, k + 0.4, name, transform=a2.get_yaxis_transform(), ha="right", va="center", fontsize=8)
    a2.set_yticks([])
    a2.set_xlabel("time (s, input clock) — green: uploaded turns, line: commit; red: discarded bursts")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["ReplayResult", "format_table", "plot", "replay_file", "replay_signal", "write_events"]
