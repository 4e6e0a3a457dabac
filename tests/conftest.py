"""Shared test helpers. Tests import the *installed* package (see Makefile: --import-mode=importlib)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("EMOTION_EDGE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def load_test_module(name: str):
    """Import ``tests/<name>.py`` by path, once (--import-mode=importlib keeps tests/ off sys.path).

    ``name`` may name a helper in a subfolder, e.g. ``hostile/inputs_harness``.
    """
    import importlib.util

    module_name = name.replace("/", "_")
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, Path(__file__).parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None,
            check: bool = False) -> subprocess.CompletedProcess:
    """Run ``emotion-edge ARGS`` as a user would, in a separate process; returns the completed process."""
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "edge", *args], cwd=cwd or REPO_ROOT / "tests",
                          capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"emotion-edge {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def shared_data() -> Path:
    """The real datasets beside the repo (../shared/data); tests needing them skip where absent."""
    if not SHARED_DATA.exists():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


# --- MQTT: a real broker per test (mosquitto where installed, else the embedded broker) ---------

import shutil  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402

MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_mosquitto(conf: Path, port: int, log: Path, timeout_s: float = 10.0) -> subprocess.Popen:
    """``mosquitto -c CONF``, returned once ``port`` accepts connections.

    Retried until ``timeout_s``: the port can stay busy for a moment after a stop.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        with open(log, "ab") as log_file:
            proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log_file, stderr=subprocess.STDOUT)
        if wait_until(lambda: port_open(port) or proc.poll() is not None, 3) and proc.poll() is None:
            return proc
        stop_process(proc)
        if time.monotonic() > deadline:
            raise RuntimeError(f"mosquitto did not start on port {port}: "
                               f"{log.read_text(errors='replace')[-500:] if log.exists() else ''}")
        time.sleep(0.2)


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM (mosquitto then disconnects everyone and saves its sessions), SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def wait_until(predicate, timeout_s: float = 15.0, step_s: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout_s`` has passed (its last answer)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return bool(predicate())


class TestBroker:
    """A broker on 127.0.0.1:port that a test can stop and restart on the same port."""

    __test__ = False  # not a test class

    def __init__(self, kind: str, workdir: Path) -> None:
        if kind == "mosquitto" and MOSQUITTO is None:
            pytest.skip("mosquitto is not installed")
        self.kind = kind
        self.host = "127.0.0.1"
        self.port = free_port()
        self.workdir = workdir
        self._proc: subprocess.Popen | None = None
        self._embedded = None
        self.restart()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None or self._embedded is not None

    def restart(self) -> None:
        """Start (again) on the same port; returns once the port accepts connections."""
        if self.running:
            self.stop()
        if self.kind == "mosquitto":
            conf = self.workdir / f"mosquitto-{self.port}.conf"
            conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
            self._proc = start_mosquitto(conf, self.port, self.workdir / f"mosquitto-{self.port}.log")
        else:
            from edge.broker import EmbeddedBroker

            deadline = time.monotonic() + 10
            while True:
                broker = EmbeddedBroker("127.0.0.1", self.port)
                try:
                    broker.start()
                    self._embedded = broker
                    return
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None


@pytest.fixture
def mqtt_broker(tmp_path: Path):
    """mosquitto on a free port (EMOTION_EDGE_TEST_BROKER=embedded forces the embedded broker)."""
    kind = os.environ.get("EMOTION_EDGE_TEST_BROKER") or ("mosquitto" if MOSQUITTO else "embedded")
    broker = TestBroker(kind, tmp_path)
    yield broker
    broker.stop()


@pytest.fixture
def persistent_mosquitto(tmp_path: Path):
    """mosquitto keeping its sessions on disk (``daemon_harness.PersistentMosquitto``): it can be stopped and
    restarted mid-test, as a broker that goes away and comes back."""
    broker = load_test_module("daemon_harness").PersistentMosquitto(tmp_path / "broker")
    yield broker
    broker.stop()


@pytest.fixture
def embedded_broker(tmp_path: Path):
    """Explicitly the embedded broker (edge.broker.EmbeddedBroker), same interface as mqtt_broker."""
    broker = TestBroker("embedded", tmp_path)
    yield broker
    broker.stop()
