"""Hostile inputs, items 11 and 14 of issue 15: ``listen`` fed unusable states, and a corrupted
baselines file at the daemon's start and in ``doctor``.

Real commands as bounded subprocesses (``inputs_harness``), a real broker, states published with
paho. Before the fix ``listen`` died on a state whose ``ts`` was NaN or +-1e20 or whose JSON nested
deeply; a baselines file of ``[`` x 200,000 or with ``"modalities": []`` stopped the daemon's
start and ``doctor`` with a traceback.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from conftest import load_test_module

harness = load_test_module("hostile/inputs_harness")


def _state(seq: int, ts) -> bytes:
    body = {"schema_version": 1, "seq": seq, "ts": 0, "device_id": "hostile1", "valence": 0.1, "arousal": 0.2,
            "stress": 0.3, "label": "neutral", "confidence": 0.5, "modalities": {}, "missing": []}
    return json.dumps(body).replace('"ts": 0', f'"ts": {ts}').encode()


BAD_PAYLOADS = {
    "ts NaN": _state(1, "NaN"),
    "ts 1e20": _state(2, "1e20"),
    "ts -1e20": _state(3, "-1e20"),
    "JSON nested 100,000 deep": b'{"ts": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


def _publish_when_listening(broker, err_path: Path, payloads: list[bytes]) -> threading.Thread:
    import paho.mqtt.client as mqtt

    def run() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if err_path.exists() and "listening on" in err_path.read_text(errors="replace"):
                break
            time.sleep(0.05)
        client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="hostile-pub")
        client.connect(broker.host, broker.port)
        client.loop_start()
        for payload in payloads:
            client.publish("emotion-edge/hostile1/state", payload, qos=1).wait_for_publish(10)
        client.loop_stop()
        client.disconnect()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("as_json", [False, True])
def test_listen_skips_unusable_states_in_one_line_each_and_goes_on(mqtt_broker, tmp_path, as_json):
    workdir = tmp_path / "listen"
    good = [_state(10, "1644227890.0"), _state(11, "1644227895.0")]
    publisher = _publish_when_listening(mqtt_broker, workdir / "run.stderr", [*BAD_PAYLOADS.values(), *good])
    run = harness.run_bounded(["listen", "--broker", mqtt_broker.url, "--count", "2", *(["--json"] if as_json else [])],
                              workdir, timeout_s=30, case=f"listen fed NaN/1e20/-1e20/nested states{' (--json)' if as_json else ''}")
    publisher.join(5)
    assert not run.timed_out, run.stderr[-2000:]
    assert run.returncode == 0
    run.assert_no_traceback()
    skipped = [ln for ln in run.lines() if "skipped a payload that is not a usable state" in ln]
    assert len(skipped) == len(BAD_PAYLOADS), run.stderr[-3000:]
    assert any("ts nan is not a unix time" in ln for ln in skipped)
    assert any("ts 1e+20 is not a unix time" in ln for ln in skipped)
    assert any("nested deeper than 32 levels" in ln for ln in skipped)
    shown = [ln for ln in run.stdout.splitlines() if "hostile1" in ln]
    assert len(shown) == 2, run.stdout
    assert run.peak_rss_mb < harness.UNIT_MEMORY_MAX_MB


@pytest.mark.parametrize("case, content", [
    ("baselines file of '[' x 200,000", "[" * 200_000),
    ("baselines file with \"modalities\": []", json.dumps({"format": "emotion-edge trailing baselines v1", "modalities": []})),
])
def test_a_corrupted_baselines_file_is_one_line_and_a_fresh_baseline(mqtt_broker, tmp_path, case, content):
    state = tmp_path / "state"
    state.mkdir()
    baselines = state / "baselines-base1.json"
    baselines.write_text(content)
    config = tmp_path / "c.toml"
    config.write_text('[daemon]\ndevice_id = "base1"\n')
    args = ["--config", str(config), "--broker", mqtt_broker.url, "--state-dir", str(state)]
    doctor = harness.run_bounded(["doctor", *args, "--source", "simulate", "--timeout", "2"], tmp_path / "doctor",
                                 timeout_s=60, case=f"{case} (doctor)")
    assert not doctor.timed_out
    doctor.assert_no_traceback()
    line = next(ln for ln in doctor.stdout.splitlines() if "baselines base1" in ln)
    assert "the daemon will start with fresh baselines" in line
    run = harness.run_bounded(["run", *args, "--source", "simulate:duration=900", "--speed", "max"], tmp_path / "run",
                              timeout_s=60, case=f"{case} (run)")
    assert not run.timed_out and run.returncode == 0, run.stderr[-2000:]
    harness.one_line_naming(run, str(baselines), "unreadable", "starting with empty baselines")
    assert json.loads(baselines.read_text())["modalities"], "no fresh baseline saved over the damaged file"
    assert run.peak_rss_mb < harness.UNIT_MEMORY_MAX_MB
