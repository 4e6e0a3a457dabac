"""Hostile inputs, item 8 of issue 15: config values that passed validation, then crashed or hung.

Each case runs the real daemon as a subprocess with a time and a memory bound
(``inputs_harness``). Before the fix: deeply nested TOML gave a RecursionError traceback; a
65,536-byte client id killed paho's thread silently; 100,000 interpreter threads hung the start;
a 1e9 s window raised MemoryError and exited 0; ``~`` in state_dir was expanded for the outbox but
not the baselines file; a FIFO as --config or password_file blocked the start for good.
"""

from __future__ import annotations

import json
import os

import pytest
from conftest import load_test_module

harness = load_test_module("hostile/inputs_harness")


@pytest.mark.parametrize("case, toml, needle", [
    ("TOML nested 200,000 deep", "[daemon]\nsources = " + "[" * 200_000 + "]" * 200_000 + "\n",
     "not valid TOML (nested too deeply)"),
    ("mqtt.client_id of 70,000 bytes", f'[mqtt]\nclient_id = "{"c" * 70_000}"\n',
     "mqtt.client_id: longer than 256 bytes"),
    ("models.num_threads = 100000", "[models]\nnum_threads = 100000\n", "models.num_threads: must be in 1..64"),
    ("windows.eda.length_s = 1e9", "[windows.eda]\nlength_s = 1e9\n", "windows.eda.length_s: must be in 0.05..1800 s"),
    ("daemon.duration_s = 1e300", "[daemon]\nduration_s = 1e300\n", "daemon.duration_s: must be in 0.."),
    ("daemon.speed = 1e-300", "[daemon]\nspeed = 1e-300\n", "daemon.speed: must be in 0.001..1e+06"),
    ("metrics.interval_s = 1e-9", "[metrics]\ninterval_s = 1e-9\n", "metrics.interval_s: must be in 0.1..86400 s"),
])
def test_a_config_value_out_of_range_is_refused_in_one_line(mqtt_broker, tmp_path, case, toml, needle):
    config = tmp_path / "c.toml"
    config.write_text(toml)
    run = harness.run_bounded(["run", "--config", str(config), "--broker", mqtt_broker.url,
                               "--state-dir", str(tmp_path / "state"), "--source", "simulate:duration=5"],
                              tmp_path / "run", timeout_s=20, case=case)
    assert not run.timed_out, f"{case}: still running after {run.wall_s:.0f} s"
    assert run.returncode == 2, run.stderr[-2000:]
    run.assert_no_traceback()
    assert run.lines() == [next(ln for ln in run.lines() if needle in ln)], run.stderr[-2000:]
    assert run.lines()[0].startswith("emotion-edge run: config:")
    assert run.peak_rss_mb < harness.UNIT_MEMORY_MAX_MB


@pytest.mark.parametrize("which", ["--config", "password_file"])
def test_a_fifo_as_config_or_password_file_is_refused_not_waited_on(mqtt_broker, tmp_path, which):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    args = ["run", "--broker", mqtt_broker.url, "--state-dir", str(tmp_path / "state"), "--source", "simulate",
            "--duration", "2"]
    if which == "--config":
        args += ["--config", str(fifo)]
        needle = f"config: {fifo}: cannot read (is a FIFO, not a regular file)"
    else:
        config = tmp_path / "c.toml"
        config.write_text(f'[mqtt]\nusername = "u"\npassword_file = "{fifo}"\n')
        args += ["--config", str(config)]
        needle = f"mqtt.password_file: {fifo} is a FIFO, not a regular file"
    run = harness.run_bounded(args, tmp_path / "run", timeout_s=15, case=f"a FIFO as {which}")
    assert not run.timed_out, f"blocked on the FIFO for {run.wall_s:.0f} s"
    assert run.returncode == 2
    harness.one_line_naming(run, needle)
    assert run.peak_rss_mb < harness.UNIT_MEMORY_MAX_MB


def test_a_tilde_state_dir_holds_the_outbox_and_the_baselines_alike(mqtt_broker, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "c.toml"
    config.write_text('[daemon]\nstate_dir = "~/edge-state"\ndevice_id = "tilde1"\n')
    workdir = tmp_path / "run"
    run = harness.run_bounded(["run", "--config", str(config), "--broker", mqtt_broker.url,
                               "--source", "simulate:duration=900", "--speed", "max"], workdir, timeout_s=60,
                              env={"HOME": str(home)}, case="state_dir = \"~/...\"")
    assert not run.timed_out and run.returncode == 0, run.stderr[-2000:]
    state = home / "edge-state"
    assert (state / "outbox-tilde1.sqlite3").exists()
    saved = json.loads((state / "baselines-tilde1.json").read_text())
    assert saved["modalities"], "no baselines saved"
    assert not (workdir / "~").exists(), "a folder literally named '~' was created"
    assert run.peak_rss_mb < harness.UNIT_MEMORY_MAX_MB
