#!/usr/bin/env python3
"""A day, not a file: the detector listening without a restart while the room changes.

`detection.py` replays every corpus file through a fresh pipeline, so each file starts
with a detector that has heard nothing but that file. A device listens for days, and what
it heard before a noise began changes how it hears the noise: Silero's recurrent memory
settles differently. On the development corpus (seed 7), its babble gave no false turn in
5 minutes from a fresh start, but after a minute of a quiet room the same babble was
uploaded for 4.6 of those minutes, in back-to-back 30 s turns. This replays, each through
one pipeline that is never restarted:

1. every noise-only file after `--bed-s` of a quiet room (the corpus's own fan and street
   recordings, 30 dB down): false turns per hour of the noise, and seconds uploaded per
   hour, beside the same file replayed fresh;
2. the noise-only files back to back, each after the one before;
3. the speech files back to back: recall, clipped and split utterances and false turns,
   beside the same files replayed fresh (as `detection.py` does at alignment 0).

    python benchmarks/continuous.py CORPUS_DIR [--bed-s 60] [--set section.key=value]...
                                    [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from detection import corpus_root, labelled_spans  # this folder's detection.py

from edged.config import Config, load_config
from edged.frames import RATE_HZ
from edged.replay import replay_signal
from edged.scoring import score
from edged.wavio import read_mono

RESULTS = Path(__file__).resolve().parent / "results"
BEDS = (("quiet fan", "noise_fan_machine.wav"), ("quiet street", "noise_street.wav"))
BED_GAIN_DB = -30.0


def _load(root: Path, name: str) -> np.ndarray:
    x, rate = read_mono(str(root / name))
    if rate != RATE_HZ:
        raise SystemExit(f"{name}: {rate} Hz; the corpus is {RATE_HZ} Hz")
    return x.astype(np.float32)


def _segment(
    turns: list[dict[str, Any]], meta: dict[str, Any], start_ms: float, length_ms: float
) -> dict[str, Any]:
    """Score one file's span of a stream, `length_ms` from `start_ms`: utterances against
    every turn that overlaps the span, false turns among those whose speech starts in it
    (their pre-roll may reach back into the file before)."""
    end_ms = start_ms + length_ms
    near = [t for t in turns if t["upload_start_ms"] < end_ms and t["upload_end_ms"] > start_ms]
    spans, onsets = labelled_spans(meta, start_ms)
    scores, _ = score(near, spans, onsets=onsets)
    own = [t for t in near if start_ms <= t["start_ms"] < end_ms]
    _, false_turns = score(own, spans)
    return {
        "file": meta["file"],
        "utterances": len(spans),
        "detected": sum(s.detected for s in scores),
        "clipped": sum(s.clipped for s in scores),
        "split": sum(s.split for s in scores),
        "false_turns": false_turns,
        # what the file's own turns uploaded of the noise (all of it, for a noise-only file)
        "uploaded_s": sum(t["uploaded_ms"] for t in own) / 1000,
        "hours": length_ms / 3_600_000,
    }


def _stream(job: tuple[Config, str, list[dict[str, Any]], str | None, float]) -> list[dict[str, Any]]:
    """Replay `files` back to back after `bed_s` of the bed file 30 dB down (none: no bed)."""
    cfg, root_s, files, bed, bed_s = job
    root = Path(root_s)
    parts = []
    if bed is not None:
        parts.append(_load(root, bed)[: int(bed_s * RATE_HZ)] * np.float32(10 ** (BED_GAIN_DB / 20)))
    lead_ms = sum(len(p) for p in parts) * 1000 / RATE_HZ
    signals = [_load(root, m["file"]) for m in files]
    turns = replay_signal(cfg, np.concatenate(parts + signals), RATE_HZ).turns
    out, at = [], lead_ms
    for m, x in zip(files, signals, strict=True):
        length_ms = len(x) * 1000 / RATE_HZ
        out.append(_segment(turns, m, at, length_ms))
        at += length_ms
    return out


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    hours = sum(r["hours"] for r in rows)
    n = sum(r["utterances"] for r in rows)
    return {
        "utterances": n,
        "recall": sum(r["detected"] for r in rows) / n if n else None,
        "clipped": sum(r["clipped"] for r in rows),
        "split": sum(r["split"] for r in rows),
        "false_turns": sum(r["false_turns"] for r in rows),
        "false_turns_per_hour": sum(r["false_turns"] for r in rows) / hours,
        "uploaded_s_per_hour": sum(r["uploaded_s"] for r in rows) / hours,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", help="folder made by vad_corpus.py (its dev/ subfolder or the folder itself)")
    ap.add_argument("--config")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--bed-s", type=float, default=60.0, help="seconds of quiet room before each noise")
    ap.add_argument("--json", default=str(RESULTS / "continuous.json"))
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    root = corpus_root(args.corpus)
    if root is None:
        return 66
    cfg = load_config(args.config, args.overrides)
    files = json.loads((root / "labels.json").read_text())["files"]
    noises = [m for m in files if m["kind"] != "speech"]
    speech = [m for m in files if m["kind"] == "speech"]
    names = {m["file"] for m in noises}
    beds = [(label, f) for label, f in BEDS if f in names]
    # each job: (what, rows); every file replayed fresh, each noise after each bed, two streams
    jobs: list[tuple[str, tuple[Config, str, list[dict[str, Any]], str | None, float]]] = []
    jobs += [("fresh", (cfg, str(root), [m], None, 0.0)) for m in noises + speech]
    jobs += [(label, (cfg, str(root), [m], bed, args.bed_s)) for label, bed in beds for m in noises]
    jobs += [("noise stream", (cfg, str(root), noises, None, 0.0))]
    jobs += [("speech stream", (cfg, str(root), speech, None, 0.0))]
    with ProcessPoolExecutor(max_workers=args.jobs) as ex:
        results = list(ex.map(_stream, [j for _, j in jobs]))
    rows: dict[str, list[dict[str, Any]]] = {}
    for (what, _), res in zip(jobs, results, strict=True):
        rows.setdefault(what, []).extend(res)

    columns = ["fresh", *[label for label, _ in beds], "noise stream"]
    # each column's noise-only rows, by file
    by_column = {c: {r["file"]: r for r in rows.get(c, []) if r["file"] in names} for c in columns}
    print("False turns per hour, and seconds uploaded per hour, on the noise-only files")
    print("(fresh: a new pipeline per file, as detection.py; after a quiet bed; back to back)\n")
    print("| noise | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    table: dict[str, dict[str, Any]] = {}
    for m in noises:
        cells, table[m["file"]] = [], {}
        for c in columns:
            r = by_column[c][m["file"]]
            per_h = 1 / r["hours"]
            table[m["file"]][c] = {
                "false_turns_per_hour": r["false_turns"] * per_h,
                "uploaded_s_per_hour": r["uploaded_s"] * per_h,
            }
            cells.append(f"{r['false_turns'] * per_h:.0f}/h, {r['uploaded_s'] * per_h:.0f} s/h")
        print(f"| {m['noise']} | " + " | ".join(cells) + " |")
    fresh_speech = _totals([r for r in rows["fresh"] if r["file"] not in names])
    stream_speech = _totals(rows["speech stream"])
    print("\nThe speech files: fresh pipeline per file, against one stream\n")
    print("| | utterances | recall | clipped | split | false turns |")
    print("|---|---|---|---|---|---|")
    for label, t in (("fresh", fresh_speech), ("one stream", stream_speech)):
        print(
            f"| {label} | {t['utterances']} | {100 * t['recall']:.1f} % | {t['clipped']} | {t['split']} "
            f"| {t['false_turns']} |"
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "overrides": args.overrides,
                "bed_s": args.bed_s,
                "bed_gain_db": BED_GAIN_DB,
                "noise": table,
                "speech": {"fresh": fresh_speech, "one_stream": stream_speech},
                "rows": rows,
            },
            indent=1,
        )
    )
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
