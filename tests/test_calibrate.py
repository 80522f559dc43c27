"""`edged calibrate` on real room recordings: valid YAML that the config accepts, margins
above what the room's own noise reaches, a warning when someone spoke."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from edged.cli import main
from edged.config import load_config
from edged.replay import replay_file

DATA = Path(__file__).parent / "data"


def test_suggestions_load_as_config_and_clear_the_room(tmp_path: Path, capsys) -> None:
    wav = DATA / "street_20s.wav"
    assert main(["calibrate", "--input", str(wav)]) == 0
    out = capsys.readouterr().out
    suggested = yaml.safe_load(out)
    cfg_file = tmp_path / "edged.yaml"
    cfg_file.write_text(out)
    cfg = load_config(cfg_file)  # exactly what a user would paste
    assert set(suggested["detector"]) >= {"energy_margin_db", "onset_margin_db", "start_probability"}
    # the claim: with the suggested thresholds the room's own sound opens no turn, and the
    # fast stage's margins sit above what the room reaches almost always
    res = replay_file(cfg, wav, trace=True)
    assert res.summary["turns"] == 0 and res.summary["discards"] == 0
    over = np.array(res.trace.level) - np.array(res.trace.floor)
    assert np.mean(over[100:] >= cfg.detector.energy_margin_db) < 0.02
    assert "turns the current config would open: 0" in out


def test_busier_room_gets_wider_margins(capsys) -> None:
    margins = {}
    for name in ("street_20s.wav", "music_8k_20s.wav"):
        main(["calibrate", "--input", str(DATA / name)])
        margins[name] = yaml.safe_load(capsys.readouterr().out)["detector"]["energy_margin_db"]
    # the music excerpt's level swings further over its floor than the street's
    assert margins["music_8k_20s.wav"] > margins["street_20s.wav"]


def test_speech_during_calibration_is_flagged(demo_wav, capsys) -> None:
    assert main(["calibrate", "--input", str(demo_wav), "--seconds", "15"]) == 0
    out = capsys.readouterr().out
    assert "record again in silence" in out


def test_too_short_input_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["calibrate", "--input", str(DATA / "street_20s.wav"), "--seconds", "1"]) == 65
    assert "at least 2 s" in capsys.readouterr().err
