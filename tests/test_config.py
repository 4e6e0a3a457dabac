"""Config: TOML + flags -> one validated structure; each bad key or value refused in one line."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import REPO_ROOT, run_cli

from edge.config import Config, format_config, load_config
from edge.errors import ConfigError

EXAMPLE = REPO_ROOT / "examples" / "emotion-edge.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_defaults_and_the_shipped_example_agree():
    assert load_config(EXAMPLE) == load_config(None) == load_config(None, {})
    assert load_config(None).daemon.speed == 1.0 and math.isinf(load_config(None).daemon.duration_s)


def test_flags_override_the_file(tmp_path):
    path = write(tmp_path, '[daemon]\ndevice_id = "from-file"\nspeed = 2\n[mqtt]\nbroker = "mqtt://127.0.0.1:1999"\n')
    config = load_config(path, {"daemon.device_id": "from-flag", "daemon.speed": None})
    assert config.daemon.device_id == "from-flag" and config.daemon.speed is None
    assert config.mqtt.broker == "mqtt://127.0.0.1:1999"
    with pytest.raises(Exception):
        config.daemon.device_id = "x"  # frozen


def test_print_config_round_trips(tmp_path):
    config = load_config(write(tmp_path, '[fusion]\nhop_s = 2.5\n[daemon]\nspeed = "max"\nsources = ["simulate", "camera:0"]\n'))
    again = load_config(write(tmp_path, format_config(config)))
    assert again == config and again.fusion.hop_s == 2.5 and again.daemon.speed is None


def test_password_is_masked_when_printed():
    config = load_config(None, {"mqtt.broker": "mqtts://user:s3cret@broker.example:8883"})
    text = format_config(config)
    assert "s3cret" not in text and "user:***@broker.example" in text


@pytest.mark.parametrize("text, message", [
    ('[mqtt]\nbrokr = "mqtt://x"\n', "config: unknown key 'mqtt.brokr' (known: broker, topic_prefix"),
    ('[windows.eda]\nlength_s = -5\n', "config: windows.eda.length_s: must be >= 0, got -5"),
    ('[windows.eeg]\nlength_s = 4\nhop_s = 8\n', "config: windows.eeg.hop_s: must be <= length_s (4), got 8"),
    ('[fusion]\nhop_s = "five"\n', "config: fusion.hop_s: expected a number, got str 'five'"),
    ('[fusion]\nhop_s = 0\n', "config: fusion.hop_s: must be > 0, got 0"),
    ('[fusion.reliability]\neeg = 1.5\n', "config: fusion.reliability.eeg: must be in [0, 1], got 1.5"),
    ('[fusion]\nmin_dwell_s = -1\n', "config: fusion.min_dwell_s: must be >= 0, got -1"),
    ('[fusion]\nlabel_hysteresis = 2\n', "config: fusion.label_hysteresis: must be in [0, 1], got 2"),
    ('[fusion]\ncalm_threshold = 0.7\n', "config: fusion.calm_threshold: must be <= fusion.stress_threshold (0.61), got 0.7"),
    ('[daemon]\nsources = ["bogus:x"]\n', "config: daemon.sources[0]: source 'bogus:x': unknown kind 'bogus'"),
    ('[daemon]\nsources = ["ble:mus:AA"]\n', "config: daemon.sources[0]: source 'ble:mus:AA': unknown device 'mus'"),
    ('[daemon]\nspeed = "fast"\n', "config: daemon.speed: expected a number > 0 or 'max', got 'fast'"),
    ('[daemon]\nmodalities = ["eeg", "voice"]\n', "config: daemon.modalities: unknown modality 'voice'"),
    ('[daemon]\ndevice_id = "a/b"\n', "config: daemon.device_id: must be non-empty without '/'"),
    ('[mqtt]\nbroker = "http://x"\n', "config: mqtt.broker:"),
    ('[calibration]\nrest_s = true\n', "config: calibration.rest_s: expected a number, got bool True"),
    ('daemon = 3\n', "config: daemon: expected a table"),
    ('[daemon\n', "not valid TOML"),
])
def test_bad_keys_and_values_are_refused_naming_them(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("args, message", [
    (["--source", "bogus:1"], "unknown kind 'bogus'"),
    (["--broker", "ftp://127.0.0.1"], "config: mqtt.broker:"),
    (["--speed", "fast"], "--speed: expected a number > 0 or 'max'"),
    (["--duration", "-1"], "--duration: must be >= 0"),
])
def test_cli_refuses_bad_flags_in_one_line(tmp_path, args, message):
    proc = run_cli("run", *args, "--state-dir", str(tmp_path), timeout=60)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]


def test_cli_unknown_config_key_is_one_line_and_print_config_shows_overrides(tmp_path):
    bad = write(tmp_path, '[mqtt]\nbrokr = "mqtt://127.0.0.1"\n')
    proc = run_cli("run", "--config", str(bad), timeout=60)
    assert proc.returncode != 0 and proc.stderr.strip().count("\n") == 0
    assert "unknown key 'mqtt.brokr'" in proc.stderr
    good = tmp_path / "good.toml"
    good.write_text('[fusion]\nhop_s = 3\n')
    proc = run_cli("run", "--config", str(good), "--speed", "max", "--device-id", "dev9", "--print-config", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert 'device_id = "dev9"' in proc.stdout and 'speed = "max"' in proc.stdout and "hop_s = 3.0" in proc.stdout


def test_config_is_a_frozen_typed_structure():
    config = Config()
    assert config.fusion.reliability.for_modality("eda") == 0.8
    assert config.windows.for_modality("eeg").length_s == 0.0


def test_broker_credentials_come_from_file_or_environment_not_the_url(tmp_path, monkeypatch):
    from edge.config import broker_address

    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    secret.chmod(0o600)
    monkeypatch.setenv("EMOTION_EDGE_MQTT_PASSWORD", "from-env")
    base = {"mqtt.broker": "mqtt://127.0.0.1:1883", "mqtt.username": "dev1"}
    assert broker_address(load_config(None, base).mqtt).password == "from-env"
    with_file = load_config(None, dict(base, **{"mqtt.password_file": str(secret)})).mqtt
    assert broker_address(with_file).password == "from-file" and broker_address(with_file).username == "dev1"
    in_url = load_config(None, {"mqtt.broker": "mqtt://u:p@127.0.0.1"}).mqtt
    assert broker_address(in_url).password == "p"
    missing = load_config(None, dict(base, **{"mqtt.password_file": str(tmp_path / "nope")})).mqtt
    with pytest.raises(ConfigError, match="mqtt.password_file: cannot read"):
        broker_address(missing)
    assert "from-file" not in format_config(with_file and load_config(None, dict(base, **{"mqtt.password_file": str(secret)})))
