"""The daemon's metrics server and the embedded broker under hostile clients (issue 15, items 12, 13).

12. Metrics: clients that abort mid-request leave no traceback; idle connections are closed after
    a timeout and capped in number, so they cannot hold a thread each forever.
13. Embedded broker: packet size, connection count and retained message size are limited; a
    flood of half-sent huge CONNECTs does not grow the broker's memory.
"""

from __future__ import annotations

import importlib.util
import socket
import struct
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import port_open

_spec = importlib.util.spec_from_file_location("faults_support", Path(__file__).with_name("faults_support.py"))
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)
harness = support.harness


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads: line")


def reset_close(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a client that crashes or is killed does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_metrics_survive_aborted_and_idle_clients(tmp_path):
    from edge.metrics import MAX_CONNECTIONS, REQUEST_TIMEOUT_S

    port = harness.free_port()
    config = tmp_path / "c.toml"
    config.write_text(f"[metrics]\nenabled = true\nport = {port}\n")
    daemon = harness.DaemonProcess(["--config", str(config), "--source", "simulate:duration=3600", "--speed", "1",
                                    "--broker", f"mqtt://127.0.0.1:{harness.free_port()}",
                                    "--state-dir", str(tmp_path / "state")], tmp_path)
    url = f"http://127.0.0.1:{port}/metrics"
    idle: list[socket.socket] = []
    rss = support.PeakRss(daemon.pid)
    try:
        with support.bounded(40):
            assert harness.wait_until(lambda: port_open(port) or not daemon.alive(), 20), daemon.stderr()[-2000:]
            baseline_threads = threads_of(daemon.pid)
            for _ in range(20):  # aborted: half a request, then a reset; a whole request, then a reset
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(b"GET /metr")
                reset_close(s)
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                reset_close(s)
            for _ in range(60):  # idle: connect and say nothing
                idle.append(socket.create_connection(("127.0.0.1", port)))
            time.sleep(0.5)
            crowded_threads = threads_of(daemon.pid)
            assert crowded_threads <= baseline_threads + MAX_CONNECTIONS + 1, (baseline_threads, crowded_threads)
            time.sleep(REQUEST_TIMEOUT_S + 1.5)  # the idle ones time out and free their threads
            with urllib.request.urlopen(url, timeout=5) as reply:
                assert reply.status == 200 and b"emotion_edge_outbox_depth" in reply.read()
            assert threads_of(daemon.pid) <= baseline_threads + 1
            daemon.terminate()
            assert daemon.wait(15) == 0
    finally:
        for s in idle:
            s.close()
        daemon.close()
        peak_mb = rss.stop()
    err = daemon.stderr()
    assert "Traceback" not in err and "Exception occurred" not in err, err[-3000:]
    assert peak_mb < support.DAEMON_RSS_LIMIT_MB
    print(f"FIGURES metrics: 40 aborted + 60 idle clients: threads {baseline_threads} -> {crowded_threads}, "
          f"no traceback, peak RSS {peak_mb:.0f} MB")
