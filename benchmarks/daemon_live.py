#!/usr/bin/env python3
"""`edged run` live, on a private PulseAudio null sink: the daemon's own figures.

    frame loop      seconds spent in the frame loop per second of audio captured, from the
                    daemon's metrics, while a sentence is spoken and answered (the share of
                    one core the live pipeline takes, the Realtime session excluded)
    reload          SIGHUP → READY=1 on the notify socket, a valid changed file each time
    sink lost       the sink unloaded → the daemon has reopened nothing yet, noticed: the
                    `edged_audio_reopens_total` counter moves
    recovery        the sink loaded again → frames flow again (`edged_frames_total` moves),
                    with the shipped reopen backoff (`audio.reopen_min_ms`, `reopen_max_ms`)

The speaker and microphone are the null sink and its monitor, the service is edged's
local server, systemd is a notify socket read by this script. Nothing else should run.

    python benchmarks/daemon_live.py [--reloads 5] [--unplugs 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import deque
from pathlib import Path

from edged.demo import demo_files
from edged.wavio import read_mono, write_pcm16

RESULTS = Path(__file__).resolve().parent / "results"
SINK = "edged_bench"


class Notify(threading.Thread):
    """systemd's end of NOTIFY_SOCKET: every message with the time it arrived."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.seen: deque[tuple[float, str]] = deque(maxlen=10_000)
        self.lock = threading.Lock()

    def run(self) -> None:
        while True:
            msg = self.sock.recv(4096).decode()
            with self.lock:
                self.seen.append((time.monotonic(), msg))

    def first_after(self, field: str, t0: float, timeout_s: float = 20.0) -> float:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            with self.lock:
                for t, msg in self.seen:
                    if t >= t0 and any(line.startswith(field + "=") for line in msg.split("\n")):
                        return t
            time.sleep(0.002)
        raise SystemExit(f"no {field} within {timeout_s} s")


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def wait_for(cond, timeout_s: float, step_s: float = 0.01) -> float:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return time.monotonic()
        time.sleep(step_s)
    raise SystemExit("condition not reached in time")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reloads", type=int, default=5)
    ap.add_argument("--unplugs", type=int, default=3)
    ap.add_argument("--json", type=Path, default=RESULTS / "daemon_live.json")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="edged-live-"))
    runtime = tmp / "pulse"
    runtime.mkdir()
    pa_env = {**os.environ, "PULSE_RUNTIME_PATH": str(runtime), "PULSE_SERVER": f"unix:{runtime}/native"}
    procs: list[subprocess.Popen] = []

    def spawn(cmd: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(cmd, **kw)
        procs.append(p)
        return p

    def pactl(*a: str) -> str:
        return subprocess.run(["pactl", *a], env=pa_env, capture_output=True, text=True, check=True).stdout

    def load_sink() -> str:
        for _ in range(100):
            try:
                return pactl("load-module", "module-null-sink", f"sink_name={SINK}").strip()
            except subprocess.CalledProcessError:
                time.sleep(0.05)
        raise SystemExit("PulseAudio did not start")

    try:
        spawn(["pulseaudio", "-n", "--use-pid-file=no", "--exit-idle-time=-1", "--disallow-exit",
               f"--load=module-native-protocol-unix socket={runtime}/native"],
              env=pa_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        module = load_sink()
        key = "sk-bench-live-0000"
        server = spawn([sys.executable, "-m", "edged.cli", "local-server", "--port", "0", "--pace", "1",
                        "--api-key-env", "EDGED_BENCH_KEY"], env={**os.environ, "EDGED_BENCH_KEY": key},
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        notify = Notify(tmp / "notify")
        notify.start()
        port = free_port()
        cfg = tmp / "edged.yaml"
        base = "audio:\n  input_device: pulse\n  output_device: pulse\n"
        base += f"metrics:\n  listen: 127.0.0.1:{port}\n"
        cfg.write_text(base)
        env = {**pa_env, "PULSE_SINK": SINK, "PULSE_SOURCE": f"{SINK}.monitor", "OPENAI_API_KEY": key,
               "NOTIFY_SOCKET": str(tmp / "notify"), "WATCHDOG_USEC": "4000000",
               "STATE_DIRECTORY": str(tmp)}  # fmt: skip
        t_start = time.monotonic()
        daemon = spawn([sys.executable, "-m", "edged.cli", "run", "--config", str(cfg),
                        "--set", f"realtime.url={url}"],
                       env=env, stderr=(tmp / "daemon.log").open("w"))  # fmt: skip
        t_ready = notify.first_after("READY", t_start)

        # 1. the frame loop's share of real time while a sentence is spoken and answered
        x, rate = read_mono(demo_files()[0])
        wav = tmp / "user.wav"
        write_pcm16(wav, x[int(2.0 * rate) : int(6.1 * rate)], rate)
        before = scrape(port)
        subprocess.run(["paplay", f"--device={SINK}", str(wav)], env=pa_env, check=True)
        time.sleep(6.0)
        after = scrape(port)
        audio_s = after["edged_audio_seconds_total"] - before["edged_audio_seconds_total"]
        loop_s = after["edged_frame_loop_seconds_total"] - before["edged_frame_loop_seconds_total"]
        frames = after["edged_frames_total"] - before["edged_frames_total"]
        turns = after["edged_turns_total"]

        # 2. reload: SIGHUP → READY
        reload_ms = []
        for i in range(args.reloads):
            cfg.write_text(base + f"gate:\n  end_silence_ms: {500 + 10 * i}\n")
            t0 = time.monotonic()
            daemon.send_signal(signal.SIGHUP)
            reload_ms.append((notify.first_after("READY", t0) - t0) * 1000)
            time.sleep(0.3)

        # 3. the sink unplugged and plugged back in
        lost_ms, recover_ms = [], []
        for _ in range(args.unplugs):
            reopens = scrape(port)["edged_audio_reopens_total"]
            t0 = time.monotonic()
            pactl("unload-module", module)
            t_lost = wait_for(lambda r=reopens: scrape(port)["edged_audio_reopens_total"] > r, 10)
            lost_ms.append((t_lost - t0) * 1000)
            time.sleep(2.0)
            frames0 = scrape(port)["edged_frames_total"]
            t1 = time.monotonic()
            module = load_sink()
            t_back = wait_for(lambda f=frames0: scrape(port)["edged_frames_total"] > f, 30)
            recover_ms.append((t_back - t1) * 1000)
            time.sleep(1.0)
        daemon.send_signal(signal.SIGTERM)
        t_term = time.monotonic()
        code = daemon.wait(10)
        stop_ms = (time.monotonic() - t_term) * 1000
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                p.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)

    share = loop_s / audio_s if audio_s else float("nan")

    def ms(values: list[float]) -> tuple[str, str]:
        return f"{statistics.median(values):.0f} ms", f"max {max(values):.0f} ms"

    rows = [
        ("start → READY", f"{(t_ready - t_start) * 1000:.0f} ms", "process start, imports, model, stream"),
        ("frame loop / real time", f"{share * 100:.2f} %", f"{loop_s * 1000:.0f} ms for {audio_s:.1f} s"),
        ("frames in that window", f"{frames:.0f}", f"{frames / audio_s:.1f} per s (100 expected)"),
        ("turns answered", f"{turns:.0f}", "one sentence spoken"),
        ("reload SIGHUP → READY", f"{statistics.median(reload_ms):.1f} ms", f"max {max(reload_ms):.1f} ms"),
        ("sink unloaded → noticed", *ms(lost_ms)),
        ("sink back → frames flow", *ms(recover_ms)),
        ("SIGTERM → exit", f"{stop_ms:.0f} ms", f"exit code {code}"),
    ]
    print(f"edged run, live on a PulseAudio null sink ({platform.machine()}, {os.cpu_count()} cores)")
    w = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"  {name:<{w}}  {value:>10}   {note}")
    result = {
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "start_to_ready_ms": round((t_ready - t_start) * 1000, 1),
        "frame_loop_share": share,
        "frame_loop_s": loop_s,
        "audio_s": audio_s,
        "frames": frames,
        "turns": turns,
        "reload_ms": [round(v, 2) for v in reload_ms],
        "sink_lost_noticed_ms": [round(v, 1) for v in lost_ms],
        "sink_back_recovery_ms": [round(v, 1) for v in recover_ms],
        "stop_ms": round(stop_ms, 1),
        "exit_code": code,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json.relative_to(Path.cwd()) if args.json.is_relative_to(Path.cwd()) else args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
