"""Faults a wearable meets in the field, with real processes: the daemon (``python -m edge run``),
mosquitto, a paho subscriber, and fake sensors on real pseudo-terminals.

What a user would notice and what these tests pin down:

* the broker going away and coming back (three times, mid-stream): not one state is lost;
* the daemon killed (-9) while the broker is away, then started again on the same state dir:
  the states it held are delivered, the seq carries on, no seq is reused;
* a sensor that sends garbage, falls silent and comes back: the daemon stays up, says the
  modality is missing and why, and takes it back when the data returns;
* a bad config or broken models: one readable line and a non-zero exit when nothing can run,
  the modality named missing when the others can.

The subscriber holds a persistent session on a mosquitto that keeps sessions across restarts
(see ``daemon_harness``), so "every seq arrived" measures the daemon, not who reconnects first.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from conftest import load_test_module  # noqa: E402

harness = load_test_module("daemon_harness")

from edge.models import models_dir  # noqa: E402

DEVICE = "fault1"
pytestmark = pytest.mark.skipif(harness.MOSQUITTO is None, reason="mosquitto is not installed")


@pytest.fixture
def broker(persistent_mosquitto):
    return persistent_mosquitto


@pytest.fixture
def collector(broker):
    c = harness.StateCollector(broker.host, broker.port, DEVICE, client_id=f"dashboard-{broker.port}")
    yield c
    c.close()


def published_count(stderr: str) -> int:
    """States the daemon says it published (its last INFO line: 'stopped: N states published')."""
    found = re.findall(r"stopped: (\d+) states published", stderr)
    assert found, f"daemon did not log its final count:\n{stderr[-2000:]}"
    return int(found[-1])


def assert_no_gaps(collector, first: int, last: int) -> None:
    seqs = collector.seqs()
    gaps = harness.missing_seqs(seqs, first, last)
    assert not gaps, f"{len(gaps)} of {last - first + 1} states never arrived: {gaps[:20]}…"
    assert not harness.conflicting_seqs(collector.raw_states()), "a seq was reused for a different state"


# -- (a) the broker stopped and restarted three times mid-stream -------------------------------

def test_broker_restarted_three_times_mid_stream_loses_no_state(broker, collector, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[fusion]\nhop_s = 1.0\n")  # a state per simulated second: ~30 a second at speed 30
    state_dir = tmp_path / "state"
    daemon = harness.DaemonProcess(
        ["--config", str(config), "--source", "simulate:duration=600,seed=3", "--speed", "30",
         "--broker", broker.url, "--device-id", DEVICE, "--state-dir", str(state_dir)], tmp_path)
    try:
        assert collector.wait_for(lambda c: len(c.seqs()) >= 20, 60), daemon.stderr()[-2000:]
        arrived_before_outage = []
        for _ in range(3):
            time.sleep(2.5)  # the stream keeps flowing
            arrived_before_outage.append(len(set(collector.seqs())))  # re-sent states count once
            broker.stop()
            time.sleep(1.5)  # states pile up in the daemon's outbox meanwhile
            assert daemon.alive(), daemon.stderr()[-2000:]
            broker.restart()
        rc = daemon.wait(120)
    finally:
        daemon.close()
    err = daemon.stderr()
    assert rc == 0, err[-3000:]
    assert err.count("unreachable") >= 3, f"the daemon never noticed the outages:\n{err[-3000:]}"
    n = published_count(err)
    assert n >= 500, n  # 600 simulated s at a 1-s fusion hop, minus the first window
    assert collector.wait_for(lambda c: len(set(c.seqs())) >= n, 30)
    assert_no_gaps(collector, 0, n - 1)
    assert max(collector.seqs()) == n - 1
    assert collector.connects >= 4  # the subscriber, too, lived through every restart
    # the outages really were mid-stream: states arrived before each of them and after the last
    assert arrived_before_outage == sorted(arrived_before_outage) and arrived_before_outage[0] >= 20
    assert len(set(collector.seqs())) > arrived_before_outage[-1]
    assert harness.outbox_depth(state_dir, DEVICE) == 0
    assert collector.statuses()[-1] == "offline"


# -- (b) the daemon killed -9 while the broker is down, then restarted ----------------------------

def test_daemon_killed_during_an_outage_delivers_its_states_after_restart(broker, collector, tmp_path):
    state_dir = tmp_path / "state"
    config = tmp_path / "c.toml"
    config.write_text("[fusion]\nhop_s = 1.0\n")
    common = ["--config", str(config), "--broker", broker.url, "--device-id", DEVICE, "--state-dir", str(state_dir)]
    first = harness.DaemonProcess(["--source", "simulate:seed=5", "--speed", "20", *common], tmp_path, name="first")
    try:
        assert collector.wait_for(lambda c: len(c.seqs()) >= 10, 60), first.stderr()[-2000:]
        broker.stop()
        assert first.wait_for_log("unreachable", 15), first.stderr()[-2000:]
        time.sleep(2.0)  # ~40 simulated s: states go to the outbox only
        first.proc.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.close()
    stranded = harness.outbox_depth(state_dir, DEVICE)
    last_first_run = harness.outbox_last_seq(state_dir, DEVICE)
    assert stranded >= 10, f"only {stranded} states were waiting in the outbox when the daemon died"
    got_before = set(collector.seqs())
    assert max(got_before) < last_first_run
    broker.restart()
    second = harness.DaemonProcess(["--source", "simulate:duration=60,seed=6", "--speed", "max", *common],
                                   tmp_path, name="second")
    try:
        rc = second.wait(120)
    finally:
        second.close()
    assert rc == 0, second.stderr()[-3000:]
    n_second = published_count(second.stderr())
    assert n_second >= 30
    last = last_first_run + n_second  # the second run's seqs carry on from the first run's
    assert collector.wait_for(lambda c: last in c.seqs() and c.statuses()[-1:] == ["offline"], 30), \
        (max(collector.seqs()), last)
    assert max(collector.seqs()) == last
    # the first run's states (delivered before the kill, or stranded in the outbox) and the
    # second run's: one unbroken run of seqs from 0, each seq one state
    assert_no_gaps(collector, 0, last)
    assert harness.outbox_depth(state_dir, DEVICE) == 0


# -- (c) a sensor that corrupts, vanishes and comes back ---------------------------------------

fake_serial = harness.load_test_module("fake_serial_devices")


class EegCyton(fake_serial.FakeCyton):
    """The fake Cyton sending EEG-like µV (alpha, theta, beta, noise ~20 µV) instead of counter
    patterns, so the daemon's EEG quality means something; records when packet ``mark`` went out."""

    def __init__(self, *args, marks: tuple[int, ...] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.marks = set(marks)
        self.sent_at: dict[int, float] = {}
        self.scale = fake_serial.cyton.uv_per_count(fake_serial.cyton.DEFAULT_GAIN)

    def packet(self, k: int) -> bytes:
        import numpy as np

        if k in self.marks:
            self.sent_at[k] = time.time()
        t = k / fake_serial.cyton.RATE_HZ
        ch = np.arange(fake_serial.cyton.N_CHANNELS)
        rng = np.random.default_rng(k)
        uv = (15 * np.sin(2 * np.pi * 10 * t + ch) + 8 * np.sin(2 * np.pi * 6 * t + 2 * ch)
              + 4 * np.sin(2 * np.pi * 20 * t + 3 * ch) + rng.normal(0, 4, ch.size))
        counts = []
        for value in np.round(uv / self.scale).astype(int):
            while 0xA0 in (int(value) & 0xFFFFFF).to_bytes(3, "big"):  # no false sync byte inside
                value += 1
            counts.append(int(value))
        return fake_serial.cyton.encode_cyton_packet(k, counts)


def _eeg_quality_by_ts(states: list[dict]) -> dict[float, float]:
    return {s["modalities"]["eeg"]["ts"]: s["modalities"]["eeg"]["quality"] for s in states if "eeg" in s["modalities"]}


def test_a_sensor_that_corrupts_vanishes_and_returns_is_reported_then_taken_back(broker, collector, tmp_path):
    if not (models_dir() / "eda.tflite").exists():
        pytest.fail(f"the shipped eda model is missing from {models_dir()} (the steady second modality here)")
    rate = fake_serial.cyton.RATE_HZ
    bad_from, bad_to = int(5 * rate), int(11 * rate)  # packets 5-11 s into the stream: 1 in 3 corrupted
    faults = {k: "corrupt" for k in range(bad_from, bad_to) if k % 3 == 0}
    link = str(tmp_path / "ttyCYTON")
    first = EegCyton(faults=faults, link=link, marks=(bad_from, bad_to))
    first.start()
    second = None
    config = tmp_path / "c.toml"
    # a short EDA window so that the second modality (the simulator's wrist EDA) is up within seconds;
    # a quick fusion hop so the outage shows in several states
    config.write_text("[fusion]\nhop_s = 2.0\nmax_lag_s = 3.0\nstale_hops = 1.0\nstale_slack_s = 1.0\n"
                      "[windows.eda]\nlength_s = 10.0\nhop_s = 2.0\n")
    daemon = harness.DaemonProcess(
        ["--config", str(config), "--source", f"serial:cyton:{link}", "--source", "simulate:streams=eda,seed=2",
         "--speed", "1", "--duration", "90", "--broker", broker.url, "--device-id", DEVICE,
         "--state-dir", str(tmp_path / "state")], tmp_path)
    try:
        assert daemon.wait_for_log(f"serial:cyton:{link}: connected", 20), daemon.stderr()[-2000:]
        time.sleep(max(0.0, 18 - (time.monotonic() - daemon.started)))
        vanished = time.time()
        first.vanish()  # unplugged: the port disappears
        time.sleep(7)
        assert daemon.alive(), daemon.stderr()[-3000:]
        second = EegCyton(link=link)  # plugged back in: a new pty behind the same path
        second.start()
        # "back" is when the daemon has the board again, not when it was plugged in: the reconnect
        # backoff (up to a few seconds) otherwise leaves the first windows half empty
        assert daemon.wait_for_log(f"serial:cyton:{link}: reconnected", 10), daemon.stderr()[-3000:]
        back = time.time()
        # stop once two EEG windows lie wholly after the reconnect (a fixed --duration left too few of
        # them when the suite's load made the reconnect late); --duration above is only a safety cap
        collector.wait_for(lambda c: sum(ts > back + 4 for ts in _eeg_quality_by_ts(c.states())) >= 2, 30)
        daemon.terminate()
        rc = daemon.wait(30)
    finally:
        daemon.close()
        first.vanish()
        if second is not None:
            second.vanish()
    err = daemon.stderr()
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err
    assert collector.wait_for(lambda c: c.statuses()[-1:] == ["offline"], 10)
    states = collector.states()
    assert states, err[-3000:]
    by_ts = _eeg_quality_by_ts(states)  # EEG estimate time -> its quality
    t_bad_from, t_bad_to = first.sent_at[bad_from], first.sent_at[bad_to]
    clean = [q for ts, q in by_ts.items() if ts < t_bad_from or t_bad_to + 4 < ts < vanished - 0.5]
    corrupted = [q for ts, q in by_ts.items() if t_bad_from + 4.5 < ts < t_bad_to - 0.5]
    # a clean signal: the EEG contributes with a high quality
    assert clean and min(clean) > 0.5, by_ts
    # a third of the packets corrupted (dropped by the decoder): the quality falls with the coverage
    assert corrupted and max(corrupted) < 0.8 * min(clean), (corrupted, clean)
    # while the sensor is gone the daemon keeps publishing (EDA) and names the EEG missing, with a reason
    outage = [s for s in states if vanished + 4.5 < s["ts"] <= back]
    assert outage, [round(s["ts"] - vanished, 1) for s in states]
    for s in outage:
        assert "eeg" in s["missing"] and "eeg" not in s["modalities"], s
        assert s["missing_reasons"]["eeg"], s
        assert "eda" in s["modalities"], s
    # plugged back in: the EEG is taken back at a clean signal's quality
    again = [q for ts, q in by_ts.items() if ts > back + 4]
    assert again and min(again) > 0.5, (by_ts, back)
    assert "eeg" in states[-1]["modalities"]
    cyton_lines = [ln for ln in err.splitlines() if f"serial:cyton:{link}" in ln]
    assert sum("connection lost" in ln for ln in cyton_lines) == 1, err[-3000:]
    assert sum("reconnected" in ln for ln in cyton_lines) == 1, err[-3000:]
    assert sum("cannot open" in ln for ln in cyton_lines) <= 1, "a retry loop must not flood the log"


# -- (d) bad configs and broken models ------------------------------------------------------------



def _run(*args: str, env: dict | None = None, timeout: float = 60):
    """``emotion-edge run ARGS`` to completion; (exit code, non-empty stderr lines)."""
    import subprocess

    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "edge", "run", *args], cwd=harness.TESTS_DIR, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, [ln for ln in proc.stderr.splitlines() if ln.strip()]


@pytest.mark.parametrize("toml, says", [
    ("[mqtt]\nbrokr = 'mqtt://127.0.0.1'\n", "unknown key 'mqtt.brokr'"),
    ("[fusion]\nhop_s = -1\n", "fusion.hop_s: must be > 0, got -1"),
    ("[daemon]\nsources = ['serial:cyton']\n", "daemon.sources[0]"),
    ("[mqtt]\nbroker = 'http://127.0.0.1:1883'\n", "mqtt.broker"),
    ("[mqtt]\nbroker = 'mqtts://127.0.0.1:8883'\nca_file = '/nonexistent/ca.pem'\n", "/nonexistent/ca.pem"),
    ("[fusion\nhop_s = 1\n", "not valid TOML"),
])
def test_a_bad_config_is_one_line_naming_the_key_and_a_non_zero_exit(tmp_path, toml, says):
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    # no --source flag: it would replace daemon.sources from the file
    rc, lines = _run("--config", str(config), "--state-dir", str(tmp_path / "state"), "--duration", "5")
    assert rc != 0
    assert len(lines) == 1, lines
    assert lines[0].startswith("emotion-edge run: ") and says in lines[0], lines


@pytest.mark.parametrize("make, says", [
    (lambda p: p, "cannot read"),  # a folder where the file should be
    (lambda p: p / "missing.toml", "file not found"),
    (lambda p: (p / "latin1.toml").write_bytes(b"[daemon]\ndevice_id = '\xe9'\n") and p / "latin1.toml", "cannot read"),
])
def test_an_unreadable_config_file_is_one_line_naming_it(tmp_path, make, says):
    path = make(tmp_path)
    rc, lines = _run("--config", str(path), "--state-dir", str(tmp_path / "state"), "--duration", "0")
    assert rc != 0
    assert len(lines) == 1 and str(path) in lines[0] and says in lines[0], lines


def test_a_bad_flag_value_is_one_line(tmp_path):
    rc, lines = _run("--source", "simulate", "--speed", "fast", "--state-dir", str(tmp_path / "state"))
    assert rc != 0 and len(lines) == 1 and "--speed" in lines[0] and "'fast'" in lines[0], lines


def _copy_models(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    shutil.copytree(models_dir(), models, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return models


def test_no_models_at_all_means_nothing_can_run(broker, tmp_path):
    empty = tmp_path / "no-models"
    empty.mkdir()
    rc, lines = _run("--source", "simulate:duration=30", "--speed", "max", "--broker", broker.url,
                     "--state-dir", str(tmp_path / "state"), env={"EMOTION_EDGE_MODELS_DIR": str(empty)})
    assert rc != 0
    assert not any("Traceback" in ln for ln in lines), lines
    assert "nothing can run" in lines[-1] and lines[-1].startswith("emotion-edge run: "), lines
    # each model that could not be loaded is named once, with where it was looked for
    for name in ("eeg", "eda", "cardiac"):
        assert sum(f"{empty}/{name}.json" in ln for ln in lines[:-1]) == 1, lines


def test_a_tampered_model_of_the_only_fed_modality_stops_with_its_name(broker, tmp_path):
    models = _copy_models(tmp_path)
    data = bytearray((models / "eeg.tflite").read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    (models / "eeg.tflite").write_bytes(bytes(data))
    rc, lines = _run("--source", "simulate:duration=30,streams=eeg", "--speed", "max", "--broker", broker.url,
                     "--state-dir", str(tmp_path / "state"), env={"EMOTION_EDGE_MODELS_DIR": str(models)})
    assert rc != 0
    assert sum("eeg" in ln and "sha256" in ln and "refusing" in ln for ln in lines) >= 1, lines
    assert "nothing can run" in lines[-1] and "eeg" in lines[-1] and "sha256" in lines[-1], lines


def test_a_missing_model_file_is_named_missing_and_the_others_run(broker, collector, tmp_path):
    models = _copy_models(tmp_path)
    for name in ("eda", "cardiac"):
        if not (models / f"{name}.tflite").exists():
            pytest.fail(f"the shipped {name} model is missing")
    (models / "eeg.tflite").unlink()
    rc, lines = _run("--source", "simulate:duration=400", "--speed", "max", "--broker", broker.url,
                     "--device-id", DEVICE, "--state-dir", str(tmp_path / "state"),
                     env={"EMOTION_EDGE_MODELS_DIR": str(models)}, timeout=120)
    assert rc == 0, lines
    assert sum("eeg.tflite" in ln and "not found" in ln for ln in lines) == 1, lines
    assert collector.wait_for(lambda c: c.statuses()[-1:] == ["offline"], 15)
    states = collector.states()
    assert states
    for s in states:
        assert "eeg" in s["missing"] and "not found" in s["missing_reasons"]["eeg"], s
        assert "eeg" not in s["modalities"] and "eeg" not in s["models"]
    assert {"eda", "cardiac"} & set(states[-1]["modalities"])


# -- (e) the systemd contract: READY once running, WATCHDOG while alive, STOPPING on SIGTERM ---------

def test_sd_notify_ready_watchdog_and_stopping_under_sigterm(broker, collector, tmp_path):
    import socket

    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    messages: list[tuple[float, str]] = []
    daemon = harness.DaemonProcess(
        ["--source", "simulate:seed=4", "--speed", "5", "--broker", broker.url, "--device-id", DEVICE,
         "--state-dir", str(tmp_path / "state")], tmp_path,
        env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"})  # WatchdogSec=2 s: pet every 1 s
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum("WATCHDOG=1" in m for _, m in messages) < 4:
            try:
                messages.append((time.monotonic(), sock.recv(4096).decode()))
            except socket.timeout:
                pass
        assert collector.wait_for(lambda c: len(c.seqs()) >= 1, 30), daemon.stderr()[-2000:]
        daemon.terminate()
        rc = daemon.wait(30)
        while True:
            try:
                messages.append((time.monotonic(), sock.recv(4096).decode()))
            except socket.timeout:
                break
    finally:
        daemon.close()
        sock.close()
    assert rc == 0, daemon.stderr()[-2000:]
    texts = [m for _, m in messages]
    assert texts and texts[0].startswith("READY=1"), texts[:3]
    pets = [t for t, m in messages if m == "WATCHDOG=1"]
    assert len(pets) >= 4, texts
    assert max(b - a for a, b in zip(pets, pets[1:])) < 2.0, "a watchdog gap longer than WatchdogSec"
    assert "STOPPING=1" in texts[-3:], texts[-5:]
    assert collector.wait_for(lambda c: c.statuses()[-1:] == ["offline"], 10)
