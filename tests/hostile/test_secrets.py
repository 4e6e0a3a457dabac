"""Secrets and file modes (issue 15, items 16 and 17), through the real commands.

16. A password holding ``/``, ``#`` or ``?``, or a URL with an unclosed IPv6 bracket, does not
    parse: ``run``, ``listen`` and ``doctor`` say so in one line, with the password masked.
17. ``mqtt.password_file`` readable by group or others is refused (one line) and ``doctor`` flags
    it; the outbox, its seq mark and the baselines file are created 0600.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_test_module

support = load_test_module("hostile/faults_support")
harness = support.harness

TESTS_DIR = Path(__file__).resolve().parents[1]
SECRET_HALVES = ("Qx7", "Zq9k")


def cli(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True,
                          timeout=timeout_s, cwd=TESTS_DIR)


@pytest.mark.parametrize("url", [
    f"mqtt://dev1:{SECRET_HALVES[0]}/{SECRET_HALVES[1]}@127.0.0.1:1883",
    f"mqtt://dev1:{SECRET_HALVES[0]}#{SECRET_HALVES[1]}@127.0.0.1:1883",
    f"mqtt://dev1:{SECRET_HALVES[0]}?{SECRET_HALVES[1]}@127.0.0.1:1883",
    f"mqtt://dev1:{SECRET_HALVES[0]}{SECRET_HALVES[1]}@[::1:1883",
], ids=["slash", "hash", "question", "open-bracket"])
@pytest.mark.parametrize("command", ["run", "listen", "doctor"])
def test_a_password_in_a_url_that_does_not_parse_is_never_shown(url, command, tmp_path):
    args = {"run": ["run", "--source", "simulate", "--duration", "1", "--state-dir", str(tmp_path)],
            "listen": ["listen", "--count", "1"],
            "doctor": ["doctor", "--state-dir", str(tmp_path)]}[command]
    with support.bounded(60):
        proc = cli(*args, "--broker", url)
    text = proc.stdout + proc.stderr
    for half in SECRET_HALVES:
        assert half not in text, f"{command} showed the password:\n{text[-2000:]}"
    assert proc.returncode != 0
    assert "***" in text and "broker URL" in text, text[-2000:]


def test_a_password_file_others_can_read_is_refused_and_doctor_flags_it(tmp_path):
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret-pw\n")
    secret.chmod(0o644)
    config = tmp_path / "c.toml"
    config.write_text(f'[mqtt]\nbroker = "mqtt://127.0.0.1:{harness.free_port()}"\nusername = "dev1"\n'
                      f'password_file = "{secret}"\n[daemon]\ndevice_id = "dev1"\nsources = ["simulate"]\n')
    with support.bounded(60):
        run = cli("run", "--config", str(config), "--duration", "1", "--state-dir", str(tmp_path / "state"))
        doctor = cli("doctor", "--config", str(config), "--state-dir", str(tmp_path / "state"))
    assert run.returncode != 0
    lines = [ln for ln in run.stderr.splitlines() if str(secret) in ln]
    assert len(lines) == 1 and "readable by everyone" in lines[0] and "644" in lines[0], run.stderr[-2000:]
    flagged = [ln for ln in doctor.stdout.splitlines() if str(secret) in ln]
    assert len(flagged) == 1 and flagged[0].startswith("FAIL") and "readable" in flagged[0], doctor.stdout
    assert "s3cret-pw" not in run.stderr + doctor.stdout + doctor.stderr


def test_the_outbox_and_baselines_are_created_owner_only(tmp_path):
    pytest.importorskip("paho.mqtt.client")
    state_dir = tmp_path / "state"
    old_umask = os.umask(0o022)  # the usual umask: files would be 0644 unless the daemon says otherwise
    try:
        with support.bounded(60):
            daemon = harness.DaemonProcess(["--source", "simulate:duration=900,seed=2", "--speed", "max",
                                            "--broker", f"mqtt://127.0.0.1:{harness.free_port()}",
                                            "--device-id", "modes", "--state-dir", str(state_dir)], tmp_path)
            try:
                assert daemon.wait(45) == 0, daemon.stderr()[-2000:]
            finally:
                daemon.close()
    finally:
        os.umask(old_umask)
    files = [p for p in state_dir.iterdir() if p.is_file()]
    loose = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files
             if stat.S_IMODE(p.stat().st_mode) & 0o077}
    assert not loose, f"state files open to group or others: {loose}"
    names = {p.name for p in files}
    assert {"outbox-modes.sqlite3", "outbox-modes.sqlite3.seq", "baselines-modes.json"} <= names, names
