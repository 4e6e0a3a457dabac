"""Exit codes and supervision (issue 15, item 15), with the real daemon.

* Every source failed: a non-zero exit (systemd's ``Restart=on-failure`` then restarts it).
* A bad file in an E4 folder: one line naming it; the good files beside it are replayed.
* ``camera:0`` with no camera: retried with backoff like a lost camera, not given up on.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from conftest import load_test_module

support = load_test_module("hostile/faults_support")
harness = support.harness

START_UNIX = 1_600_000_000.0


def e4_signal(path: Path, rate_hz: float, seconds: float, channels: int = 1, level: float = 2.0) -> None:
    """An E4 export CSV: start time row, rate row, then samples (Empatica's layout)."""
    import numpy as np

    n = int(rate_hz * seconds)
    t = np.arange(n) / rate_hz
    values = level + 0.3 * np.sin(2 * np.pi * t / 40.0) + 0.05 * np.sin(2 * np.pi * t / 3.0)
    rows = [", ".join([f"{START_UNIX:.6f}"] * channels), ", ".join([f"{rate_hz:.6f}"] * channels)]
    rows += [", ".join([f"{v:.6f}"] * channels) for v in values]
    path.write_text("\n".join(rows) + "\n")


def run(args: list[str], tmp_path: Path, name: str, timeout_s: float = 40) -> tuple[int, str]:
    daemon = harness.DaemonProcess([*args, "--broker", f"mqtt://127.0.0.1:{harness.free_port()}",
                                    "--state-dir", str(tmp_path / "state")], tmp_path, name=name)
    rss = support.PeakRss(daemon.pid)
    try:
        code = daemon.wait(timeout_s)
    finally:
        daemon.close()
        assert rss.stop() < support.DAEMON_RSS_LIMIT_MB
    return code, daemon.stderr()


def test_when_every_source_has_failed_the_exit_is_not_zero(tmp_path):
    folder = tmp_path / "e4"
    folder.mkdir()
    (folder / "EDA.csv").write_text("this is not\nan E4 file\n")
    with support.bounded(45):
        code, err = run(["--source", f"replay:e4:{folder}", "--speed", "max"], tmp_path, "all-failed")
    assert code != 0, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert "nothing can run" in last and "EDA.csv" in last, err[-2000:]
    assert "Traceback" not in err


def test_a_bad_file_in_an_e4_folder_does_not_discard_the_good_ones(tmp_path):
    folder = tmp_path / "e4"
    folder.mkdir()
    e4_signal(folder / "EDA.csv", 4.0, 420)
    (folder / "BVP.csv").write_text(f"{START_UNIX}\n64.0\n-12.5\nbeat\n")  # one unreadable sample
    with support.bounded(45):
        code, err = run(["--source", f"replay:e4:{folder}", "--speed", "max"], tmp_path, "bad-bvp")
    assert code == 0, err[-2000:]
    assert len(support.log_lines(err, "BVP.csv")) == 1, err[-2000:]
    published = int(re.findall(r"stopped: (\d+) states published", err)[-1])
    assert published > 0, err[-2000:]


def test_a_camera_absent_at_start_is_retried_not_given_up_on(tmp_path):
    pytest.importorskip("cv2", reason="needs OpenCV (the [camera] extra)")
    if Path("/dev/video0").exists():
        pytest.skip("a camera is present at /dev/video0")
    with support.bounded(30):
        daemon = harness.DaemonProcess(["--source", "camera:0", "--broker", f"mqtt://127.0.0.1:{harness.free_port()}",
                                        "--state-dir", str(tmp_path / "state")], tmp_path, name="camera")
        try:
            assert daemon.wait_for_log("cannot open camera 0", 20), daemon.stderr()[-2000:]
            time.sleep(4.0)  # a few backoff rounds (1 s, 2 s, ...)
            assert daemon.alive(), "the daemon gave up on a camera that may yet be plugged in:\n" + daemon.stderr()[-2000:]
            stopped_at = time.monotonic()
            daemon.terminate()
            assert daemon.wait(10) == 0
            stop_s = time.monotonic() - stopped_at
        finally:
            daemon.close()
    err = daemon.stderr()
    assert len(support.log_lines(err, "cannot open camera 0")) == 1, "a retry loop must not flood the log"
    assert stop_s < 3.0, f"SIGTERM took {stop_s:.1f} s"
