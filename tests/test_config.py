"""Config: every kind of bad input gives one clear line and exit 78; good input is typed and frozen."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edged.cli import main
from edged.config import EX_CONFIG, Config, ConfigError, describe, load_config, render_documented, to_dict

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_YAML = ROOT / "configs" / "default.yaml"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "edged.yaml"
    p.write_text(text)
    return p


def error_of(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text), overrides)
    return str(e.value)


def test_shipped_default_yaml_equals_built_in_defaults() -> None:
    assert load_config(DEFAULT_YAML) == Config()
    assert load_config(None) == Config()


def test_default_yaml_is_the_documented_rendering_of_the_defaults() -> None:
    assert DEFAULT_YAML.read_text() == render_documented(Config())


def test_default_yaml_documents_every_key_with_allowed_values() -> None:
    text = DEFAULT_YAML.read_text()
    lines = text.splitlines()
    for path, _default, allowed, _doc in describe():
        section, key = path.split(".")
        top = lines.index(f"{section}:")
        idx = next(i for i, line in enumerate(lines) if i > top and line.startswith(f"  {key}:"))
        assert f"Allowed: {allowed}." in lines[idx - 1], path


def test_config_is_frozen_and_typed() -> None:
    cfg = load_config(None, ["detector.energy_margin_db=12"])
    assert isinstance(cfg.detector.energy_margin_db, float)
    assert cfg.detector.energy_margin_db == 12.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.detector.vad_mode = 1  # type: ignore[misc]


def test_unknown_key_names_path_and_allowed_keys(tmp_path: Path) -> None:
    msg = error_of(tmp_path, "detector:\n  vad_mod: 2\n")
    assert msg.startswith("detector.vad_mod: unknown key")
    assert "vad_mode" in msg


def test_unknown_section(tmp_path: Path) -> None:
    msg = error_of(tmp_path, "detectr:\n  vad_mode: 2\n")
    assert msg.startswith("detectr: unknown key")
    assert "detector" in msg and "gate" in msg


def test_wrong_type(tmp_path: Path) -> None:
    msg = error_of(tmp_path, "detector:\n  vad_mode: high\n")
    assert msg == "detector.vad_mode = 'high': must be an integer from 0 to 3"


def test_bool_is_not_a_number_and_number_is_not_a_bool(tmp_path: Path) -> None:
    assert "gate.end_silence_ms = True" in error_of(tmp_path, "gate:\n  end_silence_ms: true\n")
    assert error_of(tmp_path, "aec:\n  enabled: 1\n") == "aec.enabled = 1: must be true or false"


def test_out_of_range_and_not_a_choice(tmp_path: Path) -> None:
    assert error_of(tmp_path, "gate:\n  end_silence_ms: 50\n") == (
        "gate.end_silence_ms = 50: must be an integer from 100 to 5000"
    )
    assert error_of(tmp_path, "detector:\n  vad_frame_ms: 25\n") == (
        "detector.vad_frame_ms = 25: must be one of 10, 20, 30"
    )


def test_section_must_be_a_mapping(tmp_path: Path) -> None:
    assert "gate = 5: must be a mapping" in error_of(tmp_path, "gate: 5\n")


def test_cross_key_rule(tmp_path: Path) -> None:
    msg = error_of(tmp_path, "gate:\n  end_silence_ms: 300\n  post_roll_ms: 400\n")
    assert "gate.post_roll_ms = 400" in msg and "gate.end_silence_ms (300)" in msg


def test_yaml_syntax_error_gives_position(tmp_path: Path) -> None:
    msg = error_of(tmp_path, "gate:\n  end_silence_ms: [1, 2\n")
    assert "not valid YAML at line" in msg


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    assert "top level must be a mapping" in error_of(tmp_path, "- 1\n- 2\n")


def test_half_duplex_needs_the_echo_slot(tmp_path: Path) -> None:
    msg = error_of(tmp_path, "aec:\n  enabled: false\n  half_duplex: true\n")
    assert msg.startswith("aec.half_duplex = true: needs aec.enabled = true")


def test_config_that_is_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "edged.yaml"
    p.write_bytes(b"gate:\n  end_silence_ms: 700 # \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(p)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config("/nonexistent/edged.yaml")


def test_set_overrides_file_and_is_validated(tmp_path: Path) -> None:
    p = write(tmp_path, "gate:\n  end_silence_ms: 900\n")
    cfg = load_config(p, ["gate.end_silence_ms=1200", "detector.vad_mode=1"])
    assert cfg.gate.end_silence_ms == 1200 and cfg.detector.vad_mode == 1
    with pytest.raises(ConfigError, match=r"gate\.end_silence_ms = 99999"):
        load_config(p, ["gate.end_silence_ms=99999"])
    with pytest.raises(ConfigError, match=r"must look like section\.key=value"):
        load_config(p, ["gate.end_silence_ms"])
    with pytest.raises(ConfigError, match=r"gate\.nope: unknown key"):
        load_config(p, ["gate.nope=1"])
    with pytest.raises(ConfigError, match="is not a section"):
        load_config(p, ["gate.end_silence_ms.x=1"])


@pytest.mark.parametrize(
    "argv",
    [
        ["config", "check", "{bad}"],
        ["config", "show", "{bad}"],
        ["replay", "missing.wav", "--config", "{bad}"],
        ["demo", "--set", "gate.end_silence_ms=5"],
        ["config", "show", "--set", "nosuch.key=1"],
    ],
)
def test_cli_exits_78_with_one_line(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = write(tmp_path, "detector:\n  vad_mode: 9\n")
    code = main([a.replace("{bad}", str(bad)) for a in argv])
    err = capsys.readouterr().err
    assert code == EX_CONFIG
    assert err.startswith("edged: config error: ") and err.count("\n") == 1


def test_cli_config_show_prints_effective_config(capsys: pytest.CaptureFixture) -> None:
    assert main(["config", "show", "--set", "gate.end_silence_ms=850"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    expected = to_dict(Config())
    expected["gate"]["end_silence_ms"] = 850
    assert shown == expected


def test_cli_config_check_ok(capsys: pytest.CaptureFixture) -> None:
    assert main(["config", "check", str(DEFAULT_YAML)]) == 0
    assert "ok" in capsys.readouterr().out


def test_installed_command_exits_78_without_traceback(tmp_path: Path) -> None:
    bad = write(tmp_path, "gate:\n  min_speech_ms: -5\n")
    exe = Path(sys.executable).parent / "edged"
    r = subprocess.run([str(exe), "config", "check", str(bad)], capture_output=True, text=True, check=False)
    assert r.returncode == EX_CONFIG
    assert "Traceback" not in r.stderr
    assert "gate.min_speech_ms = -5: must be an integer from 0 to 5000" in r.stderr


def test_realtime_url_must_be_wss_or_loopback(tmp_path: Path) -> None:
    assert load_config(None, ["realtime.url=ws://127.0.0.1:8765/v1/realtime"]).realtime.url.startswith(
        "ws://"
    )
    for url in ("ws://example.com/v1/realtime", "http://127.0.0.1/", "wss://"):
        with pytest.raises(ConfigError, match=r"realtime\.url = .*wss://"):
            load_config(None, [f"realtime.url={url}"])


def test_tools_and_price_table(tmp_path: Path) -> None:
    cfg = load_config(None, ["tools.enabled=[current_time]", "cost.daily_budget_usd=0.5"])
    assert cfg.tools.enabled == ("current_time",) and cfg.cost.daily_budget_usd == 0.5
    with pytest.raises(ConfigError, match=r"tools\.enabled = \['teleport'\].*teleport"):
        load_config(None, ["tools.enabled=[teleport]"])
    with pytest.raises(ConfigError, match=r"tools\.enabled = 'current_time': must be a list of names"):
        load_config(None, ["tools.enabled=current_time"])
    with pytest.raises(ConfigError, match=r"realtime\.model = 'gpt-9': cost\.prices has no entry"):
        load_config(None, ["realtime.model=gpt-9"])
    row = "{text_in: 1, text_in_cached: 0.1, text_out: 2, audio_in: 3, audio_in_cached: 4, audio_out: 5}"
    table = f"cost:\n  prices:\n    m1: {row}\n"
    path = tmp_path / "c.yaml"
    path.write_text(table + "realtime:\n  model: m1\n")
    with pytest.raises(
        ConfigError, match=r"cost\.prices\.m1\.audio_in_cached = 4.0: must not exceed audio_in"
    ):
        load_config(path)
    path.write_text(table.replace("audio_in_cached: 4", "audio_in_cached: 0.3") + "realtime:\n  model: m1\n")
    assert load_config(path).cost.prices["m1"].audio_out == 5.0
    path.write_text("cost:\n  prices:\n    m1: {text_in: 1}\n")
    with pytest.raises(ConfigError, match=r"cost\.prices\.m1 = .*must give exactly text_in, text_in_cached"):
        load_config(path)
