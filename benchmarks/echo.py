#!/usr/bin/env python3
"""Echo suppression: edged's canceller beside Speex and WebRTC AEC3, and edged's own gate.

1. Runs the shared echo benchmark (`aec_bench.py`: simulated smart-speaker rooms, far-end
   speech with a barge-in, an echo-path change) with edged's `EchoCanceller` as a plug-in
   beside the anchors it finds installed (`speex+pp` through Debian's libspeexdsp1, `aec3`
   through the livekit wheel), in one run, and prints its tables.
2. Feeds the same scenarios through edged's whole frame loop (canceller, detector, gate)
   and reports what users feel: false barge-ins per minute of playback (turns started while
   only the device spoke: each pauses the reply), how many of those went on to cancel it
   (confirmed as speech; an upper bound, since here the echo plays on through the pause
   where a real device falls silent), barge-in recall (the user's first word during playback starts a
   turn within 300 ms of its onset), the barge-in latency, and how many barge-ins start a turn
   within 2 s at all (a late one still stops the device: the user was heard). Then the same over
   `--more-rooms` more rooms of the same kinds built with other seeds: four rooms are few
   enough for a setting to fit them and fail elsewhere. Last, all those rooms with nobody
   talking, where every turn start is a false barge-in.

3. With --sweep, instead: the trade-off between the two halves (the device never hears
   itself, the user is always heard), edged's canceller and gate over a grid of suppression,
   filter tail and barge-in margin, one row per configuration.

    python benchmarks/echo.py [--aec-bench ../shared/tools/aec_bench.py] [--sweep] [--more-rooms 16]
                              [--json OUT]
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

from edged.aec import EchoCanceller
from edged.config import Config, load_config
from edged.frames import FRAME_SAMPLES, RATE_HZ
from edged.gate import Confirm, Start
from edged.pipeline import Pipeline

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_BENCH = ROOT.parent / "shared" / "tools" / "aec_bench.py"
CAUGHT_MS = 300
HEARD_MS = 2000  # a user the device stops for within this long was heard, if late


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


def frame_loop(mic: np.ndarray, ref: np.ndarray, cfg: Config) -> tuple[list[Start], set[int], Pipeline]:
    """The whole frame loop over one room: the turns it started, those confirmed as speech
    (a confirmed barge-in cancels the reply), and the pipeline (for its delay)."""
    p = Pipeline(cfg, RATE_HZ, RATE_HZ)
    starts: list[Start] = []
    confirmed: set[int] = set()
    for i in range(0, len(mic) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        for r in p.process(mic[i : i + FRAME_SAMPLES], ref[i : i + FRAME_SAMPLES]):
            starts += [a for a in r.actions if isinstance(a, Start)]
            confirmed.update(a.turn for a in r.actions if isinstance(a, Confirm))
    return starts, confirmed, p


def frame_db(x: np.ndarray) -> np.ndarray:
    """Level of each whole 10 ms frame (dB of full scale)."""
    n = len(x) // FRAME_SAMPLES
    return 10 * np.log10((x[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES) ** 2).mean(axis=1) + 1e-12)


def voiced_frames(x: np.ndarray) -> np.ndarray:
    """The frames of a lone voice that carry its speech: within 30 dB of its loudest."""
    level = frame_db(x)
    return level > level.max() - 30


def playing_frames(ref: np.ndarray) -> np.ndarray:
    """Per 10 ms frame: does the speaker play (the far end above -50 dBFS)?"""
    return frame_db(ref) > -50


def minutes(frames: np.ndarray) -> float:
    """Minutes of the 10 ms frames a mask marks."""
    return float(frames.sum()) * FRAME_SAMPLES / RATE_HZ / 60


def gate_on_scenario(sc: dict[str, Any], cfg: Config) -> dict[str, Any]:
    mic = sc["mic"].astype(np.float32) / 32768
    ref = sc["ref"].astype(np.float32) / 32768
    starts, confirmed, p = frame_loop(mic, ref, cfg)
    n = len(mic) // FRAME_SAMPLES
    talking = voiced_frames(sc["near"][: n * FRAME_SAMPLES])  # the user's speech frames (ground truth)
    playing = playing_frames(ref)
    # a start is false when the user is silent around it (300 ms either way)
    pad = CAUGHT_MS // 10
    near_around = np.convolve(talking, np.ones(2 * pad + 1), "same") > 0
    # starts are placed on the input clock: the pipeline's frames lag by its delay
    lag = round(p.delay_samples / FRAME_SAMPLES)
    at = [s.at // FRAME_SAMPLES - lag for s in starts]
    false = [(k, s.turn) for k, s in zip(at, starts, strict=True) if not near_around[min(n - 1, max(0, k))]]
    # barge-ins: the user starts talking (after a second of silence) while the device plays
    # (the device's reply counts as going on through the pauses between its words)
    replying = np.convolve(playing, np.ones(50), "full")[: len(playing)] > 0
    quiet_before = np.convolve(talking, np.ones(101), "full")[: len(talking)] - talking == 0
    onsets = np.flatnonzero(talking & replying & quiet_before)
    latencies: list[float | None] = []
    heard: list[float | None] = []
    for onset in onsets:
        hits = [(k - onset) * 10 for k in at if -5 <= k - onset <= HEARD_MS // 10]
        first = float(min(hits)) if hits else None
        heard.append(first)
        latencies.append(first if first is not None and first <= CAUGHT_MS else None)
    playback_min = minutes(playing)
    return {
        "false_barge_ins": len(false),
        "false_cancels": sum(turn in confirmed for _, turn in false),
        "playback_min": playback_min,
        "false_per_min": len(false) / playback_min if playback_min else 0.0,
        "barge_ins": len(onsets),
        "barge_ins_caught": sum(x is not None for x in latencies),
        "barge_in_latencies_ms": latencies,
        "barge_ins_heard": sum(x is not None for x in heard),
        "barge_in_heard_latencies_ms": heard,
    }


def nobody_talking(rooms: list[dict[str, Any]], cfg: Config) -> dict[str, Any]:
    """The replies play and nobody speaks: every turn start is a false barge-in. The gate
    rows above count starts only where the user is silent for 300 ms either way, and their
    extra barge-ins cover much of each room's timeline; this count has no such blind spot."""
    starts = cancels = 0
    played_min = 0.0
    for sc in rooms:
        mic = np.clip(sc["echo"] + sc["noise"], -1, 1).astype(np.float32)
        ref = sc["ref"].astype(np.float32) / 32768
        started, confirmed, _ = frame_loop(mic, ref, cfg)
        turns = {a.turn for a in started}
        starts += len(turns)
        cancels += len(turns & confirmed)
        played_min += minutes(playing_frames(ref))
    return {
        "rooms": len(rooms),
        "false_barge_ins": starts,
        "false_barge_ins_per_min": starts / played_min if played_min else 0.0,
        "false_cancels_per_min": cancels / played_min if played_min else 0.0,
    }


def scenarios(bench: Any, mat: Any) -> list[dict[str, Any]]:
    """aec_bench's rooms, each with the seed its own run gives it."""
    rooms = enumerate(bench.SCENARIOS)
    return [bench.build_scenario(n, d, rt, mat, bench.SEED + i) for i, (n, d, rt) in rooms]


def more_scenarios(bench: Any, mat: Any, count: int) -> list[dict[str, Any]]:
    """`count` more rooms of aec_bench's four kinds, built with other seeds: other voices,
    words and noise in the same geometry. Four rooms are few enough that a setting can fit
    them and fail elsewhere; the gate's figures on these are the check."""
    kinds = bench.SCENARIOS
    out = []
    for k in range(count):
        name, dist, rt60 = kinds[k % len(kinds)]
        seed = bench.SEED + 100 * (1 + k // len(kinds)) + k % len(kinds)
        sc = bench.build_scenario(name, dist, rt60, mat, seed)
        out.append({**sc, "info": {**sc["info"], "name": f"{name} seed {seed}"}})
    return out


def gate_rows(scen: list[dict[str, Any]], cfg: Config) -> dict[str, dict[str, Any]]:
    """edged's gate on each room, by the room's name."""
    return {s["info"]["name"]: gate_on_scenario(with_more_barge_ins(s), cfg) for s in scen}


def gate_summary(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What users feel, over all rooms: false barge-ins per minute of playback and the share
    of barge-ins caught within CAUGHT_MS (and, later or not, within HEARD_MS)."""
    total_min = sum(r["playback_min"] for r in rows.values())
    n_bi = sum(r["barge_ins"] for r in rows.values())
    n_caught = sum(r["barge_ins_caught"] for r in rows.values())
    n_false = sum(r["false_barge_ins"] for r in rows.values())
    n_cancel = sum(r["false_cancels"] for r in rows.values())
    lats = [x for r in rows.values() for x in r["barge_in_latencies_ms"] if x is not None]
    return {
        "false_barge_ins": n_false,
        "false_barge_ins_per_min": n_false / total_min if total_min else 0.0,
        "false_cancels_per_min": n_cancel / total_min if total_min else 0.0,
        "barge_ins": n_bi,
        "barge_ins_caught": n_caught,
        "barge_in_recall": n_caught / n_bi if n_bi else 0.0,
        "barge_ins_heard": sum(r["barge_ins_heard"] for r in rows.values()),
        "barge_in_latency_ms_median": float(np.median(lats)) if lats else None,
    }


# The canceller's trade-off: how hard the residual is suppressed (oversubtraction, floor), how
# much of the room the linear filter covers, and how far above the expected echo (and how far
# from the device's own pitch) the gate wants the user. Each point differs from the shipped
# configuration in the keys shown.
SWEEP: tuple[tuple[str, ...], ...] = (
    (),
    ("aec.oversubtraction=1",),
    ("aec.oversubtraction=2",),
    ("aec.oversubtraction=8",),
    ("aec.suppression_db=0",),
    ("aec.tail_ms=128",),
    ("aec.tail_ms=128", "aec.barge_in_decay_ms=120"),
    ("aec.tail_ms=288",),
    ("aec.barge_in_decay_ms=120",),
    ("aec.barge_in_margin_db=4",),
    ("aec.barge_in_margin_db=6",),
    ("aec.barge_in_margin_db=12",),
    ("aec.barge_in_pitch=2",),
    ("aec.barge_in_pitch=0.4",),
    ("aec.barge_in_pitch=0.6",),
    ("aec.barge_in_pitch_margin_db=0",),
    ("aec.half_duplex=true",),
)


def canceller_figures(bench: Any, mat: Any, scen: list[dict[str, Any]], cfg: Config) -> dict[str, Any]:
    """aec_bench's figures for one configuration of edged's canceller (means over rooms, as
    its tables print them; re-convergence as a median, 'never' counted as never)."""

    def factory() -> EchoCanceller:
        return EchoCanceller(RATE_HZ, FRAME_SAMPLES, cfg.aec)

    lag = bench.latency(factory, mat)
    per, ns = [], []
    for s in scen:
        out, t = bench.run_aec(factory, s)
        ns.append(t)
        per.append(bench.score(np.concatenate([out[lag:], np.zeros(lag)]), s))

    def mean(key: str) -> float | None:
        v = [p[key] for p in per if p[key] is not None]
        return float(np.mean(v)) if v else None

    re_t10 = [p["re_t10_ms"] if p["re_t10_ms"] is not None else float("inf") for p in per]
    return {
        "erle_ss_db": mean("erle_ss"),
        "re_t10_ms": float(np.median(re_t10)),
        "pesq_dt": mean("pesq_dt"),
        "vad3_dt_recall": mean("vad3_dt_recall"),
        "vad3_trig_per_min": mean("vad3_trig_per_min"),
        "cpu_us_median": float(np.median(np.concatenate(ns))) / 1000,
    }


def run_sweep(bench: Any, out: Path, more_rooms: int) -> None:
    mat = bench.material()
    scen = scenarios(bench, mat)
    more = more_scenarios(bench, mat, more_rooms)
    points = []
    for overrides in SWEEP:
        cfg = load_config(None, list(overrides))
        rows = gate_rows(scen, cfg)
        fig = canceller_figures(bench, mat, scen, cfg)
        extra = {"more_rooms": gate_summary(gate_rows(more, cfg))} if more else {}
        extra["nobody_talking"] = nobody_talking(scen + more, cfg)
        points.append({"overrides": list(overrides), **fig, **gate_summary(rows), **extra})
        print(f"done {' '.join(overrides) or 'shipped'}", file=sys.stderr)
    print(
        "\nTrade-off of edged's canceller and gate (means over aec_bench rooms; targets: false"
        "\nbarge-ins ≤ 0.1/min for webrtcvad m3 and the gate, m3 DT recall ≥ 90 %, PESQ DT ≥ 2.0,"
        f"\nERLE ≥ 35 dB, ≥ 95 % of barge-ins caught ≤ {CAUGHT_MS} ms)\n"
    )
    more_head = f" | {more_rooms} more rooms: gate false/min | caught" if more_rooms else ""
    print(
        "| differs from shipped | ERLE ss dB | reT10 ms | PESQ DT | m3 DT recall % | m3 trig/min "
        f"| gate false/min | of which cancel | caught ≤ {CAUGHT_MS} ms | CPU med µs{more_head} "
        f"| nobody talking ({len(scen) + len(more)} rooms): false/min |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if more_rooms else "") + "---|")
    for pt in points:
        m, quiet = pt.get("more_rooms"), pt["nobody_talking"]
        more_cells = (
            f" {m['false_barge_ins_per_min']:.2f} | {m['barge_ins_caught']}/{m['barge_ins']} |" if m else ""
        )
        print(
            f"| {', '.join(pt['overrides']) or 'shipped'} | {pt['erle_ss_db']:.1f} | {pt['re_t10_ms']:.0f} "
            f"| {pt['pesq_dt']:.2f} | {100 * pt['vad3_dt_recall']:.1f} | {pt['vad3_trig_per_min']:.2f} "
            f"| {pt['false_barge_ins_per_min']:.2f} | {pt['false_cancels_per_min']:.2f} "
            f"| {pt['barge_ins_caught']}/{pt['barge_ins']} "
            f"| {pt['cpu_us_median']:.0f} |{more_cells} {quiet['false_barge_ins_per_min']:.2f} |"
        )
    out.write_text(json.dumps({"points": points}, indent=1))
    print(f"\nwrote {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aec-bench", type=Path, default=DEFAULT_BENCH)
    ap.add_argument("--algos", default="raw,speex+pp,aec3", help="anchors of aec_bench to run beside edged")
    ap.add_argument("--sweep", action="store_true", help="the trade-off sweep instead")
    ap.add_argument("--json", help="output (default: results/echo.json, or echo_sweep.json with --sweep)")
    ap.add_argument(
        "--more-rooms",
        type=int,
        default=16,
        help="also run edged's gate on this many more rooms of the same kinds, other seeds (0: none)",
    )
    args = ap.parse_args(argv)
    if args.more_rooms < 0:
        print(f"--more-rooms {args.more_rooms}: cannot be negative", file=sys.stderr)
        return 64
    bench = load_bench(args.aec_bench)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.sweep:
        run_sweep(bench, Path(args.json or RESULTS / "echo_sweep.json"), args.more_rooms)
        return 0
    out = Path(args.json or RESULTS / "echo.json")
    anchors_json = out.with_name("echo_anchors.json")
    sys.path.insert(0, str(ROOT))
    bench.main(["--algos", args.algos, "--plugin", "edged.aec:EchoCanceller", "--json", str(anchors_json)])

    mat = bench.material()
    scen = scenarios(bench, mat)
    rows = gate_rows(scen, Config())
    print(
        "\nedged's gate on the same scenarios (whole frame loop, default config), with the user's first"
        f"\nwords also spoken at {', '.join(f'{t:g}' for t in EXTRA_ONSETS_S)} s of playback\n"
    )
    caught_head = f"barge-ins caught ≤ {CAUGHT_MS} ms"
    print(
        f"| scenario | false barge-ins (pauses) | per min of playback | of which cancel the reply "
        f"| {caught_head} | latency ms | heard ≤ {HEARD_MS / 1000:g} s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        lats = [x for x in r["barge_in_latencies_ms"] if x is not None]
        med = f"{np.median(lats):.0f}" if lats else "-"
        print(
            f"| {name} | {r['false_barge_ins']} | {r['false_per_min']:.2f} | {r['false_cancels']} | "
            f"{r['barge_ins_caught']}/{r['barge_ins']} | {med} | {r['barge_ins_heard']}/{r['barge_ins']} |"
        )
    summary = gate_summary(rows)
    print(
        f"| all | {summary['false_barge_ins']} | {summary['false_barge_ins_per_min']:.2f} | "
        f"{summary['false_cancels_per_min']:.2f}/min | {summary['barge_ins_caught']}/{summary['barge_ins']} "
        f"| {summary['barge_in_latency_ms_median']} | {summary['barge_ins_heard']}/{summary['barge_ins']} |"
    )
    result: dict[str, Any] = {"gate": rows, "gate_summary": summary}
    extra = more_scenarios(bench, mat, args.more_rooms)
    if extra:
        more = gate_summary(gate_rows(extra, Config()))
        print(
            f"| {args.more_rooms} more rooms (other seeds) | {more['false_barge_ins']} | "
            f"{more['false_barge_ins_per_min']:.2f} | {more['false_cancels_per_min']:.2f}/min | "
            f"{more['barge_ins_caught']}/{more['barge_ins']} | {more['barge_in_latency_ms_median']} "
            f"| {more['barge_ins_heard']}/{more['barge_ins']} |"
        )
        result["more_rooms_summary"] = more
    quiet = nobody_talking(scen + extra, Config())
    print(
        f"| the {quiet['rooms']} rooms with nobody talking | {quiet['false_barge_ins']} | "
        f"{quiet['false_barge_ins_per_min']:.2f} | {quiet['false_cancels_per_min']:.2f}/min | - | - | - |"
    )
    result["nobody_talking"] = quiet
    anchors = json.loads(anchors_json.read_text())
    out.write_text(json.dumps({"anchors": anchors, **result}, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
