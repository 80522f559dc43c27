#!/usr/bin/env python3
"""How the echo canceller follows a playout-delay jump (as after an xrun), by its size.

The bundled kitchen recording's speech plays through a synthetic room (a direct path and a
0.3 s exponential tail, two seeds); its echo arrives 50 ms after the reference, and from 4 s
on `jump` samples later still (earlier if negative). For each jump the table shows when the
delay tracker moved by whole frames, which shifts `PathShift` offered the filter, and the
ERLE (microphone over output) in the second after the jump and the seconds after that.

    python benchmarks/delay_jumps.py [--jumps -700 -240 -100 64 100 240 420 600 1600] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edged.aec import EchoCanceller
from edged.demo import demo_files
from edged.frames import FRAME_SAMPLES, RATE_HZ
from edged.wavio import read_mono

RESULTS = Path(__file__).resolve().parent / "results"
LEAD = 800  # samples: the echo arrives 50 ms after the reference
JUMP_S = 4.0
WINDOWS_S = ((3.0, 4.0), (4.3, 5.3), (5.3, 6.3), (6.3, 7.3), (8.0, 9.0))  # before, then after


def room(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.25 * RATE_HZ)) / RATE_HZ
    h = rng.standard_normal(len(t)) * np.exp(-6.9 * t / 0.3) * 0.05
    h[16] += 1.0  # the direct path, 1 ms
    return h


def run(ref: np.ndarray, h: np.ndarray, jump: int) -> dict[str, object]:
    before = np.concatenate([np.zeros(LEAD), np.convolve(ref, h)])[: len(ref)]
    mic = np.where(np.arange(len(ref)) < JUMP_S * RATE_HZ, before, np.roll(before, jump))
    mic = (0.3 * mic + 1e-4 * np.random.default_rng(0).standard_normal(len(ref))).astype(np.float32)
    ec = EchoCanceller()
    offered: list[tuple[float, int]] = []
    moved: list[tuple[float, int]] = []
    push, frame = ec._path.push, [0]

    def spy(*args: object) -> int:
        shift = push(*args)
        if shift:
            offered.append((frame[0] / 100, shift))
        return shift

    ec._path.push = spy  # type: ignore[method-assign]
    out = np.zeros_like(mic)
    for i in range(0, len(ref) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        delay = ec.delay_frames
        out[i : i + FRAME_SAMPLES] = ec.process(mic[i : i + FRAME_SAMPLES], ref[i : i + FRAME_SAMPLES])
        frame[0] += 1
        if ec.delay_frames != delay:
            moved.append((frame[0] / 100, ec.delay_frames))
    lat = ec.latency_samples
    erle = []
    for a, b in WINDOWS_S:
        span = slice(int(a * RATE_HZ), int(b * RATE_HZ))
        heard = out[span.start + lat : span.stop + lat]
        erle.append(round(float(10 * np.log10(np.sum(mic[span] ** 2) / np.sum(heard**2))), 1))
    return {"jump": jump, "tracker": moved, "offered": offered, "erle_db": erle}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jumps", type=int, nargs="+", default=[-700, -240, -100, 64, 100, 240, 420, 600, 1600])
    ap.add_argument("--json", type=Path, default=RESULTS / "delay_jumps.json")
    args = ap.parse_args(argv)
    wav, _ = demo_files()
    x, rate = read_mono(wav)
    assert rate == RATE_HZ
    ref = x[int(20.3 * RATE_HZ) : int(31.3 * RATE_HZ)].astype(np.float32)
    ref *= 0.1 / np.sqrt(np.mean(ref**2))
    rows = [run(ref, room(seed), jump) | {"room": seed} for seed in (3, 5) for jump in args.jumps]
    heads = " | ".join(f"ERLE {a:g}-{b:g} s" for a, b in WINDOWS_S)
    print(f"echo 50 ms behind the reference, delay jump at {JUMP_S:g} s; ERLE in dB\n")
    print(f"| room | jump (samples) | tracker moved (s, frames) | offered (s, samples) | {heads} |")
    print("|" + "---|" * (4 + len(WINDOWS_S)))
    for r in rows:
        cells = " | ".join(f"{v:.1f}" for v in r["erle_db"])  # type: ignore[union-attr]
        print(f"| {r['room']} | {r['jump']} | {r['tracker']} | {r['offered']} | {cells} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"jump_at_s": JUMP_S, "lead_samples": LEAD, "rows": rows}, indent=1))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
