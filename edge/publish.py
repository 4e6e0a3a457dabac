"""Publishing emotion states over MQTT: broker URLs, topics, the state payload, the publisher.

Topics (prefix configurable, default ``emotion-edge``):

* ``<prefix>/<device_id>/state`` — QoS 1, not retained, one JSON object per window
  (schema: ``edge/state.schema.json``); ``seq`` increases per device and is never reused.
* ``<prefix>/<device_id>/status`` — retained ``online`` / ``offline`` (Last Will: ``offline``).
* ``<prefix>/<device_id>/modality/<name>`` — QoS 1, one modality's own outputs (not durable:
  sent only while connected).

Delivery of states: :class:`StatePublisher` stores each state in the SQLite outbox
(:mod:`edge.outbox`) before sending it and deletes it on PUBACK, so states survive broker
outages, restarts and ``kill -9``. After a crash a subscriber may see a state twice; it drops
the repeat by ``seq``.

Protocol: MQTT 5 by default, because only its PUBACK carries a reason code. A broker that denies
a publish (an ACL) answers "Not authorized" (0x87): the state stays in the outbox, one WARNING
line names the topic and the user, the refusal is recorded in ``mqtt-denied-<device>.json`` in
the state dir (``emotion-edge doctor`` reports it), and sending is retried with a backoff (5 s
doubling to 5 min) until the broker accepts. ``mqtt.protocol = "3.1.1"`` serves old brokers,
with a caveat: a 3.1.1 PUBACK cannot say no, so a state the broker denies is deleted as if it
had been delivered (mosquitto 2 also drops the connection, which the publisher reports). A
broker that refuses MQTT 5 at CONNECT (CONNACK "unsupported protocol version", as the embedded
broker and mosquitto < 1.6 do) gets 3.1.1 on the next attempt, with one INFO line.

Threads: paho's network thread only queues events (connected, disconnected, PUBACK). One
worker thread owns the in-flight bookkeeping (mid -> seq) and does all state sends and deletes,
so there is no lock shared with paho's internal locks. ``publish_state`` may be called from any
thread (the daemon's asyncio thread): it appends to the outbox and wakes the worker.

paho-mqtt is imported lazily (in :meth:`StatePublisher.start`) to keep ``import edge.publish``
light; jsonschema only inside :func:`validate_state` (a test / ``listen --validate`` helper).
"""

from __future__ import annotations

import collections
import ipaddress
import json
import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from edge.errors import ConfigError
from edge.outbox import (
    DEFAULT_MAX_AGE_S,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ROWS,
    Outbox,
    OutboxFullError,
)

log = logging.getLogger(__name__)

DEFAULT_TOPIC_PREFIX = "emotion-edge"
STATE_SCHEMA_PATH = Path(__file__).with_name("state.schema.json")
SCHEMA_VERSION = 1
MODALITY_NAMES = ("face", "eda", "cardiac", "eeg")
_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
PROTOCOLS = ("5", "3.1.1")
_UNSUPPORTED_PROTOCOL = (1, 0x84)  # CONNACK: 3.1.1 return code 1; MQTT 5 reason code 0x84
_REFUSED_V5: set[str] = set()  # host:port of brokers that refused MQTT 5 (this process)
_UNDELETED_MAX = 100_000  # acknowledged seqs kept for a retried delete (bounded)
_DENIED_RETRY_S = (5.0, 300.0)  # backoff after a denied publish: first, ceiling
# How long an acknowledged state stays in the outbox. A broker answers PUBACK before it saves
# (mosquitto with autosave_on_changes saves right after, but after): one killed in between has
# the state in no file. A state acknowledged less than this long before the connection drops is
# sent again after the reconnect; subscribers drop the repeat by seq.
BROKER_SAVE_GRACE_S = 5.0


def denial_record_path(state_dir: Path, device_id: str) -> Path:
    """Where the publisher records a broker's refusal of this device's states (doctor reads it)."""
    return Path(state_dir) / f"mqtt-denied-{device_id}.json"


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker is. ``str()`` / ``display`` never show the password."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    @property
    def display(self) -> str:
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{user}{host}:{self.port}"

    @property
    def host_port(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.display


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for messages; works on URLs that do not parse.

    Done on the raw text, before any parsing: a password holding ``/``, ``#``, ``?`` or ``[``
    makes ``urlsplit`` cut the authority short or fail, and the password would be shown whole.
    The user info runs from ``://`` to the last ``@``; its part after the first ``:`` is hidden.
    """
    scheme, sep, rest = str(url).partition("://")
    if not sep or "@" not in rest:
        return str(url)
    creds, _, host = rest.rpartition("@")
    user, colon, _ = creds.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


_redact = redact_url


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[user:pass@]host[:port]`` (port 1883) or ``mqtts://…`` (port 8883)."""
    shown = redact_url(str(url))
    _, sep, rest = str(url).strip().partition("://")
    if sep and any(ch in rest.rpartition("@")[0] for ch in "/?#[]"):
        raise ConfigError(f"broker URL {shown!r}: the user or password holds / ? # [ or ]: "
                          f"percent-encode them (e.g. / as %2F), or use mqtt.password_file")
    try:
        parts = urlsplit(str(url).strip())
    except ValueError as exc:
        raise ConfigError(f"broker URL {shown!r}: {exc}") from None
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"broker URL {shown!r}: bad port ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ConfigError(f"broker URL {shown!r}: scheme must be mqtt:// or mqtts://")
    host = parts.hostname
    if not host:
        raise ConfigError(f"broker URL {shown!r}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(
            f"broker URL {shown!r}: unexpected path or query (give scheme://host:port)"
        )
    if port == 0:
        raise ConfigError(f"broker URL {shown!r}: port 0")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return BrokerAddress(
        scheme, host, port or _DEFAULT_PORTS[scheme], username, password, tls=scheme == "mqtts"
    )


def is_loopback_host(host: str) -> bool:
    """True for localhost, 127.0.0.0/8, ::1. No DNS look-up: other names count as remote."""
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_topic_part(what: str, value: str, allow_slash: bool) -> None:
    if (
        not value
        or any(ch in value for ch in "+#\x00")
        or (not allow_slash and "/" in value)
        or value.startswith("/")
        or value.endswith("/")
    ):
        raise ConfigError(
            f"{what} {value!r}: must be non-empty, without + # "
            f"{'' if allow_slash else 'or / '}and not start or end with /"
        )


def state_topic(topic_prefix: str, device_id: str) -> str:
    return f"{topic_prefix}/{device_id}/state"


def status_topic(topic_prefix: str, device_id: str) -> str:
    return f"{topic_prefix}/{device_id}/status"


def modality_topic(topic_prefix: str, device_id: str, name: str) -> str:
    return f"{topic_prefix}/{device_id}/modality/{name}"


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_json(obj: dict) -> bytes:
    """Compact JSON; NaN/Infinity refused (they are not JSON), numpy values converted."""
    try:
        return json.dumps(
            obj, separators=(",", ":"), allow_nan=False, default=_json_default
        ).encode()
    except ValueError as exc:
        raise ValueError(f"state payload not JSON-safe (NaN or infinity?): {exc}") from None


def load_state_schema() -> dict:
    return json.loads(STATE_SCHEMA_PATH.read_text())


def validate_state(obj: Any) -> list[str]:
    """Schema problems of a state payload, one line each (empty when valid). Needs jsonschema."""
    try:
        import jsonschema
    except ImportError as exc:
        raise ConfigError("validating states needs jsonschema (pip install jsonschema)") from exc
    validator = jsonschema.Draft202012Validator(load_state_schema())
    return [
        f"{'/'.join(str(p) for p in err.absolute_path) or '(root)'}: {err.message}"
        for err in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    ]


class StatePublisher:
    """Publishes states durably (outbox first, QoS 1, deleted on PUBACK) plus retained status.

    ``start()`` returns at once; the connection is made in the background and retried
    (1 s doubling to 30 s). ``publish_state`` never blocks on the network.
    """

    def __init__(
        self,
        address: BrokerAddress | str,
        device_id: str,
        *,
        topic_prefix: str = DEFAULT_TOPIC_PREFIX,
        state_dir: Path,
        client_id: str | None = None,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        allow_plaintext_remote: bool = False,
        keepalive_s: int = 20,
        max_inflight: int = 20,
        max_rows: int = DEFAULT_MAX_ROWS,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        max_bytes: int = DEFAULT_MAX_BYTES,
        protocol: str = "5",
        retained_on_connect: list[tuple[str, bytes]] | None = None,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ConfigError(f"mqtt protocol {protocol!r}: must be one of {', '.join(PROTOCOLS)}")
        self.address = parse_broker_url(address) if isinstance(address, str) else address
        # a broker that refused MQTT 5 earlier in this process gets 3.1.1 at once
        self.protocol = "3.1.1" if self.address.host_port in _REFUSED_V5 else protocol
        # from the first MQTT 5 CONNECT until the broker has answered it (a refusal of v5 included:
        # then until the 3.1.1 answer): stop() gives a first connection this long to flush
        self._negotiating = False
        _check_topic_part("device id", device_id, allow_slash=False)
        _check_topic_part("topic prefix", topic_prefix, allow_slash=True)
        if (
            not self.address.tls
            and not allow_plaintext_remote
            and not is_loopback_host(self.address.host)
        ):
            raise ConfigError(
                f"broker {self.address.display}: plaintext MQTT to a remote host would expose "
                f"emotion states and credentials on the network; use mqtts:// "
                f"(or allow_plaintext_remote)"
            )
        for what, path in (
            ("CA file", ca_file),
            ("certificate file", cert_file),
            ("key file", key_file),
        ):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"MQTT TLS {what} {path}: not found")
        if (ca_file or cert_file or key_file) and not self.address.tls:
            raise ConfigError(
                f"broker {self.address.display}: TLS files given but the URL is not mqtts://"
            )
        self.device_id = device_id
        self.topic_prefix = topic_prefix
        self.client_id = client_id or f"emotion-edge-{device_id}"
        self.ca_file, self.cert_file, self.key_file = ca_file, cert_file, key_file
        self.keepalive_s = keepalive_s
        # (topic, payload) published retained after "online" on every connect (Home Assistant discovery)
        self.retained_on_connect = list(retained_on_connect or [])
        self.max_inflight = max_inflight
        self.state_topic = state_topic(topic_prefix, device_id)
        self.status_topic = status_topic(topic_prefix, device_id)
        self.outbox = Outbox(
            Path(state_dir) / f"outbox-{device_id}.sqlite3",
            max_rows=max_rows,
            max_age_s=max_age_s,
            max_bytes=max_bytes,
        )
        self.denial_path = denial_record_path(Path(state_dir), device_id)
        self._denial_recorded = self.denial_path.exists()  # a refusal from an earlier run
        self._events: queue.Queue[tuple] = queue.Queue()
        self._client: Any = None
        self._worker: threading.Thread | None = None
        self._connected = False  # written by paho's thread, read anywhere (stats)
        self._connected_event = threading.Event()
        self._stopping = False
        self._outage_logged = False
        # worker-thread state
        self._inflight: dict[
            int, tuple[int, float]
        ] = {}  # mid -> (seq, monotonic time handed over)
        self._last_handed_seq = -1
        # (seq, monotonic ack time) of states acknowledged within BROKER_SAVE_GRACE_S, oldest first
        self._acked_recent: collections.deque[tuple[int, float]] = collections.deque()
        self._resync = False
        self._published = 0
        self._acked = 0
        self._modality_dropped = 0
        self._last_latency_ms: float | None = None
        # sessions the broker closes within seconds, again and again: the signature of an ACL that
        # denies our topics (mosquitto drops a 3.1.1 client whose publish it denies)
        self._connected_at = 0.0
        self._quick_drops = 0
        # publishes the broker refused (MQTT 5 PUBACK reason >= 0x80): worker-thread state
        self._denied_min_seq: int | None = None
        self._denied_retry_at = 0.0
        self._denied_backoff_s = _DENIED_RETRY_S[0]
        self._denied_logged = False
        self.denied = 0
        self.unstored = 0  # states sent without the outbox (it could not store them: disk full)

    # -- public API ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (retrying) and start delivering the outbox."""
        if self._client is not None:
            return
        self._negotiating = self.protocol == "5"
        self._client = self._make_client(self.protocol)
        self._worker = threading.Thread(
            target=self._work, name=f"mqtt-outbox-{self.device_id}", daemon=True
        )
        self._worker.start()
        self._connect(self._client)
        log.info(
            "mqtt: connecting to %s as %r (MQTT %s; %d states pending in outbox)",
            self.address.display,
            self.client_id,
            self.protocol,
            self.outbox.depth(),
        )

    def _connect(self, client: Any) -> None:
        if self.protocol == "5":
            client.connect_async(
                self.address.host, self.address.port, keepalive=self.keepalive_s, clean_start=True
            )
        else:
            client.connect_async(self.address.host, self.address.port, keepalive=self.keepalive_s)
        client.loop_start()

    def _make_client(self, protocol: str) -> Any:
        import paho.mqtt.client as mqtt

        if protocol == "5":
            client = mqtt.Client(
                callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                client_id=self.client_id,
                protocol=mqtt.MQTTv5,
            )
        else:
            client = mqtt.Client(
                callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                client_id=self.client_id,
                protocol=mqtt.MQTTv311,
                clean_session=True,
            )
        client.max_inflight_messages_set(
            0
        )  # flow control is ours (max_inflight), never paho's queue
        client.will_set(self.status_topic, "offline", qos=1, retain=True)
        if self.address.username:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            try:
                client.tls_set(
                    ca_certs=str(self.ca_file) if self.ca_file else None,
                    certfile=str(self.cert_file) if self.cert_file else None,
                    keyfile=str(self.key_file) if self.key_file else None,
                )
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise ConfigError(
                    f"MQTT TLS files (ca {self.ca_file}, cert {self.cert_file}, "
                    f"key {self.key_file}): {exc}"
                ) from None
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        return client

    def publish_state(self, state: dict) -> int:
        """Store the state (new ``seq``, ``device_id``) durably, then send it; returns the seq."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, not {type(state).__name__}")

        def payload_for(seq: int) -> bytes:
            return encode_json({**state, "seq": seq, "device_id": self.device_id})

        try:
            seq = self.outbox.append(self.state_topic, payload_for)
        except OutboxFullError as exc:
            # the disk is full: the state cannot be kept, but it is still sent live (QoS 1) with
            # the seq the outbox reserved for it, so subscribers see it while the broker is up
            seq = exc.seq
            client = self._client
            if client is not None and self._connected:
                client.publish(self.state_topic, payload_for(seq), qos=1)
            self.unstored += 1
            return seq
        self._events.put(("new",))
        return seq

    def publish_modality(self, name: str, payload: dict) -> bool:
        """Send one modality's outputs (QoS 1) if connected; not stored. Returns whether sent."""
        _check_topic_part("modality name", name, allow_slash=False)
        body = encode_json({**payload, "modality": payload.get("modality", name)})
        if self._client is None or not self._connected:
            self._modality_dropped += 1
            return False
        self._client.publish(modality_topic(self.topic_prefix, self.device_id, name), body, qos=1)
        return True

    def stop(self, timeout_s: float = 5.0) -> None:
        """Flush the outbox while connected (up to ``timeout_s``), send ``offline``, disconnect."""
        deadline = time.monotonic() + timeout_s
        client = self._client
        if client is not None:
            # a first connection still being negotiated gets at most 1 s of the flush time
            negotiate_until = min(deadline, time.monotonic() + 1.0)
            while (
                (self._connected or (self._negotiating and time.monotonic() < negotiate_until))
                and self.outbox.depth() > len(self._acked_recent)  # rows not yet acknowledged
                and self._denied_min_seq is None  # the broker refuses them: no use waiting
                and time.monotonic() < deadline
            ):
                time.sleep(0.02)
            self._stopping = True
            if self._connected:
                try:
                    info = client.publish(self.status_topic, "offline", qos=1, retain=True)
                    info.wait_for_publish(max(0.1, deadline - time.monotonic()))
                except (RuntimeError, ValueError) as exc:
                    log.info("mqtt: could not publish offline status (%s)", exc)
            client.disconnect()
            client.loop_stop()
            self._events.put(("stop",))
            if self._worker is not None:
                self._worker.join(timeout=5)
            pending = self.outbox.depth()
            log.info(
                "mqtt: disconnected from %s%s",
                self.address.display,
                f" ({pending} states kept in outbox)" if pending else "",
            )
            self._client = None
            self._connected = False
            self._connected_event.clear()
        self.outbox.close()

    def __enter__(self) -> StatePublisher:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def connected(self) -> bool:
        return self._connected

    def wait_connected(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` for the broker connection; True if connected."""
        return self._connected_event.wait(timeout_s)

    def stats(self) -> dict[str, Any]:
        """Health figures: outbox depth, counters, connection and the last PUBACK round trip."""
        return {
            "connected": self._connected,
            "outbox_depth": self.outbox.depth(),
            "last_seq": self.outbox.last_seq(),
            "published": self._published,
            "acked": self._acked,
            "dropped": self.outbox.dropped,
            "denied": self.denied,
            "unstored": self.unstored,
            "modality_dropped": self._modality_dropped,
            "last_publish_latency_ms": self._last_latency_ms,
        }

    # -- paho callbacks (paho's network thread: only log and queue) ---------------------------

    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            if self.protocol == "5" and reason_code.value in _UNSUPPORTED_PROTOCOL:
                self._negotiating = True
                _REFUSED_V5.add(self.address.host_port)  # the next publisher starts with 3.1.1
                self._events.put(("protocol_refused", str(reason_code)))
                return
            self._negotiating = False
            if not self._outage_logged:
                self._outage_logged = True
                log.warning(
                    "mqtt: broker %s refused the connection (%s); states kept in outbox "
                    "(%d pending)",
                    self.address.display,
                    reason_code,
                    self.outbox.depth(),
                )
            return
        self._connected_at = time.monotonic()
        self._negotiating = False
        client.publish(self.status_topic, "online", qos=1, retain=True)
        for topic, payload in self.retained_on_connect:
            client.publish(topic, payload, qos=1, retain=True)
        self._connected = True
        self._connected_event.set()
        self._outage_logged = False
        log.info("mqtt: connected to %s", self.address.host_port)
        self._events.put(("connected",))

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        was = self._connected
        self._connected = False
        self._connected_event.clear()
        self._events.put(("disconnected",))
        if was and not self._stopping:
            self._outage_logged = True
            quick = time.monotonic() - self._connected_at < 3.0
            self._quick_drops = self._quick_drops + 1 if quick else 0
            if self._quick_drops == 3:  # once per run of such drops, not on every reconnect
                user = self.address.username or "(anonymous)"
                log.warning(
                    "mqtt: broker %s closed the last 3 connections within seconds: if it runs an ACL, does it "
                    "let user %r write %s/%s/#? (mosquitto drops clients whose publish it denies; "
                    "deploy/mosquitto-acl.conf expects the username to be the device id); "
                    "states kept in outbox (%d pending)",
                    self.address.host_port, user, self.topic_prefix, self.device_id, self.outbox.depth())
                return
            log.info(
                "mqtt: broker %s unreachable (connection lost: %s); states kept in outbox "
                "(%d pending)",
                self.address.host_port,
                reason_code,
                self.outbox.depth(),
            )

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._negotiating = False
        self._events.put(("connect_failed",))

    def _on_publish(
        self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        if reason_code is not None and reason_code.is_failure:  # only MQTT 5 can say no
            self._events.put(("denied", mid, str(reason_code)))
            return
        self._events.put(("acked", mid, time.monotonic()))

    # -- worker thread ------------------------------------------------------------------------

    def _work(self) -> None:
        next_prune = time.monotonic() + 60
        undeleted: list[int] = []  # acknowledged seqs whose delete failed (a full disk): retried
        delete_failed = False
        while True:
            try:
                events = [self._events.get(timeout=1.0)]
            except queue.Empty:
                events = []
            while len(events) < 1000:
                try:
                    events.append(self._events.get_nowait())
                except queue.Empty:
                    break
            acked_seqs: list[int] = []  # acknowledged longer than the grace: deleted below
            newly_acked = 0
            stop = False
            for event in events:
                kind = event[0]
                if kind == "acked":
                    entry = self._inflight.pop(event[1], None)
                    if entry is not None:
                        seq, handed = entry
                        self._acked_recent.append((seq, event[2]))
                        newly_acked += 1
                        self._last_latency_ms = (event[2] - handed) * 1000.0
                elif kind == "disconnected" and not self._stopping:
                    self._resend_recently_acked()
                elif kind == "connected":
                    # paho re-sends what it holds unacknowledged; new rows wait until those are
                    # acknowledged so that subscribers see states in seq order.
                    self._resync = bool(self._inflight)
                elif kind == "denied":
                    entry = self._inflight.pop(event[1], None)
                    if entry is not None:
                        self._note_denied(entry[0], event[2])
                elif kind == "protocol_refused":
                    self._fall_back_to_311(event[1])
                elif kind == "connect_failed":
                    self._log_unreachable()
                elif kind == "stop":
                    stop = True
            now = time.monotonic()
            while self._acked_recent and (stop or now - self._acked_recent[0][1] >= BROKER_SAVE_GRACE_S):
                acked_seqs.append(self._acked_recent.popleft()[0])
            if newly_acked and self._denial_recorded and self._denied_min_seq is None:
                self._note_accepted()
            self._acked += newly_acked
            if acked_seqs or (undeleted and not events):
                undeleted = (undeleted + acked_seqs)[-_UNDELETED_MAX:]
                try:
                    self.outbox.delete(undeleted)
                    undeleted = []
                    delete_failed = False
                except Exception as exc:  # noqa: BLE001 - a delete lost only means a re-send
                    if not delete_failed:
                        delete_failed = True
                        log.warning(
                            "outbox %s: could not delete acknowledged rows (%s); retrying",
                            self.outbox.path, exc)
            if stop:
                return
            if not self._inflight:
                self._resync = False
            try:
                self._pump()
                if time.monotonic() > next_prune:
                    next_prune = time.monotonic() + 60
                    self.outbox.prune_expired()
                    self.outbox.checkpoint()
            except Exception as exc:  # noqa: BLE001 - the worker must survive; say what broke
                log.error("mqtt: outbox worker: %s: %s", type(exc).__name__, exc)
                time.sleep(1.0)

    def _pump(self) -> None:
        """Hand pending rows to paho in seq order, at most ``max_inflight`` unacknowledged."""
        if not self._connected or self._resync or self._client is None or self._stopping:
            return
        if self._denied_min_seq is not None:
            # a refused state is retried (with the rows after it) once the in-flight ones have
            # come back and the backoff has passed: never skipped, never deleted
            if self._inflight or time.monotonic() < self._denied_retry_at:
                return
            self._last_handed_seq = min(self._last_handed_seq, self._denied_min_seq - 1)
            self._denied_min_seq = None
        room = self.max_inflight - len(self._inflight)
        if room <= 0:
            return
        for seq, topic, payload in self.outbox.pending(self._last_handed_seq, room):
            info = self._client.publish(topic, payload, qos=1)
            self._inflight[info.mid] = (seq, time.monotonic())
            self._last_handed_seq = seq
            self._published += 1

    def _resend_recently_acked(self) -> None:
        """The connection dropped: states acknowledged within the grace may not be saved; send them again."""
        if self._acked_recent:
            first = min(seq for seq, _ in self._acked_recent)
            self._last_handed_seq = min(self._last_handed_seq, first - 1)
            self._acked_recent.clear()

    def _note_denied(self, seq: int, reason: str) -> None:
        """The broker refused state ``seq``: keep it, say so once, record it, retry later."""
        self.denied += 1
        first = self._denied_min_seq is None
        self._denied_min_seq = seq if first else min(seq, self._denied_min_seq)
        if not first:
            return
        self._denied_retry_at = time.monotonic() + self._denied_backoff_s
        wait_s = self._denied_backoff_s
        self._denied_backoff_s = min(self._denied_backoff_s * 2, _DENIED_RETRY_S[1])
        user = self.address.username or "(anonymous)"
        self._denial_recorded = True
        if not self._denied_logged:
            self._denied_logged = True
            log.warning(
                "mqtt: broker %s refused %s for user %r (%s); states kept in outbox (%d pending), "
                "retrying every %g s or more (deploy/mosquitto-acl.conf expects the username to "
                "be the device id)",
                self.address.host_port, self.state_topic, user, reason, self.outbox.depth(), wait_s)
        try:
            write_atomic(self.denial_path, json.dumps({
                "topic": self.state_topic, "user": user, "reason": reason,
                "broker": self.address.display, "since_unix": time.time()}).encode())
        except OSError as exc:
            log.debug("mqtt: cannot record the refusal in %s (%s)", self.denial_path, exc)

    def _note_accepted(self) -> None:
        self._denied_logged = False
        self._denial_recorded = False
        self._denied_backoff_s = _DENIED_RETRY_S[0]
        log.info("mqtt: broker %s now accepts %s", self.address.host_port, self.state_topic)
        try:
            self.denial_path.unlink()
        except OSError:
            pass

    def _fall_back_to_311(self, reason: str) -> None:
        """The broker refused MQTT 5 at CONNECT: use 3.1.1 from now on (a new paho client)."""
        if self.protocol != "5" or self._stopping:
            return
        log.info(
            "mqtt: broker %s does not speak MQTT 5 (%s); using MQTT 3.1.1, under which a "
            "publish the broker denies cannot be told from a delivered one",
            self.address.host_port, reason)
        old = self._client
        self.protocol = "3.1.1"
        _REFUSED_V5.add(self.address.host_port)
        if old is not None:
            old.loop_stop()
            old.disconnect()
        self._inflight.clear()
        self._last_handed_seq = -1
        self._client = self._make_client(self.protocol)
        self._connect(self._client)

    def _log_unreachable(self) -> None:
        if self._outage_logged or self._stopping:
            return
        self._outage_logged = True
        log.info(
            "mqtt: broker %s unreachable (%s); states kept in outbox (%d pending)",
            self.address.host_port,
            unreachable_reason(self.address),
            self.outbox.depth(),
        )


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (never half-written)."""
    import os  # noqa: PLC0415

    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def unreachable_reason(address: BrokerAddress, timeout_s: float = 2.0) -> str:
    """Why a connection failed, in a few words (paho's connect-fail callback carries no reason).

    A plain TCP probe: "Connection refused", "Name or service not known", "timed out", or, when
    TCP gets through, that the TLS handshake or MQTT CONNECT was the problem.
    """
    try:
        with socket.create_connection((address.host, address.port), timeout=timeout_s):
            return (
                "TCP port open; TLS handshake or MQTT connect failed"
                if address.tls
                else "TCP port open; MQTT connect failed"
            )
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
