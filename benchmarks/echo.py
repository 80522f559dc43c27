#!/usr/bin/env python3
"""Echo suppression: edged's canceller beside Speex and WebRTC AEC3, and edged's own gate.

1. Runs the shared echo benchmark (`aec_bench.py`: simulated smart-speaker rooms, far-end
   speech with a barge-in, an echo-path change) with edged's `EchoCanceller` as a plug-in
   beside the anchors it finds installed (`speex+pp` through Debian's libspeexdsp1, `aec3`
   through the livekit wheel), in one run, and prints its tables.
2. Feeds the same scenarios through edged's whole frame loop (canceller, detector, gate)
   and reports what users feel: false barge-ins per minute of playback (turns started while
   only the device spoke), barge-in recall (the user's first word during playback starts a
   turn within 300 ms of its onset) and the barge-in latency.

    python benchmarks/echo.py [--aec-bench ../shared/tools/aec_bench.py] [--json OUT]
Needs: apt-get install espeak-ng libspeexdsp1; pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edged.config import Config
from edged.frames import FRAME_SAMPLES, RATE_HZ
from edged.gate import Start
from edged.pipeline import Pipeline

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_BENCH = ROOT.parent / "shared" / "tools" / "aec_bench.py"
CAUGHT_MS = 300


def load_bench(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("aec_bench", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: cannot load the echo benchmark")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


EXTRA_ONSETS_S = (2.5, 6.0, 9.0, 24.0, 28.0, 31.5)  # more barge-ins, during far-end-only playback
EXTRA_WORDS = (12.3, 14.3)  # the user's first words in the scenario, copied to each onset


def with_more_barge_ins(sc: dict[str, Any]) -> dict[str, Any]:
    """The scenario's microphone with the user's first two seconds also spoken at six other
    moments of playback (before and after the echo-path change): seven barge-ins per room
    instead of one, on the same echo, noise and voice."""
    near = np.asarray(sc["near"], dtype=np.float64)
    a, b = (int(t * RATE_HZ) for t in EXTRA_WORDS)
    words = near[a:b]
    extra = np.zeros_like(near)
    for t in EXTRA_ONSETS_S:
        i = int(t * RATE_HZ)
        extra[i : i + len(words)] += words[: len(extra) - i]
    mic = np.clip(sc["mic"].astype(np.float64) + extra * 32768, -32768, 32767).astype(np.int16)
    return {**sc, "mic": mic, "near": near + extra}


def gate_on_scenario(sc: dict[str, Any], cfg: Config) -> dict[str, Any]:
    mic = sc["mic"].astype(np.float32) / 32768
    ref = sc["ref"].astype(np.float32) / 32768
    p = Pipeline(cfg, RATE_HZ, RATE_HZ)
    starts = []
    for i in range(0, len(mic) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        for r in p.process(mic[i : i + FRAME_SAMPLES], ref[i : i + FRAME_SAMPLES]):
            starts += [a for a in r.actions if isinstance(a, Start)]
    n = len(mic) // FRAME_SAMPLES
    near = sc["near"][: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES)
    far = ref[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES)
    near_db = 10 * np.log10((near**2).mean(axis=1) + 1e-12)
    talking = near_db > near_db.max() - 30  # the user's speech frames (ground truth)
    playing = 10 * np.log10((far**2).mean(axis=1) + 1e-12) > -50
    # a start is false when the user is silent around it (300 ms either way)
    pad = CAUGHT_MS // 10
    near_around = np.convolve(talking, np.ones(2 * pad + 1), "same") > 0
    # starts are placed on the input clock: the pipeline's frames lag by its delay
    lag = round(p.delay_samples / FRAME_SAMPLES)
    at = [s.at // FRAME_SAMPLES - lag for s in starts]
    false = [k for k in at if not near_around[min(n - 1, max(0, k))]]
    # barge-ins: the user starts talking (after a second of silence) while the device plays
    # (the device's reply counts as going on through the pauses between its words)
    replying = np.convolve(playing, np.ones(50), "full")[: len(playing)] > 0
    quiet_before = np.convolve(talking, np.ones(101), "full")[: len(talking)] - talking == 0
    onsets = np.flatnonzero(talking & replying & quiet_before)
    latencies: list[float | None] = []
    for onset in onsets:
        hits = [(k - onset) * 10 for k in at if -5 <= k - onset <= CAUGHT_MS // 10]
        latencies.append(float(min(hits)) if hits else None)
    playback_min = playing.sum() * FRAME_SAMPLES / RATE_HZ / 60
    return {
        "false_barge_ins": len(false),
        "playback_min": float(playback_min),
        "false_per_min": len(false) / playback_min if playback_min else 0.0,
        "barge_ins": len(onsets),
        "barge_ins_caught": sum(x is not None for x in latencies),
        "barge_in_latencies_ms": latencies,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aec-bench", type=Path, default=DEFAULT_BENCH)
    ap.add_argument("--algos", default="raw,speex+pp,aec3", help="anchors of aec_bench to run beside edged")
    ap.add_argument("--json", default=str(RESULTS / "echo.json"))
    args = ap.parse_args(argv)
    bench = load_bench(args.aec_bench)
    RESULTS.mkdir(parents=True, exist_ok=True)
    anchors_json = Path(args.json).with_name("echo_anchors.json")
    sys.path.insert(0, str(ROOT))
    bench.main(["--algos", args.algos, "--plugin", "edged.aec:EchoCanceller", "--json", str(anchors_json)])

    mat = bench.material()
    scen = [
        bench.build_scenario(n, d, rt, mat, bench.SEED + i) for i, (n, d, rt) in enumerate(bench.SCENARIOS)
    ]
    rows = {s["info"]["name"]: gate_on_scenario(with_more_barge_ins(s), Config()) for s in scen}
    print(
        "\nedged's gate on the same scenarios (whole frame loop, default config), with the user's first"
        f"\nwords also spoken at {', '.join(f'{t:g}' for t in EXTRA_ONSETS_S)} s of playback\n"
    )
    caught_head = f"barge-ins caught ≤ {CAUGHT_MS} ms"
    print(f"| scenario | false barge-ins | per min of playback | {caught_head} | latency ms |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        lats = [x for x in r["barge_in_latencies_ms"] if x is not None]
        med = f"{np.median(lats):.0f}" if lats else "-"
        print(
            f"| {name} | {r['false_barge_ins']} | {r['false_per_min']:.2f} | "
            f"{r['barge_ins_caught']}/{r['barge_ins']} | {med} |"
        )
    total_min = sum(r["playback_min"] for r in rows.values())
    total_false = sum(r["false_barge_ins"] for r in rows.values())
    n_bi = sum(r["barge_ins"] for r in rows.values())
    n_caught = sum(r["barge_ins_caught"] for r in rows.values())
    lats = [x for r in rows.values() for x in r["barge_in_latencies_ms"] if x is not None]
    summary = {
        "false_barge_ins_per_min": total_false / total_min if total_min else 0.0,
        "barge_in_recall": n_caught / n_bi if n_bi else 0.0,
        "barge_in_latency_ms_median": float(np.median(lats)) if lats else None,
    }
    print(
        f"| all | {total_false} | {summary['false_barge_ins_per_min']:.2f} | "
        f"{n_caught}/{n_bi} | {summary['barge_in_latency_ms_median']} |"
    )
    anchors = json.loads(anchors_json.read_text())
    Path(args.json).write_text(
        json.dumps({"anchors": anchors, "gate": rows, "gate_summary": summary}, indent=1)
    )
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
