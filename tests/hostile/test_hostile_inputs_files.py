"""Hostile inputs, items 6, 7 and 10 of issue 15: large files, WFDB headers that point anywhere,
and bad files named in one line (``run`` and ``devices check``).

Each case runs the real command as a subprocess with a time and a memory bound
(``inputs_harness``). Before the fix a replay read its files whole (a 200 MB EDA.csv took the
daemon to 2.45 GB; a 50 MB single-line file to 1.15 GB, against the unit's MemoryMax=300M) and
a ``.hea`` could name ``/dev/zero`` or ``../../../../etc/passwd``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import load_test_module

harness = load_test_module("hostile/inputs_harness")
START = b"1644227574"
EDA_ROWS = b"0.213\n0.215\n0.219\n0.22\n0.224\n0.23\n0.228\n0.225\n"


def _replay_for(tmp_path: Path, broker_url: str, folder: Path, case: str, seconds: float = 2.5):
    """The daemon replaying ``folder`` at full speed for ``seconds`` after it starts replaying, then SIGTERM."""
    return harness.run_bounded(["run", "--broker", broker_url, "--state-dir", str(tmp_path / "state"),
                                "--speed", "max", "--source", f"replay:e4:{folder}"],
                               tmp_path / f"run-{case.split()[0]}", timeout_s=40, sigterm_after_s=seconds,
                               sigterm_when="replaying", case=case)


def test_peak_rss_does_not_grow_with_the_size_of_the_recording(mqtt_broker, tmp_path):
    peaks = {}
    for size_mb in (2, 200):
        folder = tmp_path / f"S{size_mb}"
        folder.mkdir()
        harness.write_repeated(folder / "EDA.csv", START + b"\n4\n", EDA_ROWS, size_mb << 20)
        run = _replay_for(tmp_path, mqtt_broker.url, folder, f"{size_mb} MB EDA.csv replayed at full speed")
        assert not run.timed_out and run.returncode == 0, run.stderr[-2000:]
        assert run.stop_s is not None and run.stop_s < 2.0
        run.assert_no_traceback()
        peaks[size_mb] = run.peak_rss_mb
        (folder / "EDA.csv").unlink()  # 200 MB of tmp space back at once
    assert peaks[200] < harness.UNIT_MEMORY_MAX_MB, peaks
    assert peaks[200] - peaks[2] < 25.0, f"peak RSS grew with the file: {peaks}"


def test_a_single_50_mb_line_is_refused_in_one_line(mqtt_broker, tmp_path):
    folder = tmp_path / "S01"
    folder.mkdir()
    harness.write_repeated(folder / "EDA.csv", START + b"\n4\n", b"0.213,", 50 << 20)
    run = harness.run_bounded(["run", "--broker", mqtt_broker.url, "--state-dir", str(tmp_path / "state"),
                               "--speed", "max", "--source", f"replay:e4:{folder}"], tmp_path / "run",
                              timeout_s=30, case="50 MB single-line EDA.csv")
    assert not run.timed_out
    assert run.returncode == 2  # refused when the source is opened: nothing can run
    harness.one_line_naming(run, str(folder / "EDA.csv"), "row 3 is longer than 4096 bytes")
    assert run.peak_rss_mb < harness.UNIT_MEMORY_MAX_MB


def _record(folder: Path, file_name: str, n_samples: int = 720, data: bytes | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "r.hea").write_text(f"r 1 360 {n_samples}\n{file_name} 16 200 16 0 0 0 0 MLII\n")
    if data is not None:
        (folder / "r.dat").write_bytes(data)
    return folder / "r"


TRAVERSAL = "../" * 16 + "etc/passwd"  # deeper than any tmp dir: resolves to /etc/passwd


@pytest.mark.parametrize("case, file_name, needle", [
    ("WFDB .hea naming /dev/zero", "/dev/zero", "file '/dev/zero' is not a file name in the record's folder"),
    ("WFDB .hea naming ../../etc/passwd", TRAVERSAL, f"file '{TRAVERSAL}' is not a file name in the record's folder"),
    ("WFDB .dat a symlink to /dev/zero", "zero.dat", "zero.dat is a character device, not a regular file"),
    ("WFDB .dat a FIFO", "fifo.dat", "fifo.dat is a FIFO, not a regular file"),
])
@pytest.mark.parametrize("command", ["run", "devices check"])
def test_a_wfdb_header_cannot_point_outside_its_folder_or_past_its_file(mqtt_broker, tmp_path, case, file_name,
                                                                       needle, command):
    record = _record(tmp_path / "rec", file_name, data=b"\x01\x00" * 100)
    os.symlink("/dev/zero", tmp_path / "rec" / "zero.dat")
    os.mkfifo(tmp_path / "rec" / "fifo.dat")
    spec = f"replay:wfdb:{record}"
    args = (["run", "--broker", mqtt_broker.url, "--state-dir", str(tmp_path / "state"), "--speed", "max",
             "--source", spec] if command == "run" else ["devices", "check", spec, "--duration", "2"])
    run = harness.run_bounded(args, tmp_path / "run", timeout_s=20, case=f"{case} ({command})")
    assert not run.timed_out
    assert run.returncode != 0
    harness.one_line_naming(run, str(record), needle)
    assert "root:" not in run.stderr + run.stdout  # /etc/passwd never read
    assert run.peak_rss_mb < harness.UNIT_MEMORY_MAX_MB


@pytest.mark.parametrize("case, files, needle", [
    ("E4 EDA.csv with a NaN sample", {"EDA.csv": "1644227574\n4\n0.1\nnan\n"}, "row 4 holds a value that is not a finite number"),
    ("E4 IBI.csv with an infinite interval", {"EDA.csv": "1644227574\n4\n0.1\n", "IBI.csv": "1644227574, IBI\n1.0,inf\n"},
     "intervals must be positive"),
    ("WFDB header with a malformed field", {"r.hea": "r 1 360 10\nr.dat 16+x 200 16 0 0 0 0 MLII\n", "r.dat": ""},
     "signal 0: bad line 'r.dat 16+x 200"),
    ("WFDB header with a word for a baseline", {"r.hea": "r 1 360 10\nr.dat 16 200(zero)/mV 16 0 0 0 0 MLII\n", "r.dat": ""},
     "signal 0: bad line 'r.dat 16 200(zero)/mV"),
])
def test_devices_check_and_run_name_a_bad_file_in_one_line(mqtt_broker, tmp_path, case, files, needle):
    folder = tmp_path / "data"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    spec = f"replay:wfdb:{folder / 'r'}" if "r.hea" in files else f"replay:e4:{folder}"
    check = harness.run_bounded(["devices", "check", spec, "--duration", "2"], tmp_path / "check", timeout_s=20,
                                case=f"{case} (devices check)")
    run = harness.run_bounded(["run", "--broker", mqtt_broker.url, "--state-dir", str(tmp_path / "state"),
                               "--speed", "max", "--source", spec], tmp_path / "run", timeout_s=20, case=f"{case} (run)")
    for result in (check, run):
        assert not result.timed_out
        text = result.stderr + result.stdout
        assert "Traceback" not in text and "invalid literal" not in text and "could not convert" not in text, text[-2000:]
        assert needle in text, text[-2000:]
        assert str(folder) in next(ln for ln in text.splitlines() if needle in ln)
        assert result.peak_rss_mb < harness.UNIT_MEMORY_MAX_MB
