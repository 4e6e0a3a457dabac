"""The daemon end to end: real sources, the real shipped models, a real broker, a real subscriber."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, run_cli

from edge.models import models_dir
from edge.publish import validate_state

DEVICE = "t1"


class Collector:
    """A paho subscriber on ``emotion-edge/<device>/#`` that keeps every message in arrival order."""

    def __init__(self, broker, device: str = DEVICE):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"collector-{time.monotonic_ns()}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(f"emotion-edge/{device}/#", qos=1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscriber did not get SUBACK"

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def states(self) -> list[dict]:
        with self._lock:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith("/state")]

    def statuses(self) -> list[str]:
        with self._lock:
            return [p.decode() for t, p, r in self.messages if t.endswith("/status")]

    def modality_payloads(self) -> list[dict]:
        with self._lock:
            return [json.loads(p) for t, p, _ in self.messages if "/modality/" in t]

    def wait_for(self, predicate, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def run_collecting(broker, device: str, run):
    """(finished process, its states): ``run()`` runs a daemon to its end while a Collector listens on
    ``device``'s topics; the states are read once its status says offline (nothing still in flight)."""
    collector = Collector(broker, device=device)
    try:
        proc = run()
        assert proc.returncode == 0, proc.stderr
        assert collector.wait_for(lambda c: c.statuses()[-1:] == ["offline"])
        return proc, collector.states()
    finally:
        collector.close()


@pytest.fixture
def collector(mqtt_broker):
    c = Collector(mqtt_broker)
    yield c
    c.close()


def live_statuses(statuses: list[str]) -> list[str]:
    """Drop a retained status left by an earlier run (the first message, when retained)."""
    return statuses


def assert_valid_states(states: list[dict]) -> None:
    assert states, "no states received"
    for state in states:
        problems = validate_state(state)
        assert not problems, f"state {state.get('seq')}: {problems}"
    seqs = [s["seq"] for s in states]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"seq gaps or repeats: {seqs}"


def test_simulated_run_publishes_valid_states_then_goes_offline(mqtt_broker, collector, tmp_path):
    proc = run_cli("run", "--source", "simulate:duration=360,seed=7", "--speed", "max", "--broker", mqtt_broker.url,
                   "--device-id", DEVICE, "--state-dir", str(tmp_path / "state"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert collector.wait_for(lambda c: c.statuses()[-1:] == ["offline"] and len(c.statuses()) >= 2)
    statuses = collector.statuses()
    assert statuses[-2:] == ["online", "offline"]
    states = collector.states()
    assert_valid_states(states)
    # 360 simulated s at a 5 s fusion hop: a state per hop from the first (EEG) window on
    assert len(states) >= 360 / 5 - 2, len(states)
    ts = [s["ts"] for s in states]
    assert all(b > a for a, b in zip(ts, ts[1:]))
    for state in states:
        assert set(state["modalities"]) | set(state["missing"]) <= {"eeg", "cardiac", "eda"}
        assert "face" not in state["missing"]  # no camera configured: face is not expected
        assert set(state["models"]) >= set(state["modalities"])
        assert abs(sum(m["weight"] for m in state["modalities"].values()) - 1.0) < 1e-3
    # by the end (past the longest window) every modality the simulator feeds contributes
    assert set(states[-1]["modalities"]) == {"eeg", "cardiac", "eda"}, states[-1]
    present = set().union(*(s["modalities"] for s in states))
    assert present, "no modality ever contributed"
    mods = collector.modality_payloads()
    assert mods and all({"seq", "ts", "modality", "quality", "outputs", "model_version"} <= set(m) for m in mods)


def test_a_restart_continues_seq_without_reuse(mqtt_broker, collector, tmp_path):
    args = ("run", "--source", "simulate:duration=30", "--speed", "max", "--broker", mqtt_broker.url,
            "--device-id", DEVICE, "--state-dir", str(tmp_path / "state"))
    first = run_cli(*args, timeout=120)
    second = run_cli(*args, timeout=120)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert collector.wait_for(lambda c: c.statuses().count("offline") >= 2)
    seqs = [s["seq"] for s in collector.states()]
    assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs)


def write_e4_session(folder: Path, start_unix: float, duration_s: float, seed: int = 3) -> None:
    """An Empatica E4 export (EDA.csv 4 Hz, BVP.csv 64 Hz, empty IBI.csv) in the vendor's layout."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    t_eda = np.arange(int(duration_s * 4)) / 4.0
    eda = 2.0 + 0.3 * np.sin(2 * np.pi * t_eda / 200.0)
    for onset in rng.uniform(0, duration_s, size=int(duration_s / 20)):  # SCRs: Bateman-like responses
        dt = np.clip(t_eda - onset, 0, None)
        eda += 0.3 * (np.exp(-dt / 4.0) - np.exp(-dt / 0.75)) * (t_eda > onset)
    eda += rng.normal(0, 0.002, eda.shape)
    (folder / "EDA.csv").write_text(f"{start_unix:.6f}\n4.000000\n" + "\n".join(f"{v:.6f}" for v in eda) + "\n")
    t_bvp = np.arange(int(duration_s * 64)) / 64.0
    n_beats = int(duration_s / 0.7) + 10
    ibi = 0.8 + 0.05 * np.sin(2 * np.pi * np.arange(n_beats) * 0.8 / 4.0) + rng.normal(0, 0.02, n_beats)
    beats = np.cumsum(ibi)
    beats = beats[beats < duration_s]
    phase = np.zeros_like(t_bvp)
    idx = np.searchsorted(beats, t_bvp)
    prev = np.where(idx > 0, beats[np.maximum(idx - 1, 0)], 0.0)
    phase = t_bvp - prev
    bvp = 80.0 * np.exp(-((phase - 0.15) ** 2) / (2 * 0.05 ** 2)) + 30.0 * np.exp(-((phase - 0.4) ** 2) / (2 * 0.08 ** 2))
    bvp = bvp - bvp.mean() + rng.normal(0, 1.0, bvp.shape)
    (folder / "BVP.csv").write_text(f"{start_unix:.6f}\n64.000000\n" + "\n".join(f"{v:.2f}" for v in bvp) + "\n")
    (folder / "IBI.csv").write_text(f"{start_unix:.6f}, IBI\n")


def test_replay_states_carry_the_recordings_clock(mqtt_broker, collector, tmp_path):
    start = 1_500_000_000.0
    duration = 400.0  # longer than the eda/cardiac window (300 s in the shipped manifests)
    write_e4_session(tmp_path / "S01", start, duration)
    proc = run_cli("run", "--source", f"replay:e4:{tmp_path / 'S01'}", "--speed", "max", "--broker", mqtt_broker.url,
                   "--device-id", DEVICE, "--state-dir", str(tmp_path / "state"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert collector.wait_for(lambda c: "offline" in c.statuses())
    states = collector.states()
    assert_valid_states(states)
    for s in states:
        assert start < s["ts"] <= start + duration + 1e-6, s["ts"]  # the recording's time, not the wall clock
        for entry in s["modalities"].values():
            assert start < entry["ts"] <= s["ts"] + 1e-6
        assert "eeg" not in s["missing"] and "face" not in s["missing"]  # an E4 has neither
    ts = np.array([s["ts"] for s in states])
    hops = np.diff(ts[:-1])  # the last state is the final, partial window
    assert np.allclose(hops, 5.0), hops
    assert ts[-1] == pytest.approx(start + duration, abs=5.0)  # the tail of the recording is published


def test_tampered_model_is_refused_and_the_rest_carries_on(mqtt_broker, collector, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(models_dir(), models, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    if not (models / "eda.tflite").exists():
        pytest.fail("the shipped eda model is missing")
    data = bytearray((models / "eda.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (models / "eda.tflite").write_bytes(bytes(data))
    proc = run_cli("run", "--source", "simulate:duration=90", "--speed", "max", "--broker", mqtt_broker.url,
                   "--device-id", DEVICE, "--state-dir", str(tmp_path / "state"), timeout=120,
                   env={"EMOTION_EDGE_MODELS_DIR": str(models)})
    assert proc.returncode == 0, proc.stderr
    named = [ln for ln in proc.stderr.splitlines() if "eda" in ln and "sha256" in ln]
    assert len(named) == 1, proc.stderr
    assert collector.wait_for(lambda c: "offline" in c.statuses())
    states = collector.states()
    assert_valid_states(states)
    for s in states:
        assert "eda" in s["missing"] and "sha256" in s["missing_reasons"]["eda"]
        assert "eda" not in s["modalities"] and "eda" not in s["models"]
    assert any(s["modalities"] for s in states)


def test_a_source_that_cannot_open_is_reported_and_the_others_run(mqtt_broker, collector, tmp_path):
    proc = run_cli("run", "--source", "simulate:duration=40,streams=eeg", "--source", f"replay:e4:{tmp_path / 'nope'}",
                   "--speed", "max", "--broker", mqtt_broker.url, "--device-id", DEVICE,
                   "--state-dir", str(tmp_path / "state"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sum("replay:e4" in ln for ln in proc.stderr.splitlines()) == 1, proc.stderr
    assert collector.wait_for(lambda c: "offline" in c.statuses())
    states = collector.states()
    assert_valid_states(states)
    assert all(set(s["missing"]) == {"eda", "cardiac"} for s in states)
    assert all("not opened" in s["missing_reasons"]["eda"] for s in states)
    assert all(set(s["modalities"]) == {"eeg"} for s in states)


def test_nothing_to_run_exits_non_zero_in_one_line(mqtt_broker, tmp_path):
    proc = run_cli("run", "--source", f"replay:e4:{tmp_path / 'nope'}", "--broker", mqtt_broker.url,
                   "--state-dir", str(tmp_path / "state"), timeout=60)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "nothing can run" in last and "replay:e4" in last


def test_sigterm_stops_gracefully_with_offline(mqtt_broker, collector, tmp_path):
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "edge", "run", "--source", "simulate", "--speed", "20", "--broker", mqtt_broker.url,
           "--device-id", DEVICE, "--state-dir", str(tmp_path / "state")]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT / "tests", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert collector.wait_for(lambda c: len(c.states()) >= 2, timeout_s=60), "no states before SIGTERM"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert collector.wait_for(lambda c: c.statuses()[-1:] == ["offline"])
    assert_valid_states(collector.states())


def test_duration_stops_a_source_that_never_ends(mqtt_broker, collector, tmp_path):
    t0 = time.monotonic()
    proc = run_cli("run", "--source", "simulate", "--speed", "1", "--duration", "2", "--broker", mqtt_broker.url,
                   "--device-id", DEVICE, "--state-dir", str(tmp_path / "state"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 20
    assert collector.wait_for(lambda c: c.statuses()[-2:] == ["online", "offline"])


def test_a_model_trained_on_other_features_is_refused(mqtt_broker, collector, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(models_dir(), models, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    manifest = json.loads((models / "cardiac.json").read_text())
    manifest["preprocessing"]["feature_names"] = list(reversed(manifest["preprocessing"]["feature_names"]))
    (models / "cardiac.json").write_text(json.dumps(manifest))
    proc = run_cli("run", "--source", "simulate:duration=70", "--speed", "max", "--broker", mqtt_broker.url,
                   "--device-id", DEVICE, "--state-dir", str(tmp_path / "state"), timeout=120,
                   env={"EMOTION_EDGE_MODELS_DIR": str(models)})
    assert proc.returncode == 0, proc.stderr
    assert sum("model cardiac: trained on" in ln for ln in proc.stderr.splitlines()) == 1, proc.stderr
    assert collector.wait_for(lambda c: "offline" in c.statuses())
    states = collector.states()
    assert states and all("cardiac" in s["missing"] and "cardiac" not in s["modalities"] for s in states)


def test_calibration_marks_states_after_the_rest_period(mqtt_broker, collector, tmp_path):
    start = 1_600_000_000.0
    config = tmp_path / "c.toml"
    config.write_text("[calibration]\nrest_s = 70\n[fusion]\nsmoothing_tau_s = 0\n")
    proc = run_cli("run", "--config", str(config), "--source", f"simulate:duration=150,start={start:.0f}",
                   "--speed", "max", "--broker", mqtt_broker.url, "--device-id", DEVICE,
                   "--state-dir", str(tmp_path / "state"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert collector.wait_for(lambda c: "offline" in c.statuses())
    states = collector.states()
    assert_valid_states(states)
    before = [s for s in states if s["ts"] < start + 70]
    after = [s for s in states if s["ts"] >= start + 70]
    assert before and after
    assert not any(s["calibrated"] for s in before) and all(s["calibrated"] for s in after)


def test_a_source_failing_mid_stream_is_one_line_and_the_others_carry_on(mqtt_broker, collector, tmp_path):
    write_e4_session(tmp_path / "S02", 1_500_000_000.0, 150.0)
    bvp = tmp_path / "S02" / "BVP.csv"
    lines = bvp.read_text().splitlines()
    lines[5000] = "garbage,,x"  # a corrupt row part-way through the recording
    bvp.write_text("\n".join(lines) + "\n")
    proc = run_cli("run", "--source", f"replay:e4:{tmp_path / 'S02'}", "--source", "simulate:duration=30,streams=eeg",
                   "--speed", "max", "--broker", mqtt_broker.url, "--device-id", DEVICE,
                   "--state-dir", str(tmp_path / "state"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    failed = [ln for ln in proc.stderr.splitlines() if "BVP.csv" in ln and "ERROR" in ln]
    assert len(failed) == 1 and "row 5001" in failed[0], proc.stderr
    assert collector.wait_for(lambda c: "offline" in c.statuses())
    states = collector.states()
    assert_valid_states(states)
    assert any("eeg" in s["modalities"] for s in states)
    # the bad BVP.csv costs the cardiac modality only (named, with the file); EDA.csv beside it is
    # still replayed (issue 15: a bad file must not discard the good files beside it)
    late = states[-1]
    assert "cardiac" in late["missing"] and "BVP.csv" in late["missing_reasons"]["cardiac"], late
    assert "replaying eda" in proc.stderr, proc.stderr


def test_metrics_textfile_counts_what_was_published(mqtt_broker, collector, tmp_path):
    prom = tmp_path / "emotion-edge.prom"
    config = tmp_path / "c.toml"
    config.write_text(f'[metrics]\ntextfile = "{prom}"\n')
    proc = run_cli("run", "--config", str(config), "--source", "simulate:duration=80", "--speed", "max",
                   "--broker", mqtt_broker.url, "--device-id", DEVICE, "--state-dir", str(tmp_path / "state"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert collector.wait_for(lambda c: "offline" in c.statuses())
    figures = dict(line.rsplit(" ", 1) for line in prom.read_text().splitlines() if not line.startswith("#"))
    assert float(figures["emotion_edge_states_published_total"]) == len(collector.states())
    assert float(figures['emotion_edge_windows_processed_total{modality="eeg"}']) >= 30


def test_trailing_baselines_survive_a_restart(mqtt_broker, collector, tmp_path):
    """eda/cardiac baselines are saved when the daemon stops and resumed by the next run of the same models."""
    start = 1_500_000_000.0
    write_e4_session(tmp_path / "part1", start, 400.0)
    write_e4_session(tmp_path / "part2", start + 400.0, 400.0, seed=4)  # the same wearer, after a restart
    common = ("--speed", "max", "--broker", mqtt_broker.url, "--device-id", DEVICE, "--state-dir", str(tmp_path / "state"))
    first = run_cli("run", "--source", f"replay:e4:{tmp_path / 'part1'}", *common, timeout=120)
    assert first.returncode == 0, first.stderr
    saved = json.loads((tmp_path / "state" / f"baselines-{DEVICE}.json").read_text())["modalities"]
    assert set(saved) == {"eda", "cardiac"}
    eda_rows = saved["eda"]["streams"]["eda"]["rows"]
    assert len(eda_rows) >= 20 and all(len(row) == 23 for row in eda_rows)  # windows ending 300-400 s, 5 s apart
    assert all(len(row) == 22 for row in saved["cardiac"]["streams"]["bvp"]["rows"])
    second = run_cli("run", "--source", f"replay:e4:{tmp_path / 'part2'}", *common, timeout=120)
    assert second.returncode == 0, second.stderr
    assert f"baselines: eda resumed with {len(eda_rows)} window(s)" in second.stderr, second.stderr
    assert "baselines: cardiac resumed with" in second.stderr
    resaved = json.loads((tmp_path / "state" / f"baselines-{DEVICE}.json").read_text())["modalities"]
    ends = resaved["eda"]["streams"]["eda"]["ends"]
    assert ends[0] == pytest.approx(saved["eda"]["streams"]["eda"]["ends"][0])  # the first run's windows kept
    assert ends[-1] > start + 700.0  # and the second run's added
