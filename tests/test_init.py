"""``emotion-edge init`` and ``--version``: what a new installation starts from (installs issue, item 5)."""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

from conftest import load_test_module, run_cli

import edge
from edge.config import load_config


def _user_env(home: Path) -> dict[str, str]:
    """A fresh user: HOME in a temporary folder, no XDG overrides, no state-dir override."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "EMOTION_EDGE_STATE_DIR")}
    env["HOME"] = str(home)
    return env


def _run(*args: str, env: dict[str, str]):
    import subprocess

    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=120, env=env)


def test_version_is_the_installed_distributions():
    proc = run_cli("--version", check=True)
    assert proc.stdout.strip() == f"emotion-edge {metadata.version('emotion-edge')}"
    assert metadata.version("emotion-edge") == edge.__version__  # pyproject.toml and edge/__init__.py agree


def test_init_writes_a_config_the_daemon_runs_with(tmp_path, mqtt_broker):
    home = tmp_path / "home"
    env = _user_env(home)
    proc = _run("init", env=env)
    assert proc.returncode == 0, proc.stderr
    config_path = home / ".config" / "emotion-edge" / "emotion-edge.toml"
    state_dir = home / ".local" / "state" / "emotion-edge"
    assert config_path.is_file() and state_dir.is_dir()
    assert f"config {config_path}: written" in proc.stdout and f"state dir {state_dir}: ready" in proc.stdout
    text = config_path.read_text()
    assert text.startswith("# Written by `emotion-edge init`") and "[mqtt]" in text and "# Sources" in text
    printed = _run("run", "--config", str(config_path), "--print-config", env=env)
    assert printed.returncode == 0 and f'state_dir = "{state_dir}"' in printed.stdout, printed.stderr

    # the config as written (its simulate source, its device id); only the broker and pace are given
    run, states = load_test_module("test_daemon").run_collecting(mqtt_broker, "wearable-1", lambda: _run(
        "run", "--config", str(config_path), "--broker", mqtt_broker.url, "--speed", "max", "--duration", "4", env=env))
    assert len(states) >= 3, run.stderr
    assert any(state_dir.iterdir()), "the daemon kept nothing in the state dir init made"


def test_init_keeps_an_existing_config_unless_forced(tmp_path):
    env = _user_env(tmp_path / "home")
    config_path = tmp_path / "mine.toml"
    config_path.write_text("[daemon]\ndevice_id = \"kept\"\n")
    proc = _run("init", "--config", str(config_path), env=env)
    assert proc.returncode == 0 and "exists, kept as it is (--force overwrites it)" in proc.stdout, proc.stderr
    assert config_path.read_text() == "[daemon]\ndevice_id = \"kept\"\n"
    proc = _run("init", "--config", str(config_path), "--force", env=env)
    assert proc.returncode == 0 and f"config {config_path}: overwritten" in proc.stdout
    assert load_config(str(config_path)).daemon.device_id == "wearable-1"


def test_init_system_stages_every_file_under_root(tmp_path):
    """--system against a temporary root: nothing outside it changes (the real /etc/passwd included)."""
    import shutil

    root = tmp_path / "root"
    passwd_before = Path("/etc/passwd").read_bytes()
    proc = _run("init", "--system", "--root", str(root), env=_user_env(tmp_path / "home"))
    assert proc.returncode == 0, proc.stderr
    assert Path("/etc/passwd").read_bytes() == passwd_before
    lines = proc.stdout.splitlines()
    for step in ("etc/emotion-edge: ready", "etc/emotion-edge/emotion-edge.toml: written",
                 "service user emotion-edge:", "var/lib/emotion-edge: ready",
                 "etc/systemd/system/emotion-edge.service: installed"):
        assert any(step in line for line in lines), (step, lines)

    config = load_config(str(root / "etc/emotion-edge/emotion-edge.toml"))
    assert config.daemon.state_dir == "/var/lib/emotion-edge"
    assert (root / "var/lib/emotion-edge").is_dir()
    unit = (root / "etc/systemd/system/emotion-edge.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    executable = exec_start.removeprefix("ExecStart=").split()[0]
    assert Path(executable).parent == Path(os.path.abspath(sys.executable)).parent, exec_start
    assert "run --config /etc/emotion-edge/emotion-edge.toml --state-dir /var/lib/emotion-edge" in exec_start
    assert "Type=notify" in unit and "User=emotion-edge" in unit
    sysusers = (root / "etc/sysusers.d/emotion-edge.conf").read_text()
    assert sysusers.startswith("u emotion-edge ")
    if shutil.which("systemd-sysusers"):  # then the user really exists, in the staged root's passwd only
        assert any(line.startswith("emotion-edge:") for line in (root / "etc/passwd").read_text().splitlines())

    again = _run("init", "--system", "--root", str(root), env=_user_env(tmp_path / "home"))
    assert again.returncode == 0 and "exists, kept as it is" in again.stdout, again.stderr


def test_init_refuses_what_it_cannot_do_in_one_line(tmp_path):
    env = _user_env(tmp_path / "home")
    for args, words in ((("--system", "--root", str(tmp_path / "r"), "--config", "rel.toml"), "absolute path"),
                        (("--root", str(tmp_path / "r")), "only with --system")):
        proc = _run("init", *args, env=env)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and words in lines[0], proc.stderr


def test_a_config_that_cannot_be_written_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = _run("init", "--config", str(blocker / "sub" / "emotion-edge.toml"), env=_user_env(tmp_path / "home"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and str(blocker) in lines[0], proc.stderr
