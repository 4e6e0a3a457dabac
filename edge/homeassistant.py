"""Home Assistant MQTT discovery: the device's states appear in HA without any YAML.

HA's MQTT integration builds entities from retained JSON configs on
``<discovery_prefix>/<component>/<node_id>/<object_id>/config``. We publish one HA device per
``device_id`` whose entities all read the existing state topic through a ``value_template``
(nothing new is published per state) and whose availability is the existing retained status
topic (``online``/``offline``, the daemon's Last Will). A null dimension (no modality measures
it) renders as ``None``, which HA shows as "unknown", never as 0.

The configs are retained, so HA picks them up after its own restart; ``emotion-edge
homeassistant remove`` clears them (empty retained payloads, which HA reads as "delete").
Keys follow https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery.
"""

from __future__ import annotations

import json
import re
from typing import Any

from edge import package_version
from edge.publish import MODALITY_NAMES, load_state_schema, state_topic, status_topic

DEFAULT_DISCOVERY_PREFIX = "homeassistant"
_TOPIC_ID = re.compile(r"[^a-zA-Z0-9_-]")  # HA's node_id / object_id alphabet

# (object_id, name, template expression on value_json, extra config keys)
_NUMERIC_SENSORS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("valence", "Valence", "value_json.valence", {"icon": "mdi:emoticon-outline"}),
    ("arousal", "Arousal", "value_json.arousal", {"icon": "mdi:lightning-bolt-outline"}),
    ("stress", "Stress", "value_json.stress", {"icon": "mdi:head-alert-outline"}),
    ("confidence", "Confidence", "value_json.confidence", {"icon": "mdi:check-decagram-outline"}),
)


def node_id(device_id: str) -> str:
    """The HA node id for a device: ``emotion_edge_<device id>`` in HA's topic alphabet."""
    return "emotion_edge_" + _TOPIC_ID.sub("_", device_id)


def state_labels() -> list[str]:
    """Every label a state can carry (the schema's enum), for HA's enum sensor."""
    label = load_state_schema()["properties"]["label"]
    return list(label.get("enum") or [])


def _nullable(expression: str) -> str:
    """A template that renders the value, or None (HA: unknown) when it is null or absent."""
    return f"{{{{ {expression} if {expression} is defined and {expression} is not none else None }}}}"


def discovery_configs(
    device_id: str,
    *,
    topic_prefix: str,
    discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX,
    sw_version: str = "",
    modalities: tuple[str, ...] = MODALITY_NAMES,
) -> dict[str, dict[str, Any]]:
    """Discovery topic -> config for every entity of one device."""
    node = node_id(device_id)
    common = {
        "state_topic": state_topic(topic_prefix, device_id),
        "availability_topic": status_topic(topic_prefix, device_id),
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {
            "identifiers": [node],
            "name": f"emotion-edge {device_id}",
            "manufacturer": "emotion-edge",
            "model": "on-device multimodal emotion engine",
            "sw_version": sw_version,
        },
        "origin": {"name": "emotion-edge", "sw_version": sw_version},
    }
    configs: dict[str, dict[str, Any]] = {}

    def add(component: str, object_id: str, config: dict[str, Any]) -> None:
        topic = f"{discovery_prefix}/{component}/{node}/{object_id}/config"
        configs[topic] = {**config, "unique_id": f"{node}_{object_id}", **common}

    for object_id, name, expression, extra in _NUMERIC_SENSORS:
        add("sensor", object_id, {"name": name, "value_template": _nullable(expression),
                                  "state_class": "measurement", "suggested_display_precision": 2, **extra})
    labels = state_labels()
    label_config: dict[str, Any] = {"name": "Label", "value_template": _nullable("value_json.label"),
                                    "icon": "mdi:tag-heart-outline"}
    if labels:
        label_config.update(device_class="enum", options=labels)
    add("sensor", "label", label_config)
    for modality in modalities:
        expression = f"value_json.modalities.{modality}.quality"
        add("sensor", f"{modality}_quality", {
            "name": f"{modality} signal quality",
            # a modality left out of the state (missing) has no entry: unknown, not 0
            "value_template": f"{{{{ {expression} if value_json.modalities.{modality} is defined else None }}}}",
            "state_class": "measurement", "suggested_display_precision": 2, "icon": "mdi:signal",
            "entity_category": "diagnostic",
        })
    add("binary_sensor", "stressed", {
        "name": "Stressed",
        "value_template": "{{ 'ON' if value_json.label == 'stressed' else 'OFF' }}",
        "payload_on": "ON", "payload_off": "OFF", "icon": "mdi:head-alert",
    })
    return configs


def discovery_messages(device_id: str, **kwargs: Any) -> list[tuple[str, bytes]]:
    """(topic, retained payload) pairs announcing the device to Home Assistant."""
    return [(topic, json.dumps(config, separators=(",", ":")).encode())
            for topic, config in discovery_configs(device_id, **kwargs).items()]


def removal_messages(device_id: str, **kwargs: Any) -> list[tuple[str, bytes]]:
    """(topic, empty retained payload) pairs: HA deletes each entity, the broker the retained config."""
    return [(topic, b"") for topic in discovery_configs(device_id, **kwargs)]


# -- `emotion-edge homeassistant show | remove` -------------------------------------------------

def add_arguments(parser: Any) -> None:
    sub = parser.add_subparsers(dest="ha_command", metavar="ACTION", required=True)
    for name, help_text in (("show", "print the discovery configs the daemon publishes (JSON)"),
                            ("remove", "delete this device's entities from Home Assistant "
                                       "(empty retained configs)")):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", default=None, metavar="FILE", help="daemon config (TOML) to read broker, "
                       "device id, prefixes and credentials from")
        p.add_argument("--broker", default=None, metavar="URL", help="override mqtt.broker")
        p.add_argument("--device-id", default=None, metavar="ID", help="override daemon.device_id")
        p.add_argument("--discovery-prefix", default=None, metavar="PREFIX",
                       help=f"override homeassistant.discovery_prefix (default {DEFAULT_DISCOVERY_PREFIX})")
        p.add_argument("--allow-plaintext-remote", action="store_true", default=None,
                       help="allow plaintext MQTT to a non-loopback broker (a LAN Home Assistant; "
                            "states and credentials cross the network unencrypted)")


def _settings(args: Any) -> tuple[Any, str, str]:
    """(config, device id, discovery prefix) from --config and the flags."""
    from edge.config import load_config  # noqa: PLC0415

    overrides = {key: value for key, value in (
        ("mqtt.broker", args.broker), ("daemon.device_id", args.device_id),
        ("mqtt.allow_plaintext_remote", args.allow_plaintext_remote)) if value is not None}
    config = load_config(args.config, overrides)
    ha = getattr(config, "homeassistant", None)
    prefix = args.discovery_prefix or (ha.discovery_prefix if ha else DEFAULT_DISCOVERY_PREFIX)
    return config, config.daemon.device_id, prefix


def publish_retained(config: Any, messages: list[tuple[str, bytes]], timeout_s: float = 10.0) -> None:
    """Publish retained QoS 1 messages with the daemon's broker settings; one-line error if refused."""
    import paho.mqtt.client as mqtt  # noqa: PLC0415

    from edge.config import broker_address  # noqa: PLC0415
    from edge.errors import ConfigError  # noqa: PLC0415
    from edge.publish import is_loopback_host  # noqa: PLC0415

    address = broker_address(config.mqtt)
    if not address.tls and not config.mqtt.allow_plaintext_remote and not is_loopback_host(address.host):
        raise ConfigError(f"broker {address.display}: plaintext MQTT to a remote host; use mqtts:// "
                          f"or --allow-plaintext-remote")
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"emotion-edge-ha-{config.daemon.device_id}"[:64])
    if address.username:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set(ca_certs=config.mqtt.ca_file or None, certfile=config.mqtt.cert_file or None,
                       keyfile=config.mqtt.key_file or None)
    try:
        client.connect(address.host, address.port, keepalive=int(timeout_s) + 5)
    except OSError as exc:
        raise ConfigError(f"broker {address.display}: cannot connect ({exc.strerror or exc})") from None
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1, retain=True) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=timeout_s)
            if not info.is_published():
                raise ConfigError(f"broker {address.display}: publish to {messages[0][0].rsplit('/', 3)[0]}/… "
                                  f"not acknowledged within {timeout_s:g} s")
    finally:
        client.disconnect()
        client.loop_stop()


def main(args: Any) -> int:
    config, device_id, prefix = _settings(args)
    kwargs = {"topic_prefix": config.mqtt.topic_prefix, "discovery_prefix": prefix, "sw_version": package_version(),
              "modalities": tuple(config.daemon.modalities)}
    if args.ha_command == "show":
        print(json.dumps(discovery_configs(device_id, **kwargs), indent=2))
        return 0
    messages = removal_messages(device_id, **kwargs)
    publish_retained(config, messages)
    print(f"removed {len(messages)} Home Assistant entities of device {device_id!r} "
          f"(empty retained configs under {prefix}/…/{node_id(device_id)}/)")
    return 0
