"""Faults between the daemon and the broker (issue 15, items 1, 2, 18), with a real mosquitto.

1. A broker ACL that denies the daemon's publishes: under MQTT 5 the PUBACK says so; the states
   stay in the outbox, one line names the topic and the user, ``doctor`` reports it, and once the
   account is right every state arrives.
2. mosquitto killed with -9 while a persistent QoS 1 subscriber is away: with the shipped
   ``deploy/mosquitto-tls.conf`` persistence settings, nothing acknowledged is lost.
18. Client-id take-over: with the shipped config another account cannot knock a device off.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import load_test_module

support = load_test_module("hostile/faults_support")
harness = support.harness

REPO_ROOT = Path(__file__).resolve().parents[2]
ACL_FILE = REPO_ROOT / "deploy" / "mosquitto-acl.conf"
TLS_CONF = REPO_ROOT / "deploy" / "mosquitto-tls.conf"
PASSWORDS = {"dev1": "pw-dev1", "devx": "pw-devx", "dashboard": "pw-dashboard"}

pytestmark = pytest.mark.skipif(harness.MOSQUITTO is None or harness.MOSQUITTO_PASSWD is None,
                                reason="needs mosquitto and mosquitto_passwd")


def shipped_lines(path: Path, keys: tuple[str, ...]) -> str:
    """The lines of a shipped mosquitto config that set one of ``keys`` (paths stay ours)."""
    return "".join(ln + "\n" for ln in path.read_text().splitlines()
                   if ln.strip() and not ln.lstrip().startswith("#") and ln.split()[0] in keys)


@pytest.fixture
def acl_broker(tmp_path):
    acl = tmp_path / "emotion-edge.acl"
    shutil.copy(ACL_FILE, acl)
    passwd = harness.make_password_file(tmp_path / "passwd", PASSWORDS)
    broker = harness.PersistentMosquitto(tmp_path / "broker", anonymous=False,
                                         # mosquitto 2.0.11 drops an MQTT 5 client whose publish it
                                         # denies when max_queued_messages is 0 (the harness's "no
                                         # limit"); the default (1000) and any limit answer a PUBACK
                                         extra=f"password_file {passwd}\nacl_file {acl}\n"
                                               "max_queued_messages 100000\n"
                                               + shipped_lines(TLS_CONF, ("use_username_as_clientid",)))
    yield broker
    broker.stop()


def daemon_args(broker, user: str, state_dir: Path, device: str = "devx", extra: tuple[str, ...] = ()) -> list[str]:
    return ["--source", "simulate:duration=600,seed=5", "--speed", "30", "--device-id", device,
            "--broker", f"mqtt://{user}:{PASSWORDS[user]}@{broker.host}:{broker.port}",
            "--state-dir", str(state_dir), *extra]


def test_states_the_acl_denies_stay_in_the_outbox_are_named_and_arrive_once_the_account_is_right(
        acl_broker, tmp_path):
    state_dir = tmp_path / "state"
    with support.bounded(60):
        # device "devx" logs in as "dev1": the shipped ACL lets dev1 write emotion-edge/dev1/… only
        wrong = harness.DaemonProcess(daemon_args(acl_broker, "dev1", state_dir), tmp_path, name="wrong-user")
        rss = support.PeakRss(wrong.pid)
        try:
            assert harness.wait_until(lambda: support.outbox_depth(state_dir, "devx") >= 20 or not wrong.alive(), 40), \
                wrong.stderr()[-2000:]
            wrong.terminate()
            assert wrong.wait(20) == 0
        finally:
            wrong.close()
            peak_mb = rss.stop()
        err = wrong.stderr()
        published = int(re.findall(r"stopped: (\d+) states published", err)[-1])
        refused = support.log_lines(err, "refused emotion-edge/devx/state for user 'dev1'")
        assert len(refused) == 1, f"expected one line naming the refused topic and user:\n{err[-3000:]}"
        kept = harness.outbox_depth(state_dir, "devx")
        assert kept == published, f"{published - kept} of {published} denied states left the outbox"
        assert peak_mb < support.DAEMON_RSS_LIMIT_MB

        doctor_config = tmp_path / "doctor.toml"
        doctor_config.write_text('[daemon]\ndevice_id = "devx"\nsources = ["simulate"]\n'
                                 f'[mqtt]\nbroker = "mqtt://dev1:{PASSWORDS["dev1"]}@{acl_broker.host}:{acl_broker.port}"\n')
        doctor = subprocess.run([sys.executable, "-m", "edge", "doctor", "--config", str(doctor_config),
                                 "--state-dir", str(state_dir)], capture_output=True, text=True, timeout=60,
                                cwd=REPO_ROOT / "tests")
        report = [ln for ln in doctor.stdout.splitlines() if "refused emotion-edge/devx/state" in ln]
        assert len(report) == 1 and report[0].startswith("FAIL") and "'dev1'" in report[0], doctor.stdout
        assert PASSWORDS["dev1"] not in doctor.stdout + doctor.stderr

        # the account fixed (username = device id): every kept state arrives, none twice over
        dashboard = harness.StateCollector(acl_broker.host, acl_broker.port, "devx", username="dashboard",
                                           password=PASSWORDS["dashboard"], client_id="dashboard")
        right = harness.DaemonProcess(daemon_args(acl_broker, "devx", state_dir), tmp_path, name="right-user")
        try:
            assert dashboard.wait_for(lambda c: set(range(published)) <= set(c.seqs()), 30), \
                f"missing {harness.missing_seqs(dashboard.seqs(), 0, published - 1)[:20]}\n{right.stderr()[-2000:]}"
            right.terminate()
            assert right.wait(20) == 0
        finally:
            right.close()
            dashboard.close()
        assert not harness.conflicting_seqs(dashboard.raw_states())
        assert not (state_dir / "mqtt-denied-devx.json").exists(), "the refusal record outlived the fix"


def test_mqtt_311_stays_available_for_old_brokers(acl_broker, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[mqtt]\nprotocol = "3.1.1"\n')
    dashboard = harness.StateCollector(acl_broker.host, acl_broker.port, "devx", username="dashboard",
                                       password=PASSWORDS["dashboard"], persistent=False)
    daemon = harness.DaemonProcess(["--config", str(config), *daemon_args(acl_broker, "devx", tmp_path / "s")],
                                   tmp_path)
    try:
        with support.bounded(40):
            assert dashboard.wait_for(lambda c: len(c.seqs()) >= 5, 30), daemon.stderr()[-2000:]
            daemon.terminate()
            assert daemon.wait(20) == 0
    finally:
        daemon.close()
        dashboard.close()
    assert "MQTT 3.1.1" in daemon.stderr()


# -- item 2: the broker killed -9 with the shipped persistence settings --------------------------

def test_the_shipped_broker_config_loses_no_state_when_the_broker_is_killed(tmp_path):
    kills = 4
    broker = harness.PersistentMosquitto(
        tmp_path / "broker", extra=shipped_lines(TLS_CONF, ("persistence", "autosave_interval", "autosave_on_changes")))
    subscriber_id = f"dashboard-{broker.port}"
    state_dir = tmp_path / "state"
    daemon = None
    try:
        with support.bounded(75):
            # a persistent QoS 1 subscriber that is away while the broker crashes
            harness.StateCollector(broker.host, broker.port, "dev9", client_id=subscriber_id).close()
            daemon = harness.DaemonProcess(["--source", "simulate:duration=3600,seed=9", "--speed", "30",
                                            "--device-id", "dev9", "--broker", broker.url,
                                            "--state-dir", str(state_dir)], tmp_path)
            for _ in range(kills):
                time.sleep(1.5)
                broker._proc.kill()  # SIGKILL: no chance to save on the way out
                broker._proc.wait(10)
                broker._proc = None
                logged_before_restart = len(daemon.stderr())
                broker.restart()
            # back on the last broker before the stop, however loaded the machine (reconnects back off)
            reconnected = harness.wait_until(
                lambda: "mqtt: connected to" in daemon.stderr()[logged_before_restart:], 30)
            assert reconnected, daemon.stderr()[-2000:]
            time.sleep(1.5)
            daemon.terminate()
            assert daemon.wait(30) == 0, daemon.stderr()[-2000:]
            sent = int(re.findall(r"stopped: (\d+) states published", daemon.stderr())[-1])
            assert harness.outbox_depth(state_dir, "dev9") == 0, "the daemon could not deliver before it stopped"
            collector = harness.StateCollector(broker.host, broker.port, "dev9", client_id=subscriber_id)
            try:
                collector.wait_for(lambda c: set(range(sent)) <= set(c.seqs()), 15)
            finally:
                collector.close()
    finally:
        if daemon is not None:
            daemon.close()
        broker.stop()
    seqs = collector.seqs()
    lost = harness.missing_seqs(seqs, 0, sent - 1)
    print(f"FIGURES broker kill -9 x{kills}: {sent} sent, {len(lost)} lost, {len(seqs) - len(set(seqs))} duplicated")
    assert not lost, f"{len(lost)} of {sent} states lost over {kills} broker kills: {lost[:20]}"
    assert not harness.conflicting_seqs(collector.raw_states())


# -- item 18: client-id take-over ------------------------------------------------------------------

def test_another_account_cannot_take_over_a_devices_client_id(acl_broker, tmp_path):
    import paho.mqtt.client as mqtt

    dashboard = harness.StateCollector(acl_broker.host, acl_broker.port, "dev1", username="dashboard",
                                       password=PASSWORDS["dashboard"], persistent=False)
    daemon = harness.DaemonProcess(daemon_args(acl_broker, "dev1", tmp_path / "state", device="dev1"), tmp_path)
    try:
        with support.bounded(45):
            assert dashboard.wait_for(lambda c: len(c.seqs()) >= 3, 30), daemon.stderr()[-2000:]
            for attempt in range(5):  # "devx" connects under the device's client id
                intruder = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                       client_id="emotion-edge-dev1", protocol=mqtt.MQTTv311)
                intruder.username_pw_set("devx", PASSWORDS["devx"])
                intruder.connect(acl_broker.host, acl_broker.port)
                intruder.loop_start()
                harness.wait_until(intruder.is_connected, 5)
                time.sleep(0.3)
                intruder.disconnect()
                intruder.loop_stop()
            time.sleep(1.0)
            daemon.terminate()
            assert daemon.wait(20) == 0
    finally:
        daemon.close()
        dashboard.close()
    err = daemon.stderr()
    connects = support.log_lines(err, "mqtt: connected to")
    assert len(connects) == 1, f"the device was knocked off {len(connects) - 1} times:\n{err[-3000:]}"
    assert dashboard.statuses().count("offline") <= 1  # only the daemon's own, at its stop
