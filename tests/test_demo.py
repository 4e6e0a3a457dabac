"""``emotion-edge demo``: one command, embedded broker, no mosquitto needed."""

from __future__ import annotations

import json

from conftest import run_cli

from edge.publish import validate_state


def test_demo_prints_schema_valid_states_as_json_lines():
    proc = run_cli("demo", "--duration", "8", "--speed", "max", "--json", "--device-id", "demo-t", timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) >= 20, (len(lines), proc.stderr[-2000:])
    states = [json.loads(ln) for ln in lines]  # stdout carries only states (logs go to stderr)
    for state in states:
        assert validate_state(state) == [], state
        assert state["device_id"] == "demo-t"
    seqs = [s["seq"] for s in states]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert any(s["modalities"] for s in states)
    assert "embedded MQTT broker" in proc.stderr


def test_demo_live_view_shows_a_table_and_status():
    proc = run_cli("demo", "--duration", "3", "--speed", "max", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "status online" in proc.stdout and "status offline" in proc.stdout
    assert "label" in proc.stdout.splitlines()[0]


def test_demo_refuses_a_bad_speed_in_one_line():
    proc = run_cli("demo", "--speed", "fast", "--duration", "1", timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "--speed" in proc.stderr
