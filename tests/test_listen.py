"""``emotion-edge listen`` against a real broker: JSON lines as published, the table, reconnects."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import REPO_ROOT, run_cli
from daemon_harness import DaemonProcess, wait_until

from edge.listen import format_state_line, listen
from edge.publish import StatePublisher

DEVICE = "chest-02"


def make_state(i: int) -> dict:
    now = 1_760_000_000.0 + i
    return {
        "ts": now,
        "valence": -0.3,
        "arousal": 0.55,
        "stress": 0.81,
        "valence_confidence": 0.4,
        "arousal_confidence": 0.7,
        "stress_confidence": 0.9,
        "label": "stressed",
        "label_confidence": 0.77,
        "confidence": 0.66,
        "modalities": {
            "cardiac": {"quality": 0.95, "weight": 0.7, "ts": now, "outputs": {"stress": 0.85}},
            "eda": {"quality": 0.5, "weight": 0.3, "ts": now, "outputs": {"stress": 0.7}},
        },
        "missing": ["face"],
        "missing_reasons": {"face": "no face in view"},
        "models": {"cardiac": "1.0.0", "eda": "1.0.0"},
        "calibrated": True,
        "schema_version": 2,
    }


def test_listen_cli_json_count_prints_the_states_exactly_as_published(mqtt_broker, tmp_path):
    result: dict = {}
    runner = threading.Thread(
        target=lambda: result.update(
            proc=run_cli(
                "listen",
                "--broker",
                mqtt_broker.url,
                "--json",
                "--count",
                "3",
                "--duration",
                "60",
                timeout=90,
            )
        )
    )
    runner.start()
    published: dict[int, dict] = {}
    with StatePublisher(mqtt_broker.url, DEVICE, state_dir=tmp_path) as pub:
        i = 0
        while runner.is_alive() and i < 200:  # keep publishing until listen has had its 3
            seq = pub.publish_state(make_state(i))
            published[seq] = {**make_state(i), "seq": seq, "device_id": DEVICE}
            i += 1
            time.sleep(0.1)
        runner.join(60)
    proc = result["proc"]
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    received = [json.loads(line) for line in lines]
    seqs = [state["seq"] for state in received]
    assert seqs == list(range(seqs[0], seqs[0] + 3))
    for state in received:
        assert state == published[state["seq"]]


def test_listen_table_shows_one_line_per_state_and_the_status(embedded_broker, tmp_path):
    out = io.StringIO()
    ready = threading.Event()
    count: dict = {}
    runner = threading.Thread(
        target=lambda: count.update(
            n=listen(
                embedded_broker.url,
                device_id=DEVICE,
                count=2,
                duration_s=20,
                out=out,
                on_ready=ready.set,
            )
        )
    )
    runner.start()
    assert ready.wait(10)
    with StatePublisher(embedded_broker.url, DEVICE, state_dir=tmp_path) as pub:
        pub.publish_state(make_state(0))
        pub.publish_state(make_state(1))
        runner.join(20)
    assert count["n"] == 2
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:3] == ["time", "device", "seq"]
    state_lines = [line for line in lines[1:] if "stressed" in line]
    assert len(state_lines) == 2
    assert "cardiac 0.95/0.70" in state_lines[0] and "eda 0.50/0.30" in state_lines[0]
    assert "face (no face in view)" in state_lines[0] and "+0.55" in state_lines[0]
    assert state_lines[0].split()[2] == "0" and state_lines[1].split()[2] == "1"
    assert any("status online" in line for line in lines)


def test_listen_only_shows_the_requested_device(embedded_broker, tmp_path):
    out = io.StringIO()
    ready = threading.Event()
    runner = threading.Thread(
        target=lambda: listen(
            embedded_broker.url,
            device_id="other",
            as_json=True,
            duration_s=2.0,
            out=out,
            on_ready=ready.set,
        )
    )
    runner.start()
    assert ready.wait(10)
    with StatePublisher(embedded_broker.url, DEVICE, state_dir=tmp_path) as pub:
        pub.publish_state(make_state(0))
    runner.join(10)
    assert out.getvalue() == ""


def test_listen_says_when_the_broker_goes_away_and_carries_on_after_it_returns(
    mqtt_broker, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="edge.listen")
    out = io.StringIO()
    ready = threading.Event()
    count: dict = {}
    runner = threading.Thread(
        target=lambda: count.update(
            n=listen(
                mqtt_broker.url, as_json=True, count=2, duration_s=40, out=out, on_ready=ready.set
            )
        )
    )
    runner.start()
    assert ready.wait(10)
    with StatePublisher(mqtt_broker.url, DEVICE, state_dir=tmp_path) as pub:
        pub.publish_state(make_state(0))
        deadline = time.monotonic() + 10
        while out.getvalue().count("\n") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        mqtt_broker.stop()
        time.sleep(0.5)
        mqtt_broker.restart()
        # listen resubscribes on reconnect; keep publishing until it has the second state
        deadline = time.monotonic() + 30
        i = 1
        while runner.is_alive() and time.monotonic() < deadline:
            pub.publish_state(make_state(i))
            i += 1
            time.sleep(0.3)
    runner.join(10)
    assert count["n"] == 2
    went_away = [r for r in caplog.records if "went away" in r.getMessage()]
    assert len(went_away) == 1 and f"127.0.0.1:{mqtt_broker.port}" in went_away[0].getMessage()
    assert any(
        "connected to" in r.getMessage() and "again" in r.getMessage() for r in caplog.records
    )


def test_listen_duration_without_states_exits_zero_with_only_the_header(mqtt_broker):
    started = time.monotonic()
    proc = run_cli("listen", "--broker", mqtt_broker.url, "--duration", "1.5", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split()[:2] == ["time", "device"]
    assert time.monotonic() - started < 20


def test_listen_validate_reports_a_state_that_breaks_the_schema(embedded_broker, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="edge.listen")
    out = io.StringIO()
    ready = threading.Event()
    runner = threading.Thread(
        target=lambda: listen(
            embedded_broker.url,
            as_json=True,
            count=2,
            duration_s=20,
            out=out,
            on_ready=ready.set,
            validate=True,
        )
    )
    runner.start()
    assert ready.wait(10)
    with StatePublisher(embedded_broker.url, DEVICE, state_dir=tmp_path) as pub:
        pub.publish_state(make_state(0))
        pub.publish_state({**make_state(1), "stress": 1.7})
        runner.join(20)
    problems = [r.getMessage() for r in caplog.records if "schema" in r.getMessage()]
    assert len(problems) == 1 and "seq 1" in problems[0] and "stress" in problems[0]


def test_format_marks_a_repeated_seq_and_tolerates_missing_fields():
    line = format_state_line({"seq": 5, "device_id": "d"}, repeat=True)
    assert line.endswith("(repeat)") and " 5 " in line and "?" in line


def test_listen_to_a_broker_that_is_not_there_says_why_once_and_exits_after_duration():
    from conftest import free_port

    port = free_port()
    proc = run_cli(
        "listen", "--broker", f"mqtt://127.0.0.1:{port}", "--json", "--duration", "2.5", timeout=60
    )
    assert proc.returncode == 0
    assert proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if "unreachable" in line]
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "refused" in lines[0].lower()


def test_listen_session_loses_nothing_across_its_own_restart(mqtt_broker, tmp_path):
    """A persistent session (--session): states published while the listener is down arrive after it returns."""
    session = f"listen-test-{tmp_path.name}"[:60]
    listen_cmd = [sys.executable, "-m", "edge", "listen", "--broker", mqtt_broker.url, "--device-id", "sess",
                  "--json", "--session", session]

    def start_listener(name: str) -> tuple[subprocess.Popen, Path]:
        out = tmp_path / f"{name}.jsonl"
        fh = open(out, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(listen_cmd, stdout=fh, stderr=subprocess.PIPE, cwd=REPO_ROOT / "tests")
        fh.close()
        return proc, out

    def seqs(path: Path) -> list[int]:
        return [json.loads(line)["seq"] for line in path.read_text().splitlines() if line.strip()]

    first, first_out = start_listener("first")
    daemon = None
    try:
        time.sleep(1.5)  # the first listener subscribes (its session now exists on the broker)
        assert first.poll() is None, first.stderr.read().decode()
        daemon = DaemonProcess(["--source", "simulate:duration=240,seed=5", "--speed", "20", "--broker",
                                mqtt_broker.url, "--device-id", "sess", "--state-dir", str(tmp_path / "state")],
                               tmp_path, name="daemon")
        assert wait_until(lambda: len(seqs(first_out)) >= 3, 60), daemon.stderr()
        first.terminate()
        first.wait(10)
        time.sleep(3)  # states published now are queued by the broker for the session
        second, second_out = start_listener("second")
        try:
            assert daemon.wait(120) == 0, daemon.stderr()
            assert wait_until(lambda: bool(seqs(second_out)) and max(seqs(second_out)) >= max(seqs(first_out)) + 3, 30)
            time.sleep(1.0)
        finally:
            second.terminate()
            second.wait(10)
        got = set(seqs(first_out)) | set(seqs(second_out))
        expected = set(range(min(got), max(got) + 1))
        assert got == expected, f"missing across the listener's restart: {sorted(expected - got)}"
    finally:
        if first.poll() is None:
            first.kill()
        if daemon is not None:
            daemon.close()


def test_listen_credentials_and_tls_flags_are_checked_in_one_line(tmp_path):
    proc = run_cli("listen", "--broker", "mqtt://127.0.0.1:1", "--cert-file", str(tmp_path / "nope.pem"),
                   "--duration", "1")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "--cert-file" in proc.stderr
    proc = run_cli("listen", "--broker", "mqtt://127.0.0.1:1", "--password-file", str(tmp_path / "nope"),
                   "--username", "u", "--duration", "1")
    assert proc.returncode == 2 and "--password-file" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    version = run_cli("listen", "--version")
    assert version.returncode == 0 and version.stdout.startswith("emotion-edge listen ")


def test_format_shows_a_null_dimension_as_a_dash_and_missing_reasons_in_short():
    state = {**make_state(0), "valence": None, "valence_confidence": 0.0, "seq": 3, "device_id": "d",
             "missing": ["eeg", "face"],
             "missing_reasons": {"eeg": "warming up: first window not complete", "face": "stale: last estimate 31 s old"}}
    line = format_state_line(state)
    fields = line.split()
    assert fields[3] == "stressed" and fields[4] == "0.77" and fields[5] == "-" and fields[6] == "+0.55"
    assert "eeg (warming up)" in line and "face (stale 31 s)" in line and "first window" not in line
    assert "?" not in line  # a null is known to be unknown, not a missing field
