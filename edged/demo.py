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
from .frames import RATE_HZ
from .replay import format_table, replay_file
from .scoring import score
from .wavio import read_mono, write_pcm16

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


def run_conversation_demo(
    cfg: Config, speed: float, out_wav: str | None, trace_path: str | None, echo_db: float
) -> int:
    """The bundled recording as a conversation with the local server, barge-ins included."""
    import asyncio
    import contextlib

    from .conversation import format_conversation, run_conversation
    from .playback import RATE_HZ as PLAY_RATE_HZ

    wav, labels = demo_files()
    with resources.as_file(wav) as path:
        user, _rate = read_mono(path)  # bundled at 16 kHz
    n, secs = len(labels["utterances"]), labels["duration_s"]
    print(f"A conversation: {n} sentences spoken in a kitchen ({secs:.1f} s), the device answering")
    print(f"through edged's local Realtime server; its voice comes back into the microphone {echo_db:g} dB")
    print("louder than the user's, and the user does not always wait for it to finish.\n")
    with open(trace_path, "w", encoding="utf-8") if trace_path else contextlib.nullcontext() as trace:
        gain_db = echo_gain_db(user, labels, echo_db)
        res = asyncio.run(run_conversation(cfg, user, speed=speed, echo_gain_db=gain_db, trace=trace))
    _end_of_speech(res, labels)
    print(format_conversation(res, speed))
    if out_wav:
        write_pcm16(out_wav, res.speaker, PLAY_RATE_HZ)
        print(f"the speaker's output: {out_wav}")
    return 0


def _end_of_speech(res: Any, labels: dict[str, Any]) -> None:
    """End of speech from the labels: the end of the last labelled speech segment the turn
    heard begin. A turn committed before that segment ended then shows end → commit below
    zero: the user's last words were cut, which the table must not hide."""
    segments = [seg for u in labels["utterances"] for seg in u["speech"]]
    for row in res.turns:
        ends = [e for s, e in segments if s < row.commit_s and e > row.start_s]
        if ends:
            row.speech_end_s = max(ends)


def echo_gain_db(user: Any, labels: dict[str, Any], echo_db: float) -> float:
    """The gain on the bundled replies that puts their echo `echo_db` over the user's speech."""
    return _speech_dbfs(user, labels) + echo_db - _reply_dbfs()


def _speech_dbfs(user: Any, labels: dict[str, Any]) -> float:
    import numpy as np

    mask = np.zeros(len(user), bool)
    for u in labels["utterances"]:
        mask[int(u["start_s"] * RATE_HZ) : int(u["end_s"] * RATE_HZ)] = True
    return float(10 * np.log10(np.mean(user[mask] ** 2) + 1e-12))


def _reply_dbfs() -> float:
    import numpy as np

    from .realtime.local_voice import bundled_replies

    pcm = np.concatenate([np.frombuffer(r.pcm, "<i2") for r in bundled_replies()]) / 32768.0
    return float(10 * np.log10(np.mean(pcm**2) + 1e-12))
