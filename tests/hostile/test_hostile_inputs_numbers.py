"""Hostile inputs, item 5 of issue 15: one bad number must not loop forever.

Each case runs the real daemon (``python -m edge run``) against a real broker with a time and a
memory bound (``inputs_harness``). Before the fix, each of these inputs made the daemon loop on
``t + hop == t`` (WindowClock.advance, Pipeline._fuse_due) until it ran out of memory (12 GB),
deaf to SIGTERM and ``--duration``. Now a rate, time or hop outside its physical range is refused
at the boundary in one line naming the file or key, and no loop depends on float progress.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from conftest import load_test_module

harness = load_test_module("hostile/inputs_harness")

START = "1644227574"


def _e4(folder: Path, eda: str | None = None, ibi: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = "\n".join(f"{0.2 + 0.001 * (i % 50):.3f}" for i in range(4 * 120))
    (folder / "EDA.csv").write_text(eda if eda is not None else f"{START}\n4\n{rows}\n")
    if ibi is not None:
        (folder / "IBI.csv").write_text(ibi)
    return folder


def _run(tmp_path: Path, broker_url: str, args: list[str], case: str, timeout_s: float = 20.0, **kw):
    return harness.run_bounded(["run", "--broker", broker_url, "--state-dir", str(tmp_path / "state"),
                                "--speed", "max", *args], tmp_path / "run", timeout_s=timeout_s, case=case, **kw)


@pytest.mark.parametrize("case, eda, needle", [
    ("E4 EDA.csv sample rate 1e-300", f"{START}\n1e-300\n0.1\n0.2\n", "sample rate 1e-300 Hz is outside"),
    ("E4 EDA.csv start time inf", "inf\n4\n0.1\n0.2\n", "start time inf is not a unix time"),
    ("E4 EDA.csv start time 1e20", "1e20\n4\n0.1\n0.2\n", "start time 1e+20 is not a unix time"),
])
def test_a_bad_e4_rate_or_start_is_one_line_and_a_nonzero_exit(mqtt_broker, tmp_path, case, eda, needle):
    folder = _e4(tmp_path / "S01", eda=eda)
    run = _run(tmp_path, mqtt_broker.url, ["--source", f"replay:e4:{folder}"], case)
    assert not run.timed_out, f"{case}: still running after {run.wall_s:.0f} s"
    assert run.returncode != 0  # nothing can run
    harness.one_line_naming(run, str(folder / "EDA.csv"), needle)
    assert run.peak_rss_mb < harness.UNIT_MEMORY_MAX_MB


def test_an_ibi_start_of_inf_leaves_ibi_out_and_replays_the_rest(mqtt_broker, tmp_path):
    folder = _e4(tmp_path / "S01", ibi="inf, IBI\n1.0,0.8\n1.8,0.8\n")
    run = _run(tmp_path, mqtt_broker.url, ["--source", f"replay:e4:{folder}"], "E4 IBI.csv start time inf")
    assert not run.timed_out
    assert run.returncode == 0, run.stderr[-2000:]
    harness.one_line_naming(run, str(folder / "IBI.csv"), "start time inf is not a unix time")
    assert "end of recording" in run.stderr  # the EDA beside it was replayed to its end
    assert run.peak_rss_mb < harness.UNIT_MEMORY_MAX_MB


@pytest.mark.parametrize("case, header, needle", [
    ("WFDB rate 1e-300", "r 1 1e-300 720\nr.dat 16 200 16 0 0 0 0 MLII\n", "sampling frequency 1e-300 Hz is outside"),
    ("WFDB base time 1e308:0:0", "r 1 360 720 1e308:0:0 01/01/2020\nr.dat 16 200 16 0 0 0 0 MLII\n",
     "base time '1e308:0:0' is not a time of day"),
])
def test_a_bad_wfdb_rate_or_base_time_is_one_line_and_a_nonzero_exit(mqtt_broker, tmp_path, case, header, needle):
    (tmp_path / "r.hea").write_text(header)
    (tmp_path / "r.dat").write_bytes(b"\x00\x01" * 720)
    run = _run(tmp_path, mqtt_broker.url, ["--source", f"replay:wfdb:{tmp_path / 'r'}"], case)
    assert not run.timed_out
    assert run.returncode != 0
    harness.one_line_naming(run, str(tmp_path / "r.hea"), needle)
    assert run.peak_rss_mb < harness.UNIT_MEMORY_MAX_MB


@pytest.mark.parametrize("case, toml, needle", [
    ("[fusion] hop_s = 1e-9", "[fusion]\nhop_s = 1e-9\n", "fusion.hop_s: must be in 0.05..3600 s"),
    ("[windows.eeg] hop_s = 1e-9", "[windows.eeg]\nhop_s = 1e-9\n", "windows.eeg.hop_s: must be in 0.05..3600 s"),
])
def test_a_tiny_hop_in_the_config_is_refused(mqtt_broker, tmp_path, case, toml, needle):
    config = tmp_path / "c.toml"
    config.write_text(toml)
    run = _run(tmp_path, mqtt_broker.url, ["--config", str(config), "--source", "simulate"], case, timeout_s=15)
    assert not run.timed_out
    assert run.returncode == 2
    assert harness.one_line_naming(run, needle).startswith("emotion-edge run: config:")
    assert run.peak_rss_mb < harness.UNIT_MEMORY_MAX_MB


def test_no_window_or_fusion_loop_depends_on_float_progress():
    """The loops themselves, fed numbers no reader lets through any more: bounded steps, at once."""
    from edge.limits import MAX_DUE_PER_STEP
    from edge.windows import HopGrid, WindowClock, WindowSpec

    clock = WindowClock(WindowSpec(length_s=4.0, hop_s=1e-9))  # t + 1e-9 == t at t = 1e20
    clock.start(1e20)
    t0 = time.perf_counter()
    ends = clock.advance(1e20 + 1e6)
    assert len(ends) == MAX_DUE_PER_STEP and clock.skipped > 0
    assert clock.advance(math.inf) == [] and clock.advance(math.nan) == []
    grid = HopGrid(1e9, 5.0)
    assert grid.due(1e20) > 1e18  # counted in one division, not stepped
    assert time.perf_counter() - t0 < 0.5


def test_sigterm_stops_a_daemon_busy_replaying_within_2_s(mqtt_broker, tmp_path):
    """Replaying a long E4 recording as fast as it can (the event loop never idles): SIGTERM -> exit in < 2 s."""
    folder = tmp_path / "S01"
    folder.mkdir()
    harness.write_repeated(folder / "EDA.csv", f"{START}\n4\n".encode(), b"0.213\n0.215\n0.219\n0.22\n", 20 << 20)
    run = _run(tmp_path, mqtt_broker.url, ["--source", f"replay:e4:{folder}"], "SIGTERM while replaying 20 MB at full speed",
               timeout_s=40, sigterm_after_s=2.0, sigterm_when="replaying")
    assert not run.timed_out and run.stop_s is not None
    assert run.stop_s < 2.0, f"took {run.stop_s:.2f} s to stop"
    assert run.returncode == 0, run.stderr[-2000:]
    assert "stopping (signal)" in run.stderr
    assert run.peak_rss_mb < harness.UNIT_MEMORY_MAX_MB
