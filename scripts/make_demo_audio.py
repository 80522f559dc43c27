#!/usr/bin/env python3
"""Rebuild edged/data/demo_kitchen.wav and its labels from the shared VAD recordings.

Real speech is placed at known offsets into a real kitchen noise recording, so
the labels are exact by construction: each utterance's speech span is taken
from its own clean energy envelope before mixing. The result is committed;
this script only documents and reproduces it.

    python scripts/make_demo_audio.py VAD_DATA_DIR     # the folder holding speech/ noise/ rir/
Needs numpy, scipy and soundfile (the noise beds are FLAC).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from math import gcd

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve, resample_poly

SR = 16000
OUT = os.path.join(os.path.dirname(__file__), "..", "edged", "data")
# (file, reverberant?) in playing order; JFK is long and has pauses inside the turn
UTTERANCES = [
    ("speech/cmu_arctic_us_aew_a0001.wav", False),
    ("speech/freesound_xmas.flac", True),
    ("speech/cmu_arctic_us_axb_a0004.wav", False),
    ("speech/jfk.flac", False),
    ("speech/vctk_p286_011.flac", True),
    ("speech/cmu_arctic_us_aew_a0002.wav", False),
    ("speech/cmu_arctic_us_axb_a0005.wav", True),
]
GAPS_S = [2.2, 3.1, 2.6, 3.4, 2.8, 3.0, 2.5]  # noise before each utterance
TAIL_S = 2.5
SNR_DB = 15.0


def load(path: str) -> np.ndarray:
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if sr != SR:
        g = gcd(sr, SR)
        x = resample_poly(x, SR // g, sr // g).astype(np.float32)
    return x


def active_frames(x: np.ndarray, hop: int = 160) -> np.ndarray:
    """10 ms frames within 35 dB of the loudest and 10 dB over the recording's own floor,
    with pauses under 250 ms bridged (the same oracle as the shared corpus tool)."""
    n = len(x) // hop
    e = 10 * np.log10(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    act = e > max(e.max() - 35.0, np.percentile(e, 5) + 10.0, -65.0)
    idx = np.flatnonzero(act)
    for a, b in itertools.pairwise(idx):
        if 1 < b - a <= 25:
            act[a:b] = True
    return act


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("vad_data")
    args = ap.parse_args()
    rng = np.random.default_rng(2026)
    rir = load(os.path.join(args.vad_data, "rir/rir_clap_seminar_room.wav"))
    k = int(np.argmax(np.abs(rir)))
    rir = rir[max(0, k - 16) :] / np.abs(rir).max()

    clips = []
    for rel, reverb in UTTERANCES:
        x = load(os.path.join(args.vad_data, rel))
        x = x / (np.abs(x).max() + 1e-9) * 0.5
        act = active_frames(x)
        r = runs(act)
        s0, e0 = max(0, r[0][0] - 5), min(len(act), r[-1][1] + 5)
        x, act = x[s0 * 160 : e0 * 160], act[s0:e0]
        if reverb:
            x = fftconvolve(x, rir)[: len(x) + int(0.3 * SR)].astype(np.float32)
        clips.append((rel, reverb, x, act))

    total = sum(GAPS_S) + TAIL_S + sum(len(c[2]) for c in clips) / SR
    n = int(np.ceil(total * 100)) * 160
    bed = load(os.path.join(args.vad_data, "noise/sc_doing_the_dishes.flac"))
    start = int(rng.integers(0, len(bed) - n))
    noise = bed[start : start + n].astype(np.float64)
    noise /= np.sqrt(np.mean(noise**2)) + 1e-12

    speech = np.zeros(n)
    labels = []
    t = 0.0
    for (rel, reverb, x, act), gap in zip(clips, GAPS_S, strict=True):
        t += gap
        i0 = round(t * 100) * 160  # on the 10 ms grid
        a = np.repeat(act, 160)
        a = np.concatenate([a, np.zeros(len(x) - len(a), bool)])
        gain = np.sqrt(np.mean(noise[i0 : i0 + len(x)][a] ** 2) * 10 ** (SNR_DB / 10) / np.mean(x[a] ** 2))
        speech[i0 : i0 + len(x)] += x * gain
        segs = [[(i0 // 160 + s) / 100, (i0 // 160 + e) / 100] for s, e in runs(act)]
        labels.append(
            {
                "src": os.path.basename(rel),
                "reverberant": reverb,
                "start_s": segs[0][0],
                "end_s": segs[-1][1],
                "speech": segs,
            }
        )
        t = (i0 + len(x)) / SR
    y = (speech + noise) * 10 ** (-38 / 20)
    y *= min(1.0, 0.9 / np.abs(y).max())
    pcm = np.clip(y * 32768, -32768, 32767).astype("<i2")
    sf.write(os.path.join(OUT, "demo_kitchen.wav"), pcm, SR, subtype="PCM_16")
    meta = {
        "file": "demo_kitchen.wav",
        "sample_rate": SR,
        "snr_db": SNR_DB,
        "noise": "sc_doing_the_dishes.flac",
        "duration_s": len(pcm) / SR,
        "utterances": labels,
    }
    with open(os.path.join(OUT, "demo_kitchen.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{len(pcm) / SR:.1f} s, {len(labels)} utterances")


if __name__ == "__main__":
    main()
