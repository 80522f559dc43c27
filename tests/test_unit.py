"""The systemd unit and the install path, checked with systemd's own tools (they work here
without a running systemd), and the hardening option the unit leaves off, shown to break."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edged.secrets import CREDENTIAL_NAME

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "edged.service"
EDGED = Path(sys.executable).parent / "edged"


def directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which("systemd-analyze"), "systemd-analyze is missing: `make test` installs it"
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


def test_the_unit_verifies_clean(tmp_path: Path) -> None:
    # verify also checks that ExecStart exists: point it at this checkout's edged
    unit = tmp_path / "edged.service"
    unit.write_text(UNIT.read_text().replace("/opt/edged/bin/edged", str(EDGED)))
    r = analyze("verify", str(unit))
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stderr


def test_the_unit_rates_1_5_or_better_in_systemds_security_review() -> None:
    r = analyze("security", "--offline=yes", str(UNIT))
    m = re.search(r"Overall exposure level for edged\.service: (\d+\.\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 1.5


def test_the_unit_is_what_the_daemon_and_the_installer_expect() -> None:
    d = directives(UNIT.read_text())
    assert d["Type"] == ["notify"] and d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert d["Restart"] == ["on-failure"] and d["RestartPreventExitStatus"] == ["78"]
    assert d["WatchdogSec"] and d["StateDirectory"] == ["edged"]
    # numba's cache: the release is read-only under ProtectSystem=strict
    assert d["CacheDirectory"] == ["edged"] and d["Environment"] == ["NUMBA_CACHE_DIR=%C/edged"]
    assert d["User"] == ["edged"] and d["Group"] == ["audio"]
    assert d["LoadCredential"] == [f"{CREDENTIAL_NAME}:/etc/edged/openai_api_key"]
    assert d["ExecStart"] == ["/opt/edged/bin/edged run --config /etc/edged/edged.yaml"]
    assert d["DeviceAllow"] == ["char-alsa rw"]
    # the daemon stops in under 2 s; systemd must not kill it sooner
    assert float(d["TimeoutStopSec"][0].rstrip("s")) >= 2
    assert d["MemoryDenyWriteExecute"] == ["no"]  # why: the next test


MDWE_PROBE = textwrap.dedent(
    """
    import ctypes, sys
    if sys.argv[1] == "mdwe":
        PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
        assert ctypes.CDLL(None).prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) == 0
    import numpy as np, scipy.signal, webrtcvad
    from edged.silero import SileroVad
    from edged.config import DetectorConfig
    # the frame loop's own parts all run under the restriction
    assert webrtcvad.Vad(3).is_speech(bytes(960), 16000) is False
    scipy.signal.resample_poly(np.ones(480), 1, 3)
    print("silero", SileroVad.__name__)
    try:
        from edged import aec  # numba checks at import that it can make code executable

        aec.warm_up()
    except OSError as e:
        print("kernels refused:", e)
    else:
        print("kernels ran")
    import sounddevice as sd
    try:
        sd.Stream(device="pulse", samplerate=16000, channels=1, callback=lambda *a: None).close()
    except MemoryError as e:
        print("callback refused:", e)
    else:
        print("callback made; stream opened")
    """
)


def test_memory_deny_write_execute_would_break_the_audio_callback(pulse: dict[str, str]) -> None:
    """MemoryDenyWriteExecute=yes is what systemd's review would like; the kernel's own
    version of it (prctl PR_SET_MDWE, Linux 6.3+) shows sounddevice's cffi callback cannot
    be made under it, nor can numba's compiled echo canceller run, while numpy, scipy,
    webrtcvad and onnxruntime are unaffected."""
    env = {**os.environ, **pulse, "EDGED_JIT": "1"}
    runs = {}
    for mode in ("mdwe", "plain"):
        r = subprocess.run(
            [sys.executable, "-c", MDWE_PROBE, mode], capture_output=True, text=True, timeout=120, env=env
        )
        if mode == "mdwe" and r.returncode != 0 and "AssertionError" in r.stderr and "prctl" in r.stderr:
            pytest.fail("this kernel has no PR_SET_MDWE (Linux 6.3+)")
        assert r.returncode == 0, r.stderr
        runs[mode] = r.stdout
    assert "callback refused" in runs["mdwe"] and "write+execute" in runs["mdwe"]
    assert "callback made; stream opened" in runs["plain"]
    # numba's compiled echo canceller needs it off too
    assert "kernels refused:" in runs["mdwe"] and "executable memory" in runs["mdwe"]
    assert "kernels ran" in runs["plain"]


def run_install(dest: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DESTDIR": str(dest), "EDGED_NO_VENV": "1"}
    env.pop("OPENAI_API_KEY", None)
    return subprocess.run(
        [str(REPO / "scripts" / "install.sh")], capture_output=True, text=True, env=env, timeout=60
    )


def test_install_lays_out_config_key_and_unit_and_keeps_an_edited_config(tmp_path: Path) -> None:
    r = run_install(tmp_path)
    assert r.returncode == 0, r.stderr
    etc = tmp_path / "etc" / "edged"
    key = etc / "openai_api_key"
    assert key.exists() and key.stat().st_mode & 0o777 == 0o600
    assert "put the OpenAI API key in" in r.stdout
    assert (tmp_path / "etc/systemd/system/edged.service").read_text() == UNIT.read_text()
    check = subprocess.run([str(EDGED), "config", "check", str(etc / "edged.yaml")], capture_output=True)
    assert check.returncode == 0
    # a second install (an upgrade) keeps the user's tuning and key
    (etc / "edged.yaml").write_text("gate:\n  end_silence_ms: 650\n")
    key.write_text("sk-kept\n")
    r = run_install(tmp_path)
    assert r.returncode == 0 and "keeping" in r.stdout
    assert "650" in (etc / "edged.yaml").read_text() and key.read_text() == "sk-kept\n"
