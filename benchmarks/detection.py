#!/usr/bin/env python3
"""Turn-level detection quality of `edged replay` on the labelled development corpus.

Reads a corpus made by `python ../shared/tools/vad_corpus.py OUT` (OUT/dev/labels.json
plus WAVs), replays every file through the exact pipeline the device runs, and prints:
recall per noise type and SNR (an utterance counts when committed turns' upload spans
cover 80 % of it), recall of dry and reverberant utterances, clipped onsets (upload
starting after the utterance's first labelled speech frame), split utterances,
end-of-speech-to-commit latency (commit minus the utterance's end), upload relative to
labelled speech (beside what uploading each utterance's exact span would give), false
turns per hour on the noise-only files, and the detector's cost.

Each file is replayed at several alignments (`--offsets-ms`: the first samples are
dropped and the labels moved with them). The second stage hears the audio in 32 ms
chunks and the fast stage in 30 ms blocks, so where a word falls in those decides
close calls; a device starts listening at an arbitrary sample. Figures pool every
alignment, and the spread across alignments is printed below them.
The shipped detector (`combined`) runs beside each of its stages alone (`webrtcvad`:
the fast stage; `silero`: the second stage), same audio, same gate. Writes JSON.

    python benchmarks/detection.py CORPUS_DIR [--modes combined,webrtcvad,silero]
                                   [--offsets-ms 0,8,16,24] [--set section.key=value]...
                                   [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from statistics import median
from typing import Any

from edged.config import Config, load_config
from edged.replay import replay_signal
from edged.scoring import score
from edged.wavio import read_mono

RESULTS = Path(__file__).resolve().parent / "results"


def corpus_root(path: str) -> Path | None:
    """The folder that holds labels.json: the corpus itself or its dev/; None, with the reason
    on stderr, when neither does."""
    root = Path(path)
    if (root / "dev" / "labels.json").is_file():
        root = root / "dev"
    if (root / "labels.json").is_file():
        return root
    print(f"{path}: no labels.json; build the corpus with ../shared/tools/vad_corpus.py", file=sys.stderr)
    return None


def labelled_spans(meta: dict[str, Any], at_ms: float) -> tuple[list[tuple[float, float]], list[float]]:
    """A corpus file's utterances as (start, end) and true onsets, in ms of a signal in which
    the file begins at `at_ms`. The true onset is the first labelled speech frame: the corpus
    pads utterances by 50 ms."""
    utts = meta.get("utterances", [])
    spans = [(u["start_s"] * 1000 + at_ms, u["end_s"] * 1000 + at_ms) for u in utts]
    onsets = [
        min([a for a, _ in meta["speech"] if a >= u["start_s"] - 1e-6] or [u["start_s"]]) * 1000 + at_ms
        for u in utts
    ]
    return spans, onsets


def _replay_one(args: tuple[Config, str, dict[str, Any], int]) -> dict[str, Any]:
    cfg, path, meta, offset_ms = args
    mic, rate = read_mono(path)
    t0 = time.process_time()
    res = replay_signal(cfg, mic[offset_ms * rate // 1000 :], rate)
    cpu_s = time.process_time() - t0
    out: dict[str, Any] = {
        "file": meta["file"],
        "noise": meta["noise"],
        "snr_db": meta["snr_db"],
        "offset_ms": offset_ms,
    }
    out["input_s"] = res.summary["input_ms"] / 1000
    out["uploaded_s"] = res.summary["uploaded_ms"] / 1000
    out["turns"] = len(res.turns)
    out["cpu_us_per_frame"] = cpu_s * 1e6 / (out["input_s"] * 100)
    out["discards"] = res.summary["discards"]
    utts = meta.get("utterances", [])
    spans, onsets = labelled_spans(meta, -offset_ms)
    scores, false_turns = score(res.turns, spans, onsets=onsets)
    out["false_turns"] = false_turns
    out["speech_s"] = sum(e - s for s, e in meta["speech"])
    out["utterance_s"] = sum(u["end_s"] - u["start_s"] for u in utts)
    out["utterances"] = [
        {
            "reverberant": u.get("rir") is not None,
            "detected": s.detected,
            "clipped": s.clipped,
            "split": s.split,
            "commit_delay_ms": s.commit_delay_ms,
        }
        for u, s in zip(utts, scores, strict=True)
    ]
    return out


def _pct(a: int, b: int) -> str:
    return f"{100 * a / b:5.1f}" if b else "    –"


def _median_delay(us: list[dict[str, Any]]) -> float | None:
    delays = [u["commit_delay_ms"] for u in us if u["detected"] and u["commit_delay_ms"] is not None]
    return median(delays) if delays else None


def summarise(files: list[dict[str, Any]]) -> dict[str, Any]:
    """Every figure pools all the files given (all alignments, when several were run)."""
    speech = [f for f in files if f["snr_db"] is not None]
    noise = [f for f in files if f["snr_db"] is None]
    recall: dict[str, dict[str, Any]] = defaultdict(dict)
    delay: dict[str, dict[str, Any]] = defaultdict(dict)
    for key in sorted({(f["noise"], f["snr_db"]) for f in speech}):
        us = [u for f in speech if (f["noise"], f["snr_db"]) == key for u in f["utterances"]]
        recall[key[0]][key[1]] = _share(us)
        delay[key[0]][key[1]] = _median_delay(us)

    def agg(pred) -> dict[str, Any]:
        us = [u for f in speech if pred(f) for u in f["utterances"]]
        det = [u for u in us if u["detected"]]
        delays = [u["commit_delay_ms"] for u in det if u["commit_delay_ms"] is not None]
        fs = [f for f in speech if pred(f)]
        return {
            "utterances": len(us),
            "recall": len(det) / len(us) if us else None,
            "recall_dry": _share([u for u in us if not u["reverberant"]]),
            "recall_reverberant": _share([u for u in us if u["reverberant"]]),
            "clipped_share": sum(u["clipped"] for u in det) / len(det) if det else None,
            "split_share": sum(u["split"] for u in us) / len(us) if us else None,
            "median_commit_delay_ms": median(delays) if delays else None,
            "upload_over_speech": sum(f["uploaded_s"] for f in fs) / sum(f["speech_s"] for f in fs),
            "utterances_over_speech": sum(f["utterance_s"] for f in fs) / sum(f["speech_s"] for f in fs),
            "false_turns": sum(f["false_turns"] for f in fs),
        }

    by_snr = {snr: agg(lambda f, s=snr: f["snr_db"] == s) for snr in sorted({f["snr_db"] for f in speech})}
    false_per_hour = {
        n: sum(f["turns"] for f in noise if f["noise"] == n)
        / (sum(f["input_s"] for f in noise if f["noise"] == n) / 3600)
        for n in sorted({f["noise"] for f in noise})
    }
    frames = sum(f["input_s"] for f in files) * 100
    return {
        "offsets_ms": sorted({f["offset_ms"] for f in files}),
        "replay_cpu_us_per_frame": sum(f["cpu_us_per_frame"] * f["input_s"] * 100 for f in files) / frames,
        "recall_by_noise_snr": recall,
        "median_commit_delay_ms_by_noise_snr": delay,
        "by_snr": by_snr,
        "snr_ge_10": agg(lambda f: f["snr_db"] >= 10),
        "snr_ge_5": agg(lambda f: f["snr_db"] >= 5),
        "all": agg(lambda f: True),
        "false_turns_per_hour_noise_only": false_per_hour,
    }


# figures whose spread over alignments is printed: (label, getter, scale)
SPREAD = (
    ("recall ≥ 5 dB dry %", lambda s: s["snr_ge_5"]["recall_dry"], 100),
    ("recall ≥ 5 dB reverberant %", lambda s: s["snr_ge_5"]["recall_reverberant"], 100),
    ("recall 0 dB dry %", lambda s: s["by_snr"][0]["recall_dry"], 100),
    ("recall 0 dB reverberant %", lambda s: s["by_snr"][0]["recall_reverberant"], 100),
    ("clipped onsets %", lambda s: s["all"]["clipped_share"], 100),
    ("split utterances %", lambda s: s["all"]["split_share"], 100),
    ("upload / speech ×", lambda s: s["all"]["upload_over_speech"], 1),
)


def spread(files: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Each alignment on its own: how much of a figure is where the audio happened to fall."""
    offsets = sorted({f["offset_ms"] for f in files})
    per = {o: summarise([f for f in files if f["offset_ms"] == o]) for o in offsets}
    out: dict[str, dict[str, float | None]] = {}
    rows = list(SPREAD) + [
        (f"false turns/h {n}", lambda s, n=n: s["false_turns_per_hour_noise_only"][n], 1)
        for n in sorted({f["noise"] for f in files if f["snr_db"] is None})
    ]
    for name, get, scale in rows:
        vals = [get(s) for s in per.values()]
        out[name] = {str(o): (v * scale if v is not None else None) for o, v in zip(per, vals, strict=True)}
    return out


def print_spread(sp: dict[str, dict[str, float | None]]) -> None:
    offsets = list(next(iter(sp.values())))
    print("Each alignment on its own (offset in ms)")
    print(f"{'':<30}" + "".join(f"{o:>8}" for o in offsets) + f"{'worst':>8}")
    for name, row in sp.items():
        vals = [v for v in row.values() if v is not None]
        lower_is_better = name.startswith(("false", "clipped", "split", "upload"))
        worst = (max(vals) if lower_is_better else min(vals)) if vals else None
        spec = ".2f" if name.startswith("upload") else ".1f"
        cells = "".join(f"{format(v, spec) if v is not None else '–':>8}" for v in [*row.values(), worst])
        print(f"{name:<30}{cells}")


def _share(us: list[dict[str, Any]]) -> float | None:
    return sum(u["detected"] for u in us) / len(us) if us else None


def _fmt(v: float | None, scale: float = 100.0, spec: str = "5.1f") -> str:
    return format(v * scale, spec) if v is not None else "    –"


def print_comparison(results: dict[str, dict[str, Any]]) -> None:
    modes = list(results)
    print("Side by side (same audio, same gate): " + " | ".join(modes))
    rows = [
        ("recall ≥ 5 dB %", lambda s: s["snr_ge_5"]["recall"], 100),
        ("  dry ≥ 5 dB %", lambda s: s["snr_ge_5"]["recall_dry"], 100),
        ("  reverberant ≥ 5 dB %", lambda s: s["snr_ge_5"]["recall_reverberant"], 100),
        ("recall 0 dB %", lambda s: s["by_snr"][0]["recall"], 100),
        ("  dry 0 dB %", lambda s: s["by_snr"][0]["recall_dry"], 100),
        ("  reverberant 0 dB %", lambda s: s["by_snr"][0]["recall_reverberant"], 100),
        ("clipped onsets %", lambda s: s["all"]["clipped_share"], 100),
        ("split utterances %", lambda s: s["all"]["split_share"], 100),
        ("median commit − end ms", lambda s: s["all"]["median_commit_delay_ms"], 1),
        ("upload / speech ×", lambda s: s["all"]["upload_over_speech"], 1),
    ]
    noises = sorted(next(iter(results.values()))["false_turns_per_hour_noise_only"])
    rows += [
        (f"false turns/h {n}", lambda s, n=n: s["false_turns_per_hour_noise_only"][n], 1) for n in noises
    ]
    rows.append(("replay CPU µs/frame", lambda s: s["replay_cpu_us_per_frame"], 1))
    print(f"{'':<26}" + "".join(f"{m:>12}" for m in modes))
    for name, get, scale in rows:
        vals = [get(results[m]) for m in modes]
        spec = ".2f" if name.startswith("upload") else ".1f"
        print(f"{name:<26}" + "".join(f"{_fmt(v, scale, spec):>12}" for v in vals))


def print_tables(s: dict[str, Any]) -> None:
    snrs = sorted({snr for row in s["recall_by_noise_snr"].values() for snr in row}, reverse=True)
    print("Recall (% of utterances whose upload covers ≥ 80 %), by noise and SNR")
    print(f"{'noise':<12}" + "".join(f"{f'{snr} dB':>9}" for snr in snrs))
    for noise, row in sorted(s["recall_by_noise_snr"].items()):
        print(f"{noise:<12}" + "".join(f"{_fmt(row.get(snr)):>9}" for snr in snrs))
    print()
    # the pooled median hides a noise where turns are held long (a babble of voices once held
    # them for seconds), so the wait for a reply is also shown per noise
    print("Median commit − end of speech (ms), by noise and SNR")
    print(f"{'noise':<12}" + "".join(f"{f'{snr} dB':>9}" for snr in snrs))
    for noise, row in sorted(s["median_commit_delay_ms_by_noise_snr"].items()):
        print(f"{noise:<12}" + "".join(f"{_fmt(row.get(snr), 1, '.0f'):>9}" for snr in snrs))
    print()
    hdr = "recall  dry  reverb  clipped  split  commit-delay  upload/speech  false"
    print(f"{'SNR':<10}{hdr}")
    rows = [(f"{k} dB", v) for k, v in sorted(s["by_snr"].items(), reverse=True)]
    rows += [("≥ 10 dB", s["snr_ge_10"]), ("≥ 5 dB", s["snr_ge_5"]), ("all", s["all"])]
    for name, a in rows:
        delay = a["median_commit_delay_ms"]
        print(
            f"{name:<10}{_fmt(a['recall']):>6}{_fmt(a['recall_dry']):>6}{_fmt(a['recall_reverberant']):>7}"
            f"{_fmt(a['clipped_share']):>8} %{_fmt(a['split_share']):>6} %"
            f"{(f'{delay:.0f} ms' if delay is not None else '–'):>13}{a['upload_over_speech']:>12.2f} x"
            f"{a['false_turns']:>7}"
        )
    floor = s["all"]["utterances_over_speech"]
    print(
        f"An upload of exactly each utterance's labelled span would be {floor:.2f} x"
        " the labelled speech: the spans hold the pauses between words, the corpus's 50 ms pads and the"
        " reverberant utterances' 300 ms tails, which the speech labels (from the dry voice) leave out."
    )
    print()
    print("False turns per hour on noise-only files")
    for noise, v in sorted(s["false_turns_per_hour_noise_only"].items()):
        print(f"  {noise:<12}{v:8.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", help="folder made by vad_corpus.py (its dev/ subfolder or the folder itself)")
    ap.add_argument("--config")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--json", default=str(RESULTS / "detection.json"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--modes", default="combined,webrtcvad,silero", help="detector.mode values to compare")
    ap.add_argument(
        "--offsets-ms",
        default="0,8,16,24",
        help="alignments to replay each file at (ms dropped from its start); "
        "8 ms steps cover the second stage's 32 ms chunk",
    )
    args = ap.parse_args(argv)
    root = corpus_root(args.corpus)
    if root is None:
        return 66
    try:
        offsets = sorted({int(o) for o in args.offsets_ms.split(",")})
    except ValueError:
        print(f"--offsets-ms {args.offsets_ms!r}: expected whole ms, comma-separated", file=sys.stderr)
        return 64
    if offsets[0] < 0:
        print(f"--offsets-ms {args.offsets_ms!r}: offsets cannot be negative", file=sys.stderr)
        return 64
    cfg = load_config(args.config, args.overrides)
    meta = json.loads((root / "labels.json").read_text())
    results: dict[str, Any] = {}
    for mode in args.modes.split(","):
        mcfg = dataclasses.replace(cfg, detector=dataclasses.replace(cfg.detector, mode=mode))
        jobs = [(mcfg, str(root / m["file"]), m, o) for o in offsets for m in meta["files"]]
        with ProcessPoolExecutor(max_workers=args.jobs) as ex:
            files = list(ex.map(_replay_one, jobs))
        results[mode] = {"summary": summarise(files), "spread": spread(files), "files": files}
        print(f"== detector.mode = {mode}, alignments {offsets} ms pooled")
        print_tables(results[mode]["summary"])
        print()
        print_spread(results[mode]["spread"])
        print()
    print_comparison({m: r["summary"] for m, r in results.items()})
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"overrides": args.overrides, "modes": results}, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
