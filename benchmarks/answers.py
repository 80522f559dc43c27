#!/usr/bin/env python3
"""The user answers right after the reply: is the answer heard, whole?

In every conversation the device speaks, stops, and the user answers, often within a
second. During the reply the detector hears what the canceller leaves of the device's
voice; whatever that does to its state must not cost the answer. On each of aec_bench's
rooms (the four of its own run and `--more-rooms` more built with other seeds) the reply is
cut at its first pause after a given moment (before and after the echo-path change), the
echo is rebuilt from that shortened reference through the room's own paths (so its tail is
exact), and the user's first words of the scenario follow 0.3, 0.7 or 1.5 s later. Scored
like the detection corpus: an answer is caught when committed turns' uploads cover 80 % of
it, clipped when its turn's upload starts after its onset; a false turn is a committed turn
that overlaps no user speech. With `--request`, the user's words are also spoken before the
reply, which then starts a second later, as after a real request.

    python benchmarks/answers.py [--aec-bench ../shared/tools/aec_bench.py] [--more-rooms 16]
                                 [--request] [--set section.key=value ...] [--json OUT]
Needs what benchmarks/echo.py needs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import fftconvolve

from edged.config import Config, load_config
from edged.frames import FRAME_SAMPLES, RATE_HZ
from edged.replay import replay_signal
from edged.scoring import score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from echo import DEFAULT_BENCH, EXTRA_WORDS, RESULTS, load_bench, more_scenarios, scenarios, voiced_frames

REPLY_ENDS_S = (8.0, 24.5, 29.0)  # the reply is cut at its first pause after each of these
GAPS_S = (0.3, 0.7, 1.5)  # the user answers this long after the reply ends
REQUEST_AT_S = 0.4  # with --request: the user's words start here, the reply a second after them


def answer_scene(
    bench: Any,
    sc: dict[str, Any],
    paths: tuple[np.ndarray, np.ndarray],
    end_s: float,
    gap_s: float,
    request: bool,
) -> tuple[np.ndarray, np.ndarray, float, list[tuple[float, float]]]:
    """(mic, reference, the reply's true end in s, the spans in ms of what the user says:
    the request if any, then the answer)."""
    ref = sc["ref"] / 32768
    per_frame = (ref[: len(ref) // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES) ** 2).sum(axis=1)
    k = int(end_s * 100)
    k += int(np.argmax(per_frame[k:] == 0))  # the first silent frame: a pause between words
    end_s = k / 100
    a, b = (int(t * RATE_HZ) for t in EXTRA_WORDS)
    words = np.asarray(sc["near"], dtype=np.float64)[a:b]
    played = ref.copy()
    played[k * FRAME_SAMPLES :] = 0
    if request:
        played[: int((REQUEST_AT_S + len(words) / RATE_HZ + 1.0) * RATE_HZ)] = 0
    total = len(ref)
    n = min(total, int((end_s + gap_s + 2.5) * 100) * FRAME_SAMPLES)
    # the room's two echo paths, as aec_bench builds them, switched at its echo-path change
    h_a, h_b = paths
    gain = 10 ** (bench.MIC_GAIN_DB / 20)
    spk = bench.speaker(played)

    def path(delay: int, h: np.ndarray) -> np.ndarray:
        return gain * fftconvolve(np.concatenate([np.zeros(delay), spk]), h)[:total]

    w = np.clip((np.arange(total) - bench.CHANGE * RATE_HZ) / (0.01 * RATE_HZ), 0, 1)
    echo = (1 - w) * path(bench.DELAY_A, h_a) + w * path(bench.DELAY_B, h_b)
    said = [int(REQUEST_AT_S * RATE_HZ)] if request else []
    said.append(int((end_s + gap_s) * RATE_HZ))
    user = np.zeros(n)
    spans = []
    for at in said:
        alone = np.zeros(n)
        alone[at : at + len(words)] = words[: max(0, n - at)]
        active = np.flatnonzero(voiced_frames(alone))
        spans.append((float(active[0]) * 10.0, float(active[-1] + 1) * 10.0))
        user += alone
    mic = np.clip(echo[:n] + sc["noise"][:n] + user, -1, 1).astype(np.float32)
    return mic, played[:n].astype(np.float32), end_s, spans


def score_answer(turns: list[dict[str, Any]], spans: list[tuple[float, float]]) -> dict[str, Any]:
    """The answer (the last span) scored as the detection corpus scores an utterance; a false
    turn overlaps nothing the user said."""
    scores, false_turns = score(turns, spans)
    answer = scores[-1]
    on, off = spans[-1]
    first = next((t for t in turns if t["upload_start_ms"] < off and t["upload_end_ms"] > on), None)
    return {
        "caught": answer.detected,
        "clipped": answer.clipped,
        "start_after_onset_ms": first["start_ms"] - on if first else None,
        "false_turns": false_turns,
    }


def run(bench: Any, rooms: list[dict[str, Any]], cfg: Config, request: bool) -> list[dict[str, Any]]:
    paths: dict[tuple[float, float], tuple[np.ndarray, np.ndarray]] = {}
    out = []
    for sc in rooms:
        key = (sc["info"]["dist_m"], sc["info"]["rt60_nominal"])
        if key not in paths:
            h_a, h_b, _, _ = bench.rirs(*key)
            paths[key] = (h_a, h_b)
        for end_s in REPLY_ENDS_S:
            for gap_s in GAPS_S:
                mic, ref, true_end_s, spans = answer_scene(bench, sc, paths[key], end_s, gap_s, request)
                turns = replay_signal(cfg, mic, RATE_HZ, ref, RATE_HZ).turns
                r = score_answer(turns, spans)
                out.append({"room": sc["info"]["name"], "reply_end_s": true_end_s, "gap_s": gap_s, **r})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aec-bench", type=Path, default=DEFAULT_BENCH)
    ap.add_argument("--more-rooms", type=int, default=16, help="rooms beyond aec_bench's four (other seeds)")
    ap.add_argument("--request", action="store_true", help="the user's request comes before the reply")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument("--json", help="output (default: results/answers.json)")
    args = ap.parse_args(argv)
    if args.more_rooms < 0:
        print(f"--more-rooms {args.more_rooms}: cannot be negative", file=sys.stderr)
        return 64
    cfg = load_config(None, args.set)
    bench = load_bench(args.aec_bench)
    mat = bench.material()
    rooms = scenarios(bench, mat) + more_scenarios(bench, mat, args.more_rooms)
    rows = run(bench, rooms, cfg, args.request)
    print(f"\nThe user answers after the reply ({len(rooms)} rooms, {len(REPLY_ENDS_S)} replies each)\n")
    print("| answer after the reply ends | caught | clipped | turn start − onset, median ms | false turns |")
    print("|---|---|---|---|---|")
    summary = {}
    for gap_s in GAPS_S:
        g = [r for r in rows if r["gap_s"] == gap_s]
        starts = [r["start_after_onset_ms"] for r in g if r["start_after_onset_ms"] is not None]
        s = {
            "answers": len(g),
            "caught": sum(r["caught"] for r in g),
            "clipped": sum(r["clipped"] for r in g),
            "start_after_onset_ms_median": float(np.median(starts)) if starts else None,
            "false_turns": sum(r["false_turns"] for r in g),
        }
        summary[f"{gap_s:g}"] = s
        med = f"{s['start_after_onset_ms_median']:.0f}" if starts else "-"
        print(f"| {gap_s:g} s | {s['caught']}/{s['answers']} | {s['clipped']} | {med} | {s['false_turns']} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = Path(args.json or RESULTS / "answers.json")
    result = {"request": args.request, "overrides": args.set, "summary": summary, "rows": rows}
    out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
