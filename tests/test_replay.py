"""`edged replay` on a real recording with known speech offsets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from edged.cli import main
from edged.config import Config, load_config
from edged.replay import replay_file, replay_signal
from edged.resample import resample_whole
from edged.scoring import score
from edged.wavio import EX_DATAERR, EX_NOINPUT


@pytest.fixture(scope="module")
def result(demo_wav):
    return replay_file(Config(), demo_wav)


def test_finds_every_utterance_without_false_turns(result, utterances_ms) -> None:
    scores, false_turns = score(result.turns, utterances_ms)
    assert [u.detected for u in scores] == [True] * len(utterances_ms)
    assert false_turns == 0


def test_turns_follow_their_utterances(result, utterances_ms) -> None:
    for t in result.turns:
        assert t["upload_start_ms"] <= t["start_ms"] < t["end_ms"] <= t["upload_end_ms"] <= t["commit_ms"]
        assert t["commit_ms"] - t["end_ms"] == pytest.approx(Config().gate.end_silence_ms, abs=10)
    # the commit follows the true end by about the configured trailing silence
    scores, _ = score(result.turns, utterances_ms)
    delays = sorted(u.commit_delay_ms for u in scores)
    assert 0 < delays[len(delays) // 2] <= Config().gate.end_silence_ms + 300


def test_summary_is_consistent_and_uploads_far_less_than_recorded(result, demo_audio) -> None:
    x, rate = demo_audio
    s = result.summary
    assert s["event"] == "summary"
    assert s["input_ms"] == pytest.approx(len(x) * 1000 / rate, abs=0.1)
    assert s["turns"] == len(result.turns)
    assert s["uploaded_ms"] == pytest.approx(sum(t["uploaded_ms"] for t in result.turns), abs=0.5)
    assert s["uploaded_ms"] < 0.7 * s["input_ms"]


def test_same_decisions_at_48k_stereo_int32(tmp_path: Path, demo_audio, result) -> None:
    """A WAV of another rate, width and channel count decides the same turns: starts within
    70 ms (one 32 ms Silero chunk, one 30 ms webrtcvad block and the 10 ms frame grid: the
    resampler's delay shifts all three); ends within 100 ms (the round trip through 48 kHz also removes the
    top 600 Hz, which moves where a noisy word ending drops under the threshold)."""
    x, rate = demo_audio
    y = resample_whole(x, rate, 48000)
    stereo = np.stack([y, y], axis=1)
    p = tmp_path / "demo48.wav"
    wavfile.write(p, 48000, (np.clip(stereo, -1, 0.999) * 2**31).astype(np.int32))
    other = replay_file(Config(), p)
    assert len(other.turns) == len(result.turns)
    for a, b in zip(other.turns, result.turns, strict=True):
        for k, tol in (("start_ms", 70), ("upload_start_ms", 70), ("end_ms", 100), ("commit_ms", 100)):
            assert abs(a[k] - b[k]) <= tol, (k, a, b)


def test_replay_is_deterministic(demo_audio, result) -> None:
    x, rate = demo_audio
    again = replay_signal(Config(), x, rate)
    assert again.events == result.events


def test_far_end_playback_marks_barge_in(demo_audio, utterances_ms) -> None:
    x, rate = demo_audio
    far = np.zeros_like(x)
    s, e = utterances_ms[1]
    # the speaker plays a tone from 1 s before the second utterance until it ends
    i0, i1 = int((s - 1000) * rate / 1000), int(e * rate / 1000)
    far[i0:i1] = 0.1 * np.sin(2 * np.pi * 300 * np.arange(i1 - i0) / rate)
    res = replay_signal(Config(), x, rate, far, rate)
    flags = [t["barge_in"] for t in res.turns]
    hit = [t["barge_in"] for t in res.turns if t["upload_start_ms"] < e and t["upload_end_ms"] > s]
    assert hit == [True]
    assert flags.count(True) == 1


def test_cli_replay_writes_events_clean_audio_and_plot(tmp_path: Path, demo_wav, capsys) -> None:
    ev, clean, png = tmp_path / "ev.jsonl", tmp_path / "clean.wav", tmp_path / "plot.png"
    outputs = ["--events", str(ev), "--clean-out", str(clean), "--plot", str(png)]
    code = main(["replay", str(demo_wav), *outputs, "--set", "gate.end_silence_ms=900"])
    assert code == 0
    out = capsys.readouterr().out
    assert "turns" in out and "would upload" in out
    lines = [json.loads(line) for line in ev.read_text().splitlines()]
    turns = [e for e in lines if e["event"] == "turn"]
    contract = {"start_ms", "end_ms", "commit_ms", "upload_start_ms", "upload_end_ms", "barge_in"}
    assert turns and all(contract <= set(t) for t in turns)
    assert all(t["commit_ms"] - t["end_ms"] == pytest.approx(900, abs=10) for t in turns)
    summary = lines[-1]
    assert summary["event"] == "summary" and {"input_ms", "uploaded_ms", "turns", "discards"} <= set(summary)
    rate, audio = wavfile.read(clean)
    assert rate == 24000
    assert len(audio) == pytest.approx(summary["uploaded_ms"] * 24, abs=24 * len(turns))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_replay_bad_inputs(tmp_path: Path, demo_wav, capsys) -> None:
    assert main(["replay", str(tmp_path / "none.wav")]) == EX_NOINPUT
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not a wav at all")
    assert main(["replay", str(junk)]) == EX_DATAERR
    short = tmp_path / "short.wav"
    wavfile.write(short, 16000, np.zeros(16000, np.int16))
    assert main(["replay", str(demo_wav), "--far-end", str(short)]) == EX_DATAERR
    err = capsys.readouterr().err
    assert "no such file" in err and "not a readable WAV" in err and "sample-aligned" in err
    assert "Traceback" not in err


def test_demo_command_reports_recall(capsys) -> None:
    assert main(["demo", "--detect-only"]) == 0
    out = capsys.readouterr().out
    assert "sentences found:        7 of 7" in out
    assert "false turns:            0" in out


def test_far_end_at_an_uneven_rate_stays_aligned() -> None:
    """A far-end file at 11025 Hz: its playback is placed on the input's clock without drift."""
    mic = np.zeros(16000 * 95, np.float32)
    far_rate = 11025
    far = np.zeros(far_rate * 95, np.float32)
    t0 = 90 * far_rate
    far[t0:] = 0.1 * np.sin(2 * np.pi * 300 * np.arange(len(far) - t0) / far_rate)
    res = replay_signal(load_config(None, ["aec.enabled=false"]), mic, 16000, far, far_rate, trace=True)
    first = res.trace.playing.index(True)
    assert abs(first * 10 - 90_000) <= 20  # ms: within the resampler's delay and one frame


def test_last_frame_of_a_48k_file_is_decided(demo_audio) -> None:
    x, rate = demo_audio
    y = resample_whole(x[: 6 * rate], rate, 48000)
    res = replay_signal(Config(), y, 48000, trace=True)
    assert len(res.trace.level) * 10 >= len(y) * 1000 / 48000  # every 10 ms of input decided


def test_truncated_wav_and_unwritable_output_are_clear_errors(tmp_path: Path, demo_wav, capsys) -> None:
    cut = tmp_path / "cut.wav"
    cut.write_bytes(demo_wav.read_bytes()[:30])
    assert main(["replay", str(cut)]) == EX_DATAERR
    assert main(["replay", str(demo_wav), "--events", str(tmp_path / "no" / "dir" / "e.jsonl")]) == 73
    err = capsys.readouterr().err
    assert "not a readable WAV" in err and "cannot write" in err and "Traceback" not in err
