"""`edged run` on the real stack: PulseAudio with a null sink (its monitor source is the
microphone, so what the daemon plays comes back as echo), edged's local server as the
service, and a real notify socket standing in for systemd."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from promtext import samples

KEY = "sk-daemon-test-5e4d3c2b1a"


@pytest.fixture
def local_server() -> Iterator[str]:
    yield from serve_locally()


@pytest.fixture
def local_server_long_second_reply() -> Iterator[str]:
    """The second reply is said twice (about 7 s): it is still being generated when a user
    who speaks over it is confirmed, so a barge-in must cancel it."""
    yield from serve_locally("--script", '{"speak": 0}', "--script", '{"speak": 1, "repeat": 2}')


def serve_locally(*options: str) -> Iterator[str]:
    env = {**os.environ, "EDGED_TEST_KEY": KEY}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edged.cli", "local-server", "--port", "0", "--pace", "1",
         "--api-key-env", "EDGED_TEST_KEY", *options],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    yield proc.stdout.readline().strip()
    proc.terminate()
    proc.wait(10)


class Systemd:
    """The receiving end of $NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.path = path
        self.seen: list[dict[str, str]] = []

    def _recv(self, until: float) -> dict[str, str] | None:
        """The next message's fields, or None if none came before `until` (monotonic)."""
        self.sock.settimeout(max(0.01, until - time.monotonic()))
        try:
            msg = self.sock.recv(4096).decode()
        except TimeoutError:
            return None
        fields = dict(line.split("=", 1) for line in msg.split("\n") if "=" in line)
        self.seen.append(fields)
        return fields

    def expect(self, field: str, timeout_s: float = 15.0) -> dict[str, str]:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and (fields := self._recv(end)) is not None:
            if field in fields:
                return fields
        raise AssertionError(f"no {field} from the daemon in {timeout_s} s; got {self.seen[-5:]}")

    def collect(self, seconds: float) -> list[dict[str, str]]:
        """Every message of the next `seconds`."""
        out = []
        end = time.monotonic() + seconds
        while time.monotonic() < end and (fields := self._recv(end)) is not None:
            out.append(fields)
        return out


def start_daemon(
    tmp_path: Path, pulse: dict[str, str], url: str, config: str, notify: Path, wrapper: tuple[str, ...] = ()
) -> Any:
    cfg = tmp_path / "edged.yaml"
    cfg.write_text(config)
    env = {
        **os.environ,
        **pulse,
        "OPENAI_API_KEY": KEY,
        "NOTIFY_SOCKET": str(notify),
        "WATCHDOG_USEC": "1000000",
        "STATE_DIRECTORY": str(tmp_path),
    }
    return subprocess.Popen(
        [*wrapper, sys.executable, "-m", "edged.cli", "run", "--config", str(cfg),
         "--set", f"realtime.url={url}", "--trace", str(tmp_path / "trace.jsonl")],
        env=env, stderr=(tmp_path / "daemon.log").open("w"), text=True,
    )  # fmt: skip


@contextlib.contextmanager
def reaped(proc: Any) -> Iterator[Any]:
    """The daemon never outlives its test, whatever failed; one still running then writes
    every thread's stack to its log first (SIGUSR1), to show where it hung."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(1)
            proc.kill()
            proc.wait()


def sentence_wav(tmp_path: Path, demo_audio: Any, utterance: dict[str, Any], name: str) -> Path:
    """One labelled sentence of the demo recording, with a little room either side."""
    from edged.wavio import write_pcm16

    x, rate = demo_audio
    wav = tmp_path / name
    start, end = int((utterance["start_s"] - 0.2) * rate), int((utterance["end_s"] + 0.3) * rate)
    write_pcm16(wav, x[start:end], rate)
    return wav


def trace_events(tmp_path: Path) -> list[dict[str, Any]]:
    """Events traced so far (a running daemon's last line, still being written, is skipped)."""
    lines = (tmp_path / "trace.jsonl").read_text().split("\n")[:-1]
    return [json.loads(line)["event"] for line in lines]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


AUDIO = "audio:\n  input_device: pulse\n  output_device: pulse\n"


def test_run_speaks_systemd_notify_reloads_and_stops(tmp_path, pulse, local_server) -> None:
    systemd = Systemd(tmp_path / "notify")
    with reaped(start_daemon(tmp_path, pulse, local_server, AUDIO, systemd.path)) as proc:
        ready = systemd.expect("READY")
        assert ready.get("STATUS", "").startswith("listening")
        systemd.expect("WATCHDOG", 3.0)  # fed while frames arrive
        # a valid new file: RELOADING (with the time) then READY again
        (tmp_path / "edged.yaml").write_text(AUDIO + "gate:\n  end_silence_ms: 600\n")
        t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        proc.send_signal(signal.SIGHUP)
        reloading = systemd.expect("RELOADING")
        assert int(reloading["MONOTONIC_USEC"]) >= t0
        systemd.expect("READY")
        # an invalid file is refused and the daemon keeps running on the old one
        (tmp_path / "edged.yaml").write_text(AUDIO + "gate:\n  end_silence_ms: -5\n")
        proc.send_signal(signal.SIGHUP)
        systemd.expect("RELOADING")
        systemd.expect("READY")
        systemd.expect("WATCHDOG", 3.0)
        assert proc.poll() is None
        t_stop = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        systemd.expect("STOPPING", 2.0)
        assert proc.wait(5) == 0
        assert time.monotonic() - t_stop < 2.0
    log = (tmp_path / "daemon.log").read_text()
    assert "reload refused" in log and "gate.end_silence_ms = -5" in log
    assert "configuration reloaded" in log and "reload: gate rebuilt" in log
    assert KEY not in log


def test_started_without_a_sound_card_it_is_ready_and_waits_for_one(tmp_path, pulse, local_server) -> None:
    """A speaker booted before its USB card enumerates: systemd must not time the start out
    and restart it in a loop; the daemon is up, says what it waits for, and stops cleanly."""
    systemd = Systemd(tmp_path / "notify")
    missing = "audio:\n  input_device: no-such-card\n  output_device: no-such-card\n"
    with reaped(start_daemon(tmp_path, pulse, local_server, missing, systemd.path)) as proc:
        ready = systemd.expect("READY")
        assert ready["STATUS"].startswith("waiting for the audio device")
        systemd.expect("WATCHDOG", 3.0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    log = (tmp_path / "daemon.log").read_text()
    assert "audio device unavailable" in log and "Traceback" not in log


def test_a_missing_key_exits_78_before_touching_audio(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "CREDENTIALS_DIRECTORY")}
    out = subprocess.run(
        [sys.executable, "-m", "edged.cli", "run"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 78 and "$OPENAI_API_KEY" in out.stderr


def test_a_spoken_turn_is_answered_its_echo_ignored_and_a_barge_in_cuts_the_reply(
    tmp_path, pulse, local_server_long_second_reply, demo_audio, demo_labels
) -> None:
    """Sentences played into the sink reach the daemon through its monitor, as does the
    daemon's own reply (a digital echo at full level). Each sentence must be answered and no
    reply may become a turn; the third sentence, spoken over the second reply, must cancel
    it and truncate it at what was played. (The barge-in is on the second reply: during its
    first second of speech after start the canceller has not yet learnt the room, and the
    gate then withholds barge-in; issue 4.)"""
    sentences = demo_labels["utterances"][:3]
    wavs = [sentence_wav(tmp_path, demo_audio, u, f"user{i}.wav") for i, u in enumerate(sentences)]
    systemd = Systemd(tmp_path / "notify")
    port, textfile = free_port(), tmp_path / "edged.prom"
    metrics = f"metrics:\n  listen: 127.0.0.1:{port}\n  textfile: {textfile}\n  textfile_every_ms: 1000\n"
    server = local_server_long_second_reply
    with reaped(start_daemon(tmp_path, pulse, server, AUDIO + metrics, systemd.path)) as proc:
        systemd.expect("READY")
        play = ["paplay", f"--device={pulse['PULSE_SINK']}"]
        subprocess.run([*play, str(wavs[0])], check=True, timeout=30)
        time.sleep(5.0)  # the first reply (about 3.5 s) plays out: its echo must start nothing
        subprocess.run([*play, str(wavs[1])], check=True, timeout=30)
        time.sleep(1.5)  # the second reply is playing now
        subprocess.run([*play, str(wavs[2])], check=True, timeout=30)
        # the third reply plays out (its echo must not start a turn either); the trace is
        # written line by line, so its end is seen as it happens
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if [e["type"] for e in trace_events(tmp_path)].count("response.done") >= 3:
                break
            time.sleep(0.1)
        time.sleep(1.0)  # and its echo dies away
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            scraped = samples(r.read().decode())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    events = trace_events(tmp_path)
    kinds = [e["type"] for e in events]
    assert kinds.count("input_audio_buffer.commit") == 3, kinds
    assert kinds.index("response.cancel") < kinds.index("conversation.item.truncate")
    truncate = next(e for e in events if e["type"] == "conversation.item.truncate")
    assert 300 <= truncate["audio_end_ms"] <= 3500  # heard part of it, not all of it
    statuses = [e["response"]["status"] for e in events if e["type"] == "response.done"]
    # every reply but the interrupted one plays to its end: a start on a reply's echo only
    # pauses it, and the reply resumes when that start is discarded
    assert statuses == ["completed", "cancelled", "completed"], statuses
    # the counters saw the same conversation, and the textfile holds the final ones
    assert scraped[("edged_turns_total", ())] == 3
    assert scraped[("edged_barge_ins_total", ())] >= 1
    assert scraped[("edged_frames_total", ())] >= 100 * 15  # 10 ms frames, at least 15 s of audio
    assert 0 < scraped[("edged_frame_loop_seconds_total", ())] < scraped[("edged_audio_seconds_total", ())]
    assert scraped[("edged_uploaded_seconds_total", ())] > 1.0
    assert scraped[("edged_tokens_total", (("direction", "in"),))] > 0
    assert scraped[("edged_cost_usd_total", ())] > 0
    final = samples(textfile.read_text())
    assert final[("edged_frames_total", ())] >= scraped[("edged_frames_total", ())]


def test_the_stream_survives_its_sink_being_unloaded_and_loaded_again(
    tmp_path, pulse, local_server, demo_audio, demo_labels
) -> None:
    """A USB speaker unplugged and plugged back in: the turn in progress ends, the stream is
    reopened with backoff without a restart, and the next sentence is heard and answered."""
    # a PulseAudio of its own with this one sink: the shared one would move the streams to
    # another sink instead of losing them
    runtime = tmp_path / "pulse"
    runtime.mkdir()
    server = f"unix:{runtime}/native"
    env = {**os.environ, "PULSE_RUNTIME_PATH": str(runtime), "PULSE_SERVER": server}
    pa = subprocess.Popen(
        ["pulseaudio", "-n", "--use-pid-file=no", "--exit-idle-time=-1", "--disallow-exit",
         f"--load=module-native-protocol-unix socket={runtime}/native"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    sink = "unplugged"

    def load() -> str:
        for _ in range(50):  # the server may still be starting
            r = subprocess.run(
                ["pactl", "load-module", "module-null-sink", f"sink_name={sink}"],
                capture_output=True, text=True, env=env,
            )  # fmt: skip
            if r.returncode == 0:
                return r.stdout.strip()
            time.sleep(0.1)
        raise AssertionError(f"no private PulseAudio: {r.stderr}")

    wav = sentence_wav(tmp_path, demo_audio, demo_labels["utterances"][0], "user.wav")
    module = load()
    systemd = Systemd(tmp_path / "notify")
    fast = AUDIO + "  reopen_min_ms: 200\n  reopen_max_ms: 1000\n"
    where = {"PULSE_SERVER": server, "PULSE_SINK": sink, "PULSE_SOURCE": f"{sink}.monitor"}
    log = tmp_path / "daemon.log"
    try:
        with reaped(start_daemon(tmp_path, where, local_server, fast, systemd.path)) as proc:
            systemd.expect("READY")
            subprocess.run(["pactl", "unload-module", module], check=True, env=env)
            deadline = time.monotonic() + 10
            while "audio stream lost" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "audio stream lost" in log.read_text()
            # unplugged for a while: the reopen attempts fail and back off, and systemd keeps
            # hearing that the daemon is alive and what it is waiting for
            systemd.collect(0.05)
            during = systemd.collect(2.5)
            assert sum("WATCHDOG" in m for m in during) >= 3  # every 0.5 s (WATCHDOG_USEC 1 s)
            assert any("waiting for the audio device" in m.get("STATUS", "") for m in during)
            module = load()
            deadline = time.monotonic() + 15
            while log.read_text().count("audio: pulse") < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert log.read_text().count("audio: pulse") >= 2, log.read_text()
            time.sleep(0.5)
            subprocess.run(["paplay", f"--device={sink}", str(wav)], check=True, timeout=30, env=env)
            time.sleep(2.0)
            assert proc.poll() is None  # never restarted
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(5) == 0
    finally:
        pa.terminate()
        pa.wait(10)
    events = trace_events(tmp_path)
    assert [e["type"] for e in events].count("input_audio_buffer.commit") == 1


SANDBOX = Path(__file__).parent / "syscall_sandbox.py"
UNIT = Path(__file__).parent.parent / "systemd" / "edged.service"


def test_a_turn_is_answered_under_the_units_system_call_filter(
    tmp_path, pulse, local_server, demo_audio, demo_labels
) -> None:
    """The unit's SystemCallFilter=, SystemCallErrorNumber= and RestrictAddressFamilies=,
    loaded as the same seccomp filter: PortAudio, PulseAudio's client, onnxruntime, numpy
    and the WebSocket still work (what they try beyond it gets EPERM and they carry on)."""
    system_python = "/usr/bin/python3"
    probe = subprocess.run([system_python, "-c", "import seccomp"], capture_output=True)
    assert probe.returncode == 0, "python3-seccomp is missing: `make test` installs it"
    refused = subprocess.run(
        [system_python, str(SANDBOX), str(UNIT), sys.executable, "-c",
         "import socket; socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert "Address family not supported" in refused.stderr  # the filter is really loaded
    wav = sentence_wav(tmp_path, demo_audio, demo_labels["utterances"][0], "user.wav")
    systemd = Systemd(tmp_path / "notify")
    sandboxed = (system_python, str(SANDBOX), str(UNIT))
    with reaped(start_daemon(tmp_path, pulse, local_server, AUDIO, systemd.path, wrapper=sandboxed)) as proc:
        systemd.expect("READY")
        subprocess.run(["paplay", f"--device={pulse['PULSE_SINK']}", str(wav)], check=True, timeout=30)
        time.sleep(5)  # the reply plays out
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    log = (tmp_path / "daemon.log").read_text()
    assert "sandbox: " in log
    events = trace_events(tmp_path)
    assert [e["type"] for e in events].count("input_audio_buffer.commit") == 1
    assert [e["response"]["status"] for e in events if e["type"] == "response.done"] == ["completed"]


async def test_a_stream_that_stops_by_itself_is_restarted_without_losing_the_turn(
    tmp_path, pulse, demo_audio, demo_labels, monkeypatch
) -> None:
    """PortAudio's ALSA backend stops a stream for good after some underruns (its
    `ContinuePoll` failure). Mid-sentence, the daemon must restart it at once and keep the
    user's turn: one commit with audio from both sides of the restart, not two halves.
    (Through PulseAudio's ALSA plugin a new stream takes a second or two to deliver, so
    that much is missing; on a sound card's own ALSA device it is a few ms.)"""
    import asyncio

    from edged.config import load_config
    from edged.daemon import Daemon
    from edged.realtime.local_server import LocalRealtimeServer
    from edged.sdnotify import Notifier

    for k, v in pulse.items():
        monkeypatch.setenv(k, v)
    wav = sentence_wav(tmp_path, demo_audio, demo_labels["utterances"][4], "user.wav")  # 6.7 s
    async with LocalRealtimeServer(pace=1) as server:
        cfg = load_config(None, ["audio.input_device=pulse", "audio.output_device=pulse",
                                 f"realtime.url={server.url}"])  # fmt: skip
        monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
        daemon = Daemon(cfg, None, KEY, notifier=Notifier(environ={}))
        task = asyncio.create_task(daemon.run())
        for _ in range(500):
            if daemon.audio.active and daemon.metrics.get("edged_frames_total") > 50:
                break
            await asyncio.sleep(0.01)
        play = await asyncio.create_subprocess_exec("paplay", f"--device={pulse['PULSE_SINK']}", str(wav))
        await asyncio.sleep(1.5)  # the user is mid-sentence
        daemon.audio._stream.abort()  # what PortAudio's ALSA thread does when it gives up
        await play.wait()
        for _ in range(1500):  # the reply plays at real time: a loaded machine needs longer
            if daemon.session.turns_done:
                break
            await asyncio.sleep(0.01)
        daemon._stop.set()
        await task
    # if this fails, say how: PulseAudio's delay in delivering from the reopened stream decides
    # how much of the sentence is heard after the restart
    seen = (daemon.metrics.get("edged_audio_reopens_total"), daemon.session.turns_done)
    assert daemon.metrics.get("edged_audio_reopens_total") == 1, seen
    assert daemon.metrics.get("edged_turns_total") == 1, seen
    # at most 1.5 s (and the pre-roll) was heard before the restart
    assert daemon.session.turns_done[0].uploaded_ms > 2500, seen


def test_a_turn_held_to_max_turn_ms_is_told_in_the_journal(caplog, monkeypatch) -> None:
    """After such a turn the gate stays deaf until the sound pauses (a TV or a crowd would be
    billed turn after turn otherwise): a user who wonders why the device stopped answering
    finds out why in journalctl."""
    import logging

    from edged.config import Config
    from edged.daemon import Daemon
    from edged.gate import Commit
    from edged.sdnotify import Notifier

    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    daemon = Daemon(Config(), None, KEY, notifier=Notifier(environ={}))
    held = Commit(7, 0, 480_000, 0, 480_000, 480_000, 480_000, "max_length", False)
    ended = Commit(8, 500_000, 520_000, 495_000, 525_000, 30_000, 525_000, "end_silence", False)
    with caplog.at_level(logging.WARNING, logger="edged"):
        daemon._count(held)
        daemon._count(ended)
    told = [r.getMessage() for r in caplog.records]
    assert len(told) == 1 and told[0].startswith("turn 7 ran to gate.max_turn_ms (30000 ms)")
    assert daemon.metrics.get("edged_turns_total") == 2
