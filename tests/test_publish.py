"""The state publisher against real brokers (mosquitto where installed, and the embedded broker):
seq order and durability, outages, retained status and Last Will (kill -9), schema, URL checks."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from conftest import port_open, wait_until
from edge.errors import ConfigError
from edge.publish import BrokerAddress, StatePublisher, parse_broker_url, validate_state

DEVICE = "wrist-01"


def make_state(i: int) -> dict:
    """A complete state as the fusion stage makes it (before seq/device_id are assigned)."""
    now = 1_760_000_000.0 + i
    return {
        "ts": now,
        "valence": round(0.5 - 0.01 * i, 3),
        "arousal": -0.25,
        "stress": 0.4,
        "valence_confidence": 0.5,
        "arousal_confidence": 0.6,
        "stress_confidence": 0.8,
        "label": "calm",
        "label_confidence": 0.45,
        "confidence": 0.7,
        "modalities": {
            "eda": {"quality": 0.9, "weight": 0.6, "ts": now, "outputs": {"stress": 0.42}},
            "face": {
                "quality": 0.8,
                "weight": 0.4,
                "ts": now,
                "outputs": {
                    "label": "happy",
                    "probs": {"happy": 0.7, "neutral": 0.3},
                    "valence": 0.6,
                    "arousal": 0.2,
                },
            },
        },
        "missing": ["eeg"],
        "missing_reasons": {"eeg": "no headset configured"},
        "models": {"eda": "1.0.0", "face": "1.0.0"},
        "calibrated": False,
        "schema_version": 2,
    }


class Subscriber:
    """A paho subscriber that records (topic, payload, retain) and can wait for a condition."""

    def __init__(self, url: str, topic_filter: str = f"emotion-edge/{DEVICE}/#") -> None:
        address = parse_broker_url(url)
        self.messages: list[tuple[str, bytes, bool]] = []
        self.cond = threading.Condition()
        subscribed = threading.Event()
        self.c = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(topic_filter, 1)
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect(address.host, address.port)
        self.c.loop_start()
        assert subscribed.wait(5), "test subscriber got no SUBACK"

    def _on_message(self, client, userdata, msg) -> None:
        with self.cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.cond.notify_all()

    def states(self) -> list[dict]:
        with self.cond:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith("/state")]

    def statuses(self) -> list[tuple[bytes, bool]]:
        with self.cond:
            return [(p, r) for t, p, r in self.messages if t.endswith("/status")]

    def wait(self, predicate, timeout_s: float = 15.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self), timeout_s)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture(params=["mqtt_broker", "embedded_broker"])
def broker(request):
    """Each publisher test runs against mosquitto (if installed) and the embedded broker."""
    return request.getfixturevalue(request.param)


# ---------------------------------------------------------------------------------------------
# URLs and configuration errors


@pytest.mark.parametrize(
    "url, expected",
    [
        ("mqtt://127.0.0.1", BrokerAddress("mqtt", "127.0.0.1", 1883)),
        ("mqtt://broker.local:1884", BrokerAddress("mqtt", "broker.local", 1884)),
        ("mqtts://broker.example", BrokerAddress("mqtts", "broker.example", 8883, tls=True)),
        (
            "mqtts://ann:p%40ss@b.example:9000/",
            BrokerAddress("mqtts", "b.example", 9000, "ann", "p@ss", True),
        ),
        ("MQTT://[::1]:1883", BrokerAddress("mqtt", "::1", 1883)),
    ],
)
def test_parse_broker_url(url, expected):
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(
    "url, says",
    [
        ("http://broker:1883", "scheme"),
        ("mqtt://", "no host"),
        ("mqtt://host:99999", "port"),
        ("mqtt://host:abc", "port"),
        ("mqtt://host/topic", "path"),
        ("broker:1883", "scheme"),
        ("mqtt://ann:hunter2@host:0", "port 0"),
    ],
)
def test_bad_broker_url_is_a_config_error_naming_it_without_the_password(url, says):
    with pytest.raises(ConfigError) as info:
        parse_broker_url(url)
    message = str(info.value)
    assert says in message and "hunter2" not in message
    assert "host" in message or "broker" in message or "mqtt://" in message


def test_address_never_shows_the_password():
    address = parse_broker_url("mqtts://ann:hunter2@b.example")
    assert "hunter2" not in repr(address) and "hunter2" not in str(address)
    assert str(address) == "mqtts://ann@b.example:8883"


def test_plaintext_to_a_remote_host_is_refused_unless_allowed(tmp_path):
    with pytest.raises(ConfigError, match="plaintext MQTT to a remote host"):
        StatePublisher("mqtt://10.1.2.3:1883", DEVICE, state_dir=tmp_path)
    for url in (
        "mqtt://localhost:1883",
        "mqtt://127.0.0.2",
        "mqtt://[::1]:1883",
        "mqtts://10.1.2.3",
    ):
        StatePublisher(url, DEVICE, state_dir=tmp_path).stop()
    StatePublisher(
        "mqtt://10.1.2.3", DEVICE, state_dir=tmp_path, allow_plaintext_remote=True
    ).stop()


def test_tls_files_are_checked_up_front(tmp_path):
    with pytest.raises(ConfigError, match="CA file .*missing-ca.pem: not found"):
        StatePublisher(
            "mqtts://b.example", DEVICE, state_dir=tmp_path, ca_file=tmp_path / "missing-ca.pem"
        )


@pytest.mark.parametrize("device_id", ["", "a/b", "dev+", "#"])
def test_device_ids_that_would_break_topics_are_refused(tmp_path, device_id):
    with pytest.raises(ConfigError, match="device id"):
        StatePublisher("mqtt://127.0.0.1", device_id, state_dir=tmp_path)


def test_cli_bad_broker_url_is_one_line_and_exit_2():
    from conftest import run_cli

    proc = run_cli("listen", "--broker", "http://nowhere:1883", "--count", "1", timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "broker URL" in lines[0] and "http://nowhere:1883" in lines[0]


# ---------------------------------------------------------------------------------------------
# publishing against real brokers


def test_states_arrive_in_seq_order_with_retained_online_then_offline(broker, tmp_path):
    sub = Subscriber(broker.url)
    pub = StatePublisher(broker.url, DEVICE, state_dir=tmp_path)
    pub.start()
    seqs = [pub.publish_state(make_state(i)) for i in range(10)]
    assert seqs == list(range(10))
    assert sub.wait(lambda s: len(s.states()) >= 10)
    states = sub.states()
    assert [s["seq"] for s in states] == seqs
    assert all(s["device_id"] == DEVICE for s in states)
    assert states[3]["valence"] == make_state(3)["valence"]
    assert wait_until(lambda: pub.stats()["outbox_depth"] == 0)
    stats = pub.stats()
    assert (
        stats["acked"] == 10 and stats["connected"] and stats["last_publish_latency_ms"] is not None
    )
    assert sub.statuses()[0][0] == b"online"
    pub.stop()
    assert sub.wait(lambda s: s.statuses()[-1][0] == b"offline")
    later = Subscriber(broker.url)  # retained: a newcomer learns the device is offline
    assert later.wait(lambda s: s.statuses() == [(b"offline", True)], 5)
    sub.close()
    later.close()


def test_published_states_validate_against_the_shipped_schema(broker, tmp_path):
    sub = Subscriber(broker.url)
    with StatePublisher(broker.url, DEVICE, state_dir=tmp_path) as pub:
        for i in range(3):
            pub.publish_state(make_state(i))
        assert sub.wait(lambda s: len(s.states()) == 3)
    for state in sub.states():
        assert validate_state(state) == []
    sub.close()


def test_schema_rejects_out_of_range_values_typos_and_unexplained_missing_modalities():
    good = {**make_state(0), "seq": 0, "device_id": DEVICE}
    assert validate_state(good) == []
    assert validate_state({**good, "future_key": 1}) == []  # forward compatible at the top level
    bad_stress = {**good, "stress": 1.5}
    assert any("stress" in p for p in validate_state(bad_stress))
    typo = json.loads(json.dumps(good))
    typo["modalities"]["eda"]["qualty"] = 0.9
    assert any("qualty" in p for p in validate_state(typo))
    unexplained = {**good, "missing": ["eeg", "cardiac"]}
    assert any("cardiac" in p for p in validate_state(unexplained))
    bad_label = json.loads(json.dumps(good))
    bad_label["modalities"]["face"]["outputs"]["label"] = "joy"
    assert validate_state(bad_label)
    no_seq = {k: v for k, v in good.items() if k != "seq"}
    assert any("seq" in p for p in validate_state(no_seq))


def test_schema_2_allows_null_dimensions_only_with_zero_confidence_and_a_fitting_label():
    good = {**make_state(0), "seq": 0, "device_id": DEVICE}
    physiology_only = {**good, "valence": None, "valence_confidence": 0.0, "label": "stressed"}
    assert validate_state(physiology_only) == []
    assert validate_state({**physiology_only, "label": "calm"}) == []
    assert validate_state({**physiology_only, "label": "uncertain"}) == []
    for needs_valence in ("sad", "happy", "tense", "excited"):  # never without a valence source
        assert validate_state({**physiology_only, "label": needs_valence}), needs_valence
    assert validate_state({**physiology_only, "valence_confidence": 0.3})  # null is not a guess with confidence
    assert validate_state({**good, "valence": 0.0, "valence_confidence": 0.0}) == []  # a measured 0 is a value
    assert validate_state({**good, "stress": None, "stress_confidence": 0.0, "label": "calm"}) == []
    assert validate_state({**good, "label": "joyful"})  # label is an enum
    assert validate_state({**good, "label_confidence": 1.2})
    assert validate_state({**good, "schema_version": 1})
    assert any("label_confidence" in p for p in validate_state({k: v for k, v in good.items() if k != "label_confidence"}))


def test_fused_states_of_every_modality_subset_validate_after_a_real_broker(broker, tmp_path):
    """States as edge.fusion makes them (incl. null valence from physiology only), taken off the broker."""
    import itertools

    from edge.fusion import FusionParams, LabelHolder, ModalityEstimate, Smoother, fuse
    from edge.stream import MODALITIES

    def estimate(m: str, t: float) -> ModalityEstimate:
        if m == "face":
            probs = {"happy": 0.1, "neutral": 0.2, "angry": 0.6, "sad": 0.1}
            return ModalityEstimate("face", t, {"label": "angry", "probs": probs}, confidence=0.6, quality=0.9)
        if m == "eeg":
            return ModalityEstimate("eeg", t, {"valence": -0.2, "arousal": 0.4}, valence=-0.2, arousal=0.4,
                                    confidence=0.7, quality=0.8)
        return ModalityEstimate(m, t, {"stress": 0.8}, stress=0.8, confidence=0.68, quality=0.95)

    subsets = [c for r in range(1, len(MODALITIES) + 1) for c in itertools.combinations(MODALITIES, r)]
    expected = []
    sub = Subscriber(broker.url)
    with StatePublisher(broker.url, DEVICE, state_dir=tmp_path) as pub:
        for i, subset in enumerate(subsets):
            params = FusionParams()
            state = LabelHolder(params)(Smoother(10.0)(fuse({m: estimate(m, 100.0 + i) for m in subset}, 100.0 + i, params)))
            payload = state.to_payload({m: "not worn" for m in MODALITIES if m not in subset}, {m: "1" for m in subset}, False)
            pub.publish_state(payload)
            expected.append(subset)
        assert sub.wait(lambda s: len(s.states()) == len(subsets), 10)
    states = sub.states()
    sub.close()
    for subset, state in zip(expected, states):
        assert validate_state(state) == [], (subset, state)
        assert state["schema_version"] == 2
        has_valence_source = bool({"face", "eeg"} & set(subset))
        assert (state["valence"] is None) == (not has_valence_source), subset
        if not has_valence_source:
            assert state["valence_confidence"] == 0 and state["label"] in ("stressed", "calm", "neutral", "uncertain")


def test_seq_continues_across_a_new_publisher_on_the_same_state_dir(broker, tmp_path):
    sub = Subscriber(broker.url)
    # Each publisher is connected before it is closed: one stopped while still connecting (its flush
    # gives a first connection at most 1 s) keeps its states in the outbox for the next start, and
    # under load the second one's could then be left there when the test ends.
    with StatePublisher(broker.url, DEVICE, state_dir=tmp_path) as first:
        assert first.wait_connected(10)
        assert [first.publish_state(make_state(i)) for i in range(3)] == [0, 1, 2]
    with StatePublisher(broker.url, DEVICE, state_dir=tmp_path) as second:
        assert second.wait_connected(10)
        assert [second.publish_state(make_state(i)) for i in range(2)] == [3, 4]
    # QoS 1 is at least once: a state whose PUBACK came after the first publisher closed is sent
    # again by the second, and subscribers drop a repeat by its seq (docs/mqtt.md). What must hold:
    # every seq arrives, the new publisher's seqs follow the old one's, and a repeat is the same state.
    assert sub.wait(lambda s: {x["seq"] for x in s.states()} == {0, 1, 2, 3, 4}), [x["seq"] for x in sub.states()]
    first_seen: dict[int, dict] = {}
    for state in sub.states():
        assert first_seen.setdefault(state["seq"], state) == state
    assert list(first_seen) == [0, 1, 2, 3, 4]
    sub.close()


def test_states_published_while_the_broker_is_down_arrive_in_order_after_restart(
    broker, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="edge.publish")
    sub = Subscriber(broker.url)
    pub = StatePublisher(broker.url, DEVICE, state_dir=tmp_path)
    pub.start()
    for i in range(5):
        pub.publish_state(make_state(i))
    assert sub.wait(lambda s: len(s.states()) == 5)
    assert wait_until(lambda: pub.stats()["outbox_depth"] == 0)
    sub.close()
    broker.stop()
    assert wait_until(lambda: not pub.connected, 10)
    for i in range(5, 12):
        pub.publish_state(make_state(i))  # never blocks on the missing broker
    assert pub.stats()["outbox_depth"] == 7
    time.sleep(1.3)  # let the publisher fail one reconnect, so its next try is ~2 s away
    broker.restart()
    again = Subscriber(broker.url)  # subscribed before the publisher is back
    assert again.wait(lambda s: len(s.states()) >= 7, 30)
    assert [s["seq"] for s in again.states()] == list(range(5, 12))
    assert wait_until(lambda: pub.stats()["outbox_depth"] == 0)
    pub.stop()
    text = caplog.text
    assert "unreachable" in text and "states kept in outbox" in text
    assert text.count(f"mqtt: connected to {broker.host}:{broker.port}") == 2
    again.close()


def test_stop_with_the_broker_down_keeps_states_for_the_next_run(broker, tmp_path):
    broker.stop()
    pub = StatePublisher(broker.url, DEVICE, state_dir=tmp_path)
    pub.start()
    for i in range(3):
        pub.publish_state(make_state(i))
    started = time.monotonic()
    pub.stop(timeout_s=5.0)
    assert (
        time.monotonic() - started < 2.5
    )  # does not wait out the timeout for a broker that is down
    broker.restart()
    sub = Subscriber(broker.url)
    with StatePublisher(broker.url, DEVICE, state_dir=tmp_path) as pub2:
        assert pub2.publish_state(make_state(3)) == 3
        assert sub.wait(lambda s: len(s.states()) == 4)
    assert [s["seq"] for s in sub.states()] == [0, 1, 2, 3]
    sub.close()


def test_modality_messages_go_to_their_topic_while_connected(broker, tmp_path):
    sub = Subscriber(broker.url)
    with StatePublisher(broker.url, DEVICE, state_dir=tmp_path) as pub:
        assert pub.wait_connected(10)
        assert pub.publish_modality(
            "eda",
            {
                "seq": 0,
                "ts": 1.0,
                "quality": 0.9,
                "outputs": {"stress": 0.3},
                "model_version": "1.0.0",
            },
        )
        assert sub.wait(lambda s: any("/modality/" in t for t, _, _ in s.messages))
    topic, payload, _ = next(m for m in sub.messages if "/modality/" in m[0])
    assert topic == f"emotion-edge/{DEVICE}/modality/eda"
    assert json.loads(payload)["modality"] == "eda" and json.loads(payload)["outputs"] == {
        "stress": 0.3
    }
    sub.close()


def test_credentials_work_and_the_password_is_never_logged(embedded_broker, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    url = f"mqtt://edge-user:hunter2@127.0.0.1:{embedded_broker.port}"
    sub = Subscriber(embedded_broker.url)
    with StatePublisher(url, DEVICE, state_dir=tmp_path) as pub:
        pub.publish_state(make_state(0))
        assert sub.wait(lambda s: len(s.states()) == 1)
    assert "hunter2" not in caplog.text
    assert "edge-user" in caplog.text  # the user is shown, so an operator can tell which one
    sub.close()


def test_nan_in_a_state_is_refused_before_it_is_stored(tmp_path):
    pub = StatePublisher("mqtt://127.0.0.1:9", DEVICE, state_dir=tmp_path)
    with pytest.raises(ValueError, match="NaN"):
        pub.publish_state({**make_state(0), "stress": float("nan")})
    assert pub.stats()["outbox_depth"] == 0 and pub.publish_state(make_state(0)) == 0
    pub.stop()


# ---------------------------------------------------------------------------------------------
# a publisher process killed with SIGKILL

_CHILD = """
import sys, time
from pathlib import Path
from edge.publish import StatePublisher
url, state_dir, first, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
states = __import__("json").loads(sys.argv[5])
pub = StatePublisher(url, "wrist-01", state_dir=Path(state_dir))
pub.start()
for i in range(count):
    print("seq", pub.publish_state(states[i]), flush=True)
print("published", flush=True)
sys.stdin.readline()  # the test says when to stop (or kills us)
pub.stop()
print("stopped", flush=True)
"""


def _spawn(url: str, state_dir: Path, first: int, count: int) -> subprocess.Popen:
    states = json.dumps([make_state(first + i) for i in range(count)])
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, url, str(state_dir), str(first), str(count), states],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seqs = []
    for line in proc.stdout:
        if line.startswith("seq "):
            seqs.append(int(line.split()[1]))
        if line.strip() == "published":
            break
    else:
        raise AssertionError(f"publisher child died: {proc.stderr.read()}")
    proc.seqs = seqs
    return proc


def test_kill_9_delivers_the_will_and_a_restarted_process_delivers_pending_rows(broker, tmp_path):
    sub = Subscriber(broker.url)
    child = _spawn(broker.url, tmp_path, 0, 3)
    assert sub.wait(lambda s: len(s.states()) == 3 and (b"online", False) in s.statuses())
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert sub.wait(lambda s: s.statuses()[-1][0] == b"offline")  # the Last Will
    sub.close()

    broker.stop()  # the next run publishes into the outbox only, and is killed too
    child = _spawn(broker.url, tmp_path, 3, 4)
    assert child.seqs == [3, 4, 5, 6]
    child.send_signal(signal.SIGKILL)
    child.wait(10)

    broker.restart()
    sub = Subscriber(broker.url)
    child = _spawn(broker.url, tmp_path, 7, 1)
    assert child.seqs == [7]
    assert sub.wait(lambda s: 7 in [state["seq"] for state in s.states()], 30)
    seqs = [s["seq"] for s in sub.states()]
    # A row whose PUBACK had not been recorded when the process died is sent again: subscribers
    # see it twice and drop it by seq (all seqs <= 2 were seen before the kill).
    assert seqs == sorted(seqs) and set(seqs) <= {0, 1, 2, 3, 4, 5, 6, 7}
    assert [seq for seq in seqs if seq > 2] == [3, 4, 5, 6, 7]
    child.stdin.write("\n")
    child.stdin.flush()
    assert child.wait(15) == 0
    assert sub.wait(lambda s: s.statuses()[-1][0] == b"offline")
    assert [p for p, _ in sub.statuses()][:1] == [b"online"]
    sub.close()


# ---------------------------------------------------------------------------------------------
# sd_notify


def test_sd_notify_sends_ready_to_the_notify_socket(tmp_path):
    from edge import sdnotify

    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(2)
        assert sdnotify.notify("READY=1", "STATUS=publishing", env={"NOTIFY_SOCKET": str(path)})
        assert server.recv(100) == b"READY=1\nSTATUS=publishing"
    assert sdnotify.notify("READY=1", env={}) is False
    assert (
        sdnotify.watchdog_interval_s(
            {"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}
        )
        == 5.0
    )


# ---------------------------------------------------------------------------------------------
# TLS (mqtts://) against mosquitto with a CA made for the test


def _make_tls_files(folder: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 (openssl CLI)."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=emotion-edge test CA",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    )
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "other.key",
        "-out",
        "other-ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=some other CA",
    )
    return {name: folder / name for name in ("ca.pem", "server.pem", "server.key", "other-ca.pem")}


def test_mqtts_delivers_with_the_right_ca_and_refuses_a_server_it_cannot_verify(tmp_path, caplog):
    import shutil

    from conftest import MOSQUITTO, free_port

    if MOSQUITTO is None or shutil.which("openssl") is None:
        pytest.skip("needs mosquitto and openssl")
    caplog.set_level(logging.INFO, logger="edge.publish")
    files = _make_tls_files(tmp_path)
    port = free_port()
    conf = tmp_path / "tls.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\ncafile {files['ca.pem']}\ncertfile {files['server.pem']}\n"
        f"keyfile {files['server.key']}\nallow_anonymous true\npersistence false\n"
        # as root mosquitto would switch to its own user, who cannot read pytest's tmp dir
        + ("user root\n" if os.geteuid() == 0 else "")
    )
    broker = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert wait_until(lambda: port_open(port), 10)
        url = f"mqtts://127.0.0.1:{port}"
        got: list[bytes] = []
        sub = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311
        )
        sub.tls_set(ca_certs=str(files["ca.pem"]))
        subscribed = threading.Event()
        sub.on_connect = lambda c, u, f, rc, p: c.subscribe(f"emotion-edge/{DEVICE}/state", 1)
        sub.on_subscribe = lambda *a: subscribed.set()
        sub.on_message = lambda c, u, m: got.append(bytes(m.payload))
        sub.connect("127.0.0.1", port)
        sub.loop_start()
        assert subscribed.wait(10)
        with StatePublisher(
            url, DEVICE, state_dir=tmp_path / "good", ca_file=files["ca.pem"]
        ) as pub:
            pub.publish_state(make_state(0))
            assert wait_until(lambda: len(got) == 1)
        assert json.loads(got[0])["seq"] == 0
        wrong = StatePublisher(
            url, DEVICE + "-b", state_dir=tmp_path / "bad", ca_file=files["other-ca.pem"]
        )
        wrong.start()
        wrong.publish_state(make_state(0))
        assert wait_until(lambda: "TLS handshake" in caplog.text, 10)
        assert (
            not wrong.connected and wrong.stats()["outbox_depth"] == 1
        )  # kept, not sent in the clear
        wrong.stop(timeout_s=1)
        sub.disconnect()
        sub.loop_stop()
    finally:
        broker.terminate()
        broker.wait(10)


def test_tls_files_that_are_not_certificates_are_a_config_error_at_start(tmp_path):
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    pub = StatePublisher("mqtts://127.0.0.1:8883", DEVICE, state_dir=tmp_path, ca_file=bogus)
    with pytest.raises(ConfigError, match="ca.pem"):
        pub.start()
    pub.stop()
