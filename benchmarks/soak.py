#!/usr/bin/env python3
"""Hours of sound through one pipeline: does anything grow?

The daemon runs for weeks on a device with 512 MB. Every buffer and queue is bounded by
design; this checks it where it counts, the frame loop (canceller, both hearings, noise
suppressor, gate, encoder), by looping the development corpus (or any WAVs) through one
`Pipeline` for `--hours` and printing, each hour: resident memory, CPU per 10 ms frame and
turns committed. A leak shows as memory that climbs hour after hour; a state that drifts
(the models' memory, the noise floor) as turns or CPU that do.

    python benchmarks/soak.py CORPUS_DIR_OR_WAV... [--hours 6] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from edged.config import Config
from edged.frames import RATE_HZ
from edged.gate import Commit
from edged.pipeline import Pipeline
from edged.replay import DEVICE_BLOCK_MS
from edged.resample import resample_whole
from edged.wavio import read_mono

RESULTS = Path(__file__).resolve().parent / "results"
BLOCK = RATE_HZ * DEVICE_BLOCK_MS // 1000  # the chunks a sound card hands over, as in replay


def resident_mb() -> float:
    """This process's resident memory now (not its peak), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(paths: list[str]) -> np.ndarray:
    files: list[Path] = []
    for p in map(Path, paths):
        files += sorted(p.rglob("*.wav")) if p.is_dir() else [p]
    parts = []
    for f in files:
        x, rate = read_mono(str(f))
        parts.append(resample_whole(x, rate, RATE_HZ))
    if not parts:
        raise SystemExit(f"{' '.join(paths)}: no WAV files")
    return np.concatenate(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="WAV files or folders of them, looped in order")
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--json", default=str(RESULTS / "soak.json"))
    args = ap.parse_args(argv)
    sound = load(args.inputs)
    pipeline = Pipeline(Config(), RATE_HZ, RATE_HZ)
    per_hour = 3600 * RATE_HZ
    total = int(args.hours * per_hour)
    rows: list[dict[str, float]] = []
    fed = turns = 0
    mark = min(per_hour, total)  # the next report
    cpu0 = time.process_time()
    print("| hour | resident MB | CPU µs per frame | turns |\n|---|---|---|---|")
    while fed < total:
        for i in range(0, len(sound), BLOCK):
            block = sound[i : i + BLOCK]
            for r in pipeline.process(block):
                turns += sum(isinstance(a, Commit) for a in r.actions)
            fed += len(block)
            if fed >= mark:
                span_s = (fed - len(rows) * per_hour) / RATE_HZ
                row = {
                    "hour": len(rows) + 1,
                    "resident_mb": resident_mb(),
                    "cpu_us_per_frame": (time.process_time() - cpu0) * 1e6 / (span_s * 100),
                    "turns": turns,
                }
                rows.append(row)
                mb, us = row["resident_mb"], row["cpu_us_per_frame"]
                print(f"| {row['hour']} | {mb:.0f} | {us:.1f} | {turns} |")
                cpu0, turns = time.process_time(), 0
                mark = min(mark + per_hour, total)
            if fed >= total:
                break
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"inputs": args.inputs, "hours": args.hours, "rows": rows}, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
