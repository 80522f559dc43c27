"""`edged monitor` on the bundled kitchen recording: what it shows must be what the real
frame loop decided (speech and a running turn inside the labelled sentences, idle in the
noise between them), with the thresholds the config holds, for as long as asked."""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from chime import RATE, hummed_chime, quiet_room_with

from edged.cli import main
from edged.config import EX_CONFIG, load_config
from edged.monitor import Summariser, format_line, format_screen, run_monitor
from edged.pipeline import Pipeline
from edged.wavio import write_pcm16

Row = dict[str, str]


def run_plain(*args: str) -> tuple[int, list[str]]:
    """The command in-process, stdout captured (not a TTY, so plain even without --plain)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["monitor", *args])
    return rc, buf.getvalue().splitlines()


def rows(lines: list[str]) -> list[Row]:
    return [dict(tok.split("=", 1) for tok in line.split()) for line in lines if not line.startswith("#")]


def header_thresholds(lines: list[str]) -> dict[str, str]:
    (line,) = [x for x in lines if x.startswith("# thresholds:")]
    return dict(tok.split("=", 1) for tok in line.removeprefix("# thresholds:").split())


def between(rs: list[Row], lo: float, hi: float) -> list[Row]:
    return [r for r in rs if lo <= float(r["t"]) <= hi]


@pytest.fixture(scope="module")
def demo_run(demo_wav: Path) -> tuple[int, list[str]]:
    return run_plain("--input", str(demo_wav), "--speed", "0", "--plain")


def speech_spans(labels: dict[str, Any]) -> list[tuple[float, float]]:
    return [(s, e) for u in labels["utterances"] for s, e in u["speech"]]


def test_labelled_speech_shows_speech_and_a_turn(demo_run, demo_labels) -> None:
    rc, lines = demo_run
    assert rc == 0
    rs = rows(lines)
    checked = 0
    for s, e in speech_spans(demo_labels):
        # past the second stage's reaction time, before the sentence's last syllable
        inside = between(rs, s + 0.3, e - 0.2)
        checked += len(inside)
        for r in inside:
            assert r["phase"] in ("speech", "trailing"), r
            assert float(r["level"]) > float(r["floor"]), r
        if inside:
            assert sum(r["speech"] == "yes" for r in inside) >= 0.9 * len(inside), (s, e)
            assert max(float(r["p"]) for r in inside) >= load_config().detector.start_probability
    assert checked > 200  # most of the recording's speech was looked at
    # every labelled utterance opened a turn near its start
    for u in demo_labels["utterances"]:
        starts = [r for r in between(rs, u["start_s"] - 1.0, u["end_s"]) if r["event"].startswith("start#")]
        assert starts, u


def test_noise_between_sentences_is_idle(demo_run, demo_labels) -> None:
    _, lines = demo_run
    rs = rows(lines)
    utts = [(u["start_s"], u["end_s"]) for u in demo_labels["utterances"]]
    checked = 0
    for (_, end), (nxt, _) in itertools.pairwise(utts):
        # after the turn's end silence has run out, until just before the next sentence
        gap = between(rs, end + 1.0, nxt - 0.5)
        checked += len(gap)
        assert all(r["phase"] == "idle" and r["event"] == "-" for r in gap), (end, nxt)
        assert sum(r["speech"] == "yes" for r in gap) <= 0.1 * len(gap)
    assert checked >= 80  # the kitchen noise between the sentences: dishes, clatter


def test_noise_floor_is_finite_and_under_speech(demo_run, demo_labels) -> None:
    _, lines = demo_run
    rs = rows(lines)
    floors = [float(r["floor"]) for r in rs]
    assert all(math.isfinite(f) and -100 < f < -20 for f in floors)
    speech = [r for s, e in speech_spans(demo_labels) for r in between(rs, s, e)]
    over = sorted(float(r["level"]) - float(r["floor"]) for r in speech)
    # speech stands well over the floor (more than the fast stage's margin) most of the time
    assert over[len(over) // 4] > load_config().detector.energy_margin_db
    assert sorted(float(r["level"]) for r in speech)[len(speech) // 2] > max(floors) + 10
    # one line per 100 ms of audio, the whole recording, and a footer counting the turns
    assert len(rs) == math.ceil(demo_labels["duration_s"] * 10)
    commits = sum(r["event"].count("commit#") for r in rs)
    assert commits >= len(demo_labels["utterances"])
    assert lines[-1].startswith("# 54.5") and f"{commits} turns committed" in lines[-1]


def test_thresholds_shown_are_the_configs(demo_run, demo_wav: Path) -> None:
    _, lines = demo_run
    cfg = load_config()
    shown = header_thresholds(lines)
    assert {"detector.energy_margin_db", "detector.onset_margin_db", "gate.end_silence_ms"} <= set(shown)
    for path, text in shown.items():
        section, key = path.split(".")
        value = getattr(getattr(cfg, section), key)
        assert (text == value) if isinstance(value, str) else float(text) == value, path

    rc, changed = run_plain(
        "--input",
        str(demo_wav),
        "--speed",
        "0",
        "--seconds",
        "8",
        "--set",
        "gate.end_silence_ms=700",
        "--set",
        "detector.energy_margin_db=9.5",
    )
    assert rc == 0
    now = header_thresholds(changed)
    assert now["gate.end_silence_ms"] == "700" and now["detector.energy_margin_db"] == "9.5"
    assert {
        k: v for k, v in now.items() if k not in ("gate.end_silence_ms", "detector.energy_margin_db")
    } == {k: v for k, v in shown.items() if k not in ("gate.end_silence_ms", "detector.energy_margin_db")}

    # and the pipeline runs with it: the first turn ends 300 ms later
    def first_commit(rs: list[Row]) -> float:
        return next(float(r["t"]) for r in rs if "commit#1" in r["event"])

    assert first_commit(rows(changed)) - first_commit(rows(lines)) == pytest.approx(0.3, abs=0.11)


def test_seconds_bounds_the_run(demo_wav: Path) -> None:
    rc, lines = run_plain("--input", str(demo_wav), "--speed", "0", "--seconds", "3")
    assert rc == 0
    rs = rows(lines)
    times = [float(r["t"]) for r in rs]
    assert len(set(times)) == 30  # 3 s of audio, one line per 100 ms
    assert 2.8 < max(times) <= 3.0
    # the turn open at the end is closed, as at the end of a recording, on one more line
    assert rs[-1]["event"] == "commit#1:end_of_input" and times[-1] == times[-2]
    assert lines[-1] == f"# {rs[-1]['t']} s of audio: 1 turns committed, 0 discarded"


@pytest.mark.parametrize(
    ("sound", "shown", "column", "key"),
    [("chime", "tone", "p", "start_probability"), ("music", "music", "p_dn", "denoised_start_probability")],
)
def test_a_sound_silero_takes_for_a_voice_shows_why_no_turn(
    tmp_path: Path, sound: str, shown: str, column: str, key: str
) -> None:
    """Why did the chime (tones.py) or the music (music.py) not start a turn, though the
    probability rose? The line says so."""
    wav = Path(__file__).parent / "data" / "music_robot_16s.wav"
    if sound == "chime":
        wav = tmp_path / "chime.wav"
        write_pcm16(wav, quiet_room_with(hummed_chime(), -25.0, times=3), RATE)
    rc, lines = run_plain("--input", str(wav), "--speed", "0")
    assert rc == 0
    rs = rows(lines)
    stopped = [r for r in rs if r["trigger"] == shown]
    assert stopped and all(float(r[column]) >= getattr(load_config().detector, key) for r in stopped)
    assert not any(r["event"].startswith("commit#") for r in rs)


def test_bad_set_exits_78(demo_wav: Path, capsys) -> None:
    for bad in ("gate.end_silence_ms=5", "detector.no_such_key=1", "detector.hold_probability=0.9"):
        assert main(["monitor", "--input", str(demo_wav), "--speed", "0", "--set", bad]) == EX_CONFIG
        captured = capsys.readouterr()
        assert "config error" in captured.err
        assert captured.out == ""


def test_usage_errors(demo_wav: Path, capsys) -> None:
    assert main(["monitor", "--speed", "2"]) == 64  # pacing is for recordings only
    assert main(["monitor", "--input", str(demo_wav), "--speed", "100"]) == 64
    assert main(["monitor", "--input", str(demo_wav), "--seconds", "0"]) == 64
    assert main(["monitor", "--input", str(demo_wav) + ".missing"]) == 66
    assert capsys.readouterr().out == ""


def test_summaries_and_text_on_real_frames(demo_audio) -> None:
    """The pure parts on the real pipeline's frames: one snapshot per 100 ms, peak and "any"
    semantics, lines that split into key=value, a screen that fits its width."""
    x, rate = demo_audio
    cfg = load_config()
    p = Pipeline(cfg, rate, rate)
    frames = p.process(x[int(2.0 * rate) : int(3.0 * rate)])  # the first sentence begins
    snaps = Summariser(p.to_input_ms).push(frames)
    assert len(snaps) == len(frames) // 10
    for i, s in enumerate(snaps):
        chunk = frames[10 * i : 10 * i + 10]
        assert s.level_dbfs == max(r.decision.level_dbfs for r in chunk)
        assert s.floor_dbfs == chunk[-1].decision.noise_floor_dbfs
        assert s.speech == any(r.decision.speech for r in chunk)
        assert s.phase is chunk[-1].phase
        tokens = dict(t.split("=", 1) for t in format_line(s).split())
        assert float(tokens["level"]) == pytest.approx(s.level_dbfs, abs=0.05)
        assert tokens["phase"] == s.phase.value
    started = next(s for s in snaps if s.events)
    assert started.events[0].kind == "start" and started.turn == 1
    assert started.history.endswith("|")
    for width in (60, 100):
        screen = format_screen(snaps[-1], cfg, "demo", width)
        assert all(len(row) <= width for row in screen)
        assert any("gate.end_silence_ms = 300 ms" in row for row in screen) or width < 70
        assert any("gate.early_end_silence_ms = 500 ms" in row for row in screen) or width < 70
        assert any(row.startswith("turn gate") and "SPEECH" in row for row in screen)


def test_denoised_hearing_is_shown_only_when_on(demo_audio) -> None:
    """A user can watch the denoised hearing (detector.denoise_level, on by default): its peak
    probability and the talking-room state per update, as the real frames decided them."""
    x, rate = demo_audio
    chunk = x[int(2.0 * rate) : int(3.5 * rate)]  # the first sentence begins
    cfg = load_config()
    p = Pipeline(cfg, rate, rate)
    frames = p.process(chunk)
    snaps = Summariser(p.to_input_ms, denoised=p.detector.hears_denoised).push(frames)
    for i, s in enumerate(snaps):
        part = frames[10 * i : 10 * i + 10]
        assert s.denoised_probability == max(r.decision.denoised_probability for r in part)
        assert s.room_talking is part[-1].decision.room_talking
        tokens = dict(t.split("=", 1) for t in format_line(s).split())
        assert float(tokens["p_dn"]) == pytest.approx(s.denoised_probability, abs=0.005)
        assert tokens["room"] == ("talking" if s.room_talking else "quiet")
        # how much the suppressor takes out, which decides whether that hearing keeps a turn
        assert (
            s.removed_db == part[-1].decision.removed_db
            and s.room_removed_db == part[-1].decision.room_removed_db
        )
        assert float(tokens["removed"]) == pytest.approx(s.removed_db, abs=0.05)
        assert float(tokens["room_removed"]) == pytest.approx(s.room_removed_db, abs=0.05)
    assert max(s.denoised_probability or 0.0 for s in snaps) >= cfg.detector.denoised_start_probability
    assert len({round(s.removed_db or 0.0, 1) for s in snaps}) > 1  # it moves with the sound
    screen = format_screen(snaps[-1], cfg, "demo", 80)
    assert any(row.startswith("denoised") and "[" in row for row in screen)
    assert any(row.startswith("suppressor") and "dB off" in row for row in screen)
    assert any("detector.denoise_level = 4" in row for row in screen)

    off = load_config(None, ["detector.denoise_level=0"])
    p = Pipeline(off, rate, rate)
    assert not p.detector.hears_denoised
    snaps = Summariser(p.to_input_ms, denoised=p.detector.hears_denoised).push(p.process(chunk))
    assert all(s.denoised_probability is None for s in snaps)
    assert "p_dn=" not in format_line(snaps[-1]) and "removed=" not in format_line(snaps[-1])
    screen = format_screen(snaps[-1], off, "demo", 80)
    assert not any(row.startswith(("denoised", "suppressor")) for row in screen)


def test_short_memories_are_shown_only_when_on(demo_audio) -> None:
    """A user tuning detector.fresh_* can watch the short memories' peak probabilities per
    update, as the real frames decided them; with fresh_memory_ms = 0 they are not shown."""
    x, rate = demo_audio
    chunk = x[int(2.0 * rate) : int(3.5 * rate)]  # the first sentence begins
    cfg = load_config()
    p = Pipeline(cfg, rate, rate)
    assert p.detector.hears_short
    frames = p.process(chunk)
    snaps = Summariser(p.to_input_ms, denoised=True, short=p.detector.hears_short).push(frames)
    for i, s in enumerate(snaps):
        part = frames[10 * i : 10 * i + 10]
        assert s.short_probability == max(r.decision.short_probability for r in part)
        assert s.short_denoised_probability == max(r.decision.short_denoised_probability for r in part)
        tokens = dict(t.split("=", 1) for t in format_line(s).split())
        assert float(tokens["p_short"]) == pytest.approx(s.short_probability, abs=0.005)
        assert float(tokens["p_dn_short"]) == pytest.approx(s.short_denoised_probability, abs=0.005)
    assert max(s.short_probability or 0.0 for s in snaps) >= cfg.detector.fresh_start_probability
    screen = format_screen(snaps[-1], cfg, "demo", 80)
    assert any(row.startswith("short memory") and "[" in row for row in screen)
    assert any(row.startswith("short, dn") and "[" in row for row in screen)

    off = load_config(None, ["detector.fresh_memory_ms=0"])
    p = Pipeline(off, rate, rate)
    assert not p.detector.hears_short
    snaps = Summariser(p.to_input_ms, denoised=True, short=p.detector.hears_short).push(p.process(chunk))
    assert all(s.short_probability is None and s.short_denoised_probability is None for s in snaps)
    assert "p_short=" not in format_line(snaps[-1])
    assert not any(row.startswith("short") for row in format_screen(snaps[-1], off, "demo", 80))


def _spawn(args: list[str], tty: bool) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "COLUMNS": "100", "LINES": "30"}
    if tty:
        master, slave = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "edged.cli", *args], stdout=slave, env=env)
        os.close(slave)
        return proc, master
    proc = subprocess.Popen(
        [sys.executable, "-m", "edged.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    assert proc.stdout is not None
    return proc, proc.stdout.fileno()


def _read_all(fd: int, until: bytes | None = None, timeout: float = 60.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (until is None or until not in out):
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the pty's other side closed
            break
        if not chunk:
            break
        out += chunk
    return out


def test_terminal_view_redraws_in_place(demo_wav: Path) -> None:
    proc, master = _spawn(["monitor", "--input", str(demo_wav), "--speed", "0", "--seconds", "3"], tty=True)
    try:
        out = _read_all(master).decode()
        assert proc.wait(timeout=30) == 0
    finally:
        os.close(master)
    assert out.startswith("\x1b[?25l\x1b[2J")  # cursor hidden, screen cleared
    frames = out.split("\x1b[H")[1:]
    assert frames and "\x1b[?25h" in frames[-1]  # the cursor comes back at the end
    last = frames[-1]
    assert "input level" in last and "thresholds in force" in last
    assert "detector.energy_margin_db = 6 dB" in last
    assert "audio 2.9" in last  # the final state is drawn, not skipped by the frame limit
    assert "last: commit#1:end_of_input" in last
    for row in last.split("\x1b[K"):
        assert len(row.strip("\r\n")) <= 99


def test_ctrl_c_exits_cleanly(demo_wav: Path) -> None:
    proc, fd = _spawn(["monitor", "--input", str(demo_wav)], tty=False)  # real time
    try:
        got = _read_all(fd, until=b"t=0.")
        assert b"t=0." in got
        proc.send_signal(signal.SIGINT)
        got += _read_all(fd)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert b"Traceback" not in got
    assert got.decode().splitlines()[-1].startswith("# ")  # the footer: an orderly end


def test_a_reader_that_stops_early_ends_the_monitor_quietly(demo_wav: Path) -> None:
    """`edged monitor --plain | head`: once the reader has gone the monitor stops, with the
    status a shell gives a command ended by SIGPIPE and nothing on stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "edged.cli", "monitor", "--input", str(demo_wav), "--plain", "--speed", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"# edged monitor")
    proc.stdout.close()
    assert proc.wait(timeout=60) == 141
    assert proc.stderr.read() == b""


class _CutOff(io.StringIO):
    """An output where Ctrl-C lands in the middle of writing a status line."""

    def write(self, s: str) -> int:
        if s.startswith("   t="):
            super().write(s[:20])
            raise KeyboardInterrupt
        return super().write(s)


def test_a_status_line_cut_by_ctrl_c_leaves_the_footer_on_its_own_line(demo_wav: Path) -> None:
    out = _CutOff()
    assert run_monitor(load_config(), input_path=str(demo_wav), speed=0, plain=True, out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[-2].startswith("   t=") and len(lines[-2]) == 20  # the line Ctrl-C cut
    # the footer sums up the snapshot that was being shown, not "no audio"
    assert lines[-1].startswith("# 0.") and "turns committed" in lines[-1]
