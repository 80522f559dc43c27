from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from edged.wavio import read_mono

DATA = resources.files("edged") / "data"


@pytest.fixture(scope="session")
def demo_wav() -> Path:
    return Path(str(DATA / "demo_kitchen.wav"))


@pytest.fixture(scope="session")
def demo_labels() -> dict[str, Any]:
    return json.loads((DATA / "demo_kitchen.json").read_text())


@pytest.fixture(scope="session")
def demo_audio(demo_wav: Path):
    return read_mono(demo_wav)


@pytest.fixture(scope="session")
def utterances_ms(demo_labels: dict[str, Any]) -> list[tuple[float, float]]:
    return [(u["start_s"] * 1000, u["end_s"] * 1000) for u in demo_labels["utterances"]]


@pytest.fixture(scope="session")
def pulse() -> Iterator[dict[str, str]]:
    """A PulseAudio daemon with a null sink of our own; its monitor is the microphone."""
    assert shutil.which("pulseaudio"), "pulseaudio is missing: `make test` installs it"
    sink = f"edged_test_{os.getpid()}"
    started = subprocess.run(["pulseaudio", "--check"]).returncode != 0
    if started:
        subprocess.run(
            ["pulseaudio", "-D", "-n", "--exit-idle-time=-1", "--disallow-exit",
             "--load=module-native-protocol-unix"],
            check=True, capture_output=True,
        )  # fmt: skip
    module = subprocess.run(
        ["pactl", "load-module", "module-null-sink", f"sink_name={sink}"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    yield {"PULSE_SINK": sink, "PULSE_SOURCE": f"{sink}.monitor"}
    subprocess.run(["pactl", "unload-module", module], capture_output=True)
    if started:
        subprocess.run(["pulseaudio", "--kill"], capture_output=True)
