"""Shared helpers for tests that run the daemon as a real process against a real broker.

Not a test module (loaded by path, like ``fake_serial_devices.py``). It gives:

* ``PersistentMosquitto`` — mosquitto on a free port that keeps sessions across a restart
  (``persistence true``; ``stop()`` is SIGTERM, so mosquitto saves its database). A subscriber
  with a persistent session (clean_session=False, QoS 1) then misses nothing while the broker
  is down or while it is itself reconnecting: the broker queues the daemon's states for it.
  Without this, "every seq arrived" would depend on who reconnects first after a restart —
  the daemon (whose states the broker then hands to nobody) or the subscriber — and the test
  would measure a race, not the daemon.
* ``StateCollector`` — that subscriber (paho), collecting every message in arrival order.
* ``DaemonProcess`` — ``python -m edge run …`` as a subprocess with its stderr in a file,
  RSS sampling from ``/proc/<pid>/status``, SIGTERM/SIGKILL.
* ``outbox_depth``, ``missing_seqs``, ``load_test_module``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from conftest import (MOSQUITTO, free_port, load_test_module, start_mosquitto,  # noqa: F401 - shared
                      stop_process, wait_until)

TESTS_DIR = Path(__file__).resolve().parent
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or next(
    (p for p in ("/usr/bin/mosquitto_passwd", "/usr/local/bin/mosquitto_passwd") if Path(p).exists()), None)


class PersistentMosquitto:
    """mosquitto on 127.0.0.1:<free port>, restartable on the same port, sessions kept across restarts.

    ``extra`` lines go into the config (e.g. ``password_file``/``acl_file``); ``anonymous`` sets
    ``allow_anonymous``.
    """

    def __init__(self, workdir: Path, *, anonymous: bool = True, extra: str = "") -> None:
        if MOSQUITTO is None:
            raise RuntimeError("mosquitto is not installed")
        self.host = "127.0.0.1"
        self.port = free_port()
        self.workdir = Path(workdir)
        self.kind = "mosquitto"
        (self.workdir / "mosquitto-db").mkdir(parents=True, exist_ok=True)
        self.conf = self.workdir / f"mosquitto-{self.port}.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'true' if anonymous else 'false'}\n"
            f"persistence true\npersistence_location {self.workdir / 'mosquitto-db'}/\n"
            "max_queued_messages 0\nmax_inflight_messages 0\n"
            f"log_dest file {self.workdir / 'mosquitto.log'}\nlog_type error\nlog_type warning\n"
            # run as root, mosquitto would switch to its own user, who cannot read pytest's tmp dir
            + ("user root\n" if os.geteuid() == 0 else "")
            + extra
        )
        self._proc: subprocess.Popen | None = None
        self.restarts = 0
        self.restart()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def restart(self) -> None:
        """Start (again) on the same port; returns once the port accepts connections."""
        if self._proc is not None:
            self.stop()
        self._proc = start_mosquitto(self.conf, self.port, self.workdir / "mosquitto.log", timeout_s=15)
        self.restarts += 1

    def stop(self) -> None:
        """SIGTERM: mosquitto disconnects everyone and saves its sessions and queued messages."""
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None


class StateCollector:
    """A paho subscriber to ``<prefix>/<device>/#`` with a persistent session (QoS 1).

    Reconnects on its own after a broker restart (paho's loop thread); the broker keeps its
    subscription and queues what arrives meanwhile.
    """

    def __init__(self, host: str, port: int, device: str = "+", *, prefix: str = "emotion-edge",
                 client_id: str | None = None, username: str | None = None, password: str | None = None,
                 persistent: bool = True, topic: str | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.connects = 0
        self.topic = topic or f"{prefix}/{device}/#"
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"collector-{os.getpid()}-{time.monotonic_ns()}",
                                  protocol=mqtt.MQTTv311, clean_session=not persistent)
        if username:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = self._on_connect
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise RuntimeError(f"subscriber to {self.topic} got no SUBACK from {host}:{port}")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            self.connects += 1
            client.subscribe(self.topic, qos=1)

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def raw_states(self) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t.endswith("/state")]

    def states(self) -> list[dict]:
        return [json.loads(p) for p in self.raw_states()]

    def seqs(self) -> list[int]:
        return [s["seq"] for s in self.states()]

    def statuses(self) -> list[str]:
        with self._lock:
            return [p.decode() for t, p, _ in self.messages if t.endswith("/status")]

    def wait_for(self, predicate: Callable[[StateCollector], bool], timeout_s: float = 15.0) -> bool:
        return wait_until(lambda: predicate(self), timeout_s)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def missing_seqs(seqs: list[int], first: int, last: int) -> list[int]:
    """Seqs in [first, last] that never arrived."""
    return sorted(set(range(first, last + 1)) - set(seqs))


def conflicting_seqs(raw_states: list[bytes]) -> list[int]:
    """Seqs that arrived with different payloads (a reused seq; a plain re-send is byte-identical)."""
    seen: dict[int, bytes] = {}
    bad = set()
    for payload in raw_states:
        seq = json.loads(payload)["seq"]
        if seen.setdefault(seq, payload) != payload:
            bad.add(seq)
    return sorted(bad)


def outbox_depth(state_dir: Path, device: str) -> int:
    """Rows still waiting for a PUBACK in the daemon's outbox (read-only look)."""
    path = Path(state_dir) / f"outbox-{device}.sqlite3"
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    finally:
        conn.close()


def rss_kb(pid: int) -> int | None:
    """Resident set size of a process in kB (VmRSS), None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


class DaemonProcess:
    """``python -m edge run ARGS`` in its own process; stdout/stderr go to files in ``workdir``."""

    def __init__(self, args: list[str], workdir: Path, env: dict[str, str] | None = None, name: str = "daemon") -> None:
        self.args = ["run", *args]
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.err_path = self.workdir / f"{name}.stderr"
        self.out_path = self.workdir / f"{name}.stdout"
        full_env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        full_env.update(env or {})  # a test may hand the daemon its own notify socket
        with open(self.err_path, "wb") as err, open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "edge", *self.args], cwd=TESTS_DIR,
                                         env=full_env, stdout=out, stderr=err)
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout_s: float) -> int:
        return self.proc.wait(timeout=timeout_s)

    def terminate(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def rss_kb(self) -> int | None:
        return rss_kb(self.proc.pid)

    def wait_for_log(self, text: str, timeout_s: float) -> bool:
        return wait_until(lambda: text in self.stderr() or not self.alive(), timeout_s) and text in self.stderr()

    def close(self) -> None:
        """Make sure the process is gone (a failed test must not leave a daemon behind)."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def outbox_last_seq(state_dir: Path, device: str) -> int:
    """The last seq the daemon handed out (the outbox's counter; -1 before the first)."""
    path = Path(state_dir) / f"outbox-{device}.sqlite3"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0]
    finally:
        conn.close()


def make_password_file(path: Path, users: dict[str, str]) -> Path:
    """A mosquitto password file made with ``mosquitto_passwd -b`` (hashed, as in production)."""
    if MOSQUITTO_PASSWD is None:
        raise RuntimeError("mosquitto_passwd is not installed")
    path = Path(path)
    path.write_text("")
    for user, password in users.items():
        subprocess.run([MOSQUITTO_PASSWD, "-b", str(path), user, password], check=True, capture_output=True, timeout=30)
    path.chmod(0o600)
    return path
