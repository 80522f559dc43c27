"""The frame loop as a whole: stages in order, one timed entry per stage, sample clock positions."""

from __future__ import annotations

import base64
from collections import defaultdict
from itertools import count

import numpy as np
import pytest

from edged.config import Config, load_config
from edged.frames import FRAME_SAMPLES
from edged.gate import Commit, Phase, Start
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


def test_a_reload_between_turns_keeps_what_the_pipeline_has_learnt(demo_audio, demo_labels) -> None:
    """`systemctl reload` with new thresholds, 0.1 s before the user speaks: the canceller,
    the models' memory, the noise floor and the gate's recent audio carry over, so every
    probability and floor after it is what it would have been, and the turn is uploaded
    from the same sample, its pre-roll reaching back before the reload. A pipeline built
    afresh there (what a reload used to do) has no recent audio to reach back into: the
    pre-roll that covers a soft first sound is lost."""
    x, rate = demo_audio
    onset = demo_labels["utterances"][1]["start_s"]
    at = round((onset - 0.1) * rate) // FRAME_SAMPLES * FRAME_SAMPLES
    end = round((onset + 2.0) * rate)
    base = Config()
    moved = load_config(None, ["gate.end_silence_ms=400", "detector.start_probability=0.35"])

    def run(reload) -> tuple[list, int]:
        p = Pipeline(base, rate)
        before = p.process(x[:at])
        assert before[-1].phase is Phase.IDLE
        p = reload(p)
        after = p.process(x[at:end])
        starts = [a for r in after for a in r.actions if isinstance(a, Start)]
        return after, starts[0].upload_start

    def in_place(p: Pipeline) -> Pipeline:
        canceller = p.aec
        assert p.reconfigure(moved) == ["detector", "gate"]
        assert p.aec is canceller and p.cfg is moved
        return p

    kept, kept_from = run(lambda p: p)
    reloaded, reloaded_from = run(in_place)
    _, fresh_from = run(lambda p: Pipeline(moved, rate))
    assert [
        (r.decision.probability, r.decision.denoised_probability, r.decision.noise_floor_dbfs)
        for r in reloaded
    ] == [
        (r.decision.probability, r.decision.denoised_probability, r.decision.noise_floor_dbfs) for r in kept
    ]
    assert reloaded_from == kept_from < at - 0.2 * rate  # the pre-roll reaches back before the reload
    assert fresh_from == 0  # the first sample the fresh pipeline heard: the reload


def test_a_reload_that_rebuilds_the_models_or_the_canceller_starts_them_over(demo_audio, demo_labels) -> None:
    """Where the keys that build a stage change, nothing of the old one can be carried: the
    canceller is new, the detector listens afresh (it warms up before it may start a turn),
    and the models' memories of the last reply are dropped. A gate holding a turn is never
    reconfigured (the daemon waits for the turn to end)."""
    x, rate = demo_audio
    at = round((demo_labels["utterances"][1]["start_s"] - 0.1) * rate) // FRAME_SAMPLES * FRAME_SAMPLES
    p = Pipeline(Config(), rate)
    p.process(x[:at])
    canceller = p.aec
    p.reconfigure(load_config(None, ["detector.denoise_level=0", "aec.tail_ms=128"]))
    assert p.aec is not canceller and not p.detector.hears_denoised
    after = p.process(x[at : at + 3 * rate])
    warmup = Config().detector.warmup_ms // 10
    assert not any(r.decision.trigger for r in after[:warmup])
    assert any(r.decision.trigger for r in after[warmup:])
    assert any(r.phase is not Phase.IDLE for r in after)
    busy = next(i for i, r in enumerate(after) if r.phase is not Phase.IDLE)
    p = Pipeline(Config(), rate)
    p.process(x[: at + (busy + 1) * FRAME_SAMPLES])
    with pytest.raises(ValueError, match="between turns"):
        p.reconfigure(load_config(None, ["gate.end_silence_ms=400"]))
