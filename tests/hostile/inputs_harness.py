"""The daemon (or another ``emotion-edge`` command) as a bounded subprocess, for the hostile-input tests.

Not a test module (loaded by path). Every case runs the real command in its own process with:

* a memory ceiling: ``RLIMIT_AS`` set in the child before it starts, so a runaway input fails the
  case (MemoryError or a kill) instead of eating the machine, and the peak resident set size the
  kernel recorded for that child (``wait4``'s ``ru_maxrss``), which the test bounds;
* a time bound: the case is killed (and fails) past ``timeout_s``;
* optionally SIGTERM after a while, timing how long the process takes to stop.

Figures of each run are appended to ``$EMOTION_EDGE_HOSTILE_FIGURES`` (JSON lines) when set, for
the table in docs/hostile.md.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Far above a healthy daemon (~1.2 GB of address space: numpy, the TFLite runtime, threads) and far
# below what a runaway input takes (12 GB seen): a case over it fails instead of swapping the host.
ADDRESS_SPACE_LIMIT_BYTES = 3 << 30
# The shipped unit's MemoryMax (deploy/emotion-edge.service): no input may take the daemon past it.
UNIT_MEMORY_MAX_MB = 300.0


@dataclass
class BoundedRun:
    args: list[str]
    returncode: int | None  # None: killed at the time bound
    stdout: str
    stderr: str
    peak_rss_mb: float
    wall_s: float
    stop_s: float | None  # SIGTERM -> exit, when a SIGTERM was sent

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    def lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.strip()]

    def assert_no_traceback(self) -> None:
        assert "Traceback" not in self.stderr, self.stderr[-3000:]
        assert "Traceback" not in self.stdout, self.stdout[-3000:]


def _limit_memory() -> None:  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT_BYTES, ADDRESS_SPACE_LIMIT_BYTES))


def run_bounded(args: list[str], workdir: Path, *, timeout_s: float, sigterm_after_s: float | None = None,
                sigterm_when: str | None = None, env: dict[str, str] | None = None, case: str = "",
                python: list[str] | None = None) -> BoundedRun:
    """Run ``python -m edge ARGS`` in ``workdir``; SIGTERM after ``sigterm_after_s`` (counted from
    ``sigterm_when`` appearing in stderr, if given); kill at ``timeout_s``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = workdir / "run.stdout", workdir / "run.stderr"
    full_env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    full_env.update(env or {})
    command = [*(python or [sys.executable]), "-m", "edge", *args]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(command, cwd=workdir, env=full_env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, preexec_fn=_limit_memory)
    started = time.monotonic()
    deadline = started + timeout_s
    term_at = None if sigterm_after_s is None or sigterm_when else started + sigterm_after_s
    termed = None
    status = None
    rusage = None
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        now = time.monotonic()
        if sigterm_when and term_at is None and sigterm_when in err_path.read_text(errors="replace"):
            term_at = now + (sigterm_after_s or 0.0)
        if term_at is not None and termed is None and now >= term_at:
            os.kill(proc.pid, signal.SIGTERM)
            termed = now
        if now > deadline:
            os.kill(proc.pid, signal.SIGKILL)
            pid, status, rusage = os.wait4(proc.pid, 0)
            status = None
            break
        time.sleep(0.01)
    ended = time.monotonic()
    proc.returncode = -9 if status is None else os.waitstatus_to_exitcode(status)  # Popen must not wait again
    run = BoundedRun(args=list(args), returncode=None if status is None else proc.returncode,
                     stdout=out_path.read_text(errors="replace"), stderr=err_path.read_text(errors="replace"),
                     peak_rss_mb=rusage.ru_maxrss / 1024.0, wall_s=ended - started,
                     stop_s=None if termed is None else ended - termed)
    _record(case, run)
    return run


def _record(case: str, run: BoundedRun) -> None:
    path = os.environ.get("EMOTION_EDGE_HOSTILE_FIGURES")
    if not path or not case:
        return
    with open(path, "a") as fh:
        fh.write(json.dumps({"case": case, "returncode": run.returncode, "peak_rss_mb": round(run.peak_rss_mb, 1),
                             "wall_s": round(run.wall_s, 2),
                             "stop_s": None if run.stop_s is None else round(run.stop_s, 2),
                             "last_line": (run.lines() or [""])[-1][-200:]}) + "\n")


def one_line_naming(run: BoundedRun, *needles: str) -> str:
    """The single stderr line that names every needle (the test fails if none or a traceback)."""
    run.assert_no_traceback()
    hits = [ln for ln in run.lines() if all(n in ln for n in needles)]
    assert hits, f"no line naming {needles!r} in:\n{run.stderr[-3000:]}"
    return hits[0]


def write_repeated(path: Path, head: bytes, chunk: bytes, total_bytes: int) -> Path:
    """``head`` then ``chunk`` repeated up to ``total_bytes``: a large file in a fraction of a second."""
    block = chunk * max(1, (1 << 20) // max(len(chunk), 1))
    with open(path, "wb") as fh:
        fh.write(head)
        written = len(head)
        while written < total_bytes:
            part = block[: total_bytes - written]
            fh.write(part)
            written += len(part)
    return path
