"""``emotion-edge demo``: one command, embedded broker, no mosquitto needed."""

from __future__ import annotations

import json
import time

from conftest import run_cli

from edge.publish import validate_state


def test_demo_prints_schema_valid_states_as_json_lines():
    launched = time.time()
    proc = run_cli("demo", "--duration", "8", "--speed", "max", "--json", "--device-id", "demo-t", timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) >= 20, (len(lines), proc.stderr[-2000:])
    states = [json.loads(ln) for ln in lines]  # stdout carries only states (logs go to stderr)
    for state in states:
        assert validate_state(state) == [], state
        assert state["device_id"] == "demo-t"
    seqs = [s["seq"] for s in states]
    assert seqs == list(range(len(seqs)))  # from the first: nothing of the primed half hour was published
    assert launched - 1.0 <= states[0]["ts"] <= launched + 30.0, (launched, states[0]["ts"])
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


def test_demo_table_shows_every_simulated_modality_within_its_first_10_s():
    """The script is primed (run at full speed) so eda/cardiac are there from the first row, on one clock.

    The demo runs 12 s so that the 10-s limit is what is tested, not the run's length: priming takes about
    3 s of CPU here (the first row after ~3.5 s), more when the machine is busy.
    """
    import subprocess
    import sys
    import time

    from conftest import REPO_ROOT

    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "edge", "demo", "--duration", "12"], cwd=REPO_ROOT / "tests",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    rows: list[tuple[float, str]] = []
    try:
        for line in proc.stdout:
            rows.append((time.monotonic() - t0, line.rstrip("\n")))
    finally:
        proc.wait(60)
    assert proc.returncode == 0, proc.stderr.read()
    states = [(t, line) for t, line in rows if " demo " in line and " status " not in line and line[:2].isdigit()]
    assert states, rows
    first_t, first = states[0]
    assert first_t < 10.0, (first_t, first)
    for _, line in states:  # every shown state has all three simulated modalities, none missing
        assert all(f"{m} " in line for m in ("eeg", "cardiac", "eda")) and line.rstrip().endswith("-"), line
    text = "\n".join(line for _, line in rows)
    assert "started 30 min earlier" in text and "simulator's clock" in text  # says so on screen
    assert "simulator truth from here: calm (t = 1800 s" in text
    status = [line for _, line in rows if " status " in line]
    assert status and all(line[:8].strip() == "" for line in status)  # status rows carry no (wall) time


def test_the_demo_script_reads_as_the_matching_label_within_the_stated_lag():
    """The first script cycle the demo shows (after its priming), through the daemon's own pipeline (seeded)."""
    import asyncio

    from edge.config import load_config
    from edge.daemon import Pipeline, load_estimators
    from edge.demo import PRIME_S, simulator_spec
    from firmware_bridge.devices import open_source
    from firmware_bridge.simulate import CYCLE_S, phase_at

    start = 1_700_000_000.0
    total_s = PRIME_S + CYCLE_S
    spec = f"{simulator_spec(42, start)},duration={total_s:g}"  # the demo's own wearable, as fast as possible
    config = load_config(None, {"daemon.sources": (spec,), "daemon.speed": None})
    estimators, _ = load_estimators(config)
    pipeline = Pipeline(config, estimators)

    async def run() -> list:
        out = []
        async for block in open_source(spec, None).blocks():
            out += pipeline.ingest(block)
        return out + pipeline.finish()

    states = [(s.payload["ts"] - start, s.payload["label"]) for s in asyncio.run(run()) if s.payload["ts"] - start >= PRIME_S]
    matching = {"calm": {"calm", "neutral"}, "stressed": {"stressed", "tense"}, "amused": {"happy", "excited"}}
    lags: dict[str, list[float | None]] = {p: [] for p in matching}
    phase, since, seen = None, 0.0, False
    for t, label in states:
        if phase_at(t) != phase:
            if phase is not None and not seen:
                lags[phase].append(None)
            phase, since, seen = phase_at(t), t, False
        if not seen and label in matching[phase]:
            lags[phase].append(t - since)
            seen = True
        if phase == "amused" and t - since > 90.0:
            assert label not in ("sad", "tense"), (t, label)  # past the lag, never a negative label for amusement
    # the lag the demo states on screen: each phase within 90 simulated s
    assert len(lags["calm"]) == 2 and len(lags["stressed"]) == 1 and len(lags["amused"]) == 1, lags
    assert all(lag is not None and lag <= 90.0 for phase_lags in lags.values() for lag in phase_lags), lags
