#!/usr/bin/env python3
"""Rebuild the local server's spoken replies, edged/data/reply_*.wav and replies.json.

The local Realtime server answers every turn with real recorded speech, so the
echo canceller, the playback path and the barge-in tests hear what they would
hear from the service: a voice, not a tone. The sentences are CMU ARCTIC
recordings (redistributable, see edged/data/README.md) that the demo does not
already use as the user's speech, so the device's own voice and the user's
stay distinguishable. Each is trimmed to its speech with a short margin,
resampled to the API's 24 kHz, given the same loudness and 10 ms fades (no
clicks at chunk boundaries), and written as PCM16 mono. The results are
committed; this script only documents and reproduces them.

    python scripts/make_reply_audio.py [VAD_DATA_DIR]   # default: ../shared/data/vad
Needs numpy, scipy and soundfile (the `bench` extra).
"""

from __future__ import annotations

import argparse
import json
import os
from math import gcd

import numpy as np
import soundfile as sf
from scipy.io import wavfile
from scipy.signal import resample_poly

RATE_HZ = 24000
OUT = os.path.join(os.path.dirname(__file__), "..", "edged", "data")
DEFAULT_SOURCE = os.path.join("..", "shared", "data", "vad")
# (source file, transcript) in rotation order; the CMU ARCTIC prompts are published with the corpus
REPLIES = [
    ("speech/cmu_arctic_us_aew_a0003.wav", "For the twentieth time that evening the two men shook hands."),
    ("speech/cmu_arctic_us_axb_a0006.wav", "God bless 'em, I hope I'll go on seeing them forever."),
    ("speech/cmu_arctic_a0010.wav", "I'm playing a single hand in what looks like a losing game."),
]
MARGIN_MS = 120  # silence kept around the speech, so a reply starts and ends like a spoken sentence
FADE_MS = 10
TARGET_RMS_DBFS = -20.0
PEAK_LIMIT = 0.89  # -1 dBFS


def load(path: str) -> np.ndarray:
    x, sr = sf.read(path, dtype="float64", always_2d=True)
    x = x.mean(axis=1)
    if sr != RATE_HZ:
        g = gcd(sr, RATE_HZ)
        x = resample_poly(x, RATE_HZ // g, sr // g)
    return x


def speech_span(x: np.ndarray, hop: int = RATE_HZ // 100) -> tuple[int, int]:
    """First and last 10 ms frame within 35 dB of the loudest: the sentence without lead-in hiss."""
    n = len(x) // hop
    e = 10 * np.log10(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    active = np.flatnonzero(e > e.max() - 35.0)
    margin = MARGIN_MS * RATE_HZ // 1000
    return max(0, active[0] * hop - margin), min(len(x), (active[-1] + 1) * hop + margin)


def finish(x: np.ndarray) -> np.ndarray:
    x = x - x.mean()
    x = x * 10 ** (TARGET_RMS_DBFS / 20) / np.sqrt(np.mean(x**2))
    peak = np.abs(x).max()
    if peak > PEAK_LIMIT:
        x = x * PEAK_LIMIT / peak
    fade = FADE_MS * RATE_HZ // 1000
    ramp = np.linspace(0.0, 1.0, fade)
    x[:fade] *= ramp
    x[-fade:] *= ramp[::-1]
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("vad_data", nargs="?", default=DEFAULT_SOURCE, help="folder holding speech/")
    args = ap.parse_args()
    entries = []
    for i, (rel, transcript) in enumerate(REPLIES, start=1):
        x = load(os.path.join(args.vad_data, rel))
        a, b = speech_span(x)
        y = finish(x[a:b])
        name = f"reply_{i:02d}.wav"
        pcm = (np.clip(y, -1.0, 32767 / 32768) * 32768.0).astype("<i2")
        wavfile.write(os.path.join(OUT, name), RATE_HZ, pcm)
        entries.append(
            {
                "file": name,
                "transcript": transcript,
                "source": os.path.basename(rel),
                "duration_ms": round(1000 * len(pcm) / RATE_HZ),
            }
        )
        print(f"{name}: {len(pcm) / RATE_HZ:.2f} s  {transcript}")
    meta = {"sample_rate": RATE_HZ, "format": "PCM16 mono", "replies": entries}
    with open(os.path.join(OUT, "replies.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
