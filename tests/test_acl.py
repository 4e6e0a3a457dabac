"""The shipped mosquitto ACL (``deploy/mosquitto-acl.conf``) confines each device to its own topics.

A real mosquitto with ``allow_anonymous false``, a password file made by ``mosquitto_passwd -b``
and the ACL file exactly as shipped. Negative checks use a barrier instead of a sleep: a
message that would have been delivered is routed before a later one from the same broker
loop, so once the later message has arrived, the earlier one is known not to come.
"""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest
from conftest import REPO_ROOT, run_cli

from conftest import load_test_module  # noqa: E402

harness = load_test_module("daemon_harness")

ACL_FILE = REPO_ROOT / "deploy" / "mosquitto-acl.conf"
PASSWORDS = {"dev1": "pw-dev1", "dev2": "pw-dev2", "dashboard": "pw-dashboard"}

pytestmark = pytest.mark.skipif(harness.MOSQUITTO is None or harness.MOSQUITTO_PASSWD is None,
                                reason="needs mosquitto and mosquitto_passwd")


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory):
    if not ACL_FILE.exists():
        pytest.fail(f"{ACL_FILE} is not shipped")
    folder = tmp_path_factory.mktemp("acl")
    acl = folder / "emotion-edge.acl"
    shutil.copy(ACL_FILE, acl)
    passwd = harness.make_password_file(folder / "passwd", PASSWORDS)
    broker = harness.PersistentMosquitto(folder, anonymous=False,
                                         extra=f"password_file {passwd}\nacl_file {acl}\n")
    yield broker
    broker.stop()


class Client:
    """A paho client logged in as ``user``; keeps what it receives; ``publish`` waits for the PUBACK."""

    def __init__(self, broker, user: str | None, password: str | None = None, subscribe: tuple[str, ...] = ()):
        import paho.mqtt.client as mqtt

        self.received: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.connack = threading.Event()
        self.subacks: list[list[int]] = []
        self.refused: str | None = None
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"{user or 'anon'}-{time.monotonic_ns()}", protocol=mqtt.MQTTv311)
        if user:
            self.client.username_pw_set(user, password if password is not None else PASSWORDS[user])
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda c, u, mid, codes, p: (self.subacks.append([int(x.value) for x in codes]),
                                                               subscribed.set())
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.connack.wait(10), "no CONNACK"
        if self.refused is None:
            for topic in subscribe:
                subscribed.clear()
                self.client.subscribe(topic, qos=1)
                assert subscribed.wait(10), f"no SUBACK for {topic}"

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.refused = str(reason_code)
            client.disconnect()
        self.connack.set()

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.received.append((msg.topic, bytes(msg.payload)))

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published(), f"no PUBACK for {topic}"

    def attempt(self, topic: str, payload: bytes) -> None:
        """Publish where the ACL may deny it: mosquitto then answers with a PUBACK (MQTT 3.1.1 cannot
        say no) or, as 2.0.x does, also drops the connection. Returns once the broker has reacted."""
        info = self.client.publish(topic, payload, qos=1)
        harness.wait_until(lambda: info.is_published() or not self.client.is_connected(), 10)

    def got(self, payload: bytes) -> bool:
        with self.lock:
            return any(p == payload for _, p in self.received)

    def topics_of(self, payload: bytes) -> list[str]:
        with self.lock:
            return [t for t, p in self.received if p == payload]

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def _token(what: str) -> bytes:
    return json.dumps({"what": what, "t": time.monotonic_ns()}).encode()


def test_a_device_publishes_its_own_state_and_the_dashboard_reads_it(acl_broker):
    dashboard = Client(acl_broker, "dashboard", subscribe=("emotion-edge/#",))
    dev1 = Client(acl_broker, "dev1")
    try:
        for topic in ("emotion-edge/dev1/state", "emotion-edge/dev1/status", "emotion-edge/dev1/modality/eeg"):
            msg = _token(topic)
            dev1.publish(topic, msg)
            assert harness.wait_until(lambda: dashboard.got(msg), 10), f"dashboard did not get {topic}"
            assert dashboard.topics_of(msg) == [topic]
    finally:
        dashboard.close()
        dev1.close()


def test_a_device_cannot_write_another_devices_topics(acl_broker):
    dashboard = Client(acl_broker, "dashboard", subscribe=("emotion-edge/#",))
    dev1 = Client(acl_broker, "dev1")
    try:
        forged = []
        for topic in ("emotion-edge/dev2/state", "emotion-edge/dev2/status", "emotion-edge/dev2/modality/eda",
                      "emotion-edge/dev1/../dev2/state", "emotion-edge/other/thing", "emotion-edge/dev1"):
            msg = _token(f"forged {topic}")
            forger = Client(acl_broker, "dev1")  # a fresh connection each time: mosquitto may cut a forger off
            try:
                forger.attempt(topic, msg)
            finally:
                forger.close()
            forged.append(msg)
        barrier = _token("barrier")
        dev1.publish("emotion-edge/dev1/state", barrier)
        assert harness.wait_until(lambda: dashboard.got(barrier), 10)
        assert not any(dashboard.got(m) for m in forged), dashboard.received
    finally:
        dashboard.close()
        dev1.close()


def test_a_device_cannot_read_another_devices_topics_but_reads_its_own(acl_broker):
    dev1 = Client(acl_broker, "dev1", subscribe=("emotion-edge/dev2/#", "emotion-edge/#", "emotion-edge/dev1/#"))
    dev2 = Client(acl_broker, "dev2")
    try:
        secret = _token("dev2 state")
        dev2.publish("emotion-edge/dev2/state", secret)  # PUBACK: mosquitto has routed it
        own = _token("dev1 own")
        dev1.publish("emotion-edge/dev1/state", own)
        assert harness.wait_until(lambda: dev1.got(own), 10), "a device must read its own topics"
        assert not dev1.got(secret), dev1.received
    finally:
        dev1.close()
        dev2.close()


def test_the_dashboard_is_read_only(acl_broker):
    dev1 = Client(acl_broker, "dev1", subscribe=("emotion-edge/dev1/#",))
    dashboard = Client(acl_broker, "dashboard")
    try:
        forged = _token("dashboard forging dev1")
        dashboard.attempt("emotion-edge/dev1/state", forged)
        barrier = _token("barrier")
        dev1.publish("emotion-edge/dev1/state", barrier)
        assert harness.wait_until(lambda: dev1.got(barrier), 10)
        assert not dev1.got(forged)
    finally:
        dev1.close()
        dashboard.close()


@pytest.mark.parametrize("user, password", [(None, None), ("dev1", "wrong"), ("nobody", "pw")])
def test_anonymous_and_wrong_credentials_are_refused(acl_broker, user, password):
    client = Client(acl_broker, user, password)
    try:
        assert client.refused is not None and "authori" in client.refused.lower(), client.refused
    finally:
        client.close()


def test_the_daemon_runs_under_the_acl_with_its_device_id_as_username(acl_broker, tmp_path):
    collector = harness.StateCollector(acl_broker.host, acl_broker.port, "dev1", username="dashboard",
                                       password=PASSWORDS["dashboard"], persistent=False)
    try:
        url = f"mqtt://dev1:{PASSWORDS['dev1']}@{acl_broker.host}:{acl_broker.port}"
        proc = run_cli("run", "--source", "simulate:duration=60,streams=eeg", "--speed", "max", "--broker", url,
                       "--device-id", "dev1", "--state-dir", str(tmp_path / "state"), timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert PASSWORDS["dev1"] not in proc.stderr + proc.stdout
        assert collector.wait_for(lambda c: c.statuses()[-1:] == ["offline"], 15), collector.statuses()
        seqs = collector.seqs()
        assert seqs and seqs == list(range(len(seqs))) and harness.outbox_depth(tmp_path / "state", "dev1") == 0
        assert "online" in collector.statuses()
    finally:
        collector.close()


def test_doctor_warns_when_the_username_is_not_the_device_id(acl_broker, tmp_path):
    url = f"mqtt://dev1:{PASSWORDS['dev1']}@{acl_broker.host}:{acl_broker.port}"
    config = tmp_path / "c.toml"
    config.write_text("[daemon]\ndevice_id = 'dev2'\n")
    proc = run_cli("doctor", "--config", str(config), "--broker", url, "--source", "simulate",
                   "--state-dir", str(tmp_path), timeout=120)
    warn = [ln for ln in proc.stdout.splitlines() if ln.startswith("warn  mqtt user")]
    assert len(warn) == 1 and "'dev1'" in warn[0] and "'dev2'" in warn[0], proc.stdout
    assert PASSWORDS["dev1"] not in proc.stdout + proc.stderr


def test_a_device_id_the_acl_denies_is_named_in_one_line_and_states_stay_in_the_outbox(acl_broker, tmp_path):
    url = f"mqtt://dev1:{PASSWORDS['dev1']}@{acl_broker.host}:{acl_broker.port}"
    # real time, so the daemon reconnects (and is dropped) a few times before the source ends
    proc = run_cli("run", "--source", "simulate:duration=8,streams=eeg", "--speed", "1", "--broker", url,
                   "--device-id", "dev2", "--state-dir", str(tmp_path / "state"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    hint = [ln for ln in proc.stderr.splitlines() if "does it let user 'dev1' write emotion-edge/dev2/#" in ln]
    assert len(hint) == 1, proc.stderr[-3000:]
    assert harness.outbox_depth(tmp_path / "state", "dev2") > 0  # nothing delivered, nothing lost


def test_the_daemon_takes_its_password_from_the_environment(acl_broker, tmp_path):
    collector = harness.StateCollector(acl_broker.host, acl_broker.port, "dev1", username="dashboard",
                                       password=PASSWORDS["dashboard"], persistent=False)
    try:
        url = f"mqtt://dev1@{acl_broker.host}:{acl_broker.port}"  # no password in the URL (it would show in ps)
        proc = run_cli("run", "--source", "simulate:duration=30,streams=eeg", "--speed", "max", "--broker", url,
                       "--device-id", "dev1", "--state-dir", str(tmp_path / "state"), timeout=120,
                       env={"EMOTION_EDGE_MQTT_PASSWORD": PASSWORDS["dev1"]})
        assert proc.returncode == 0, proc.stderr
        assert collector.wait_for(lambda c: c.statuses()[-1:] == ["offline"], 15), proc.stderr
        assert collector.seqs() and harness.outbox_depth(tmp_path / "state", "dev1") == 0
    finally:
        collector.close()


def test_the_daemon_takes_username_and_password_file_from_the_config(acl_broker, tmp_path):
    secret = tmp_path / "mqtt-password"
    secret.write_text(PASSWORDS["dev1"] + "\n")
    secret.chmod(0o600)
    config = tmp_path / "c.toml"
    config.write_text(f'[mqtt]\nbroker = "mqtt://{acl_broker.host}:{acl_broker.port}"\nusername = "dev1"\n'
                      f'password_file = "{secret}"\n')
    collector = harness.StateCollector(acl_broker.host, acl_broker.port, "dev1", username="dashboard",
                                       password=PASSWORDS["dashboard"], persistent=False)
    try:
        proc = run_cli("run", "--config", str(config), "--source", "simulate:duration=30,streams=eeg", "--speed", "max",
                       "--device-id", "dev1", "--state-dir", str(tmp_path / "state"), timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert PASSWORDS["dev1"] not in proc.stderr + proc.stdout
        assert collector.wait_for(lambda c: c.statuses()[-1:] == ["offline"], 15), proc.stderr
        assert collector.seqs() and harness.outbox_depth(tmp_path / "state", "dev1") == 0
    finally:
        collector.close()


def test_only_states_status_and_model_outputs_leave_the_device(acl_broker, tmp_path):
    """No raw samples on the wire by default: every topic the daemon writes is a state, its status
    or one modality's model outputs, and no payload carries sample arrays."""
    dashboard = Client(acl_broker, "dashboard", subscribe=("#",))
    try:
        url = f"mqtt://dev1:{PASSWORDS['dev1']}@{acl_broker.host}:{acl_broker.port}"
        proc = run_cli("run", "--source", "simulate:duration=120", "--speed", "max", "--broker", url,
                       "--device-id", "dev1", "--state-dir", str(tmp_path / "state"), timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert harness.wait_until(lambda: (("emotion-edge/dev1/status", b"offline") in dashboard.received), 15)
        with dashboard.lock:
            received = list(dashboard.received)
        allowed = {"emotion-edge/dev1/state", "emotion-edge/dev1/status"} | {
            f"emotion-edge/dev1/modality/{m}" for m in ("face", "eda", "cardiac", "eeg")}
        assert {t for t, _ in received} <= allowed, sorted({t for t, _ in received} - allowed)
        largest = max(len(p) for _, p in received)
        assert largest < 4096, f"a {largest}-byte message: raw samples would be far larger than outputs"

        def longest_list(value) -> int:
            if isinstance(value, dict):
                return max((longest_list(v) for v in value.values()), default=0)
            if isinstance(value, list):
                return max([len(value)] + [longest_list(v) for v in value])
            return 0

        for topic, payload in received:
            if topic.endswith("/status"):
                continue
            body = json.loads(payload)
            assert longest_list(body) <= 8, f"{topic} carries a list of {longest_list(body)} values"
            if "/modality/" in topic:
                assert set(body) <= {"seq", "ts", "modality", "quality", "outputs", "model_version"}, body
    finally:
        dashboard.close()


def test_the_daemon_announces_itself_to_home_assistant_under_the_acl(acl_broker, tmp_path):
    """The shipped ACL lets a device write its own discovery configs (and no other device's)."""
    from edge.homeassistant import discovery_configs

    collector = harness.StateCollector(acl_broker.host, acl_broker.port, "dev1", username="dashboard",
                                       password=PASSWORDS["dashboard"], persistent=False, topic="homeassistant/#")
    dev2 = Client(acl_broker, "dev2")
    try:
        url = f"mqtt://dev1:{PASSWORDS['dev1']}@{acl_broker.host}:{acl_broker.port}"
        proc = run_cli("run", "--homeassistant", "--source", "simulate:duration=30,streams=eeg", "--speed", "max",
                       "--broker", url, "--device-id", "dev1", "--state-dir", str(tmp_path / "state"), timeout=120)
        assert proc.returncode == 0, proc.stderr
        expected = set(discovery_configs("dev1", topic_prefix="emotion-edge"))
        assert collector.wait_for(lambda c: {t for t, _, _ in c.messages} >= expected, 15)
        assert harness.outbox_depth(tmp_path / "state", "dev1") == 0
        forged = _token("forged config")
        dev2.attempt(next(iter(expected)), forged)  # another device may not overwrite dev1's entities
        time.sleep(0.5)
        assert not any(p == forged for _, p, _ in collector.messages)
    finally:
        collector.close()
        dev2.close()
