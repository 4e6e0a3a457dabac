"""The daemon's metrics server and the embedded broker under hostile clients (issue 15, items 12, 13).

12. Metrics: clients that abort mid-request leave no traceback; idle connections are closed after
    a timeout and capped in number, so they cannot hold a thread each forever.
13. Embedded broker: packet size, connection count and retained message size are limited; a
    flood of half-sent huge CONNECTs does not grow the broker's memory.
"""

from __future__ import annotations

import socket
import struct
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import load_test_module, port_open

support = load_test_module("hostile/faults_support")
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
    import edge.metrics

    # the limits edge.metrics documents (fallbacks, so that a build without them fails on the figures)
    MAX_CONNECTIONS = getattr(edge.metrics, "MAX_CONNECTIONS", 8)
    REQUEST_TIMEOUT_S = getattr(edge.metrics, "REQUEST_TIMEOUT_S", 5.0)

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


# -- item 13: the embedded broker ------------------------------------------------------------------

BROKER_SCRIPT = """
import sys, time
from edge.broker import EmbeddedBroker
broker = EmbeddedBroker("127.0.0.1", 0)
print(broker.start(), flush=True)
sys.stdin.read()
broker.stop()
"""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _connect_packet(client_id: str) -> bytes:
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack("!H", len(client_id)) + client_id.encode()
    return b"\x10" + _varint(len(body)) + body


def _publish_packet(topic: str, payload: bytes, retain: bool) -> bytes:
    body = struct.pack("!H", len(topic)) + topic.encode() + payload
    return bytes([0x30 | (1 if retain else 0)]) + _varint(len(body)) + body


@pytest.fixture
def broker_process(tmp_path):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", BROKER_SCRIPT], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=open(tmp_path / "broker.stderr", "wb"), text=True)
    port = int(proc.stdout.readline())
    yield proc, port
    proc.stdin.close()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def test_embedded_broker_limits_half_sent_connects_connections_and_retained_size(broker_process):
    import paho.mqtt.client as mqtt

    proc, port = broker_process
    with support.bounded(60):
        before_kb = harness.rss_kb(proc.pid)
        # 40 CONNECTs that announce 7 MB and send 6 MB of it, then stall
        stalled = []
        chunk = b"\0" * (1024 * 1024)
        for _ in range(40):
            s = socket.create_connection(("127.0.0.1", port))
            try:
                s.sendall(b"\x10" + _varint(7 * 1024 * 1024))
                for _ in range(6):
                    s.sendall(chunk)
            except OSError:
                pass  # the broker hung up: what a limit looks like from outside
            stalled.append(s)
        time.sleep(0.5)
        after_kb = harness.rss_kb(proc.pid)
        for s in stalled:
            s.close()
        growth_mb = (after_kb - before_kb) / 1024
        assert growth_mb < 30, f"40 half-sent 7 MB CONNECTs grew the broker by {growth_mb:.0f} MB"

        # connections past the cap are closed at once
        import edge.broker

        MAX_CONNECTIONS = getattr(edge.broker, "MAX_CONNECTIONS", 64)
        MAX_RETAINED_BYTES = getattr(edge.broker, "MAX_RETAINED_BYTES", 64 * 1024)

        socks, accepted = [], 0
        for i in range(MAX_CONNECTIONS + 20):
            s = socket.create_connection(("127.0.0.1", port))
            s.settimeout(3)
            s.sendall(_connect_packet(f"c{i}"))
            socks.append(s)
        for s in socks:
            try:
                accepted += s.recv(4)[:1] == b"\x20"
            except OSError:
                pass
        for s in socks:
            s.close()
        assert accepted <= MAX_CONNECTIONS, accepted

        # a retained message over the limit is delivered but not kept
        time.sleep(0.3)
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(3)
        s.sendall(_connect_packet("retainer"))
        assert s.recv(4)[:1] == b"\x20"
        big = b"x" * (MAX_RETAINED_BYTES + 1)
        s.sendall(_publish_packet("big/retained", big, retain=True) + _publish_packet("small/retained", b"ok", retain=True))
        time.sleep(0.3)
        got: list[str] = []
        sub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        sub.on_message = lambda c, u, m: got.append(m.topic)
        sub.connect("127.0.0.1", port)
        sub.subscribe("+/retained")
        sub.loop_start()
        assert harness.wait_until(lambda: "small/retained" in got, 5)
        time.sleep(0.2)
        sub.loop_stop()
        sub.disconnect()
        s.close()
        assert "big/retained" not in got, "a retained message over the limit was kept"
    print(f"FIGURES embedded broker: 40 half-sent 7 MB CONNECTs: RSS +{growth_mb:.1f} MB; "
          f"{accepted} of {MAX_CONNECTIONS + 20} connections accepted")
