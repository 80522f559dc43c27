#!/usr/bin/env python3
"""Cost of each frame-loop stage per 10 ms frame, on real audio at a device rate.

The bundled kitchen recording (real speech in real noise) is resampled to the
device rate (48 kHz by default), repeated to the requested length, and fed to
the pipeline in 10 ms device blocks exactly as the live audio callback would.
Each stage is timed with an injected clock:

    resample   device rate -> 16 kHz (microphone and speaker reference)
    echo       the echo-canceller slot and the playback-activity check
    detector   webrtcvad + level + noise floor
    gate       the turn state machine
    encode     16 -> 24 kHz, PCM16 and base64, on frames that upload

Prints median / p99 / max µs per frame and the share of real time, and writes JSON.

    python benchmarks/frame_loop.py [--minutes 10] [--rate 48000] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from edged.aec import warm_up
from edged.config import load_config
from edged.demo import demo_files
from edged.frames import FRAME_MS
from edged.pipeline import Pipeline, StageTimer
from edged.resample import resample_whole
from edged.wavio import read_mono

RESULTS = Path(__file__).resolve().parent / "results"
STAGES = ("resample", "echo", "detector", "gate", "encode")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=48000, help="device sample rate fed to the pipeline")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--json", default=str(RESULTS / "frame_loop.json"))
    args = ap.parse_args(argv)

    wav, _ = demo_files()
    x16, rate16 = read_mono(str(wav))
    x = resample_whole(x16, rate16, args.rate)
    n_total = int(args.minutes * 60 * args.rate)
    x = np.tile(x, -(-n_total // len(x)))[:n_total]
    # a speaker reference that plays in some stretches, so the reference path is exercised
    far = np.zeros_like(x)
    far[: len(far) // 3] = 0.05 * np.sin(2 * np.pi * 220 * np.arange(len(far) // 3) / args.rate)

    times: dict[str, list[int]] = defaultdict(list)
    timer = StageTimer(time.perf_counter_ns, lambda stage, ns: times[stage].append(ns))
    cfg = load_config(None, args.overrides)
    warm_up()  # as the daemon does: the canceller's compiled code is loaded before the first frame
    p = Pipeline(cfg, args.rate, args.rate, timer=timer)
    block = args.rate * FRAME_MS // 1000
    frames = 0
    upload_frames = 0
    t0 = time.perf_counter()
    for i in range(0, len(x) - block + 1, block):
        res = p.process(x[i : i + block], far[i : i + block])
        frames += len(res)
        upload_frames += sum(1 for r in res if r.uploads)
    wall = time.perf_counter() - t0

    rows = {}
    frame_us = FRAME_MS * 1000
    total = np.zeros(frames)
    for stage in STAGES:
        v = np.array(times[stage], dtype=np.float64) / 1000.0
        if stage == "encode":
            per_frame_mean = v.sum() / frames  # averaged over every frame, uploading or not
        else:
            per_frame_mean = v.mean()
            if len(v) == frames:
                total += v
        rows[stage] = {
            "count": len(v),
            "median_us": float(np.median(v)) if len(v) else 0.0,
            "p99_us": float(np.percentile(v, 99)) if len(v) else 0.0,
            "max_us": float(v.max()) if len(v) else 0.0,
            "mean_us_per_frame": float(per_frame_mean),
            "share_of_real_time": float(per_frame_mean / frame_us),
        }
    rows["all stages"] = {
        "count": frames,
        "median_us": float(np.median(total)),
        "p99_us": float(np.percentile(total, 99)),
        "max_us": float(total.max()),
        "mean_us_per_frame": float(wall * 1e6 / frames),
        "share_of_real_time": float(wall / (frames * FRAME_MS / 1000)),
    }
    print(
        f"frame loop: {frames} frames ({frames * FRAME_MS / 60000:.1f} min of audio at {args.rate} Hz), "
        f"{upload_frames} of them uploading; {platform.machine()}, Python {platform.python_version()}"
    )
    print(f"{'stage':<12}{'median µs':>11}{'p99 µs':>10}{'max µs':>10}{'mean µs':>10}{'% real time':>13}")
    for stage, r in rows.items():
        print(
            f"{stage:<12}{r['median_us']:>11.1f}{r['p99_us']:>10.1f}{r['max_us']:>10.1f}"
            f"{r['mean_us_per_frame']:>10.1f}{100 * r['share_of_real_time']:>12.2f} %"
        )
    print("(encode: median/p99/max over uploading frames; mean and share over all frames;")
    print(" all stages: median/p99/max of the per-frame sum without encode; mean and share from wall time)")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"rate_hz": args.rate, "minutes": args.minutes, "frames": frames, "upload_frames": upload_frames}
    out.write_text(json.dumps({"meta": meta, "stages": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
