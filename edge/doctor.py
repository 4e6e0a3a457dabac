"""``emotion-edge doctor``: check what the daemon needs before it is trusted on a wearable.

One line per check, ``ok`` / ``warn`` / ``FAIL``, what was checked and why it passed or not::

    ok    python: 3.11.2 on Linux aarch64
    ok    runtime: ai-edge-litert 1.2.0
    FAIL  model eda: /opt/…/eda.tflite sha256 3f2a…  does not match manifest 9c1d…; refusing to load it
    FAIL  broker mqtt://127.0.0.1:1883: TCP connect failed: Connection refused
    ok    state dir /var/lib/emotion-edge: writable; outbox wearable-1: 0 states pending

Exit 0 when nothing FAILed, 1 otherwise. Checks only read and probe: nothing is published,
no outbox row is touched, a serial port is opened and closed without sending a byte.
Passwords are never printed (broker addresses are shown as ``scheme://user@host:port``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import socket
import sqlite3
import ssl
import stat
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

OK, WARN, FAIL = "ok", "warn", "FAIL"
SUPPORTED_MACHINES = ("aarch64", "arm64", "x86_64", "amd64")
PASSWORD_ENV = "EMOTION_EDGE_MQTT_PASSWORD"
DBUS_SYSTEM_SOCKET = Path("/run/dbus/system_bus_socket")
BLUETOOTH_SYSFS = Path("/sys/class/bluetooth")
CERT_EXPIRY_WARN_DAYS = 30


@dataclass(frozen=True)
class Check:
    status: str  # ok | warn | FAIL
    what: str  # the thing checked: "broker mqtt://…", "model eeg", "tls ca_file /etc/…"
    detail: str  # why it passed or not, one line

    def line(self) -> str:
        return f"{self.status:<4}  {self.what}: {self.detail}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="the daemon's TOML config (as for `run`)")
    parser.add_argument("--broker", metavar="URL", help="mqtt://[user:pass@]host[:port] or mqtts://… (overrides the config)")
    parser.add_argument("--source", metavar="SPEC", action="append", dest="sources",
                        help="a sensor source to check, repeatable (replaces daemon.sources)")
    parser.add_argument("--state-dir", metavar="DIR", help="the daemon's state folder (outbox)")
    parser.add_argument("--models-dir", metavar="DIR", help="models folder (default: the shipped models)")
    parser.add_argument("--timeout", metavar="SECONDS", type=float, default=5.0,
                        help="how long to wait for the broker (TCP, TLS, CONNACK) (default 5)")


def main(args: argparse.Namespace) -> int:
    checks = run_checks(args, emit=lambda c: print(c.line(), flush=True))
    failed = sum(c.status == FAIL for c in checks)
    warned = sum(c.status == WARN for c in checks)
    print(f"{len(checks)} checks: {failed} failed, {warned} warnings", flush=True)
    return 1 if failed else 0


def run_checks(args: argparse.Namespace, emit: Callable[[Check], None] = lambda c: None) -> list[Check]:
    """Every check in order; each result is handed to ``emit`` as soon as it is known."""
    out: list[Check] = []

    def add(found: Check | list[Check]) -> None:
        for c in found if isinstance(found, list) else [found]:
            out.append(c)
            emit(c)

    config, config_check = _load_config(args)
    add(check_python())
    add(config_check)
    add(check_runtime())
    models_dir = Path(args.models_dir or config.models.dir) if (args.models_dir or config.models.dir) else None
    add(check_models(models_dir, fed_modalities(config), tuple(config.daemon.modalities)))
    add(check_tls_files(config.mqtt))
    add(check_broker(config.mqtt, timeout_s=float(args.timeout), device_id=config.daemon.device_id))
    add(check_state_dir(Path(config.daemon.state_dir).expanduser(), config.daemon.device_id))
    for spec in config.daemon.sources:
        add(check_source(spec))
    return out


# -- config ---------------------------------------------------------------------------------------

def _load_config(args: argparse.Namespace) -> tuple[Any, Check]:
    """The config in force (defaults where it cannot be loaded, so the other checks still run).

    ``--source`` specs are put in unvalidated: ``check_source`` names each bad one on its own line.
    """
    from edge.config import Config, load_config, replace_dotted  # noqa: PLC0415
    from edge.errors import EmotionEdgeError  # noqa: PLC0415

    overrides: dict[str, Any] = {}
    if getattr(args, "broker", None):
        overrides["mqtt.broker"] = args.broker
    if getattr(args, "state_dir", None):
        overrides["daemon.state_dir"] = args.state_dir
    if getattr(args, "models_dir", None):
        overrides["models.dir"] = args.models_dir
    config_file = getattr(args, "config", None)
    what = f"config {config_file}" if config_file else "config"
    try:
        config = load_config(config_file, overrides)
        check: Check | None = None
    except EmotionEdgeError as exc:
        try:  # keep what the flags say, so the checks below look at the right things
            config = load_config(None, overrides)
        except EmotionEdgeError:
            config = Config()
        check = Check(FAIL, what, f"{exc} (checking the rest with defaults)")
    if getattr(args, "sources", None):
        config = replace_dotted(config, "daemon.sources", tuple(args.sources))
    if check is None:
        check = Check(OK, what, f"{'loaded' if config_file else 'defaults'}; device {config.daemon.device_id}, "
                                f"{len(config.daemon.sources)} source(s), "
                                f"modalities {', '.join(config.daemon.modalities)}")
    return config, check


def fed_modalities(config: Any) -> set[str]:
    """Modalities the configured sources feed (a model missing for one of them is a failure)."""
    try:
        from edge.daemon import spec_modalities  # noqa: PLC0415
    except ImportError:  # the daemon module not installed: treat every configured modality as fed
        return set(config.daemon.modalities)
    fed: set[str] = set()
    for spec in config.daemon.sources:
        fed |= set(spec_modalities(spec))
        if spec.startswith("simulate") and "streams=" in spec:  # simulate:streams=eeg+eda feeds only those
            from edge.stream import STREAM_TO_MODALITY  # noqa: PLC0415

            fed -= set(spec_modalities(spec))
            chosen = spec.split("streams=", 1)[1].split(",", 1)[0]
            fed |= {STREAM_TO_MODALITY[s] for s in chosen.split("+") if s in STREAM_TO_MODALITY}
    return fed & set(config.daemon.modalities)


# -- platform and runtime -------------------------------------------------------------------------

def check_python() -> Check:
    version = platform.python_version()
    machine = platform.machine() or "unknown"
    detail = f"{version} on {platform.system()} {machine}"
    if sys.version_info < (3, 10):
        return Check(WARN, "python", f"{detail}; emotion-edge needs Python >= 3.10")
    if machine.lower() not in SUPPORTED_MACHINES:
        return Check(WARN, "python", f"{detail}; built and tested for aarch64 and x86_64 only")
    return Check(OK, "python", detail)


def check_runtime() -> Check:
    from edge.errors import RuntimeMissingError  # noqa: PLC0415
    from edge.models import interpreter_class  # noqa: PLC0415

    try:
        _, runtime = interpreter_class()
    except RuntimeMissingError as exc:
        return Check(FAIL, "runtime", str(exc))
    try:
        version = importlib.metadata.version(runtime)
    except importlib.metadata.PackageNotFoundError:
        version = "(version unknown)"
    return Check(OK, "runtime", f"{runtime} {version}")


# -- models ---------------------------------------------------------------------------------------

def check_models(directory: Path | None, fed: set[str], configured: tuple[str, ...]) -> list[Check]:
    """Each manifest's sha256 and that the model loads; a configured modality without a model."""
    from edge.errors import EmotionEdgeError  # noqa: PLC0415
    from edge.models import MODEL_NAMES, TFLiteModel, list_models, models_dir  # noqa: PLC0415

    directory = directory or models_dir()
    if not directory.is_dir():
        return [Check(FAIL, "models", f"folder {directory} not found")]
    checks: list[Check] = []
    seen: set[str] = set()
    for row in list_models(directory):
        name = str(row.get("name", "?"))
        stem = Path(row["_path"]).stem
        seen.add(stem)
        if row["_status"] != "ok":
            checks.append(Check(FAIL, f"model {stem}", row["_status"]))
            continue
        try:
            model = TFLiteModel(Path(row["_path"]))
        except EmotionEdgeError as exc:
            checks.append(Check(FAIL, f"model {stem}", str(exc)))
            continue
        kind = "int8" if model.is_int8 else "float"
        label = f"{model.version}" if name == stem else f"{name} {model.version}"
        checks.append(Check(OK, f"model {stem}", f"{label}: sha256 matches, loads in {model.runtime} "
                                                  f"({kind}, input {model.input_shape})"))
    for name in MODEL_NAMES:
        if name in seen or name not in configured:
            continue
        if name in fed:
            checks.append(Check(FAIL, f"model {name}", f"no {name}.json/{name}.tflite in {directory}; "
                                                       f"a configured source feeds {name}"))
        else:
            checks.append(Check(WARN, f"model {name}", f"no {name}.json/{name}.tflite in {directory} "
                                                       f"(no configured source feeds {name})"))
    return checks


# -- TLS files ------------------------------------------------------------------------------------

def _readable_file(path: Path) -> str | None:
    """None if ``path`` is a readable file, else why not."""
    if not path.exists():
        return "not found"
    if not path.is_file():
        return "not a file"
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    return None


def _cert_expiry(path: Path) -> tuple[str, float] | None:
    """(notAfter text, days left) of the first certificate in a PEM file, when the ssl module can tell."""
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)  # CPython's, private but stable
    if decode is None:
        return None
    try:
        not_after = decode(str(path)).get("notAfter")
    except (ssl.SSLError, OSError, ValueError):
        return None
    if not not_after:
        return None
    return not_after, (ssl.cert_time_to_seconds(not_after) - time.time()) / 86400.0


def _cert_check(what: str, path: Path) -> Check:
    why = _readable_file(path)
    if why:
        return Check(FAIL, what, why)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_verify_locations(cafile=str(path))
    except (ssl.SSLError, ValueError, OSError) as exc:
        return Check(FAIL, what, f"not a PEM certificate ({_ssl_reason(exc)})")
    count = len(ctx.get_ca_certs()) or path.read_bytes().count(b"-----BEGIN CERTIFICATE-----")
    expiry = _cert_expiry(path)
    if expiry is not None:
        not_after, days = expiry
        if days < 0:
            return Check(FAIL, what, f"certificate expired {not_after}")
        if days < CERT_EXPIRY_WARN_DAYS:
            return Check(WARN, what, f"certificate expires in {days:.0f} days ({not_after})")
        return Check(OK, what, f"{count or 1} PEM certificate(s), valid until {not_after}")
    return Check(OK, what, f"{count or 1} PEM certificate(s)")


def _key_permissions_note(path: Path) -> str | None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return f"readable by {'everyone' if mode & stat.S_IROTH else 'its group'} (mode {stat.S_IMODE(mode):o}; chmod 600)"
    return None


def check_tls_files(mqtt: Any) -> list[Check]:
    """CA, client certificate and key: present, readable, PEM, key matches certificate."""
    from edge.errors import ConfigError  # noqa: PLC0415
    from edge.publish import parse_broker_url  # noqa: PLC0415

    try:
        tls = parse_broker_url(mqtt.broker).tls
    except ConfigError:
        tls = False
    ca, cert, key = (Path(p).expanduser() if p else None for p in (mqtt.ca_file, mqtt.cert_file, mqtt.key_file))
    if not (ca or cert or key):
        return [Check(OK, "tls", "mqtts:// with the system's CA store" if tls else "not used (plaintext mqtt://)")]
    checks: list[Check] = []
    if not tls:
        checks.append(Check(FAIL, "tls", "TLS files are configured but the broker URL is not mqtts://"))
    if ca:
        checks.append(_cert_check(f"tls ca_file {ca}", ca))
    if cert:
        checks.append(_cert_check(f"tls cert_file {cert}", cert))
    if key:
        why = _readable_file(key)
        if why:
            checks.append(Check(FAIL, f"tls key_file {key}", why))
        elif b"PRIVATE KEY-----" not in key.read_bytes():
            checks.append(Check(FAIL, f"tls key_file {key}", "not a PEM private key"))
        else:
            note = _key_permissions_note(key)
            checks.append(Check(WARN if note else OK, f"tls key_file {key}", note or "PEM private key, mode 600 or stricter"))
    if cert and key and not _readable_file(cert) and not _readable_file(key):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            ctx.load_cert_chain(str(cert), str(key))
            checks.append(Check(OK, "tls client key pair", f"{key.name} matches {cert.name}"))
        except (ssl.SSLError, ValueError, OSError) as exc:
            checks.append(Check(FAIL, "tls client key pair", f"{key} does not match {cert} ({_ssl_reason(exc)})"))
    elif cert and not key:
        checks.append(Check(FAIL, "tls cert_file", f"{cert} given without mqtt.key_file"))
    elif key and not cert:
        checks.append(Check(FAIL, "tls key_file", f"{key} given without mqtt.cert_file"))
    return checks


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    reason = getattr(exc, "reason", None)
    text = getattr(exc, "verify_message", None) or reason or str(exc)
    return str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__


# -- broker ---------------------------------------------------------------------------------------

def broker_credentials(mqtt: Any, address: Any) -> tuple[str | None, str | None, str]:
    """(username, password, where the password came from) — never the password itself in text.

    Order: the URL's ``user:pass@``; ``mqtt.password_file`` (first line); ``$EMOTION_EDGE_MQTT_PASSWORD``.
    ``mqtt.username`` / ``mqtt.password_file`` are read when the config has them.
    """
    username = address.username or (getattr(mqtt, "username", "") or None)
    if username is None:
        return None, None, "anonymous"
    if address.password is not None:
        return username, address.password, "password from the URL"
    password_file = getattr(mqtt, "password_file", "") or ""
    if password_file:
        try:
            text = Path(password_file).expanduser().read_text().splitlines()
            return username, (text[0] if text else ""), f"password from {password_file}"
        except OSError as exc:
            return username, None, f"password file {password_file} unreadable ({exc.strerror or exc})"
    if os.environ.get(PASSWORD_ENV) is not None:
        return username, os.environ[PASSWORD_ENV], f"password from ${PASSWORD_ENV}"
    return username, None, "no password"


def _tls_context(mqtt: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=mqtt.ca_file or None)
    if mqtt.cert_file and mqtt.key_file:
        ctx.load_cert_chain(mqtt.cert_file, mqtt.key_file)
    return ctx


def check_broker(mqtt: Any, timeout_s: float = 5.0, device_id: str | None = None) -> list[Check]:
    """TCP connect, TLS handshake (mqtts), then MQTT CONNECT -> CONNACK with paho."""
    from edge.errors import ConfigError  # noqa: PLC0415
    from edge.publish import is_loopback_host, parse_broker_url  # noqa: PLC0415

    try:
        address = parse_broker_url(mqtt.broker)
    except ConfigError as exc:
        return [Check(FAIL, "broker", str(exc))]
    password_file = getattr(mqtt, "password_file", "") or ""
    if password_file and address.password is None:
        from edge.config import secret_file_exposure  # noqa: PLC0415

        too_open = secret_file_exposure(Path(password_file).expanduser())
        if too_open:
            return [Check(FAIL, f"mqtt password_file {password_file}", f"{too_open}: the daemon refuses it")]
    what = f"broker {address.display}"
    if not address.tls and not is_loopback_host(address.host) and not mqtt.allow_plaintext_remote:
        return [Check(FAIL, what, "plaintext MQTT to a remote host: the daemon refuses it "
                                  "(use mqtts://, or set mqtt.allow_plaintext_remote)")]
    t0 = time.perf_counter()
    try:
        sock = socket.create_connection((address.host, address.port), timeout=timeout_s)
    except OSError as exc:
        return [Check(FAIL, what, f"TCP connect failed: {exc.strerror or exc or type(exc).__name__}")]
    tcp_ms = (time.perf_counter() - t0) * 1000
    with sock:
        if address.tls:
            try:
                ctx = _tls_context(mqtt)
                with ctx.wrap_socket(sock, server_hostname=address.host) as tls_sock:
                    version = tls_sock.version()
            except (ssl.SSLError, ssl.CertificateError, OSError, ValueError) as exc:
                return [Check(FAIL, what, f"TCP ok; TLS handshake failed: {_ssl_reason(exc)}")]
    username, password, cred_source = broker_credentials(mqtt, address)
    try:  # the daemon's own resolution (URL, mqtt.password_file, $EMOTION_EDGE_MQTT_PASSWORD), when it has one
        from edge.config import broker_address  # noqa: PLC0415
    except ImportError:
        pass
    else:
        try:
            resolved = broker_address(mqtt)
        except ConfigError as exc:
            return [Check(FAIL, what, str(exc))]
        username, password = resolved.username, resolved.password
    accepted, detail = _mqtt_connect(address, mqtt, username, password, timeout_s)
    tls_text = f", {version}" if address.tls else ""
    if not accepted:
        return [Check(FAIL, what, f"TCP ok{tls_text}; MQTT CONNECT {detail} ({cred_source})")]
    checks = [Check(OK, what, f"TCP {tcp_ms:.0f} ms{tls_text}; MQTT CONNECT accepted in {detail} ({cred_source})")]
    if username and device_id and username != device_id:
        # deploy/mosquitto-acl.conf: a user may write only emotion-edge/<username>/…; mosquitto drops
        # (and 2.0.x disconnects on) every other publish, so the states would never leave the outbox
        checks.append(Check(WARN, "mqtt user", f"user {username!r} differs from device id {device_id!r}: under the "
                                                 f"shipped ACL the broker refuses this device's topics"))
    return checks


def _mqtt_connect(address: Any, mqtt_cfg: Any, username: str | None, password: str | None,
                  timeout_s: float) -> tuple[bool, str]:
    """(accepted, "N ms" or why not) for one MQTT 3.1.1 CONNECT; a clean DISCONNECT afterwards."""
    try:
        import paho.mqtt.client as mqtt  # noqa: PLC0415
    except ImportError:
        return False, "not tried: paho-mqtt is not installed"
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        outcome["failure"] = bool(reason_code.is_failure)
        outcome["reason"] = str(reason_code)
        done.set()

    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"emotion-edge-doctor-{os.getpid()}", protocol=mqtt.MQTTv311, clean_session=True)
    client.on_connect = on_connect
    if username:
        client.username_pw_set(username, password)
    if address.tls:
        try:
            client.tls_set_context(_tls_context(mqtt_cfg))
        except (ssl.SSLError, OSError, ValueError) as exc:
            return False, f"not tried: TLS files ({_ssl_reason(exc)})"
    t0 = time.perf_counter()
    try:
        client.connect(address.host, address.port, keepalive=10)
    except (OSError, ValueError) as exc:
        return False, f"failed: {exc}"
    client.loop_start()
    try:
        if not done.wait(timeout_s):
            return False, f"got no CONNACK within {timeout_s:g} s"
        elapsed_ms = (time.perf_counter() - t0) * 1000
        if outcome["failure"]:
            return False, f"refused: {outcome['reason']}"
        return True, f"{elapsed_ms:.0f} ms"
    finally:
        client.disconnect()
        client.loop_stop()


# -- state dir ------------------------------------------------------------------------------------

def check_state_dir(state_dir: Path, device_id: str) -> list[Check]:
    """Writable (or creatable), and how many states wait in each outbox there (read-only look)."""
    from edge.outbox import DEFAULT_MAX_ROWS  # noqa: PLC0415

    what = f"state dir {state_dir}"
    probe_dir = state_dir
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        return [Check(FAIL, what, f"{probe_dir} is not a folder")]
    try:
        with tempfile.NamedTemporaryFile(dir=probe_dir, prefix=".doctor-"):
            pass
    except OSError as exc:
        return [Check(FAIL, what, f"not writable ({exc.strerror or exc})")]
    if probe_dir != state_dir:
        return [Check(OK, what, f"does not exist yet; {probe_dir} is writable, the daemon will create it")]
    checks = [Check(OK, what, "writable")]
    outboxes = sorted(state_dir.glob("outbox-*.sqlite3"))
    own = state_dir / f"outbox-{device_id}.sqlite3"
    if own not in outboxes:
        checks.append(Check(OK, f"outbox {device_id}", "none yet (created on the first run)"))
    for path in outboxes:
        device = path.stem[len("outbox-"):]
        try:
            depth, last_seq = _outbox_figures(path)
        except sqlite3.DatabaseError as exc:
            checks.append(Check(FAIL, f"outbox {device}", f"{path} is not a readable outbox ({exc})"))
            continue
        detail = f"{depth} state(s) waiting for the broker, last seq {last_seq}"
        if depth > DEFAULT_MAX_ROWS // 10:
            checks.append(Check(WARN, f"outbox {device}", f"{detail}: the broker has been unreachable for long"))
        else:
            checks.append(Check(OK, f"outbox {device}", detail))
    checks.append(_baselines_check(state_dir, device_id))
    denied = _denial_check(state_dir, device_id)
    if denied is not None:
        checks.append(denied)
    return checks


def _denial_check(state_dir: Path, device_id: str) -> Check | None:
    """The broker's last refusal of this device's states, as the publisher recorded it."""
    import json  # noqa: PLC0415

    from edge.publish import denial_record_path  # noqa: PLC0415

    path = denial_record_path(state_dir, device_id)
    try:
        record = json.loads(path.read_text())
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(record["since_unix"])))
        detail = (f"broker {record['broker']} refused {record['topic']} for user {record['user']!r} "
                  f"({record['reason']}) at {when}; the states wait in the outbox. Under "
                  f"deploy/mosquitto-acl.conf the MQTT username must be the device id")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        detail = f"the broker refused this device's states ({path} unreadable: {exc})"
    return Check(FAIL, f"mqtt publish {device_id}", detail)


def _baselines_check(state_dir: Path, device_id: str) -> Check:
    """The eda/cardiac/eeg trailing baselines a restart would resume (edge.baseline_store)."""
    from edge.baseline_store import SAVE_EVERY_S, describe, store_path  # noqa: PLC0415

    path = store_path(state_dir, device_id)
    what = f"baselines {device_id}"
    if not path.exists():
        return Check(OK, what, f"none yet (saved every {SAVE_EVERY_S / 60:g} minutes while eda/cardiac run)")
    try:
        return Check(OK, what, describe(path, time.time()))
    except ValueError as exc:
        return Check(WARN, what, f"{exc}; the daemon will start with fresh baselines")


def _outbox_figures(path: Path) -> tuple[int, int]:
    """(rows pending, last seq handed out) without writing (a running daemon may hold it)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        depth = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        last = conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        return int(depth), int(last[0]) if last else -1
    finally:
        conn.close()


# -- devices --------------------------------------------------------------------------------------

def check_source(spec: str) -> Check:
    """The spec parses, and the device, file or bus behind it is there."""
    from firmware_bridge.devices import open_source, parse_spec  # noqa: PLC0415

    what = f"source {spec}"
    try:
        transport, device, target = parse_spec(spec)
    except Exception as exc:  # noqa: BLE001 - SourceError: one line naming the spec
        return Check(FAIL, what, str(exc))
    if transport == "serial":
        return _check_serial(what, target)
    if transport == "ble":
        return _check_ble(what, target)
    if transport == "camera":
        return _check_camera(what, spec, target)
    try:  # simulate, replay: the constructors check options, folders and records
        source = open_source(spec, None)
    except Exception as exc:  # noqa: BLE001
        return Check(FAIL, what, str(exc).replace(f"source {spec!r}: ", ""))
    if transport == "replay":
        return Check(OK, what, f"{target.partition('?')[0]} found")
    return Check(OK, what, f"streams {'+'.join(getattr(source, 'streams', ()) or ('?',))}")


def _check_serial(what: str, target: str) -> Check:
    port = target.partition("?")[0]
    path = Path(port)
    if not path.exists():
        hint = " (is the device plugged in? ls /dev/serial/by-id/)" if port.startswith("/dev/") else ""
        return Check(FAIL, what, f"serial port {port} not found{hint}")
    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        hint = " (add the user to the dialout group)" if exc.errno in (13, 1) else ""
        return Check(FAIL, what, f"serial port {port} cannot be opened: {exc.strerror or exc}{hint}")
    try:
        is_tty = os.isatty(fd)
    finally:
        os.close(fd)
    if not is_tty:
        return Check(WARN, what, f"{port} opens but is not a terminal device")
    return Check(OK, what, f"serial port {port} opens")


def _check_ble(what: str, target: str) -> Check:
    if not DBUS_SYSTEM_SOCKET.exists():
        return Check(FAIL, what, f"BlueZ unreachable: no D-Bus system bus at {DBUS_SYSTEM_SOCKET} "
                                 f"(is dbus running? in a container, mount it)")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(str(DBUS_SYSTEM_SOCKET))
    except OSError as exc:
        return Check(FAIL, what, f"BlueZ unreachable: D-Bus system bus {DBUS_SYSTEM_SOCKET}: {exc.strerror or exc}")
    adapters = sorted(p.name for p in BLUETOOTH_SYSFS.glob("hci*")) if BLUETOOTH_SYSFS.is_dir() else []
    if not adapters:
        return Check(FAIL, what, f"no Bluetooth adapter ({BLUETOOTH_SYSFS}/hci* absent)")
    address = target.partition("?")[0]
    return Check(OK, what, f"D-Bus reachable, adapter {', '.join(adapters)}; {address} is checked when connecting "
                           f"(emotion-edge devices scan)")


def _check_camera(what: str, spec: str, target: str) -> Check:
    import re  # noqa: PLC0415

    from edge.errors import MissingExtraError  # noqa: PLC0415

    source_target = target.partition("?")[0].strip()
    pipeline = "!" in source_target
    if not pipeline and source_target.isdigit():
        node = Path(f"/dev/video{source_target}")
        if not node.exists():
            return Check(FAIL, what, f"camera index {source_target}: {node} not found")
    elif (not pipeline and not source_target.startswith("/dev/") and "://" not in source_target
          and not Path(source_target).is_file()):
        return Check(FAIL, what, f"video file {source_target} not found")
    try:
        import cv2  # noqa: PLC0415
    except ImportError:
        return Check(FAIL, what, str(MissingExtraError("OpenCV (cv2)", "camera")))
    if pipeline:
        if not re.search(r"GStreamer:\s*YES", cv2.getBuildInformation()):
            return Check(FAIL, what, f"this OpenCV ({cv2.__version__}) has no GStreamer (the pip wheels never do): "
                                     "use the distribution's python3-opencv, see docs/deploy.md")
        return Check(WARN, what, "GStreamer pipeline: OpenCV has GStreamer; the pipeline is not opened by doctor")
    cap = cv2.VideoCapture(int(source_target) if source_target.isdigit() else source_target)
    try:
        if not cap.isOpened():
            return Check(FAIL, what, f"OpenCV cannot open {source_target}")
        ok, frame = cap.read()
        if not ok or frame is None:
            return Check(FAIL, what, f"{source_target} opens but gives no frame")
        return Check(OK, what, f"opens, frame {frame.shape[1]}x{frame.shape[0]}")
    finally:
        cap.release()
