"""``emotion-edge doctor`` as an operator runs it: against a real mosquitto, real model files,
real TLS files made by openssl, a real pseudo-terminal; every FAIL names the thing and why."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import free_port, run_cli

from edge.models import models_dir

from conftest import load_test_module  # noqa: E402

harness = load_test_module("daemon_harness")


def doctor(*args: str, env: dict | None = None) -> tuple[int, list[str], str]:
    """(exit code, check lines, stderr) of ``emotion-edge doctor ARGS``.

    Without a ``--source`` the simulator's EEG alone is checked, so that a test about the broker,
    TLS or the state dir does not hinge on which other models are shipped (those are only warned).
    """
    if "--source" not in args:
        args = (*args, "--source", "simulate:streams=eeg")
    proc = run_cli("doctor", *args, env=env, timeout=120)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert lines and "checks:" in lines[-1], proc.stdout + proc.stderr
    return proc.returncode, lines[:-1], proc.stderr


def line_for(lines: list[str], what: str) -> str:
    # "model face" is not "model face_detector"
    found = [ln for ln in lines if ln[6:].startswith(what) and not ln[6 + len(what):].startswith("_")]
    assert len(found) == 1, f"expected one line for {what!r}:\n" + "\n".join(lines)
    return found[0]


def test_all_ok_against_a_real_broker(mqtt_broker, tmp_path):
    rc, lines, err = doctor("--broker", mqtt_broker.url, "--source", "simulate", "--state-dir", str(tmp_path / "state"))
    assert rc == 0, "\n".join(lines) + err
    assert all(ln.startswith("ok    ") for ln in lines), "\n".join(lines)
    for what in ("python", "runtime", "model eeg", "model eda", "model cardiac", "model face",
                 f"broker {mqtt_broker.url}", "source simulate"):
        assert line_for(lines, what)
    assert "MQTT CONNECT accepted" in line_for(lines, "broker")
    assert "sha256 matches" in line_for(lines, "model eeg")


def test_a_closed_port_fails_the_broker_line_with_the_reason(tmp_path):
    url = f"mqtt://127.0.0.1:{free_port()}"
    rc, lines, _ = doctor("--broker", url, "--state-dir", str(tmp_path))
    assert rc == 1
    line = line_for(lines, f"broker {url}")
    assert line.startswith("FAIL") and "Connection refused" in line, line
    assert sum(ln.startswith("FAIL") for ln in lines) == 1, "\n".join(lines)


def test_a_tampered_model_is_named(mqtt_broker, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(models_dir(), models, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    data = bytearray((models / "eeg.tflite").read_bytes())
    data[len(data) // 3] ^= 0x10
    (models / "eeg.tflite").write_bytes(bytes(data))
    rc, lines, _ = doctor("--broker", mqtt_broker.url, "--state-dir", str(tmp_path),
                          env={"EMOTION_EDGE_MODELS_DIR": str(models)})
    assert rc == 1
    line = line_for(lines, "model eeg")
    assert line.startswith("FAIL") and "sha256" in line and str(models / "eeg.tflite") in line, line
    assert [ln for ln in lines if ln.startswith("FAIL")] == [line]


def test_a_missing_model_of_a_fed_modality_fails_and_an_unfed_one_warns(mqtt_broker, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(models_dir(), models, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    for suffix in (".json", ".tflite"):
        (models / f"eda{suffix}").unlink(missing_ok=True)
        (models / f"face{suffix}").unlink(missing_ok=True)
    rc, lines, _ = doctor("--broker", mqtt_broker.url, "--source", "simulate", "--state-dir", str(tmp_path),
                          env={"EMOTION_EDGE_MODELS_DIR": str(models)})
    assert rc == 1
    assert line_for(lines, "model eda").startswith("FAIL")  # the simulator feeds EDA
    assert line_for(lines, "model face").startswith("warn")  # no camera configured


def test_a_missing_ca_file_is_named(mqtt_broker, tmp_path):
    ca = tmp_path / "certs" / "ca.pem"
    config = tmp_path / "c.toml"
    config.write_text(f'[mqtt]\nbroker = "mqtts://127.0.0.1:{mqtt_broker.port}"\nca_file = "{ca}"\n')
    rc, lines, _ = doctor("--config", str(config), "--state-dir", str(tmp_path))
    assert rc == 1
    line = line_for(lines, f"tls ca_file {ca}")
    assert line.startswith("FAIL") and "not found" in line, line
    assert line_for(lines, "broker").startswith("FAIL")


def test_a_bad_config_key_is_a_fail_line_and_the_rest_is_still_checked(mqtt_broker, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[mqtt]\nbrokr = 'mqtt://127.0.0.1'\n")
    rc, lines, _ = doctor("--config", str(config), "--broker", mqtt_broker.url, "--state-dir", str(tmp_path))
    assert rc == 1
    line = line_for(lines, f"config {config}")
    assert line.startswith("FAIL") and "mqtt.brokr" in line
    assert line_for(lines, "broker").startswith("ok")


# -- credentials: a mosquitto that wants a password ------------------------------------------------

@pytest.fixture
def password_broker(tmp_path):
    if harness.MOSQUITTO is None or harness.MOSQUITTO_PASSWD is None:
        pytest.skip("needs mosquitto and mosquitto_passwd")
    passwd = harness.make_password_file(tmp_path / "passwd", {"dev1": "s3cret-pw"})
    broker = harness.PersistentMosquitto(tmp_path / "pw-broker", anonymous=False, extra=f"password_file {passwd}\n")
    yield broker
    broker.stop()


def test_credentials_are_checked_and_the_password_never_printed(password_broker, tmp_path):
    port = password_broker.port
    rc, lines, err = doctor("--broker", f"mqtt://dev1:s3cret-pw@127.0.0.1:{port}",
                            "--state-dir", str(tmp_path))
    broker_line = line_for(lines, f"broker mqtt://dev1@127.0.0.1:{port}")
    assert broker_line.startswith("ok") and "accepted" in broker_line, broker_line
    assert rc == 0, "\n".join(lines)
    rc, lines, err = doctor("--broker", f"mqtt://dev1:wrong-pw@127.0.0.1:{port}", "--state-dir", str(tmp_path))
    broker_line = line_for(lines, "broker")
    assert rc == 1 and broker_line.startswith("FAIL") and "refused" in broker_line, broker_line
    assert "wrong-pw" not in "\n".join(lines) + err
    # the password from the environment (as systemd's EnvironmentFile gives it), never shown
    rc, lines, err = doctor("--broker", f"mqtt://dev1@127.0.0.1:{port}", "--state-dir", str(tmp_path),
                            env={"EMOTION_EDGE_MQTT_PASSWORD": "s3cret-pw"})
    broker_line = line_for(lines, "broker")
    assert rc == 0 and "EMOTION_EDGE_MQTT_PASSWORD" in broker_line, broker_line
    # username and password file from the config (the file readable by the service user only)
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret-pw\n")
    secret.chmod(0o600)
    config = tmp_path / "c.toml"
    config.write_text(f'[mqtt]\nbroker = "mqtt://127.0.0.1:{port}"\nusername = "dev1"\npassword_file = "{secret}"\n'
                      '[daemon]\ndevice_id = "dev1"\n')
    rc, lines, err = doctor("--config", str(config), "--state-dir", str(tmp_path))
    broker_line = line_for(lines, "broker")
    assert rc == 0 and f"password from {secret}" in broker_line, broker_line
    rc, lines, err = doctor("--broker", f"mqtt://127.0.0.1:{port}", "--state-dir", str(tmp_path))
    assert rc == 1 and "anonymous" in line_for(lines, "broker")
    everything = "\n".join(lines) + err
    assert "s3cret-pw" not in everything


# -- TLS: files made by openssl, a mosquitto TLS listener --------------------------------------------

def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)


@pytest.fixture
def tls_files(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    folder = tmp_path / "pki"
    folder.mkdir()
    _openssl(folder, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "400", "-subj", "/CN=emotion-edge test CA")
    for name, cn in (("server", "127.0.0.1"), ("client", "dev1")):
        _openssl(folder, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={cn}")
        (folder / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1\n" if name == "server" else "")
        _openssl(folder, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "400", "-extfile", f"{name}.ext")
    _openssl(folder, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other-ca.key", "-out",
             "other-ca.pem", "-days", "400", "-subj", "/CN=some other CA")
    for key in folder.glob("*.key"):
        key.chmod(0o600)
    return folder


def _tls_config(path: Path, port: int, pki: Path, ca: str = "ca.pem", cert: str = "client.pem",
                key: str = "client.key") -> Path:
    path.write_text(f'[mqtt]\nbroker = "mqtts://127.0.0.1:{port}"\nca_file = "{pki / ca}"\n'
                    f'cert_file = "{pki / cert}"\nkey_file = "{pki / key}"\n')
    return path


def test_tls_files_and_handshake_against_a_tls_mosquitto(tls_files, tmp_path):
    if harness.MOSQUITTO is None:
        pytest.skip("needs mosquitto")
    pki = tls_files
    broker = harness.PersistentMosquitto(
        tmp_path / "tls-broker",
        extra=f"cafile {pki / 'ca.pem'}\ncertfile {pki / 'server.pem'}\nkeyfile {pki / 'server.key'}\n"
              "require_certificate true\n")
    try:
        good = _tls_config(tmp_path / "good.toml", broker.port, pki)
        rc, lines, err = doctor("--config", str(good), "--state-dir", str(tmp_path))
        assert rc == 0, "\n".join(lines) + err
        for what in (f"tls ca_file {pki / 'ca.pem'}", f"tls cert_file {pki / 'client.pem'}",
                     f"tls key_file {pki / 'client.key'}", "tls client key pair"):
            assert line_for(lines, what).startswith("ok"), "\n".join(lines)
        assert "valid until" in line_for(lines, "tls ca_file")
        assert "TLSv1" in line_for(lines, "broker mqtts://")
        # a CA that did not sign the server: the handshake fails and says why
        other = _tls_config(tmp_path / "other.toml", broker.port, pki, ca="other-ca.pem")
        rc, lines, _ = doctor("--config", str(other), "--state-dir", str(tmp_path))
        line = line_for(lines, "broker mqtts://")
        assert rc == 1 and line.startswith("FAIL") and "certificate verify failed" in line, line
        # the server's key with the client's certificate: a key pair that does not match
        mismatch = _tls_config(tmp_path / "mismatch.toml", broker.port, pki, key="server.key")
        rc, lines, _ = doctor("--config", str(mismatch), "--state-dir", str(tmp_path))
        line = line_for(lines, "tls client key pair")
        assert rc == 1 and line.startswith("FAIL") and "does not match" in line and "server.key" in line, line
        # a key file anyone can read: a warning, not a failure
        (pki / "client.key").chmod(0o644)
        rc, lines, _ = doctor("--config", str(good), "--state-dir", str(tmp_path))
        assert rc == 0 and line_for(lines, f"tls key_file {pki / 'client.key'}").startswith("warn")
        # a CA file that is not a certificate
        (pki / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        rc, lines, _ = doctor("--config", str(good), "--state-dir", str(tmp_path))
        assert rc == 1 and "not a PEM certificate" in line_for(lines, "tls ca_file")
    finally:
        broker.stop()


# -- state dir, outbox, devices ------------------------------------------------------------------------

def test_state_dir_outbox_depth_and_an_unwritable_dir(mqtt_broker, tmp_path):
    from edge.outbox import Outbox

    state = tmp_path / "state"
    box = Outbox(state / "outbox-wearable-1.sqlite3")
    for _ in range(3):
        box.append("emotion-edge/wearable-1/state", lambda seq: b"{}")
    box.close()
    rc, lines, _ = doctor("--broker", mqtt_broker.url, "--state-dir", str(state))
    assert rc == 0
    assert "3 state(s) waiting" in line_for(lines, "outbox wearable-1") and "last seq 2" in line_for(lines, "outbox")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    rc, lines, _ = doctor("--broker", mqtt_broker.url, "--state-dir", str(blocker / "state"))
    assert rc == 1 and line_for(lines, "state dir").startswith("FAIL")


def test_saved_trailing_baselines_are_described_and_a_damaged_file_warned(mqtt_broker, tmp_path):
    import json
    import time

    from edge.baseline_store import FORMAT

    state = tmp_path / "state"
    state.mkdir()
    rc, lines, _ = doctor("--broker", mqtt_broker.url, "--state-dir", str(state))
    assert rc == 0 and "none yet" in line_for(lines, "baselines wearable-1")
    now = time.time()
    stream = {"span_s": 1200.0, "ends": [now - 600, now - 180], "rows": [[0.0] * 23, [1.0] * 23]}
    (state / "baselines-wearable-1.json").write_text(json.dumps(
        {"format": FORMAT, "modalities": {"eda": {"model_sha256": "ab", "streams": {"eda": stream}}}}))
    rc, lines, _ = doctor("--broker", mqtt_broker.url, "--state-dir", str(state))
    line = line_for(lines, "baselines wearable-1")
    assert rc == 0 and line.startswith("ok") and "eda 2 window(s), newest 3 min ago" in line
    (state / "baselines-wearable-1.json").write_text('{"format": "emotion-edge trailing')
    rc, lines, _ = doctor("--broker", mqtt_broker.url, "--state-dir", str(state))
    line = line_for(lines, "baselines wearable-1")
    assert rc == 0 and line.startswith("warn") and "fresh baselines" in line


def test_serial_ble_camera_and_replay_sources(mqtt_broker, tmp_path):
    master, slave = os.openpty()
    try:
        port = os.ttyname(slave)
        missing = tmp_path / "ttyUSB9"
        rc, lines, _ = doctor("--broker", mqtt_broker.url, "--state-dir", str(tmp_path),
                              "--source", f"serial:cyton:{port}", "--source", f"serial:framed:{missing}",
                              "--source", "ble:muse:00:55:DA:B0:00:01", "--source", f"camera:{tmp_path / 'none.mp4'}",
                              "--source", f"replay:e4:{tmp_path / 'S01'}", "--source", "ble:mus:00:55:DA:B0:00:01")
    finally:
        os.close(master)
        os.close(slave)
    assert rc == 1
    assert line_for(lines, f"source serial:cyton:{port}").startswith("ok")
    line = line_for(lines, f"source serial:framed:{missing}")
    assert line.startswith("FAIL") and f"{missing} not found" in line
    ble = line_for(lines, "source ble:muse:")
    has_bluetooth = Path("/run/dbus/system_bus_socket").exists() and any(Path("/sys/class/bluetooth").glob("hci*"))
    assert ble.startswith("ok" if has_bluetooth else "FAIL"), ble
    if not has_bluetooth:
        assert "D-Bus" in ble or "Bluetooth adapter" in ble
    assert "none.mp4 not found" in line_for(lines, "source camera:")
    assert line_for(lines, "source replay:e4:").startswith("FAIL") and "not found" in line_for(lines, "source replay")
    assert "unknown device 'mus'" in line_for(lines, "source ble:mus:")


def test_a_gstreamer_camera_pipeline_is_checked_against_this_opencv(mqtt_broker, tmp_path):
    """CSI cameras need OpenCV built with GStreamer; the pip wheels never are (docs/deploy.md)."""
    cv2 = pytest.importorskip("cv2")
    import re

    pipeline = "libcamerasrc ! video/x-raw,width=640,height=480 ! videoconvert ! appsink"
    rc, lines, _ = doctor("--broker", mqtt_broker.url, "--state-dir", str(tmp_path), "--source", f"camera:{pipeline}")
    line = line_for(lines, "source camera:")
    if re.search(r"GStreamer:\s*YES", cv2.getBuildInformation()):
        assert line.startswith("warn") and "not opened by doctor" in line, line
    else:
        assert rc == 1 and line.startswith("FAIL") and "no GStreamer" in line and "docs/deploy.md" in line, line
