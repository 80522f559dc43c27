from __future__ import annotations

import json
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
