"""``emotion-edge listen``: subscribe to published states (and status) and show them live.

One line per state (time, device, seq, label and its confidence, valence, arousal, stress,
confidence, each modality's quality/weight, what is missing and in short why), or with
``--json`` each state exactly as received,
one JSON object per line (status changes then go to the log on stderr, so stdout stays JSON).
When the broker goes away it says so in one line and reconnects.

One clock per table: a state row's time is the state's ``ts``, on the source's clock (a
replayed recording's, or the simulator's), never the wall clock; status rows (online/offline)
have no source time and leave the time column empty. A dimension no modality informs
(schema 2: ``null``) shows as ``-``.
"""

from __future__ import annotations

import argparse
import logging
import queue
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from edge import package_version
from edge.errors import ConfigError
from edge.limits import is_unix_time, loads_json_bounded, unix_range_text
from edge.publish import DEFAULT_TOPIC_PREFIX, parse_broker_url, unreachable_reason

log = logging.getLogger(__name__)

DEFAULT_BROKER_URL = "mqtt://127.0.0.1:1883"
# A persistent session's client id. MQTT 3.1.1 only promises 23 bytes, but mosquitto and most
# brokers take far more; 128 is generous for a name and far from paho's 65,535-byte limit.
MAX_SESSION_ID_BYTES = 128

_HEADER = (
    f"{'time':8}  {'device':14} {'seq':>7}  {'label':10} {'sure':>4} {'val':>6} {'aro':>6} {'stress':>6} "
    f"{'conf':>5}  modalities (quality/weight)  missing"
)


def _num(value: Any, fmt: str) -> str:
    if value is None:
        return "-"  # a dimension with no evidence (null), not a missing field
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "?"
    try:
        return format(value, fmt)
    except ValueError:  # e.g. a float seq with "d"
        return "?"


def state_problem(state: dict) -> str | None:
    """Why a decoded state cannot be shown (its ``ts`` is not a unix time), or None."""
    ts = state.get("ts")
    if ts is None:
        return None
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not is_unix_time(float(ts)):
        return f"ts {ts!r} is not a unix time ({unix_range_text()})"
    return None


def short_reason(reason: str, limit: int = 16) -> str:
    """A missing modality's reason in a few words: ``warming up``, ``stale 31 s``, ``no face in view``."""
    text = str(reason)
    if text.startswith("stale: last estimate "):
        return "stale " + text[len("stale: last estimate "):].split(" old")[0]
    head = text.split(":")[0].split(" (")[0].split(";")[0].strip()
    return head if len(head) <= limit else head[: limit - 1] + "…"


def format_state_line(state: dict, repeat: bool = False) -> str:
    """One readable line for a state (fields that are absent show as ``?``, null dimensions as ``-``)."""
    ts = state.get("ts")
    when = time.strftime("%H:%M:%S", time.localtime(ts)) if isinstance(ts, (int, float)) else "?"
    modalities = state.get("modalities") if isinstance(state.get("modalities"), dict) else {}
    parts = []
    for name, entry in sorted(modalities.items()):
        if isinstance(entry, dict):
            parts.append(
                f"{name} {_num(entry.get('quality'), '.2f')}/{_num(entry.get('weight'), '.2f')}"
            )
    reasons = state.get("missing_reasons") if isinstance(state.get("missing_reasons"), dict) else {}
    missing = state.get("missing") if isinstance(state.get("missing"), list) else []
    missing_text = ", ".join(
        f"{name} ({short_reason(reasons[name])})" if isinstance(name, str) and name in reasons else str(name)
        for name in missing
    )
    line = (
        f"{when:8}  {str(state.get('device_id', '?'))[:14]:14} {_num(state.get('seq'), 'd'):>7}  "
        f"{str(state.get('label', '?'))[:10]:10} {_num(state.get('label_confidence'), '.2f'):>4} "
        f"{_num(state.get('valence'), '+.2f'):>6} "
        f"{_num(state.get('arousal'), '+.2f'):>6} {_num(state.get('stress'), '.2f'):>6} "
        f"{_num(state.get('confidence'), '.2f'):>5}  "
        f"{' | '.join(parts) or '-':27}  {missing_text or '-'}"
    )
    return line + ("  (repeat)" if repeat else "")


def listen(
    broker_url: str,
    *,
    device_id: str = "+",
    topic_prefix: str = DEFAULT_TOPIC_PREFIX,
    as_json: bool = False,
    count: int | None = None,
    duration_s: float | None = None,
    out: TextIO | None = None,
    on_ready: Callable[[], None] | None = None,
    validate: bool = False,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    username: str | None = None,
    password: str | None = None,
    session: str | None = None,
) -> int:
    """Print states from ``<prefix>/<device_id>/state`` until ``count`` states or ``duration_s``.

    ``on_ready`` is called once, when the first subscription is acknowledged (so a caller knows
    that states published from now on will be seen). ``validate`` logs each state's schema
    problems (needs jsonschema); ``ca_file`` is the CA for an ``mqtts://`` broker (else the
    system's), ``cert_file``/``key_file`` a client certificate. ``username``/``password`` are used
    where the URL carries none. ``session`` names a persistent session (client id, clean session
    off, QoS 1): the broker keeps the subscription and queues states while this listener is away,
    so nothing is missed across its restarts. Returns the number of states received.
    """
    import paho.mqtt.client as mqtt

    out = out if out is not None else sys.stdout  # looked up now: callers may have replaced it

    address = parse_broker_url(broker_url)
    if device_id != "+" and (not device_id or any(ch in device_id for ch in "/+#")):
        raise ConfigError(f"device id {device_id!r}: must be '+' (all) or a name without / + #")
    validator = _state_validator() if validate else None
    states_filter = f"{topic_prefix}/{device_id}/state"
    status_filter = f"{topic_prefix}/{device_id}/status"
    inbox: queue.Queue[tuple] = queue.Queue()

    if session is not None and (not session or len(session.encode()) > MAX_SESSION_ID_BYTES or not session.isprintable()):
        raise ConfigError(f"--session {session!r}: must be a printable name of at most {MAX_SESSION_ID_BYTES} bytes")
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=session or "",
        protocol=mqtt.MQTTv311,
        clean_session=session is None,
    )
    user = address.username or username
    if user:
        client.username_pw_set(user, address.password if address.username else password)
    for flag, path in (("--ca-file", ca_file), ("--cert-file", cert_file), ("--key-file", key_file)):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{flag} {path}: not found")
        if path and not address.tls:
            raise ConfigError(f"{flag} {path}: the broker URL {address.display} is not mqtts://")
    if address.tls:
        try:
            client.tls_set(ca_certs=ca_file, certfile=cert_file, keyfile=key_file)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ConfigError(f"TLS files (ca {ca_file}, cert {cert_file}, key {key_file}): {exc}") from None
    client.reconnect_delay_set(min_delay=1, max_delay=10)

    def on_connect(
        client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            inbox.put(("log", f"broker {address.display} refused the connection ({reason_code})"))
            return
        client.subscribe([(states_filter, 1), (status_filter, 1)])
        inbox.put(("connected",))

    def on_subscribe(
        client: Any, userdata: Any, mid: int, reason_codes: Any, properties: Any
    ) -> None:
        inbox.put(("subscribed",))

    def on_disconnect(
        client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        inbox.put(("disconnected", str(reason_code)))

    def on_connect_fail(client: Any, userdata: Any) -> None:
        inbox.put(("connect_failed",))

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        inbox.put(("message", message.topic, bytes(message.payload), message.retain))

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_disconnect = on_disconnect
    client.on_connect_fail = on_connect_fail
    client.on_message = on_message

    received = 0
    last_seq: dict[str, int] = {}
    ready_called = False
    connected_before = False
    outage_reported = False
    deadline = None if duration_s is None else time.monotonic() + duration_s
    if not as_json:
        print(_HEADER, file=out, flush=True)
    client.connect_async(address.host, address.port, keepalive=20)
    client.loop_start()
    try:
        while count is None or received < count:
            wait_s = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if wait_s <= 0:
                break
            try:
                event = inbox.get(timeout=wait_s)
            except queue.Empty:
                continue
            kind = event[0]
            if kind == "message":
                topic, payload, retained = event[1], event[2], event[3]
                if topic.endswith("/status"):
                    device = topic[len(topic_prefix) + 1 : -len("/status")]
                    text = payload.decode("utf-8", "replace") or "(cleared)"
                    if as_json:
                        log.info("%s is %s%s", device, text, " (retained)" if retained else "")
                    else:
                        print(
                            f"{'':8}  {device[:14]:14} status {text}"
                            f"{' (retained)' if retained else ''}",
                            file=out,
                            flush=True,
                        )
                    continue
                try:
                    state = loads_json_bounded(payload)  # nested beyond any state: ValueError, not RecursionError
                    if not isinstance(state, dict):
                        raise ValueError("not a JSON object")
                    problem = state_problem(state)
                    if problem is not None:
                        raise ValueError(problem)
                    line = None if as_json else format_state_line(state, _is_repeat(state, topic, last_seq))
                except (ValueError, TypeError, OverflowError) as exc:
                    log.warning(
                        "%s: skipped a payload that is not a usable state (%d bytes: %s)",
                        topic, len(payload), exc,
                    )
                    continue
                received += 1
                device = str(state.get("device_id", topic))
                seq = state.get("seq")
                repeat = _is_repeat(state, topic, last_seq)
                if isinstance(seq, int) and not repeat:
                    last_seq[device] = seq
                if as_json:
                    out.write(payload.decode("utf-8", "replace").rstrip("\n") + "\n")
                    out.flush()
                else:
                    print(line, file=out, flush=True)
                if validator is not None:
                    for problem in validator(state):
                        log.warning("%s seq %s: schema: %s", device, seq, problem)
            elif kind == "subscribed":
                if not ready_called:
                    ready_called = True
                    if on_ready is not None:
                        on_ready()
            elif kind == "connected":
                if connected_before or outage_reported:
                    log.info("connected to %s again", address.host_port)
                else:
                    log.info("connected to %s; listening on %s", address.host_port, states_filter)
                connected_before = True
                outage_reported = False
            elif kind == "disconnected":
                if not outage_reported:
                    outage_reported = True
                    log.warning(
                        "broker %s went away (%s); reconnecting", address.host_port, event[1]
                    )
            elif kind == "connect_failed":
                if not outage_reported:
                    outage_reported = True
                    log.warning(
                        "broker %s unreachable (%s); retrying",
                        address.host_port,
                        unreachable_reason(address),
                    )
            elif kind == "log":
                log.warning("%s", event[1])
    finally:
        client.disconnect()
        client.loop_stop()
    return received


def _is_repeat(state: dict, topic: str, last_seq: dict[str, int]) -> bool:
    device = str(state.get("device_id", topic))
    seq = state.get("seq")
    return isinstance(seq, int) and device in last_seq and seq <= last_seq[device]


def _state_validator() -> Callable[[dict], list[str]]:
    """A compiled validator for the shipped state schema (ConfigError if jsonschema is missing)."""
    try:
        import jsonschema
    except ImportError as exc:
        raise ConfigError("listen --validate needs jsonschema (pip install jsonschema)") from exc
    from edge.publish import load_state_schema

    validator = jsonschema.Draft202012Validator(load_state_schema())

    def problems(state: dict) -> list[str]:
        return [
            f"{'/'.join(str(p) for p in err.absolute_path) or '(root)'}: {err.message}"
            for err in validator.iter_errors(state)
        ]

    return problems


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--broker",
        default=DEFAULT_BROKER_URL,
        help=f"mqtt://[user:pass@]host[:port] or mqtts://… (default {DEFAULT_BROKER_URL})",
    )
    parser.add_argument("--device-id", default="+", help="one device, or + for all (default +)")
    parser.add_argument(
        "--topic-prefix",
        default=DEFAULT_TOPIC_PREFIX,
        help=f"topic prefix (default {DEFAULT_TOPIC_PREFIX})",
    )
    parser.add_argument(
        "--json", action="store_true", help="print each state as received, one JSON object a line"
    )
    parser.add_argument("--count", type=int, default=None, help="exit after this many states")
    parser.add_argument("--duration", type=float, default=None, help="exit after this many seconds")
    parser.add_argument(
        "--validate",
        action="store_true",
        help="check each state against edge/state.schema.json (needs jsonschema)",
    )
    parser.add_argument("--ca-file", default=None, help="CA certificate for an mqtts:// broker")
    parser.add_argument("--cert-file", default=None, help="client certificate for an mqtts:// broker (mutual TLS)")
    parser.add_argument("--key-file", default=None, help="the client certificate's private key")
    parser.add_argument("--username", default=None, help="MQTT username (when the URL has none)")
    parser.add_argument("--password-file", default=None, metavar="FILE",
                        help="first line is the MQTT password (else the URL's, else $EMOTION_EDGE_MQTT_PASSWORD)")
    parser.add_argument("--session", default=None, metavar="NAME",
                        help="persistent session under this client id (clean session off, QoS 1): the broker "
                             "queues states while the listener is away, so nothing is missed across restarts")
    parser.add_argument("--version", action="version", version=f"emotion-edge listen {package_version()}")


def _password(args: argparse.Namespace) -> str | None:
    """--password-file's first line, else $EMOTION_EDGE_MQTT_PASSWORD, else None."""
    import os  # noqa: PLC0415

    from edge.config import PASSWORD_ENV, read_password_file  # noqa: PLC0415

    if args.password_file:  # the same checks as the daemon's mqtt.password_file (FIFO, size, mode 600)
        return read_password_file(args.password_file, "--password-file")
    return os.environ.get(PASSWORD_ENV)


def main(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        raise ConfigError(f"--count {args.count}: must be at least 1")
    if args.duration is not None and args.duration <= 0:
        raise ConfigError(f"--duration {args.duration}: must be positive")
    listen(
        args.broker,
        device_id=args.device_id,
        topic_prefix=args.topic_prefix,
        as_json=args.json,
        count=args.count,
        duration_s=args.duration,
        validate=args.validate,
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
        username=args.username,
        password=_password(args),
        session=args.session,
    )
    return 0
