"""The frame loop as a whole: stages in order, one timed entry per stage, sample clock positions."""

from __future__ import annotations

import base64
from collections import defaultdict
from itertools import count

import numpy as np

from edged.config import Config
from edged.frames import FRAME_SAMPLES
from edged.gate import Commit
from edged.pipeline import Pipeline, StageTimer


def test_stage_timer_charges_every_stage_from_the_injected_clock(demo_audio) -> None:
    x, rate = demo_audio
    ticks = count(0, 7)  # a fake clock: every reading advances 7 ns
    charged: dict[str, list[int]] = defaultdict(list)
    p = Pipeline(Config(), rate, timer=StageTimer(lambda: next(ticks), lambda s, ns: charged[s].append(ns)))
    results = []
    for i in range(0, 20 * rate, FRAME_SAMPLES):  # first 20 s: two utterances
        results += p.process(x[i : i + FRAME_SAMPLES])
    n = len(results)
    assert n == 20 * rate // FRAME_SAMPLES
    assert {k: len(v) for k, v in charged.items() if k != "encode"} == {
        "resample": n,
        "echo": n,
        "detector": n,
        "gate": n,
    }
    assert len(charged["encode"]) == sum(1 for r in results if r.actions)
    assert all(ns == 7 for v in charged.values() for ns in v)
    assert [r.start for r in results] == [i * FRAME_SAMPLES for i in range(n)]


def test_uploads_are_base64_pcm16_at_24k_matching_the_committed_span(demo_audio) -> None:
    x, rate = demo_audio
    p = Pipeline(Config(), rate)
    results = p.process(x[: 8 * rate]) + p.finish()
    commits = [a for r in results for a in r.actions if isinstance(a, Commit)]
    assert len(commits) == 1
    pcm = b"".join(base64.b64decode(u) for r in results for u in r.uploads)
    samples = np.frombuffer(pcm, dtype="<i2")
    assert len(samples) == commits[0].uploaded_samples * 3 // 2
    assert np.abs(samples).max() > 1000  # speech, not silence


def test_replay_never_loads_sounddevice(demo_wav) -> None:
    """Replay must work on machines without PortAudio: sounddevice loads only where devices open."""
    import subprocess
    import sys

    code = (
        "import sys; from edged.cli import main; "
        f"rc = main(['replay', {str(demo_wav)!r}]); "
        "assert 'sounddevice' not in sys.modules, 'sounddevice imported'; sys.exit(rc)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert "turns" in r.stdout
