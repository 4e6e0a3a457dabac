"""Home Assistant MQTT discovery, through a real broker: what the daemon leaves retained under
homeassistant/ must be what HA's MQTT discovery documents, and every value_template must render
on real states (a null dimension as HA's "None" = unknown, never a crash or a 0)."""

from __future__ import annotations

import json
import re

import pytest

from conftest import run_cli
from daemon_harness import StateCollector, wait_until
from edge.homeassistant import discovery_configs, node_id, state_labels

DEVICE = "ha-wearable"
TOPIC = re.compile(r"^homeassistant/(sensor|binary_sensor)/([a-zA-Z0-9_-]+)/([a-zA-Z0-9_-]+)/config$")
# The keys and types HA's MQTT discovery documents for what we use (sensor, binary_sensor).
STRING_KEYS = ("name", "unique_id", "state_topic", "value_template", "availability_topic",
               "payload_available", "payload_not_available")
SENSOR_OPTIONAL = {"state_class": {"measurement"}, "device_class": {"enum"},
                   "entity_category": {"diagnostic"}}


def retained(collector: StateCollector) -> dict[str, bytes]:
    with collector._lock:
        return {t: p for t, p, r in collector.messages if t.startswith("homeassistant/")}


def check_config(topic: str, config: dict) -> None:
    match = TOPIC.match(topic)
    assert match, topic
    component = match.group(1)
    for key in STRING_KEYS:
        assert isinstance(config.get(key), str) and config[key], (topic, key)
    assert config["state_topic"] == f"emotion-edge/{DEVICE}/state"
    assert config["availability_topic"] == f"emotion-edge/{DEVICE}/status"
    assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
    device = config["device"]
    assert isinstance(device["identifiers"], list) and device["identifiers"] == [node_id(DEVICE)]
    assert all(isinstance(device[k], str) for k in ("name", "manufacturer", "model", "sw_version"))
    for key, allowed in SENSOR_OPTIONAL.items():
        if key in config:
            assert component == "sensor" and config[key] in allowed, (topic, key)
    if config.get("device_class") == "enum":
        assert isinstance(config["options"], list) and config["options"] and "state_class" not in config
    if component == "binary_sensor":
        assert (config["payload_on"], config["payload_off"]) == ("ON", "OFF")


def render(template: str, state: dict) -> str:
    """Render as HA does: Jinja2, the payload parsed into value_json, the result as a string."""
    jinja2 = pytest.importorskip("jinja2")
    return str(jinja2.Environment().from_string(template).render(value_json=state, value=json.dumps(state)))


def test_run_with_homeassistant_leaves_discovery_configs_that_ha_accepts(mqtt_broker, tmp_path):
    collector = StateCollector(mqtt_broker.host, mqtt_broker.port, topic="#")
    try:
        proc = run_cli("run", "--homeassistant", "--source", "simulate:duration=120,seed=3", "--speed", "max",
                       "--broker", mqtt_broker.url, "--device-id", DEVICE,
                       "--state-dir", str(tmp_path / "state"), timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert wait_until(lambda: len(collector.states()) > 0 and "offline" in collector.statuses(), 15)
        configs = retained(collector)
        states = collector.states()
    finally:
        collector.close()
    expected = discovery_configs(DEVICE, topic_prefix="emotion-edge", sw_version="x")
    assert set(configs) == set(expected)  # every entity announced, nothing else
    parsed = {topic: json.loads(payload) for topic, payload in configs.items()}
    for topic, config in parsed.items():
        check_config(topic, config)
    unique_ids = [c["unique_id"] for c in parsed.values()]
    assert len(set(unique_ids)) == len(unique_ids)
    components = {TOPIC.match(t).group(1) for t in parsed}
    assert components == {"sensor", "binary_sensor"}

    # every template renders on every real state; numbers parse as numbers or are "None" (unknown)
    label_config = next(c for c in parsed.values() if c["unique_id"].endswith("_label"))
    # the schema's label enum (schema 2), so HA shows an enum sensor whose options cover every state
    assert label_config["device_class"] == "enum" and label_config["options"] == state_labels()
    assert {"uncertain", "stressed", "calm", "neutral"} <= set(label_config["options"])
    for state in states:
        for config in parsed.values():
            value = render(config["value_template"], state)
            if config["unique_id"].endswith("_label"):
                assert value in label_config["options"], value
            elif config["unique_id"].endswith("_stressed"):
                assert value == ("ON" if state["label"] == "stressed" else "OFF")
            elif value != "None":
                assert 0.0 <= abs(float(value)) <= 1.0, (config["unique_id"], value)


def test_null_dimensions_and_missing_modalities_render_as_unknown():
    configs = discovery_configs(DEVICE, topic_prefix="emotion-edge")
    state = {"valence": None, "arousal": 0.4, "stress": 0.7, "confidence": 0.5, "label": "stressed",
             "modalities": {"eda": {"quality": 0.9}}}
    by_id = {c["unique_id"].removeprefix(node_id(DEVICE) + "_"): c["value_template"] for c in configs.values()}
    assert render(by_id["valence"], state) == "None"  # HA: unknown, not 0
    assert render(by_id["arousal"], state) == "0.4"
    assert render(by_id["eda_quality"], state) == "0.9"
    assert render(by_id["face_quality"], state) == "None"  # face missing from this state
    assert render(by_id["stressed"], state) == "ON"
    assert render(by_id["label"], state) == "stressed"


def test_homeassistant_remove_clears_the_retained_configs(mqtt_broker, tmp_path):
    url = mqtt_broker.url
    run = run_cli("run", "--homeassistant", "--source", "simulate:duration=20", "--speed", "max", "--broker", url,
                  "--device-id", DEVICE, "--state-dir", str(tmp_path / "state"), timeout=120)
    assert run.returncode == 0, run.stderr
    before = StateCollector(mqtt_broker.host, mqtt_broker.port, topic="homeassistant/#", persistent=False)
    try:
        assert wait_until(lambda: len(retained(before)) == len(discovery_configs(DEVICE, topic_prefix="emotion-edge")), 10)
    finally:
        before.close()
    proc = run_cli("homeassistant", "remove", "--broker", url, "--device-id", DEVICE, timeout=60)
    assert proc.returncode == 0 and "removed" in proc.stdout, proc.stderr
    after = StateCollector(mqtt_broker.host, mqtt_broker.port, topic="homeassistant/#", persistent=False)
    try:
        wait_until(lambda: False, 1.0)  # a retained message would arrive right after SUBACK
        assert retained(after) == {}
    finally:
        after.close()


def test_remove_refuses_plaintext_to_a_remote_broker_in_one_line():
    proc = run_cli("homeassistant", "remove", "--broker", "mqtt://192.0.2.1:1883", timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "--allow-plaintext-remote" in lines[0], proc.stderr
