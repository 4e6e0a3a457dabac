"""Shared by the fault tests in this folder (loaded by path; not a test module).

* ``bounded(seconds)`` — a per-case time bound: SIGALRM fails the test when it runs too long.
* ``PeakRss`` — samples a process's resident memory in the background; ``peak_mb`` after.
* ``harness`` — ``tests/daemon_harness.py`` (daemon process, persistent mosquitto, collector).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from conftest import load_test_module  # noqa: E402

harness = load_test_module("daemon_harness")

DAEMON_RSS_LIMIT_MB = 300  # the shipped unit's MemoryMax


@contextlib.contextmanager
def bounded(seconds: float):
    """Fail (TimeoutError) if the block runs longer than ``seconds``."""
    def expired(signum, frame):
        raise TimeoutError(f"test case exceeded its time bound of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class PeakRss:
    """Peak VmRSS (MB) of ``pid``, sampled every 50 ms until ``stop()``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            kb = harness.rss_kb(self.pid)
            if kb is None:
                return
            self.peak_kb = max(self.peak_kb, kb)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(2)
        return self.peak_kb / 1024

    @property
    def peak_mb(self) -> float:
        return self.peak_kb / 1024


def log_lines(text: str, needle: str) -> list[str]:
    return [ln for ln in text.splitlines() if needle in ln]


def outbox_depth(state_dir: Path, device: str) -> int:
    """``harness.outbox_depth``, 0 while the daemon is still creating the database."""
    import sqlite3  # noqa: PLC0415

    try:
        return harness.outbox_depth(state_dir, device)
    except sqlite3.OperationalError:
        return 0
