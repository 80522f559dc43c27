"""`edged calibrate`: listen to the room (no one speaking) and suggest detector thresholds.

Thresholds over the noise floor depend on how the room's noise moves, not on
how loud it is: a fan is steady, a street has cars passing. Calibration runs
the same detector over a recording of the room and picks margins that the
room's own noise rarely crosses, and a second-stage threshold above anything
the room scored as speech. The output is YAML to paste into the config.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .config import Config
from .replay import replay_signal
from .wavio import EX_DATAERR, EX_UNAVAILABLE, AudioFileError, read_mono

CAPTURE_RATE_HZ = 16000


def record(seconds: float) -> tuple[np.ndarray, int]:
    """Capture from the default input device (sounddevice loads only here)."""
    try:
        import sounddevice as sd
    except OSError as e:  # PortAudio missing
        raise AudioFileError(f"cannot open audio devices: {e}", EX_UNAVAILABLE) from None
    frames = int(seconds * CAPTURE_RATE_HZ)
    try:
        x = sd.rec(frames, samplerate=CAPTURE_RATE_HZ, channels=1, dtype="float32")
        sd.wait()
    except sd.PortAudioError as e:
        raise AudioFileError(f"cannot record from the default input device: {e}", EX_UNAVAILABLE) from None
    return x[:, 0].copy(), CAPTURE_RATE_HZ


def measure(cfg: Config, x: np.ndarray, rate: int) -> dict[str, Any]:
    res = replay_signal(cfg, x, rate, trace=True)
    tr = res.trace
    assert tr is not None
    skip = min(len(tr.level) // 10, 100)  # the first second: the floor tracker settles
    level = np.array(tr.level[skip:])
    floor = np.array(tr.floor[skip:])
    over = level - floor
    prob = np.array(tr.probability[skip:])
    vad = np.array(tr.vad[skip:])
    return {
        "seconds": len(x) / rate,
        "floor_median_dbfs": float(np.median(floor)),
        "over_floor_p90_db": float(np.percentile(over, 90)),
        "over_floor_p98_db": float(np.percentile(over, 98)),
        "webrtcvad_share": float(vad.mean()),
        "silero_max": float(prob.max()) if len(prob) else 0.0,
        "silero_p999": float(np.percentile(prob, 99.9)) if len(prob) else 0.0,
        "turns_with_current_config": res.summary["turns"],
    }


def suggest(cfg: Config, m: dict[str, Any]) -> dict[str, float]:
    d = cfg.detector
    energy = float(np.clip(np.ceil(m["over_floor_p98_db"] + 1.0), 3.0, 20.0))
    onset = float(np.clip(np.round(m["over_floor_p90_db"]), 1.0, energy))
    start = float(np.clip(round(max(d.start_probability, m["silero_max"] + 0.1), 2), 0.05, 0.9))
    hold = float(min(d.hold_probability, round(start / 2, 2)))
    floor_min = float(np.clip(np.floor(m["floor_median_dbfs"] - 15.0), -100.0, -30.0))
    return {
        "energy_margin_db": energy,
        "onset_margin_db": onset,
        "start_probability": start,
        "hold_probability": hold,
        "min_level_dbfs": floor_min,
    }


def render(m: dict[str, Any], s: dict[str, float]) -> str:
    lines = [
        f"# edged calibrate: {m['seconds']:.0f} s of room sound",
        f"#   noise floor (median):          {m['floor_median_dbfs']:.1f} dBFS",
        f"#   level over floor, p90 / p98:   {m['over_floor_p90_db']:.1f} / {m['over_floor_p98_db']:.1f} dB",
        f"#   webrtcvad said speech:         {100 * m['webrtcvad_share']:.1f} % of frames",
        f"#   Silero speech probability max: {m['silero_max']:.2f} (p99.9 {m['silero_p999']:.2f})",
        f"#   turns the current config would open: {m['turns_with_current_config']}",
    ]
    if m["turns_with_current_config"]:
        lines.append("#   (if someone spoke during calibration, record again in silence)")
    lines.append("detector:")
    lines += [f"  {k}: {v:g}" for k, v in s.items()]
    return "\n".join(lines) + "\n"


def run_calibrate(cfg: Config, seconds: float, input_path: str | None) -> str:
    x, rate = read_mono(input_path) if input_path else record(seconds)
    if input_path and seconds:
        x = x[: int(seconds * rate)]
    if len(x) < 2 * rate:
        raise AudioFileError("calibration needs at least 2 s of audio", EX_DATAERR)
    m = measure(cfg, x, rate)
    return render(m, suggest(cfg, m))
