#!/usr/bin/env python3
"""Rebuild the noise excerpts in tests/data/ (see tests/data/README.md for sources and licences).

    python scripts/make_test_audio.py VAD_DATA_DIR   # the folder holding noise/, speech/, rir/
Also reads Debian's asterisk-moh-opsound-wav (hold music) and asterisk-core-sounds-fr-wav and
-it-wav (prompts, mixed into six-talker babble). Needs numpy, scipy and soundfile.
"""

from __future__ import annotations

import argparse
import glob
import os

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data")
SECONDS = 20
LEVEL_DBFS = -35.0  # RMS of each excerpt: a room heard by a far-field microphone


def excerpt(path: str, start_s: float) -> tuple[np.ndarray, int]:
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    x = x.mean(axis=1)[int(start_s * sr) : int((start_s + SECONDS) * sr)]
    x *= 10 ** (LEVEL_DBFS / 20) / np.sqrt(np.mean(x**2))
    return x, sr


def load_16k(path: str) -> np.ndarray:
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    return resample_poly(x, 16000, sr).astype(np.float32) if sr != 16000 else x


def babble(seconds: float, talkers: int = 6, seed: int = 1) -> tuple[np.ndarray, int]:
    """Six voices talking at once (French and Italian prompts, each stream prompt after prompt
    at the same level): a room full of talk, in no language the user speaks."""
    sounds = "/usr/share/asterisk/sounds"
    pool = sorted(glob.glob(f"{sounds}/fr_CA_f_June/*.wav") + glob.glob(f"{sounds}/it_IT_m_Carlo/*.wav"))
    rng = np.random.default_rng(seed)
    rate = 16000
    n = int(seconds * rate)
    out = np.zeros(n, np.float32)
    for _ in range(talkers):
        parts, total = [], 0
        while total < n:
            u = load_16k(pool[rng.integers(len(pool))])
            parts.append(u / (np.sqrt(np.mean(u**2)) + 1e-9))
            total += len(u)
        out += np.concatenate(parts)[:n]
    out *= 10 ** (LEVEL_DBFS / 20) / np.sqrt(np.mean(out**2))
    return out, rate


def sentence_and_room(vad_data: str) -> None:
    """A sentence (trimmed to its sound, ±50 ms, at half full scale) and a real room's response
    (from 1 ms before its direct path, at full scale), both CC0, both at 16 kHz: the tests
    build a far-field voice from them."""
    x = load_16k(os.path.join(vad_data, "speech/freesound_xmas.flac"))
    x *= 0.5 / np.abs(x).max()
    power = np.convolve(x**2, np.ones(160) / 160, "same")
    loud = np.flatnonzero(power > power.max() * 1e-4)  # within 40 dB of its loudest
    x = x[max(0, loud[0] - 800) : loud[-1] + 800]
    sf.write(os.path.join(OUT, "xmas_16k.wav"), x, 16000, subtype="PCM_16")
    h = load_16k(os.path.join(vad_data, "rir/rir_clap_seminar_room.wav"))
    k = int(np.argmax(np.abs(h)))
    h = h[max(0, k - 16) :]
    sf.write(os.path.join(OUT, "rir_clap_seminar_16k.wav"), h / np.abs(h).max(), 16000, subtype="PCM_16")
    print("xmas_16k.wav", len(x) / 16000, "rir_clap_seminar_16k.wav", len(h) / 16000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("vad_data")
    args = ap.parse_args()
    for name, path, start in [
        ("street_20s.wav", os.path.join(args.vad_data, "noise/berlin_street_cars.flac"), 20.0),
        ("music_8k_20s.wav", "/usr/share/asterisk/moh/macroform-cold_day.wav", 30.0),
        ("running_tap_20s.wav", os.path.join(args.vad_data, "noise/sc_running_tap.flac"), 5.0),
    ]:
        x, sr = excerpt(path, start)
        sf.write(os.path.join(OUT, name), x, sr, subtype="PCM_16")
        print(name, sr, len(x) / sr)
    x, sr = babble(SECONDS)
    sf.write(os.path.join(OUT, "babble_20s.wav"), x, sr, subtype="PCM_16")
    print("babble_20s.wav", sr, len(x) / sr)
    sentence_and_room(args.vad_data)


if __name__ == "__main__":
    main()
