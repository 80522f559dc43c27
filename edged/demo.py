"""`edged demo`: the bundled kitchen recording through the full decision pipeline.

Needs no microphone and no API key: it shows what the device would have
uploaded (and what it would have ignored) and scores it against the exact
labels that came with the recording.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from .config import Config
from .replay import format_table, replay_file
from .scoring import score

DEMO_WAV = "demo_kitchen.wav"
DEMO_LABELS = "demo_kitchen.json"


def demo_files() -> tuple[Any, dict[str, Any]]:
    data = resources.files("edged") / "data"
    labels = json.loads((data / DEMO_LABELS).read_text(encoding="utf-8"))
    return data / DEMO_WAV, labels


def run_demo(cfg: Config) -> int:
    wav, labels = demo_files()
    with resources.as_file(wav) as path:
        result = replay_file(cfg, path)
    print(f"Replaying {DEMO_WAV}: {len(labels['utterances'])} spoken sentences in kitchen noise")
    print(f"({labels['duration_s']:.1f} s at {labels['snr_db']:.0f} dB SNR), as the device would hear it.\n")
    print(format_table(result))
    utts = [(u["start_s"] * 1000, u["end_s"] * 1000) for u in labels["utterances"]]
    scores, false_turns = score(result.turns, utts)
    speech_ms = sum(e - s for s, e in utts)
    found = sum(u.detected for u in scores)
    delays = sorted(u.commit_delay_ms for u in scores if u.commit_delay_ms is not None)
    s = result.summary
    print()
    clipped = sum(u.clipped for u in scores)
    print(f"sentences found:        {found} of {len(scores)}  (clipped onsets: {clipped})")
    print(f"false turns:            {false_turns}")
    if delays:
        print(f"end of speech → commit: median {delays[len(delays) // 2]:.0f} ms")
    print(
        f"uploaded:               {s['uploaded_ms'] / 1000:.1f} s of {s['input_ms'] / 1000:.1f} s recorded"
        f" ({100 * s['upload_share']:.0f} %); the sentences themselves last {speech_ms / 1000:.1f} s"
    )
    return 0
